//! The Redis queue with the production configuration (`sentinela_core::queue::redis_config`, over
//! our patched apalis-redis): a worker never holds more unfinished jobs than it has slots,
//! and a backlog far larger than what apalis-redis 1.0.0 could promote at once (Lua's `unpack`
//! limit, ~8,000) drains.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
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

/// The ids of every job that has started and that has finished.
#[derive(Default)]
struct Seen {
    started: Mutex<HashSet<String>>,
    finished: Mutex<HashSet<String>>,
}

async fn handle(_job: Job, id: TaskId, seen: Data<Arc<Seen>>) -> Result<(), BoxDynError> {
    let id = id.to_string();
    seen.started.lock().unwrap().insert(id.clone());
    // Long enough that fetches happen while slots are busy.
    tokio::time::sleep(Duration::from_millis(2)).await;
    seen.finished.lock().unwrap().insert(id);
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

    let seen = Arc::new(Seen::default());
    let worker_storage = RedisStorage::<Job>::new(conn.clone()).with_config(config.clone());
    let data = seen.clone();
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

    // While it drains, the unfinished jobs the worker holds (its in-flight set in Redis, running
    // or fetched and waiting to start) never exceed its slots: a fetch asks for no more than the
    // free slots. (The set itself can briefly hold a few more: a finished job leaves it when its
    // acknowledgement, sent in batches after the job ends, reaches Redis, while its slot is
    // already free.)
    let mut redis = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let inflight = format!("{}:backlog-0", config.inflight_jobs_set());
    let deadline = Instant::now() + Duration::from_secs(150);
    let (mut most_unfinished, mut most_held, mut done) = (0usize, 0usize, 0usize);
    while done < JOBS {
        assert!(
            Instant::now() < deadline,
            "the backlog did not drain: {done} of {JOBS} done"
        );
        let held: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&inflight)
            .query_async(&mut redis)
            .await
            .unwrap();
        let unfinished = {
            let finished = seen.finished.lock().unwrap();
            held.iter().filter(|id| !finished.contains(*id)).count()
        };
        most_unfinished = most_unfinished.max(unfinished);
        most_held = most_held.max(held.len());
        done = redis::cmd("SCARD")
            .arg(config.done_jobs_set())
            .query_async(&mut redis)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    monitor.abort();
    assert_eq!(seen.started.lock().unwrap().len(), JOBS, "every job ran");
    assert!(
        most_unfinished <= SLOTS,
        "the worker held {most_unfinished} unfinished jobs with {SLOTS} slots ({most_held} in its set at most)"
    );
}
