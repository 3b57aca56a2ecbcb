//! Sentinela's job workers (apalis): plan a search into recording-range jobs, analyse recordings,
//! fan in. The Celery replacement.
//!
//! Both handlers are idempotent, because apalis delivers at least once (a job whose worker died
//! runs again, and apalis-redis re-schedules failures regardless of the retry layer):
//! - `plan` creates tasks under a unique (search, recording) constraint and re-pushes only the
//!   tasks that have not ended;
//! - `analyze` claims its task (a finished task is skipped), takes frame analyses from the cache
//!   and inserts points under a unique (search, camera, timestamp) constraint; the task's end is
//!   counted once and the search finalised once by the repository's conditional updates.
//!
//! Permanent failures (a deleted search, an undecodable file) return apalis' `AbortError` or end
//! the task as failed, so they are not retried; transient ones (database, Redis, detector) are
//! retried with exponential backoff.
//!
//! # Layout
//! - [`Cli`], [`run`]: the `sentinela-worker` binary.
//! - [`WorkerState`]: what the handlers share.
//! - [`run_workers`]: the apalis `Monitor` running both workers until a shutdown signal — also
//!   the entry point the API's `--standalone` mode uses in-process.
//! - [`plan`], [`analyze`]: the handlers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use apalis::layers::retry::HasherRng;
use apalis::layers::retry::backoff::{ExponentialBackoffMaker, MakeBackoff};
use apalis::prelude::*;
use clap::Parser;
use sea_orm::DatabaseConnection;
use sentinela_core::detect::criteria::Criteria;
use sentinela_core::detect::limit::{DetectorLimiter, RateLimit};
use sentinela_core::domain::TimeRange;
use sentinela_core::jobs::{AnalyzeRecording, SearchVehicle};
use sentinela_core::pipeline::{AnalyzeError, Analyzer, TaskInput};
use sentinela_core::queue::JobQueue;
use sentinela_core::repo::{cities, recordings, searches, tasks, usage};
use sentinela_core::settings::Settings;
use sentinela_core::tenancy::{Databases, RouteError};
use sentinela_core::{SearchStatus, db, detect};
use tracing::Instrument;

pub use sentinela_core::metrics_server;

/// Command line of `sentinela-worker`.
#[derive(Debug, Parser)]
#[command(
    name = "sentinela-worker",
    version,
    about = "Sentinela worker: takes SearchVehicle and AnalyzeRecording jobs from the queue",
    long_about = "Sentinela worker: takes SearchVehicle and AnalyzeRecording jobs from the queue.\n\n\
        Reads DATABASE_URL, REDIS_URL, WORKER_CONCURRENCY, METRICS_BIND, DETECTOR, SAMPLE_FPS, \
        DETECTOR_MAX_IN_FLIGHT, DETECTOR_RATE_LIMIT, RECORDINGS_DIR and SNAPSHOT_DIR. \
        SIGTERM or SIGINT drains: running jobs finish (up to \
        SENTINELA__WORKER__DRAIN_TIMEOUT_SECS), the rest go back to the queue."
)]
pub struct Cli {}

/// Transient failures are retried this many times before a task is failed for good.
pub const MAX_ATTEMPTS: usize = 5;

/// What the handlers share.
pub struct WorkerState {
    /// The control database and the routes to every city's data.
    pub dbs: Arc<Databases>,
    /// The analysis pipeline (detector, limits, directories).
    pub analyzer: Analyzer,
    /// Where fan-out jobs go.
    pub queue: JobQueue,
    /// This process' name prefix, recorded on the tasks it runs.
    pub name: String,
    /// Jobs of one search on the queue at once (`worker.queued_tasks_per_search`).
    pub queue_window: u32,
    /// Detector calls per city per UTC day unless the city says otherwise.
    pub daily_budget_default: Option<u64>,
    /// Price of one detector call (for the per-city cost metric).
    pub price_per_call: f64,
    /// A task started more often than this without ending is not decoded again: its recording
    /// is taken as poison (it crashed or stalled every worker that opened it).
    pub poison_after: i32,
}

