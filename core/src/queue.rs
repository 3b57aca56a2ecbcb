//! The job queue: apalis-redis when `REDIS_URL` is set (distributed), apalis-sqlite on the embedded
//! database otherwise (one process). Producers push through [`JobQueue`]; workers take its
//! storages. Queue depth is read from Redis keys directly, because apalis-redis 1.0.0's statistics
//! API is broken (see DESIGN.md).

use std::time::Duration;

use anyhow::Context;
use apalis_core::backend::TaskSink;
use apalis_redis::RedisStorage;
use apalis_sqlite::SqliteStorage;
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;

use crate::jobs::{
    ANALYZE_QUEUE, AnalyzeRecording, PERIODIC_QUEUE, PeriodicRun, SEARCH_QUEUE, SearchVehicle,
};
use crate::settings::Settings;

/// Missed heartbeats after which a Redis worker counts as dead and its jobs are re-enqueued.
pub const MISSED_HEARTBEATS: usize = 5;

/// The two queues on one backend.
// One per process, built once and cloned into its tasks: the variants' sizes (872 and 624
// bytes) do not matter here, and boxing them would add an indirection to every push.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum JobQueue {
    /// Distributed.
    Redis {
        /// Shared connection (also used for depth and the rate limit).
        conn: redis::aio::ConnectionManager,
        /// Plan jobs.
        search: RedisStorage<SearchVehicle>,
        /// Analyse jobs.
        analyze: RedisStorage<AnalyzeRecording>,
        /// Scheduler ticks.
        periodic: RedisStorage<PeriodicRun>,
    },
    /// Embedded.
    Sqlite {
        /// Plan jobs.
        search: SqliteStorage<SearchVehicle>,
        /// Analyse jobs.
        analyze: SqliteStorage<AnalyzeRecording>,
        /// Scheduler ticks.
        periodic: SqliteStorage<PeriodicRun>,
    },
}

/// Jobs of one queue by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Waiting to be taken.
    pub pending: u64,
    /// Scheduled for later (retries with backoff).
    pub scheduled: u64,
    /// Taken by a live worker.
    pub running: u64,
    /// Finished.
    pub done: u64,
    /// Failed for good.
    pub dead: u64,
}

/// The apalis-redis configuration of `queue` for workers running `slots` jobs at once.
///
/// A short heartbeat is also the poll interval of an idle worker (pitfall 1). A fetch takes at
/// most the worker's free slots (`fetch_within_free_slots`, our patch of apalis-redis under
/// `patches/`): a worker never holds a job it has not started, which would stop its heartbeats
/// and get the job run twice (pitfall 2), yet an idle worker takes up to `slots` jobs in one
/// round trip instead of one.
pub fn redis_config(queue: &str, poll: Duration, slots: usize) -> apalis_redis::Config {
    let slots = slots.max(1);
    apalis_redis::Config::default()
        .queue(queue)
        .batch_size(slots)
        .fetch_within_free_slots(slots)
        .heartbeat_interval(poll)
        .missed_heartbeats(MISSED_HEARTBEATS)
}

fn sqlite_config(queue: &str, poll: Duration) -> apalis_sqlite::Config {
    apalis_sqlite::Config::default()
        .queue(queue)
        .batch_size(1)
        .heartbeat_interval(poll)
}

