//! Sentinela's periodic jobs (what celery beat did): recording retention, search cleanup,
//! stuck-task recovery, recording index sync, queue hygiene and completion webhooks, on apalis-cron schedules that
//! fire once per tick however many scheduler replicas run.
//!
//! # Layout
//! - [`Cli`], [`run`]: the command line (`sentinela-scheduler` runs the schedules;
//!   `sentinela-scheduler run-once <job>` runs one job now and prints what it did).
//! - [`periodic`]: schedules, the tick producers, the periodic-job worker, [`start`] for
//!   in-process use (`sentinela-api --standalone`).
//! - [`retention`], [`cleanup`], [`recover`], [`index_sync`], [`hygiene`], [`webhooks`]: the jobs.
//! - [`report`]: what a run did, as named counts.

pub mod check_paths;
pub mod cleanup;
mod files;
pub mod hygiene;
pub mod index_sync;
pub mod periodic;
pub mod recover;
pub mod report;
pub mod retention;
pub mod webhooks;

use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use sentinela_core::jobs::PeriodicJob;
use sentinela_core::queue::JobQueue;
use sentinela_core::tenancy::Databases;
use sentinela_core::{db, settings::Settings};

use crate::periodic::JobContext;

/// Command line of `sentinela-scheduler`.
#[derive(Debug, Parser)]
#[command(
    name = "sentinela-scheduler",
    version,
    about = "Sentinela scheduler: retention, cleanup, stuck-task recovery, recording index sync and queue hygiene",
    long_about = "Sentinela scheduler: retention, cleanup, stuck-task recovery, recording index sync \
        and queue hygiene.\n\n\
        Without a subcommand it runs the schedules (SENTINELA__SCHEDULER__*_CRON; each tick runs \
        once however many replicas share REDIS_URL). Reads DATABASE_URL, REDIS_URL, METRICS_BIND, \
        RECORDINGS_DIR, RECORDINGS_TZ and SNAPSHOT_DIR."
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
    },
    /// List stored paths that lead outside RECORDINGS_DIR or SNAPSHOT_DIR (rows written before
    /// paths were confined); exits non-zero when there is any. Nothing is changed.
    CheckPaths,
}

/// Jobs that can run once.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Job {
    /// Recording retention (age and storage cap per city).
    Retention,
    /// Delete old searches with their tasks, points and snapshots.
    Cleanup,
    /// Stuck-task recovery.
    Recover,
    /// Register new MediaMTX segments.
    IndexSync,
    /// Prune finished and dead queue records.
    QueueHygiene,
    /// Deliver due completion webhooks.
    Webhooks,
}

impl From<Job> for PeriodicJob {
    fn from(job: Job) -> Self {
        match job {
            Job::Retention => Self::Retention,
            Job::Cleanup => Self::Cleanup,
            Job::Recover => Self::Recover,
            Job::IndexSync => Self::IndexSync,
            Job::QueueHygiene => Self::QueueHygiene,
            Job::Webhooks => Self::Webhooks,
        }
    }
}

/// Runs the scheduler.
///
/// # Errors
/// Settings (an invalid cron expression names its job), database and queue errors.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    match cli.command {
        Some(Command::CheckPaths) => check_paths_command(&settings).await,
        Some(Command::RunOnce { job }) => {
            let (ctx, _) = context(settings).await?;
            let report = ctx.execute(job.into()).await?;
            println!("{report}");
            Ok(())
        }
        None => {
            let (ctx, schedules) = context(settings).await?;
            let stop = sentinela_core::process::stop_on_signal();
            let (metrics_addr, metrics) = sentinela_core::metrics_server::start(
                &ctx.settings.scheduler.metrics_bind,
                ctx.queue.clone(),
                ctx.dbs.clone(),
                ctx.settings.detector.daily_calls_per_city,
                sentinela_core::process::stopped(stop.clone()),
            )
            .await?;
            tracing::info!(metrics = %metrics_addr, "scheduler starting");
            let result =
                periodic::run_scheduler(ctx, schedules, sentinela_core::process::stopped(stop))
                    .await;
            metrics.abort();
            result
        }
    }
}

/// The jobs' context and the schedules (checked before connecting, so a bad expression is
/// reported at once).
async fn context(
    settings: Settings,
) -> anyhow::Result<(Arc<JobContext>, Vec<periodic::JobSchedule>)> {
    let schedules = periodic::schedules(&settings)?;
    let db = db::connect_and_migrate(&settings.database_url).await?;
    let queue = JobQueue::connect(&settings, &db).await?;
    let dbs = Arc::new(Databases::new(db, settings.city_databases.clone()));
    Ok((Arc::new(JobContext::new(dbs, queue, settings)?), schedules))
}

/// `check-paths`: prints every stored path that leads outside its root.
async fn check_paths_command(settings: &Settings) -> anyhow::Result<()> {
    let db = db::connect_and_migrate(&settings.database_url).await?;
    let dbs = Databases::new(db, settings.city_databases.clone());
    let mut checked = check_paths::Checked::default();
    for database in dbs.all().await? {
        let one = check_paths::run(
            &database.conn,
            &settings.storage.recordings_dir,
            &settings.storage.snapshot_dir,
        )
        .await
        .with_context(|| format!("database {}", database.label))?;
        checked.rows += one.rows;
        checked.findings.extend(one.findings);
    }
    for f in &checked.findings {
        println!("{} {}: {:?}: {}", f.table, f.id, f.path, f.reason);
    }
    println!(
        "check-paths: rows_checked={} outside_root={}",
        checked.rows,
        checked.findings.len()
    );
    if !checked.findings.is_empty() {
        anyhow::bail!(
            "{} stored paths lead outside their roots; correct or delete those rows",
            checked.findings.len()
        );
    }
    Ok(())
}

/// Starts the schedules in-process (the API's `--standalone` mode) and returns the task running
/// them; it ends after `shutdown` resolves.
///
/// # Errors
/// An invalid cron expression or time zone.
pub fn start(
    settings: &Settings,
    dbs: Arc<Databases>,
    queue: JobQueue,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let schedules = periodic::schedules(settings)?;
    let ctx = Arc::new(JobContext::new(dbs, queue, settings.clone())?);
    Ok(tokio::spawn(periodic::run_scheduler(
        ctx, schedules, shutdown,
    )))
}
