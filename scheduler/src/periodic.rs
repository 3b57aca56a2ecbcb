//! The schedules and their execution.
//!
//! Every scheduler replica runs one apalis-cron stream per enabled job. A tick is not run where it
//! fires: it is pushed into the shared `sentinela:periodic` queue as a [`PeriodicRun`] under the
//! idempotency key `<job>:<tick>`, so the backend keeps the first push of a tick and drops every
//! other replica's (apalis-cron's own task ids are random, so replicas would otherwise each run
//! every tick — celery beat's classic defect). The replicas also run a worker on that queue, which
//! executes each run once. A run that finds the previous run of the same job still going is
//! skipped (a per-job lock in Redis, or in-process on the embedded queue).

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use apalis::prelude::*;
use apalis_cron::CronScheduler;
use futures::StreamExt;
use sentinela_core::jobs::{PeriodicJob, PeriodicRun};
use sentinela_core::metrics::{ItemLabels, JobLabels, JobOutcomeLabels};
use sentinela_core::queue::JobQueue;
use sentinela_core::settings::Settings;
use sentinela_core::tenancy::{CityDatabase, Databases};

use crate::index_sync::IndexSync;
use crate::report::Report;
use crate::{cleanup, hygiene, recover, retention};

/// A job's schedule as configured.
#[derive(Debug, Clone)]
pub struct JobSchedule {
    /// The job.
    pub job: PeriodicJob,
    /// The expression as configured.
    pub expression: String,
    /// The parsed schedule; `None` when the job is switched off.
    pub schedule: Option<cron::Schedule>,
}

/// The settings key holding a job's schedule.
pub fn settings_key(job: PeriodicJob) -> &'static str {
    match job {
        PeriodicJob::Retention => "scheduler.retention_cron",
        PeriodicJob::Cleanup => "scheduler.cleanup_cron",
        PeriodicJob::Recover => "scheduler.recover_cron",
        PeriodicJob::IndexSync => "scheduler.index_sync_cron",
        PeriodicJob::QueueHygiene => "scheduler.queue_hygiene_cron",
        PeriodicJob::Webhooks => "scheduler.webhooks_cron",
    }
}

fn expression(settings: &Settings, job: PeriodicJob) -> &str {
    let s = &settings.scheduler;
    match job {
        PeriodicJob::Retention => &s.retention_cron,
        PeriodicJob::Cleanup => &s.cleanup_cron,
        PeriodicJob::Recover => &s.recover_cron,
        PeriodicJob::IndexSync => &s.index_sync_cron,
        PeriodicJob::QueueHygiene => &s.queue_hygiene_cron,
        PeriodicJob::Webhooks => &s.webhooks_cron,
    }
}

/// Parses one job's schedule: a cron expression with seconds (`sec min hour day month weekday
/// [year]`), a five-field crontab line (read as firing at second 0), or `off`.
///
/// # Errors
/// A message naming the job, its settings key and environment variable, and the expression.
pub fn parse_schedule(job: PeriodicJob, expression: &str) -> anyhow::Result<JobSchedule> {
    let trimmed = expression.trim();
    if trimmed.eq_ignore_ascii_case("off") {
        return Ok(JobSchedule {
            job,
            expression: trimmed.to_owned(),
            schedule: None,
        });
    }
    let fields = trimmed.split_whitespace().count();
    let full = if fields == 5 {
        format!("0 {trimmed}")
    } else {
        trimmed.to_owned()
    };
    let key = settings_key(job);
    let var = format!("SENTINELA__{}", key.replace('.', "__").to_uppercase());
    let schedule = cron::Schedule::from_str(&full).map_err(|e| {
        anyhow::anyhow!(
            "{key} ({var}): job {} has an invalid cron expression {expression:?}: {e} \
             (expected `sec min hour day month weekday`, a 5-field crontab line, or `off`)",
            job.as_str()
        )
    })?;
    Ok(JobSchedule {
        job,
        expression: trimmed.to_owned(),
        schedule: Some(schedule),
    })
}

/// Every job's schedule from the settings.
///
/// # Errors
/// The first invalid expression, named (see [`parse_schedule`]).
pub fn schedules(settings: &Settings) -> anyhow::Result<Vec<JobSchedule>> {
    PeriodicJob::ALL
        .into_iter()
        .map(|job| parse_schedule(job, expression(settings, job)))
        .collect()
}