impl JobQueue {
    /// Connects the queue the settings ask for.
    ///
    /// # Errors
    /// `REDIS_URL` unreachable, or the embedded queue's tables cannot be created.
    pub async fn connect(settings: &Settings, db: &DatabaseConnection) -> anyhow::Result<Self> {
        let poll = Duration::from_millis(settings.worker.poll_interval_ms.max(100));
        match &settings.redis_url {
            Some(url) => {
                let url = url.expose_secret();
                let conn =
                    tokio::time::timeout(Duration::from_secs(10), apalis_redis::connect(url))
                        .await
                        .map_err(|_| anyhow::anyhow!("no answer within 10 s"))
                        .and_then(|r| r.map_err(anyhow::Error::from))
                        .with_context(|| {
                            format!(
                                "REDIS_URL: cannot connect to {}",
                                crate::db::redact_url(url)
                            )
                        })?;
                Ok(Self::Redis {
                    search: RedisStorage::new(conn.clone()).with_config(redis_config(
                        SEARCH_QUEUE,
                        poll,
                        1,
                    )),
                    analyze: RedisStorage::new(conn.clone()).with_config(redis_config(
                        ANALYZE_QUEUE,
                        poll,
                        settings.worker.concurrency,
                    )),
                    // Tick keys outlive any schedule's period, then expire.
                    periodic: RedisStorage::new(conn.clone()).with_config(
                        redis_config(PERIODIC_QUEUE, poll, 1)
                            .idempotency_ttl(Some(Duration::from_secs(2 * 24 * 3600))),
                    ),
                    conn,
                })
            }
            None => {
                if db.get_database_backend() != sea_orm::DatabaseBackend::Sqlite {
                    anyhow::bail!(
                        "REDIS_URL: required with a PostgreSQL DATABASE_URL (the embedded queue lives in a SQLite database)"
                    );
                }
                let pool = db.get_sqlite_connection_pool().clone();
                SqliteStorage::setup(&pool)
                    .await
                    .context("failed to prepare the embedded queue")?;
                Ok(Self::Sqlite {
                    search: SqliteStorage::new(&pool)
                        .with_config(sqlite_config(SEARCH_QUEUE, poll)),
                    analyze: SqliteStorage::new(&pool)
                        .with_config(sqlite_config(ANALYZE_QUEUE, poll)),
                    periodic: SqliteStorage::new(&pool)
                        .with_config(sqlite_config(PERIODIC_QUEUE, poll)),
                })
            }
        }
    }

    /// Enqueues a plan job.
    ///
    /// # Errors
    /// The backend's error.
    pub async fn push_search(&self, job: SearchVehicle) -> anyhow::Result<()> {
        match self {
            Self::Redis { search, .. } => search.clone().push(job).await?,
            Self::Sqlite { search, .. } => search.clone().push(job).await?,
        }
        Ok(())
    }

    /// Enqueues several search jobs in one round trip (one Lua script on Redis, one transaction
    /// on SQLite).
    ///
    /// # Errors
    /// The backend's error (none was enqueued, or on Redis possibly some).
    pub async fn push_searches(&self, jobs: Vec<SearchVehicle>) -> anyhow::Result<()> {
        match jobs.len() {
            0 => return Ok(()),
            1 => {
                return self
                    .push_search(jobs.into_iter().next().expect("one job"))
                    .await;
            }
            _ => {}
        }
        match self {
            Self::Redis { search, .. } => search.clone().push_bulk(jobs).await?,
            Self::Sqlite { search, .. } => search.clone().push_bulk(jobs).await?,
        }
        Ok(())
    }

    /// Enqueues analyse jobs.
    ///
    /// # Errors
    /// The backend's error.
    pub async fn push_analyze(&self, jobs: Vec<AnalyzeRecording>) -> anyhow::Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        match self {
            Self::Redis { analyze, .. } => analyze.clone().push_bulk(jobs).await?,
            Self::Sqlite { analyze, .. } => analyze.clone().push_bulk(jobs).await?,
        }
        Ok(())
    }

    /// Enqueues one run of a periodic job under its tick's idempotency key: every scheduler
    /// replica pushes each tick, the backend keeps the first (Redis `SETNX`, SQLite's unique
    /// index) and drops the others.
    ///
    /// # Errors
    /// The backend's error.
    pub async fn push_periodic(&self, run: PeriodicRun) -> anyhow::Result<()> {
        let task = apalis_core::task::builder::TaskBuilder::new(run)
            .idempotency_key(run.idempotency_key())
            .build();
        match self {
            Self::Redis { periodic, .. } => periodic.clone().push_task(task).await?,
            Self::Sqlite { periodic, .. } => periodic.clone().push_task(task).await?,
        }
        Ok(())
    }

    /// Whether the backend answers.
    ///
    /// # Errors
    /// The backend's error.
    pub async fn ping(&self) -> anyhow::Result<()> {
        match self {
            Self::Redis { conn, .. } => {
                let mut conn = conn.clone();
                let _: String = redis::cmd("PING").query_async(&mut conn).await?;
            }
            Self::Sqlite { search, .. } => {
                sea_orm::sqlx::query("SELECT 1")
                    .execute(search.pool())
                    .await?;
            }
        }
        Ok(())
    }

    /// Jobs by state for each queue: `(queue name, depth)`.
    ///
    /// # Errors
    /// The backend's error.
    pub async fn depth(&self) -> anyhow::Result<Vec<(&'static str, QueueDepth)>> {
        let mut out = Vec::new();
        for queue in [SEARCH_QUEUE, ANALYZE_QUEUE, PERIODIC_QUEUE] {
            let depth = match self {
                Self::Redis { conn, .. } => redis_depth(conn, queue).await?,
                Self::Sqlite { search, .. } => sqlite_depth(search.pool(), queue).await?,
            };
            out.push((queue, depth));
        }
        Ok(out)
    }
}

