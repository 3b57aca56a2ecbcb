use apalis_core::backend::WorkerFilter;
use redis::{Script, aio::ConnectionLike};

use crate::{Config, error::Error, queries::heartbeat_timestamp};

pub(crate) async fn reenqueue_orphaned<C>(
    conn: &mut C,
    config: &Config,
    worker_filter: &WorkerFilter,
) -> Result<u32, Error>
where
    C: ConnectionLike,
{
    let worker_set = config.workers_set();
    let active_jobs_list = config.active_jobs_list();
    let signal_list = config.signal_list();

    let script = Script::new(include_str!("../../lua/reenqueue_orphaned.lua"));

    let now = heartbeat_timestamp();
    let processed = match worker_filter {
        WorkerFilter::Only(worker_name) => {
            let dead_for = config.heartbeat_interval.as_secs_f64();

            let expired_before = now - dead_for;
            script
                .key(worker_set)
                .key(active_jobs_list)
                .key(signal_list)
                .key(config.inflight_jobs_set())
                .arg(expired_before)
                .arg(worker_name)
                .invoke_async::<u32>(conn)
                .await?
        }
        _ => {
            let dead_for = config.orphaned_duration().as_secs_f64();

            let expired_before = now - dead_for;
            let mut invocation = script.key(worker_set);
            invocation
                .key(active_jobs_list)
                .key(signal_list)
                .key(config.inflight_jobs_set())
                .arg(expired_before);
            // The caller is alive, however late its own heartbeat was written.
            if let WorkerFilter::AllExcept(worker_name) = worker_filter {
                invocation.arg("").arg(worker_name);
            }
            invocation.invoke_async::<u32>(conn).await?
        }
    };

    Ok(processed)
}
