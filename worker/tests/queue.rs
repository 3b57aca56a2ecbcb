//! The Redis queue with the production configuration (`sentinela_core::queue::redis_config`, over
//! our patched apalis-redis): a worker never holds more jobs than it has free slots, and a backlog
//! far larger than what apalis-redis 1.0.0 could promote at once (Lua's `unpack` limit, ~8,000)
//! drains.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_redis::RedisStorage;
use common::RedisServer;
use serde::{Deserialize, Serialize};

const QUEUE: &str = "sentinela:test-backlog";
const SLOTS: usize = 4;
const JOBS: usize = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    n: u32,
}

async fn handle(_job: Job, running: Data<Arc<AtomicUsize>>) -> Result<(), BoxDynError> {
    running.fetch_add(1, Ordering::SeqCst);
    // Long enough that fetches happen while slots are busy.
    tokio::time::sleep(Duration::from_millis(2)).await;
    running.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_backlog_drains_and_a_worker_holds_no_more_jobs_than_its_free_slots() {
    let server = RedisServer::start(false);
    let config = sentinela_core::queue::redis_config(QUEUE, Duration::from_millis(200), SLOTS);
    let conn = apalis_redis::connect(server.url()).await.unwrap();
    // The backlog is pushed before any worker runs, as after an outage of the workers.
    let mut storage = RedisStorage::<Job>::new(conn.clone()).with_config(config.clone());
    for chunk in (0..JOBS as u32).collect::<Vec<_>>().chunks(500) {
        storage
            .push_bulk(chunk.iter().map(|&n| Job { n }).collect())
            .await
            .unwrap();
    }

    let running = Arc::new(AtomicUsize::new(0));
    let worker_storage = RedisStorage::<Job>::new(conn.clone()).with_config(config.clone());
    let data = running.clone();
    let monitor = tokio::spawn(
        Monitor::new()
            .register(move |r| {
                WorkerBuilder::new(format!("backlog-{r}"))
                    .backend(worker_storage.clone())
                    .data(data.clone())
                    .concurrency(SLOTS)
                    .parallelize(tokio::spawn)
                    .build(handle)
            })
            .run_with_signal(async {
                tokio::time::sleep(Duration::from_secs(180)).await;
                Ok(())
            }),
    );

    // While it drains, what the worker holds (its in-flight set in Redis: running and fetched
    // but not started) never exceeds its slots.
    let mut redis = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let inflight = format!("{}:backlog-0", config.inflight_jobs_set());
    let deadline = Instant::now() + Duration::from_secs(150);
    let (mut most_held, mut done) = (0usize, 0usize);
    while done < JOBS {
        assert!(
            Instant::now() < deadline,
            "the backlog did not drain: {done} of {JOBS} done"
        );
        let held: usize = redis::cmd("SCARD")
            .arg(&inflight)
            .query_async(&mut redis)
            .await
            .unwrap();
        most_held = most_held.max(held);
        done = redis::cmd("SCARD")
            .arg(config.done_jobs_set())
            .query_async(&mut redis)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    monitor.abort();
    assert!(
        most_held <= SLOTS,
        "the worker held {most_held} jobs with {SLOTS} slots"
    );
}