/// Reads a queue's depth from apalis-redis' keys: `LLEN {q}:active` plus the jobs of
/// `{q}:scheduled` already due (a push lands there and a worker's fetch promotes it), the jobs of
/// `{q}:scheduled` due later (retries with backoff), the in-flight sets `{q}:inflight:{name}` of
/// the workers in `ZRANGE {q}:workers`, `SCARD {q}:done` and `SCARD {q}:dead`.
///
/// # Errors
/// Redis' error.
pub async fn redis_depth(
    conn: &redis::aio::ConnectionManager,
    queue: &str,
) -> redis::RedisResult<QueueDepth> {
    let mut conn = conn.clone();
    let workers: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{queue}:workers"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await?;
    // Scores are run-at times in seconds since the epoch.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut pipe = redis::pipe();
    pipe.cmd("LLEN").arg(format!("{queue}:active"));
    pipe.cmd("ZCOUNT")
        .arg(format!("{queue}:scheduled"))
        .arg("-inf")
        .arg(now);
    pipe.cmd("ZCOUNT")
        .arg(format!("{queue}:scheduled"))
        .arg(format!("({now}"))
        .arg("+inf");
    pipe.cmd("SCARD").arg(format!("{queue}:done"));
    pipe.cmd("SCARD").arg(format!("{queue}:dead"));
    for worker in &workers {
        // Members are worker names; a worker's taken jobs are in `{q}:inflight:{name}`.
        pipe.cmd("SCARD").arg(format!("{queue}:inflight:{worker}"));
    }
    let counts: Vec<u64> = pipe.query_async(&mut conn).await?;
    Ok(QueueDepth {
        pending: counts[0] + counts[1],
        scheduled: counts[2],
        done: counts[3],
        dead: counts[4],
        running: counts[5..].iter().sum(),
    })
}

async fn sqlite_depth(
    pool: &sea_orm::sqlx::SqlitePool,
    queue: &str,
) -> Result<QueueDepth, sea_orm::sqlx::Error> {
    let rows: Vec<(String, i64)> = sea_orm::sqlx::query_as(
        "SELECT status, COUNT(*) FROM Jobs WHERE job_type = ? GROUP BY status",
    )
    .bind(queue)
    .fetch_all(pool)
    .await?;
    let mut depth = QueueDepth::default();
    for (status, n) in rows {
        let n = n as u64;
        match status.as_str() {
            "Pending" => depth.pending += n,
            "Queued" | "Running" => depth.running += n,
            "Done" => depth.done += n,
            "Failed" | "Killed" => depth.dead += n,
            _ => depth.scheduled += n,
        }
    }
    Ok(depth)
}

/// Deletes the embedded queue's records of `queue` that finished (done, or dead: killed or out
/// of attempts) at or before `cutoff_secs` (Unix seconds). Returns `(done, dead)` deleted.
///
/// # Errors
/// The database error.
pub async fn prune_embedded(
    pool: &sea_orm::sqlx::SqlitePool,
    queue: &str,
    cutoff_secs: i64,
) -> Result<(u64, u64), sea_orm::sqlx::Error> {
    let done = sea_orm::sqlx::query(
        "DELETE FROM Jobs WHERE job_type = ? AND status = 'Done' \
         AND done_at IS NOT NULL AND done_at <= ?",
    )
    .bind(queue)
    .bind(cutoff_secs)
    .execute(pool)
    .await?;
    let dead = sea_orm::sqlx::query(
        "DELETE FROM Jobs WHERE job_type = ? \
         AND (status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts)) \
         AND done_at IS NOT NULL AND done_at <= ?",
    )
    .bind(queue)
    .bind(cutoff_secs)
    .execute(pool)
    .await?;
    Ok((done.rows_affected(), dead.rows_affected()))
}