impl WorkerState {
    /// Builds the state from settings: detector, limiter (shared rate limit in Redis when there is
    /// one), directories.
    ///
    /// # Errors
    /// When the detector cannot be built or a directory created.
    pub async fn build(
        settings: &Settings,
        dbs: Arc<Databases>,
        queue: JobQueue,
    ) -> anyhow::Result<Self> {
        let detector = detect::from_settings(settings).await?;
        let rate = settings.detector.rate_limit.map(|per_second| match &queue {
            JobQueue::Redis { conn, .. } => RateLimit::redis(
                conn.clone(),
                format!("sentinela:detector-rate:{}", detector.provider()),
                per_second,
            ),
            JobQueue::Sqlite { .. } => RateLimit::local(per_second),
        });
        std::fs::create_dir_all(&settings.storage.snapshot_dir).with_context(|| {
            format!(
                "SNAPSHOT_DIR: cannot create {}",
                settings.storage.snapshot_dir.display()
            )
        })?;
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "host".into());
        Ok(Self {
            dbs,
            analyzer: Analyzer {
                detector,
                limiter: Arc::new(DetectorLimiter::new(settings.detector.max_in_flight, rate)),
                sampler: settings.sampler.clone(),
                recordings_dir: settings.storage.recordings_dir.clone(),
                snapshot_dir: settings.storage.snapshot_dir.clone(),
                snapshot_budget: settings.storage.max_snapshot_bytes_per_city,
            },
            queue,
            name: format!("{host}-{}", std::process::id()),
            queue_window: settings.worker.queued_tasks_per_search,
            daily_budget_default: settings.detector.daily_calls_per_city,
            price_per_call: settings.detector.price_per_call(),
            poison_after: settings
                .scheduler
                .max_task_attempts
                .saturating_add(i32::try_from(MAX_ATTEMPTS).unwrap_or(i32::MAX)),
        })
    }
}

/// Runs the `sentinela-worker` binary.
///
/// # Errors
/// Settings, database, queue or detector errors, naming what failed.
pub async fn run(_cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    let db = db::connect_and_migrate(&settings.database_url).await?;
    let queue = JobQueue::connect(&settings, &db).await?;
    let dbs = Arc::new(Databases::new(db, settings.city_databases.clone()));
    let stop = stop_on_signal();
    let (metrics_addr, metrics) = metrics_server::start(
        &settings.worker.metrics_bind,
        queue.clone(),
        dbs.clone(),
        settings.detector.daily_calls_per_city,
        stopped(stop.clone()),
    )
    .await?;
    let state = Arc::new(WorkerState::build(&settings, dbs, queue).await?);
    tracing::info!(
        worker = %state.name,
        concurrency = settings.worker.concurrency,
        metrics = %metrics_addr,
        "worker starting"
    );
    let result = run_workers(state, &settings, stopped(stop)).await;
    metrics.abort();
    result
}

pub use sentinela_core::process::{shutdown_signal, stop_on_signal, stopped};

fn retry_policy() -> BackoffRetryPolicy<apalis::layers::retry::backoff::ExponentialBackoff> {
    let backoff = ExponentialBackoffMaker::new(
        Duration::from_millis(500),
        Duration::from_secs(30),
        0.5,
        HasherRng::default(),
    )
    .expect("valid backoff bounds")
    .make_backoff();
    RetryPolicy::retries(MAX_ATTEMPTS).with_backoff(backoff)
}

/// Runs the plan worker and `concurrency` analyse slots until `shutdown` resolves, then drains
/// for up to the configured timeout.
///
/// # Errors
/// When the monitor fails.
pub async fn run_workers(
    state: Arc<WorkerState>,
    settings: &Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let concurrency = settings.worker.concurrency;
    let timeout = Duration::from_secs(settings.worker.job_timeout_secs);
    let name = state.name.clone();
    let monitor = Monitor::new()
        .shutdown_timeout(Duration::from_secs(settings.worker.drain_timeout_secs))
        // A worker that stopped on a backend error (Redis restarting) starts again under a new
        // name; the restart count is part of it (pitfall 4).
        .should_restart(|ctx, error| {
            tracing::warn!(worker = %ctx.name(), %error, "worker stopped; restarting");
            true
        });
    // The two backends have different types, so the same registration is written once and
    // expanded for each.
    macro_rules! register_workers {
        ($monitor:expr, $search:expr, $analyze:expr) => {{
            let (search, analyze) = ($search, $analyze);
            let (s1, s2) = (state.clone(), state.clone());
            let (n1, n2) = (name.clone(), name.clone());
            $monitor
                .register(move |restarts| {
                    WorkerBuilder::new(format!("{n1}-plan-r{restarts}"))
                        .backend(search.clone())
                        .data(s1.clone())
                        .retry(retry_policy())
                        .timeout(timeout)
                        .catch_panic()
                        .enable_tracing()
                        .build(plan)
                })
                .register(move |restarts| {
                    WorkerBuilder::new(format!("{n2}-analyze-r{restarts}"))
                        .backend(analyze.clone())
                        .data(s2.clone())
                        .concurrency(concurrency)
                        .retry(retry_policy())
                        .timeout(timeout)
                        .catch_panic()
                        .enable_tracing()
                        .parallelize(tokio::spawn)
                        .build(analyze_job)
                })
        }};
    }
    let monitor = match state.queue.clone() {
        JobQueue::Redis {
            search, analyze, ..
        } => register_workers!(monitor, search, analyze),
        JobQueue::Sqlite {
            search, analyze, ..
        } => register_workers!(monitor, search, analyze),
    };
    monitor
        .run_with_signal(async move {
            shutdown.await;
            Ok(())
        })
        .await
        .context("worker monitor failed")
}

