//! `hub schools …`: the school registry.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use crate::config::Settings;

#[derive(Subcommand)]
pub(super) enum SchoolsCommand {
    /// Load schools from a CSV file with the header `code,province,name[,active[,code_usable_from]]`
    /// (from the national institution-code system); existing codes are updated.
    Load {
        /// The CSV file (UTF-8; a name with a comma or a quote is quoted).
        file: PathBuf,
    },
}

pub(super) async fn run(cmd: SchoolsCommand, settings: &Settings) -> Result<()> {
    match cmd {
        SchoolsCommand::Load { file } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("Failed to read {}", file.display()))?;
            let schools = crate::schools::read_csv(&text)?;
            let pool = crate::store::pool(&settings.database)?;
            crate::store::migrate(&pool).await?;
            let mut tx = pool.begin().await?;
            crate::store::schools::upsert(&mut tx, &schools).await?;
            tx.commit().await?;
            println!("{} schools loaded.", schools.len());
            Ok(())
        }
    }
}
