//! What every part of the hub that handles business needs: the database, the settings, and
//! the rules built from them (checked at start).

use std::sync::Arc;

use sqlx::PgPool;

use crate::config::Settings;
use crate::rules::CaseRules;

/// What the hub needs to process messages, timers and operators' actions.
#[derive(Clone)]
pub struct Context {
    pub pool: PgPool,
    pub settings: Arc<Settings>,
    pub rules: Arc<CaseRules>,
}

impl Context {
    /// # Errors
    /// When the case rules cannot be built (e.g. an invalid calendar file).
    pub fn new(pool: PgPool, settings: Settings) -> anyhow::Result<Context> {
        let rules = Arc::new(CaseRules::new(&settings)?);
        Ok(Context { pool, settings: Arc::new(settings), rules })
    }
}