/// The database holding the data of a job's city. An unknown city or an unusable URL ends the
/// job (nothing can be recorded; the search cannot be reached either); the control database
/// failing is transient. A city database that is down is not detected here — pools open lazily
/// — but by the job's first query, which fails and is retried with backoff.
async fn city_database(
    state: &WorkerState,
    city_id: Option<i64>,
    task_id: &TaskId,
) -> Result<DatabaseConnection, BoxDynError> {
    match state.dbs.for_job(city_id).await {
        Ok(db) => Ok(db),
        Err(RouteError::Control(e)) => Err(Box::new(e)),
        Err(e) => Err(abort(format!("job {task_id}: {e}"))),
    }
}

/// An error that ends the job without retries.
fn abort(message: String) -> BoxDynError {
    tracing::error!(%message, "job aborted");
    Box::new(AbortError::new(message))
}

/// Plans a search: one task and one `AnalyzeRecording` job per overlapping recording.
///
/// # Errors
/// `AbortError` when the search no longer exists; transient errors otherwise.
pub async fn plan(
    job: SearchVehicle,
    state: Data<Arc<WorkerState>>,
    task_id: TaskId,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    observed("search", &attempt, plan_search(job, state, task_id)).await
}

/// How a job that returned `Ok` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    /// Its work was done (or was already done, or no longer needed).
    Done,
    /// Its task was failed for good (a file that cannot be analysed, retries exhausted): not
    /// retried, but counted as a failed job.
    TaskFailed,
}

/// Counts a job's start, end, outcome (`succeeded`, `failed`, `retried`, `aborted`) and duration
/// in the process metrics.
async fn observed(
    job: &'static str,
    attempt: &Attempt,
    run: impl Future<Output = Result<Handled, BoxDynError>>,
) -> Result<(), BoxDynError> {
    let metrics = sentinela_core::metrics::global();
    metrics.job_started(job);
    let started = std::time::Instant::now();
    let result = run.await;
    let outcome = match &result {
        Ok(Handled::Done) => "succeeded",
        Ok(Handled::TaskFailed) => "failed",
        Err(e) if e.downcast_ref::<AbortError>().is_some() => "aborted",
        Err(_) if attempt.current() < MAX_ATTEMPTS => "retried",
        Err(_) => "failed",
    };
    metrics.job_finished(job, outcome, started.elapsed().as_secs_f64());
    result.map(drop)
}

async fn plan_search(
    job: SearchVehicle,
    state: Data<Arc<WorkerState>>,
    task_id: TaskId,
) -> Result<Handled, BoxDynError> {
    let db = &city_database(&state, job.city_id, &task_id).await?;
    let Some(search) = searches::get(db, job.search_id).await? else {
        return Err(abort(format!(
            "job {task_id}: search {} no longer exists",
            job.search_id
        )));
    };
    if search.status.is_final() {
        tracing::info!(
            search_id = search.id,
            status = search.status.as_str(),
            "search already ended; nothing to plan"
        );
        return Ok(Handled::Done);
    }
    let window = match TimeRange::new(search.start_date, search.end_date) {
        Ok(w) => w,
        Err(e) => {
            searches::fail(db, search.id, &e.to_string()).await?;
            return Err(abort(format!("job {task_id}: search {}: {e}", search.id)));
        }
    };
    let cameras = searches::camera_filter(&search);
    let found = recordings::searchable(db, search.city_id, &window, cameras.as_deref()).await?;
    if found.is_empty() {
        searches::complete_empty(db, search.id).await?;
        tracing::info!(
            search_id = search.id,
            "no recordings in the window; completed empty"
        );
        return Ok(Handled::Done);
    }
    let new_tasks: Vec<tasks::NewTask> = found
        .iter()
        .filter_map(|r| {
            let recording = TimeRange::new(r.started_at, r.ended_at).ok()?;
            Some(tasks::NewTask {
                recording_id: r.id,
                window: window.intersect(&recording)?,
            })
        })
        .collect();
    let created = tasks::create_for_search(db, search.id, &new_tasks).await?;
    // Processing before the jobs exist, so the last task to finish finds the search ready to be
    // finalised.
    searches::start_processing(db, search.id, created.len() as i32).await?;
    // A re-run plan pushes again what an earlier run queued and did not end (the job may be
    // lost; a duplicate delivery is skipped), then fills the search's queue window.
    let requeued: Vec<AnalyzeRecording> = created
        .iter()
        .filter(|t| !t.status.is_final() && t.enqueued_at.is_some())
        .map(|t| AnalyzeRecording::of_task(t, job.city_id))
        .collect();
    let repushed = requeued.len();
    state
        .queue
        .push_analyze(requeued)
        .await
        .map_err(|e| e.into_boxed_dyn_error())?;
    let pushed = queue_next(&state, db, search.id, job.city_id).await?;
    tracing::info!(
        search_id = search.id,
        tasks = created.len(),
        pushed,
        repushed,
        window = state.queue_window,
        "search planned"
    );
    // Nothing left open (a re-run after every task ended): make sure the search is finalised.
    searches::finalize_if_complete(db, search.id).await?;
    Ok(Handled::Done)
}