/// The reports of one job run over several databases.
struct Runs {
    job: PeriodicJob,
    total: Option<Report>,
    failed: Vec<String>,
}

impl Runs {
    fn new(job: PeriodicJob) -> Self {
        Self {
            job,
            total: None,
            failed: Vec::new(),
        }
    }

    fn record(&mut self, database: &CityDatabase, result: anyhow::Result<Report>) {
        match result {
            Ok(report) => match &mut self.total {
                Some(total) => total.merge(&report),
                None => self.total = Some(report),
            },
            Err(error) => {
                tracing::error!(
                    job = self.job.as_str(),
                    database = %database.label,
                    error = %format!("{error:#}"),
                    "periodic job failed on one database; the others go on"
                );
                self.failed.push(database.label.clone());
            }
        }
    }

    /// The merged report; an error naming the databases that failed (after the others ran),
    /// so the failure shows in the logs and `vms_scheduler_runs_total{outcome="failed"}`.
    fn finish(self) -> anyhow::Result<Report> {
        if !self.failed.is_empty() {
            anyhow::bail!(
                "{}: failed on {} (the other databases were processed)",
                self.job.as_str(),
                self.failed.join(", ")
            );
        }
        Ok(self.total.unwrap_or_else(|| Report::new(self.job, &[])))
    }
}

/// What the jobs run against.
pub struct JobContext {
    /// The control database and every database holding city data.
    pub dbs: Arc<Databases>,
    /// The queue (also the Redis connection for locks).
    pub queue: JobQueue,
    /// The settings.
    pub settings: Settings,
    /// The time zone of MediaMTX segment names.
    pub timezone: chrono_tz::Tz,
    /// The HTTP client of webhook deliveries.
    pub webhook_client: reqwest::Client,
    running: Mutex<HashSet<PeriodicJob>>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext").finish_non_exhaustive()
    }
}

impl JobContext {
    /// Builds the context, checking the settings the jobs read.
    ///
    /// # Errors
    /// An unknown `RECORDINGS_TZ`.
    pub fn new(dbs: Arc<Databases>, queue: JobQueue, settings: Settings) -> anyhow::Result<Self> {
        let tz_name = &settings.scheduler.recordings_timezone;
        let timezone = chrono_tz::Tz::from_str(tz_name).map_err(|_| {
            anyhow::anyhow!(
                "RECORDINGS_TZ: {tz_name:?} is not an IANA time zone (for example UTC or America/Sao_Paulo)"
            )
        })?;
        let webhook_client = sentinela_core::webhook::client()
            .map_err(|e| anyhow::anyhow!("the webhook HTTP client cannot start: {e}"))?;
        Ok(Self {
            dbs,
            queue,
            settings,
            timezone,
            webhook_client,
            running: Mutex::new(HashSet::new()),
        })
    }

