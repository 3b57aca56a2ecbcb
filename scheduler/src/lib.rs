//! Sentinela's periodic jobs (what celery beat did): retention, cleanup, stuck-task recovery,
//! recording index sync.
//!
//! Today: stuck-task recovery, runnable now with `sentinela-scheduler run-once recover`. The cron
//! schedules (apalis-cron with one run per tick across replicas), retention, cleanup and index
//! sync are not built yet (issue #5).
//!
//! # Layout
//! - [`Cli`], [`run`]: the command line.
//! - [`recover`]: stuck-task recovery.

pub mod recover;

use clap::{Parser, Subcommand, ValueEnum};
use sentinela_core::queue::JobQueue;
use sentinela_core::{db, settings::Settings};

/// Command line of `sentinela-scheduler`.
#[derive(Debug, Parser)]
#[command(
    name = "sentinela-scheduler",
    version,
    about = "Sentinela scheduler: retention, cleanup, stuck-task recovery and recording index sync"
)]
pub struct Cli {
    /// What to do (default: run the schedules).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one job now and print what it did.
    RunOnce {
        /// The job.
        job: Job,
        /// Tasks running longer than this many seconds count as stuck.
        #[arg(long, default_value_t = 1800)]
        lease_secs: i64,
        /// Give up on a task after this many attempts.
        #[arg(long, default_value_t = 5)]
        max_attempts: i32,
    },
}

/// Jobs that can run once.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Job {
    /// Stuck-task recovery.
    Recover,
}

/// Runs the scheduler.
///
/// # Errors
/// Settings, database and queue errors, naming what failed.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    let db = db::connect_and_migrate(&settings.database_url).await?;
    match cli.command {
        Some(Command::RunOnce {
            job: Job::Recover,
            lease_secs,
            max_attempts,
        }) => {
            let queue = JobQueue::connect(&settings, &db).await?;
            let report = recover::recover_stuck(
                &db,
                &queue,
                chrono::Duration::seconds(lease_secs.max(1)),
                max_attempts.max(1),
            )
            .await?;
            println!(
                "recover: {} task(s) re-enqueued, {} failed after too many attempts, {} search(es) finalised",
                report.requeued, report.failed, report.finalized
            );
            Ok(())
        }
        None => anyhow::bail!(
            "the cron schedules are not implemented yet (issue #5); `run-once recover` works"
        ),
    }
}
