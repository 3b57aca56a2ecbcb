//! Sentinela's job workers (apalis): plan a search into recording-range jobs, analyse recordings,
//! fan in.
//!
//! # Layout
//! - [`Cli`]: the command line.
//! - [`run`]: dispatches it.

use clap::Parser;
use sentinela_core::{db, settings::Settings};

/// Command line of `sentinela-worker`.
#[derive(Debug, Parser)]
#[command(
    name = "sentinela-worker",
    version,
    about = "Sentinela worker: takes SearchVehicle and AnalyzeRecording jobs from the queue",
    long_about = "Sentinela worker: takes SearchVehicle and AnalyzeRecording jobs from the queue.\n\n\
        Reads DATABASE_URL, REDIS_URL, WORKER_CONCURRENCY, METRICS_BIND, DETECTOR, SAMPLE_FPS, \
        DETECTOR_MAX_IN_FLIGHT, DETECTOR_RATE_LIMIT, RECORDINGS_DIR and SNAPSHOT_DIR."
)]
pub struct Cli {}

/// Runs the worker.
///
/// # Errors
/// Settings and database errors, naming what failed.
pub async fn run(_cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    db::connect_and_migrate(&settings.database_url).await?;
    anyhow::bail!("job processing is not implemented yet (issue #3)")
}
