//! Queue hygiene: prunes finished (`done`) and dead records older than a configured age from
//! every queue. apalis' own `vacuum` is unsafe on 1.0.0 (it deletes failed jobs still waiting to
//! retry and never shrinks the done/dead sets, see DESIGN.md), so this reads apalis-redis' keys
//! itself:
//! - `{q}:done` and `{q}:dead` are sets of task ids; `{q}:meta:{id}` holds `done_at` (seconds);
//!   `{q}:data` holds the payloads.
//! - On SQLite (embedded), rows of `Jobs` that are `Done` or `Killed`, or `Failed` with no
//!   attempt left, and whose `done_at` is older than the cut-off.
//!
//! Pending, scheduled (retrying) and running jobs are never touched.

use chrono::{DateTime, Utc};
use sentinela_core::jobs::{ANALYZE_QUEUE, PERIODIC_QUEUE, PeriodicJob, SEARCH_QUEUE};
use sentinela_core::queue::JobQueue;

use crate::report::Report;

/// Every queue Sentinela uses.
pub const QUEUES: [&str; 3] = [SEARCH_QUEUE, ANALYZE_QUEUE, PERIODIC_QUEUE];

/// Removes a batch of task ids from a done/dead set when their `done_at` is at or before the
/// cut-off, with their payload and metadata. Atomic per batch.
const PRUNE_SCRIPT: &str = r#"
local set, data, meta_prefix = KEYS[1], KEYS[2], KEYS[3]
local cutoff = tonumber(ARGV[1])
local pruned = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local meta = meta_prefix .. ':' .. id
  local done_at = tonumber(redis.call('HGET', meta, 'done_at'))
  if done_at == nil or done_at <= cutoff then
    redis.call('SREM', set, id)
    redis.call('HDEL', data, id)
    redis.call('DEL', meta)
    pruned = pruned + 1
  end
end
return pruned
"#;

/// Prunes records that finished before `cutoff`.
///
/// # Errors
/// Backend errors.
pub async fn run(queue: &JobQueue, cutoff: DateTime<Utc>) -> anyhow::Result<Report> {
    let mut report = Report::new(PeriodicJob::QueueHygiene, &["done_pruned", "dead_pruned"]);
    let cutoff_secs = cutoff.timestamp().max(0);
    match queue {
        JobQueue::Redis { conn, .. } => {
            let script = redis::Script::new(PRUNE_SCRIPT);
            for q in QUEUES {
                for (set, count) in [("done", "done_pruned"), ("dead", "dead_pruned")] {
                    let n = prune_redis_set(conn, &script, q, set, cutoff_secs).await?;
                    report.add(count, n);
                }
            }
        }
        JobQueue::Sqlite { search, .. } => {
            for q in QUEUES {
                let (done, dead) =
                    sentinela_core::queue::prune_embedded(search.pool(), q, cutoff_secs).await?;
                report.add("done_pruned", done);
                report.add("dead_pruned", dead);
            }
        }
    }
    Ok(report)
}

async fn prune_redis_set(
    conn: &redis::aio::ConnectionManager,
    script: &redis::Script,
    queue: &str,
    set: &str,
    cutoff: i64,
) -> redis::RedisResult<u64> {
    let mut conn = conn.clone();
    let set_key = format!("{queue}:{set}");
    let mut cursor: u64 = 0;
    let mut pruned = 0u64;
    loop {
        let (next, ids): (u64, Vec<String>) = redis::cmd("SSCAN")
            .arg(&set_key)
            .arg(cursor)
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await?;
        if !ids.is_empty() {
            let n: u64 = script
                .key(&set_key)
                .key(format!("{queue}:data"))
                .key(format!("{queue}:meta"))
                .arg(cutoff)
                .arg(ids)
                .invoke_async(&mut conn)
                .await?;
            pruned += n;
        }
        if next == 0 {
            return Ok(pruned);
        }
        cursor = next;
    }
}