    /// Runs one job now.
    ///
    /// # Errors
    /// The job's database or queue error.
    pub async fn execute(&self, job: PeriodicJob) -> anyhow::Result<Report> {
        let now = chrono::Utc::now();
        let s = &self.settings.scheduler;
        if job == PeriodicJob::QueueHygiene {
            let keep = chrono::Duration::hours(
                i64::try_from(s.queue_keep_hours).unwrap_or(i64::MAX / 3600),
            );
            return hygiene::run(&self.queue, now - keep).await;
        }
        // The other jobs run over every database holding city data, one after another; one
        // that fails (a city's own database down) does not stop the others.
        let mut runs = Runs::new(job);
        for database in self.dbs.all().await? {
            let db = &database.conn;
            let result = match job {
                PeriodicJob::Retention => {
                    retention::run(
                        db,
                        &database.cities,
                        &self.settings.storage.recordings_dir,
                        now,
                    )
                    .await
                }
                PeriodicJob::Cleanup => {
                    cleanup::run(
                        self.dbs.control(),
                        db,
                        &self.settings.storage.snapshot_dir,
                        chrono::Duration::days(i64::from(s.search_max_age_days)),
                        now,
                    )
                    .await
                }
                PeriodicJob::Recover => recover::recover_stuck(
                    db,
                    &self.queue,
                    chrono::Duration::seconds(i64::try_from(s.task_lease_secs).unwrap_or(i64::MAX)),
                    s.max_task_attempts,
                    self.settings.worker.queued_tasks_per_search,
                )
                .await
                .map(Report::from),
                PeriodicJob::IndexSync => {
                    IndexSync {
                        recordings_dir: self.settings.storage.recordings_dir.clone(),
                        timezone: self.timezone,
                        settle: Duration::from_secs(s.segment_settle_secs),
                    }
                    .run(db)
                    .await
                }
                PeriodicJob::Webhooks => {
                    crate::webhooks::run(db, &self.webhook_client, &self.settings.scheduler, now)
                        .await
                }
                PeriodicJob::QueueHygiene => unreachable!("handled above"),
            };
            runs.record(&database, result);
        }
        let mut report = runs.finish()?;
        if job == PeriodicJob::Cleanup {
            // The control database's own expiring rows: console sessions and Idempotency-Keys.
            let control = self.dbs.control();
            report.add(
                "console_sessions_expired",
                sentinela_core::repo::sessions::sweep(control, now).await?,
            );
            report.add(
                "idempotency_keys_expired",
                sentinela_core::repo::idempotency::sweep(control, now).await?,
            );
            // Snapshots are stored once by content and linked into each search's folder: the
            // ones no search links any more go last, once every city's searches are cleaned.
            let sweep =
                cleanup::sweep_objects(&self.settings.storage.snapshot_dir, cleanup::OBJECT_GRACE)
                    .await
                    .context("sweeping unlinked snapshot objects")?;
            report.add("snapshot_objects_deleted", sweep.files);
            report.add("bytes_freed", sweep.bytes);
            report.add("file_errors", sweep.errors);
        }
        Ok(report)
    }

    /// Runs one job unless its previous run is still going (here or, on Redis, on any replica).
    /// Returns `None` when skipped.
    ///
    /// # Errors
    /// The job's error, or the lock's.
    pub async fn execute_exclusive(&self, job: PeriodicJob) -> anyhow::Result<Option<Report>> {
        if !self.running.lock().expect("lock poisoned").insert(job) {
            return Ok(None);
        }
        let _local = LocalGuard { ctx: self, job };
        let lock = match &self.queue {
            JobQueue::Redis { conn, .. } => {
                match RedisLock::acquire(conn, job, self.lock_ttl()).await? {
                    Some(lock) => Some(lock),
                    None => return Ok(None),
                }
            }
            JobQueue::Sqlite { .. } => None,
        };
        let result = self.execute(job).await;
        if let Some(lock) = lock {
            lock.release().await;
        }
        result.map(Some)
    }

    fn lock_ttl(&self) -> Duration {
        // Longer than any run should take; a crashed replica's lock expires on its own.
        Duration::from_secs(self.settings.worker.job_timeout_secs.max(60))
    }
}

struct LocalGuard<'a> {
    ctx: &'a JobContext,
    job: PeriodicJob,
}

impl Drop for LocalGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.ctx.running.lock() {
            running.remove(&self.job);
        }
    }
}

/// A per-job lock in Redis (`SET NX PX`), released only by its holder.
struct RedisLock {
    conn: redis::aio::ConnectionManager,
    key: String,
    token: String,
}

impl RedisLock {
    async fn acquire(
        conn: &redis::aio::ConnectionManager,
        job: PeriodicJob,
        ttl: Duration,
    ) -> anyhow::Result<Option<Self>> {
        let mut conn = conn.clone();
        let key = format!("sentinela:periodic:running:{}", job.as_str());
        let token = uuid::Uuid::new_v4().to_string();
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .query_async(&mut conn)
            .await
            .context("failed to take the periodic job lock")?;
        Ok(set.map(|_| Self { conn, key, token }))
    }

    async fn release(mut self) {
        let script = redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
        );
        let released: redis::RedisResult<i64> = script
            .key(&self.key)
            .arg(&self.token)
            .invoke_async(&mut self.conn)
            .await;
        if let Err(error) = released {
            tracing::warn!(key = %self.key, %error, "failed to release a periodic job lock; it expires on its own");
        }
    }
}