/// The city's daily budget when its searches have used it up today, `None` otherwise (or when it
/// has none).
async fn budget_reached(
    state: &WorkerState,
    db: &DatabaseConnection,
    city: &entity::city::Model,
) -> Result<Option<i64>, BoxDynError> {
    let city_id = city.id;
    let own = city.daily_detector_calls;
    let Some(budget) = own.or_else(|| {
        state
            .daily_budget_default
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX))
    }) else {
        return Ok(None);
    };
    let used = usage::calls_on(db, city_id, chrono::Utc::now()).await?;
    Ok((used >= budget).then_some(budget))
}

/// Queues the search's next tasks up to its window (`worker.queued_tasks_per_search` jobs on the
/// queue at once): a big search never holds more than that many places in the queue, so another
/// city's search planned later waits behind at most that many of its jobs. Tasks whose jobs
/// cannot be pushed are given back for a later refill (stuck-task recovery tops windows up too).
///
/// # Errors
/// Database or queue errors.
pub async fn queue_next(
    state: &WorkerState,
    db: &DatabaseConnection,
    search_id: i64,
    city_id: Option<i64>,
) -> Result<usize, BoxDynError> {
    let claimed = tasks::refill(db, search_id, state.queue_window).await?;
    if claimed.is_empty() {
        return Ok(0);
    }
    let jobs: Vec<AnalyzeRecording> = claimed
        .iter()
        .map(|t| AnalyzeRecording::of_task(t, city_id))
        .collect();
    let n = jobs.len();
    if let Err(e) = state.queue.push_analyze(jobs).await {
        let ids: Vec<i64> = claimed.iter().map(|t| t.id).collect();
        tasks::unclaim(db, &ids).await?;
        return Err(e.into_boxed_dyn_error());
    }
    Ok(n)
}

/// Analyses one recording for one search, then counts the task and fans in.
///
/// # Errors
/// `AbortError` for a job that can never succeed; transient errors are returned for retry until
/// [`MAX_ATTEMPTS`], after which the task is failed.
pub async fn analyze_job(
    job: AnalyzeRecording,
    state: Data<Arc<WorkerState>>,
    task_id: TaskId,
    attempt: Attempt,
    worker: WorkerContext,
) -> Result<(), BoxDynError> {
    let (search_id, city_id) = (job.search_id, job.city_id);
    let shared = Arc::clone(&state);
    observed("analyze", &attempt.clone(), async move {
        let db = city_database(&shared, city_id, &task_id).await?;
        let handled = analyze_recording(job, state, &db, task_id, attempt, worker).await?;
        // However the task ended (or had ended), its place in the queue window is free.
        queue_next(&shared, &db, search_id, city_id).await?;
        Ok(handled)
    })
    .await
}

