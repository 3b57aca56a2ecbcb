//! Sentinela's periodic jobs (apalis-cron): retention, cleanup, stuck-task recovery, recording
//! index sync.
//!
//! # Layout
//! - [`Cli`]: the command line.
//! - [`run`]: dispatches it.

use clap::Parser;
use sentinela_core::{db, settings::Settings};

/// Command line of `sentinela-scheduler`.
#[derive(Debug, Parser)]
#[command(
    name = "sentinela-scheduler",
    version,
    about = "Sentinela scheduler: retention, cleanup, stuck-task recovery and recording index sync"
)]
pub struct Cli {}

/// Runs the scheduler.
///
/// # Errors
/// Settings and database errors, naming what failed.
pub async fn run(_cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    db::connect_and_migrate(&settings.database_url).await?;
    anyhow::bail!("periodic jobs are not implemented yet (issue #5)")
}