/// The ticks of a cron schedule, as Unix timestamps. A tick its reader was too late for is
/// skipped, and counting goes on from now.
///
/// apalis-cron 1.0.0 answers a next tick already in the past (the reader was late: a push retried
/// while Redis was down, a stalled process) with an error, and keeps that tick: every later poll
/// then fails the same way at once, and a loop that skips the error spins at full speed. A new
/// stream counts from now.
struct Ticks {
    job: PeriodicJob,
    schedule: cron::Schedule,
    stream: TickStream,
}

/// apalis-cron's ticks as Unix timestamps.
type TickStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<u64, apalis_cron::Error>> + Send>>;

impl Ticks {
    fn new(job: PeriodicJob, schedule: cron::Schedule) -> Self {
        let stream = Self::stream(&schedule);
        Self {
            job,
            schedule,
            stream,
        }
    }

    fn stream(schedule: &cron::Schedule) -> TickStream {
        Box::pin(
            CronScheduler::new(schedule.clone())
                .into_stream()
                .map(|tick| tick.map(|t| t.get_timestamp())),
        )
    }

    /// The next tick; `None` when the schedule has no more.
    async fn next(&mut self) -> Option<u64> {
        loop {
            match self.stream.next().await? {
                Ok(tick) => return Some(tick),
                Err(error) => {
                    tracing::warn!(job = self.job.as_str(), %error, "cron tick missed; counting from now");
                    self.stream = Self::stream(&self.schedule);
                }
            }
        }
    }
}

