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
    /// The lookup audit's key, read from the database at its first use: it never changes.
    pub lookup_audit_key: Arc<tokio::sync::OnceCell<Vec<u8>>>,
    /// The certificates that signed messages, as verifiers.
    pub signers: Arc<crate::signers::Signers>,
}

impl Context {
    /// # Errors
    /// When the case rules cannot be built (e.g. an invalid calendar file).
    pub fn new(pool: PgPool, settings: Settings) -> anyhow::Result<Context> {
        let rules = Arc::new(CaseRules::new(&settings)?);
        Ok(Context {
            pool,
            settings: Arc::new(settings),
            rules,
            lookup_audit_key: Arc::default(),
            signers: Arc::default(),
        })
    }
}