async fn analyze_recording(
    job: AnalyzeRecording,
    state: Data<Arc<WorkerState>>,
    db: &DatabaseConnection,
    task_id: TaskId,
    attempt: Attempt,
    worker: WorkerContext,
) -> Result<Handled, BoxDynError> {
    let Some(task) = tasks::start(db, job.task_id, worker.name()).await? else {
        tracing::info!(task_id = job.task_id, "task already ended; skipping");
        return Ok(Handled::Done);
    };
    let Some(search) = searches::get(db, job.search_id).await? else {
        return Err(abort(format!(
            "job {task_id}: search {} no longer exists",
            job.search_id
        )));
    };
    if matches!(
        search.status,
        SearchStatus::Cancelled | SearchStatus::BudgetExhausted
    ) {
        return Ok(Handled::Done);
    }
    // The city's daily detector budget: once reached, the search ends as budget_exhausted (its
    // sightings kept) instead of analysing more. Checked per task, so a day may end a task's
    // calls over the budget.
    // The city's limits as the control database has them.
    let Some(city) = cities::get(state.dbs.control(), search.city_id).await? else {
        return Err(abort(format!(
            "job {task_id}: city {} no longer exists",
            search.city_id
        )));
    };
    if let Some(budget) = budget_reached(&state, db, &city).await? {
        if searches::exhaust_budget(db, search.id, budget).await? {
            tracing::warn!(
                search_id = search.id,
                city_id = search.city_id,
                budget,
                "daily detector budget reached; search ended"
            );
        }
        return Ok(Handled::Done);
    }
    let fail = |error: String| async move {
        let finished = tasks::finish(db, task.id, tasks::TaskOutcome::Failed { error }).await?;
        if let Some(status) = finished.finalized {
            tracing::info!(
                search_id = task.search_id,
                status = status.as_str(),
                "search finalised"
            );
        }
        Ok::<Handled, BoxDynError>(Handled::TaskFailed)
    };
    // Every start is counted in the database, so a recording that kills its worker (a decoder
    // abort, an out-of-memory kill) is seen across deliveries and workers: past the limit it is
    // not opened again and its task fails saying why.
    if task.attempts > state.poison_after {
        sentinela_core::metrics::global().tasks_poisoned.inc();
        tracing::error!(
            search_id = search.id,
            task_id = task.id,
            recording_id = task.recording_id,
            attempts = task.attempts,
            "recording started too often without finishing; taken as poison, not decoded again"
        );
        return fail(format!(
            "started {} times without finishing (a worker died each time: a file that crashes or exhausts the decoder?); not decoded again",
            task.attempts - 1
        ))
        .await;
    }
    let Some(recording) = recordings::get(db, task.recording_id).await? else {
        return fail(format!("recording {} no longer exists", task.recording_id)).await;
    };
    let criteria = match Criteria::from_search(&search) {
        Ok(c) => c,
        Err(e) => return fail(format!("the search's criteria are invalid: {e}")).await,
    };
    let window = match TimeRange::new(task.window_start, task.window_end) {
        Ok(w) => w,
        Err(e) => return fail(e.to_string()).await,
    };
    let input = TaskInput {
        db: db.clone(),
        snapshot_budget: city.max_snapshot_bytes,
        search_id: search.id,
        task_id: task.id,
        recording,
        window,
        criteria,
    };
    let span = tracing::info_span!(
        "analyze",
        search_id = search.id,
        task_id = task.id,
        recording_id = input.recording.id
    );
    match state.analyzer.analyze(&input).instrument(span).await {
        Ok(report) if report.cancelled => {
            tracing::info!(
                search_id = search.id,
                task_id = task.id,
                "search cancelled; task stopped"
            );
            Ok(Handled::Done)
        }
        Ok(report) => {
            let finished = tasks::finish(
                db,
                task.id,
                tasks::TaskOutcome::Done {
                    frames_analyzed: report.frames_analyzed,
                    detector_calls: report.detector_calls,
                },
            )
            .await?;
            if finished.counted {
                sentinela_core::metrics::global().city_detector_calls(
                    search.city_id,
                    report.detector_calls,
                    state.price_per_call,
                );
            }
            tracing::info!(
                search_id = search.id,
                task_id = task.id,
                frames = report.frames_analyzed,
                detector_calls = report.detector_calls,
                cache_hits = report.cache_hits,
                gate_skips = report.gate_skips,
                points = report.points_inserted,
                finalized = finished.finalized.map(|s| s.as_str()),
                "recording analysed"
            );
            Ok(Handled::Done)
        }
        Err(AnalyzeError::Permanent(message)) => {
            tracing::warn!(search_id = search.id, task_id = task.id, %message, "recording cannot be analysed");
            fail(message).await
        }
        Err(AnalyzeError::Transient(error)) => {
            if attempt.current() >= MAX_ATTEMPTS {
                tracing::error!(search_id = search.id, task_id = task.id, error = %format!("{error:#}"), "giving up after retries");
                return fail(format!("gave up after {MAX_ATTEMPTS} attempts: {error:#}")).await;
            }
            Err(error.into_boxed_dyn_error())
        }
    }
}