/// Pushes every tick of `schedule` until `shutdown` resolves.
async fn produce_ticks(
    queue: JobQueue,
    job: PeriodicJob,
    schedule: cron::Schedule,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticks = Ticks::new(job, schedule);
    let mut shutdown = shutdown;
    loop {
        let tick = tokio::select! {
            tick = ticks.next() => tick,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let Some(tick) = tick else { return };
        let run = PeriodicRun { job, tick };
        // A failed push is retried a few times within the tick; the next tick comes anyway.
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=5 {
            match queue.push_periodic(run).await {
                Ok(()) => {
                    tracing::debug!(job = job.as_str(), tick, "tick pushed");
                    break;
                }
                Err(error) if attempt < 5 => {
                    tracing::warn!(job = job.as_str(), tick, %error, attempt, "failed to push a tick; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(error) => {
                    tracing::error!(job = job.as_str(), tick, %error, "failed to push a tick; it is lost");
                }
            }
        }
    }
}

/// The handler of `sentinela:periodic` jobs.
async fn run_periodic(run: PeriodicRun, ctx: Data<Arc<JobContext>>) -> Result<(), BoxDynError> {
    let job = run.job.as_str();
    let started = std::time::Instant::now();
    let metrics = sentinela_core::metrics::global();
    let outcome = |outcome: &str| {
        metrics
            .scheduler_runs
            .get_or_create(&JobOutcomeLabels {
                job_type: job.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        metrics
            .scheduler_duration
            .get_or_create(&JobLabels {
                job_type: job.to_owned(),
            })
            .observe(started.elapsed().as_secs_f64());
    };
    match ctx.execute_exclusive(run.job).await {
        Ok(Some(report)) => {
            outcome("succeeded");
            for (item, n) in report.counts() {
                metrics
                    .scheduler_items
                    .get_or_create(&ItemLabels {
                        job_type: job.to_owned(),
                        item: (*item).to_owned(),
                    })
                    .inc_by(*n);
            }
            let counts = serde_json::Map::from_iter(
                report
                    .counts()
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v))),
            );
            tracing::info!(
                job,
                tick = run.tick,
                seconds = started.elapsed().as_secs_f64(),
                counts = %serde_json::Value::Object(counts),
                "periodic job finished"
            );
            Ok(())
        }
        Ok(None) => {
            outcome("skipped");
            tracing::info!(
                job,
                tick = run.tick,
                "previous run still going; tick skipped"
            );
            Ok(())
        }
        Err(error) => {
            outcome("failed");
            tracing::error!(job, tick = run.tick, error = %format!("{error:#}"), "periodic job failed");
            // The next tick runs it again; retrying this one would only pile up runs.
            Err(Box::new(AbortError::new(format!("{job}: {error:#}"))))
        }
    }
}

/// Runs the schedules and the periodic-job worker until `shutdown` resolves.
///
/// # Errors
/// A worker monitor failure.
pub async fn run_scheduler(
    ctx: Arc<JobContext>,
    schedules: Vec<JobSchedule>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut producers = Vec::new();
    for s in &schedules {
        match &s.schedule {
            Some(schedule) => {
                tracing::info!(job = s.job.as_str(), cron = %s.expression, "schedule enabled");
                producers.push(tokio::spawn(produce_ticks(
                    ctx.queue.clone(),
                    s.job,
                    schedule.clone(),
                    stop_rx.clone(),
                )));
            }
            None => tracing::info!(job = s.job.as_str(), "schedule switched off"),
        }
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    let name = format!("{host}-{}-periodic", std::process::id());
    let monitor = Monitor::new()
        .shutdown_timeout(Duration::from_secs(ctx.settings.worker.drain_timeout_secs))
        .should_restart(|worker, error| {
            tracing::warn!(worker = %worker.name(), %error, "periodic worker stopped; restarting");
            true
        });
    macro_rules! register {
        ($monitor:expr, $storage:expr) => {{
            let storage = $storage;
            let ctx = ctx.clone();
            $monitor.register(move |restarts| {
                WorkerBuilder::new(format!("{name}-r{restarts}"))
                    .backend(storage.clone())
                    .data(ctx.clone())
                    .concurrency(PeriodicJob::ALL.len())
                    .catch_panic()
                    .enable_tracing()
                    .parallelize(tokio::spawn)
                    .build(run_periodic)
            })
        }};
    }
    let monitor = match ctx.queue.clone() {
        JobQueue::Redis { periodic, .. } => register!(monitor, periodic),
        JobQueue::Sqlite { periodic, .. } => register!(monitor, periodic),
    };
    let result = monitor
        .run_with_signal(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
            Ok(())
        })
        .await
        .context("periodic job monitor failed");
    for producer in producers {
        producer.abort();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader late for a tick (a push retried while Redis was down) gets the next tick after
    /// it: apalis-cron alone answers every later poll with the same error at once, for ever.
    #[tokio::test]
    async fn a_reader_late_for_a_tick_gets_the_next_one() {
        let schedule = parse_schedule(PeriodicJob::Recover, "* * * * * *")
            .unwrap()
            .schedule
            .unwrap();
        let mut raw = Ticks::stream(&schedule);
        let mut ticks = Ticks::new(PeriodicJob::Recover, schedule);
        let first = ticks.next().await.unwrap();
        raw.next().await.unwrap().unwrap();
        // Late: the tick computed when the last one fired passes while nobody polls.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            raw.next().await.unwrap().is_err(),
            "apalis-cron's stream fails on a tick in the past"
        );
        assert!(
            raw.next().await.unwrap().is_err(),
            "and keeps failing on it"
        );
        let next = tokio::time::timeout(Duration::from_secs(10), ticks.next())
            .await
            .expect("a tick within two seconds of being late")
            .unwrap();
        assert!(
            next >= first + 3,
            "the missed ticks are skipped: {first} then {next}"
        );
    }

    #[test]
    fn expressions_with_seconds_five_fields_and_off() {
        assert!(
            parse_schedule(PeriodicJob::Recover, "*/5 * * * * *")
                .unwrap()
                .schedule
                .is_some()
        );
        let crontab = parse_schedule(PeriodicJob::Cleanup, "30 3 * * *").unwrap();
        let next = crontab
            .schedule
            .unwrap()
            .upcoming(chrono::Utc)
            .next()
            .unwrap();
        assert_eq!(next.format("%H:%M:%S").to_string(), "03:30:00");
        assert!(
            parse_schedule(PeriodicJob::IndexSync, "off")
                .unwrap()
                .schedule
                .is_none()
        );
    }

    #[test]
    fn a_malformed_expression_names_the_job_the_variable_and_the_expression() {
        let error = parse_schedule(PeriodicJob::Retention, "61 * * * * *")
            .unwrap_err()
            .to_string();
        assert!(error.contains("job retention"), "{error}");
        assert!(
            error.contains("SENTINELA__SCHEDULER__RETENTION_CRON"),
            "{error}"
        );
        assert!(error.contains("\"61 * * * * *\""), "{error}");
    }
}
