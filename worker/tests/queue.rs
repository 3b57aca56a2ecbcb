//! The Redis queue with the production configuration (`sentinela_core::queue::redis_config`, over
//! our patched apalis-redis): a worker never holds more unfinished jobs than it has slots,
//! a backlog far larger than what apalis-redis 1.0.0 could promote at once (Lua's `unpack`
//! limit, ~8,000) drains, and a worker busy with jobs longer than its dead-after keeps its
//! heartbeats (apalis-redis 1.0.0's whole-second heartbeats took it for dead).

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

/// How often each job started.
#[derive(Default)]
struct Starts(Mutex<std::collections::HashMap<String, u32>>);

impl Starts {
    fn record(&self, id: &TaskId) {
        *self.0.lock().unwrap().entry(id.to_string()).or_default() += 1;
    }
}

async fn long_job(_job: Job, id: TaskId, starts: Data<Arc<Starts>>) -> Result<(), BoxDynError> {
    starts.record(&id);
    // Many heartbeat intervals, and three times the time after which a silent worker is dead.
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_busy_with_long_jobs_stays_alive_and_no_job_runs_twice() {
    // The resilience suite's timing: a heartbeat every 200 ms, dead after 5 missed (1 s). Two
    // workers of one slot each on one queue, and one job at a time: while one worker is busy
    // with it (three times the dead-after), the other is idle, checks it for death at each of
    // its heartbeats, and would start the job at once if it were queued again.
    const JOBS: usize = 6;
    let server = RedisServer::start(false);
    let config = sentinela_core::queue::redis_config(
        "sentinela:test-long-jobs",
        Duration::from_millis(200),
        1,
    );
    let conn = apalis_redis::connect(server.url()).await.unwrap();
    let starts = Arc::new(Starts::default());
    let monitors: Vec<_> = ["long-a", "long-b"]
        .into_iter()
        .map(|name| {
            let backend = RedisStorage::<Job>::new(conn.clone()).with_config(config.clone());
            let data = starts.clone();
            tokio::spawn(
                Monitor::new()
                    .register(move |r| {
                        WorkerBuilder::new(format!("{name}-{r}"))
                            .backend(backend.clone())
                            .data(data.clone())
                            .concurrency(1)
                            .parallelize(tokio::spawn)
                            .build(long_job)
                    })
                    .run_with_signal(async {
                        tokio::time::sleep(Duration::from_secs(120)).await;
                        Ok(())
                    }),
            )
        })
        .collect();

    let mut storage = RedisStorage::<Job>::new(conn.clone()).with_config(config.clone());
    let mut redis = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for n in 0..JOBS {
        storage.push(Job { n: n as u32 }).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let done: usize = redis::cmd("SCARD")
                .arg(config.done_jobs_set())
                .query_async(&mut redis)
                .await
                .unwrap();
            if done > n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "job {n} not done in 20 s; starts: {:?}",
                starts.0.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A job queued again after it finished would have started by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for monitor in monitors {
        monitor.abort();
    }
    let starts = starts.0.lock().unwrap();
    assert_eq!(starts.len(), JOBS, "every job ran: {starts:?}");
    assert!(
        starts.values().all(|&n| n == 1),
        "a job started more than once, so a busy worker was taken for dead: {starts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_whose_fetch_outlasts_its_heartbeat_interval_keeps_polling() {
    // apalis-core arms the heartbeat timer, then fetches. When the timer fires during the fetch
    // and the fetch comes back empty, nothing was left to wake the idle worker: it stopped
    // fetching and sending heartbeats for good (seen after a Redis restart, when fetches wait
    // for the reconnection). A 1 ms heartbeat makes nearly every fetch outlast it.
    let server = RedisServer::start(false);
    let config = sentinela_core::queue::redis_config(
        "sentinela:test-idle-wake",
        Duration::from_millis(1),
        1,
    );
    let conn = apalis_redis::connect(server.url()).await.unwrap();
    let starts = Arc::new(Starts::default());
    let backend = RedisStorage::<Job>::new(conn.clone()).with_config(config.clone());
    let data = starts.clone();
    let monitor = tokio::spawn(
        Monitor::new()
            .register(move |r| {
                WorkerBuilder::new(format!("idle-{r}"))
                    .backend(backend.clone())
                    .data(data.clone())
                    .concurrency(1)
                    .parallelize(tokio::spawn)
                    .build(quick_job)
            })
            .run_with_signal(async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            }),
    );
    // Idle for a while (hundreds of empty fetches), then one job at a time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut storage = RedisStorage::<Job>::new(conn.clone()).with_config(config.clone());
    for n in 0..3 {
        storage.push(Job { n }).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while starts.0.lock().unwrap().len() <= n as usize {
            assert!(
                Instant::now() < deadline,
                "job {n} was not taken within 10 s: the idle worker stopped polling"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    monitor.abort();
}

async fn quick_job(_job: Job, id: TaskId, starts: Data<Arc<Starts>>) -> Result<(), BoxDynError> {
    starts.record(&id);
    Ok(())
}
