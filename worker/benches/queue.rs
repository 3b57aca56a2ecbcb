//! Job-queue throughput through Redis with real worker processes, against Celery 5.7 + Redis run
//! in the same run (`bash bench/queue-vs-celery.sh` runs the anchors' `celery_throughput.sh`
//! first and passes its result in `BENCH_CELERY_JSON`):
//! - no-op jobs drained from a pre-filled queue (steady rate, first to last completion, as the
//!   Celery anchor measures its drain) with 1 and 2 worker processes;
//! - no-op jobs end to end (pushed to idle workers, until all are done), as the anchor's overlap;
//! - 100 ms I/O-bound jobs at concurrency 8 and 32, against the ideal (concurrency / 0.1 s).
//!
//! The bench re-executes itself as the worker process (`--worker`), so workers are separate
//! processes talking to Redis exactly like `sentinela-worker`: the production apalis-redis
//! configuration (`sentinela_core::queue::redis_config`: a fetch takes at most the free slots,
//! short heartbeat), concurrency layer and parallel execution.
//!
//! `cargo bench -p sentinela-worker --bench queue` (Redis at `BENCH_REDIS_URL`, default
//! redis://127.0.0.1:6379/14, which it empties).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_redis::RedisStorage;
use serde::{Deserialize, Serialize};

const QUEUE: &str = "sentinela:bench";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BenchJob {
    sleep_ms: u64,
}

async fn handle(job: BenchJob) -> Result<(), BoxDynError> {
    if job.sleep_ms > 0 {
        tokio::time::sleep(Duration::from_millis(job.sleep_ms)).await;
    }
    Ok(())
}

fn redis_url() -> String {
    std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/14".into())
}

fn config(concurrency: usize) -> apalis_redis::Config {
    sentinela_core::queue::redis_config(QUEUE, Duration::from_millis(500), concurrency)
}

async fn worker(concurrency: usize) {
    let conn = apalis_redis::connect(redis_url()).await.unwrap();
    let storage = RedisStorage::<BenchJob>::new(conn).with_config(config(concurrency));
    let name = format!("bench-{}", std::process::id());
    Monitor::new()
        .register(move |r| {
            WorkerBuilder::new(format!("{name}-{r}"))
                .backend(storage.clone())
                .concurrency(concurrency)
                .parallelize(tokio::spawn)
                .build(handle)
        })
        .run_with_signal(async {
            let _ = tokio::signal::ctrl_c().await;
            Ok(())
        })
        .await
        .unwrap();
}

fn spawn_workers(n: usize, concurrency: usize) -> Vec<Child> {
    let me = std::env::current_exe().unwrap();
    (0..n)
        .map(|_| {
            Command::new(&me)
                .args(["--worker", &concurrency.to_string()])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect()
}

async fn done_count(conn: &mut redis::aio::ConnectionManager) -> u64 {
    redis::cmd("SCARD")
        .arg(format!("{QUEUE}:done"))
        .query_async(conn)
        .await
        .unwrap()
}

async fn push(conn: &redis::aio::ConnectionManager, jobs: usize, sleep_ms: u64) {
    let mut storage = RedisStorage::<BenchJob>::new(conn.clone()).with_config(config(1));
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(500) {
        storage
            .push_bulk(chunk.iter().map(|_| BenchJob { sleep_ms }).collect())
            .await
            .unwrap();
    }
}

/// Pushes `jobs` jobs to idle workers and waits until all are done (or, `prefilled`, pushes them
/// first, starts the workers, and times from the first completion to the last, as the Celery
/// anchor's drain). Returns (enqueue/s, jobs/s, peak worker RSS MB).
async fn round(
    processes: usize,
    concurrency: usize,
    jobs: usize,
    sleep_ms: u64,
    prefilled: bool,
) -> (f64, f64, f64) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    redis::cmd("FLUSHDB").exec_async(&mut conn).await.unwrap();
    let (enqueue, drained, mut workers);
    if prefilled {
        let start = Instant::now();
        push(&conn, jobs, sleep_ms).await;
        enqueue = jobs as f64 / start.elapsed().as_secs_f64();
        workers = spawn_workers(processes, concurrency);
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut first: Option<(Instant, u64)> = None;
        loop {
            let done = done_count(&mut conn).await;
            if first.is_none() && done > 0 {
                first = Some((Instant::now(), done));
            }
            if done >= jobs as u64 {
                break;
            }
            assert!(Instant::now() < deadline, "jobs did not drain");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (at, done_then) = first.unwrap();
        drained = (jobs as u64 - done_then) as f64 / at.elapsed().as_secs_f64();
    } else {
        workers = spawn_workers(processes, concurrency);
        // Let them start and register.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let start = Instant::now();
        push(&conn, jobs, sleep_ms).await;
        enqueue = jobs as f64 / start.elapsed().as_secs_f64();
        let deadline = Instant::now() + Duration::from_secs(600);
        while done_count(&mut conn).await < jobs as u64 {
            assert!(Instant::now() < deadline, "jobs did not drain");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drained = jobs as f64 / start.elapsed().as_secs_f64();
    }
    let rss = workers
        .iter()
        .map(|w| sentinela_testkit::peak_rss_mb(&w.id().to_string()))
        .fold(0.0, f64::max);
    for w in &mut workers {
        let _ = Command::new("kill")
            .args(["-INT", &w.id().to_string()])
            .status();
    }
    for w in &mut workers {
        let _ = w.wait();
    }
    (enqueue, drained, rss)
}

/// Celery's figures from the same run (the anchors' `celery_throughput.sh` JSON): (steady no-op
/// drain of prefork c=2 with its defaults, end to end while enqueueing).
fn celery() -> Option<(f64, f64)> {
    let path = std::env::var("BENCH_CELERY_JSON").ok()?;
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let drain = json["drain"]
        .as_array()?
        .iter()
        .find(|d| d["config"] == "prefork_c2_default" && d["task"] == "noop")?;
    let overlap = json["overlap"]
        .as_array()
        .and_then(|o| o.iter().find(|d| d["config"] == "prefork_c2_default"))
        .and_then(|d| d["e2e_tasks_per_s"].as_f64())
        .unwrap_or(f64::NAN);
    Some((drain["tasks_per_s_steady"].as_f64()?, overlap))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--worker") {
        worker(args[i + 1].parse().unwrap()).await;
        return;
    }
    let celery = celery();
    println!(
        "Redis job throughput (apalis-redis, a fetch takes at most the free slots, heartbeat 500 ms), separate worker processes"
    );
    match celery {
        Some((drain, overlap)) => println!(
            "baseline (same run): Celery 5.7 prefork c=2 + Redis drained {drain:.0} no-op tasks/s (steady), {overlap:.0}/s end to end while enqueueing; target >= 5x the drain with one worker process"
        ),
        None => println!(
            "baseline: not run (BENCH_CELERY_JSON unset; bash bench/queue-vs-celery.sh runs it)"
        ),
    }
    println!(
        "{:<52} {:>10} {:>10} {:>10} {:>10}",
        "case", "enqueue/s", "jobs/s", "vs Celery", "worker MB"
    );
    let ratio = |ours: f64, theirs: Option<f64>| {
        theirs.map_or_else(|| "-".to_owned(), |t| format!("{:.1}x", ours / t))
    };
    for processes in [1, 2] {
        let (enqueue, drained, rss) = round(processes, 32, 20_000, 0, true).await;
        println!(
            "{:<52} {enqueue:>10.0} {drained:>10.0} {:>10} {rss:>10.0}",
            format!("no-op drain, {processes} process(es), concurrency 32"),
            ratio(drained, celery.map(|c| c.0))
        );
    }
    for processes in [1, 2] {
        let (enqueue, drained, rss) = round(processes, 32, 20_000, 0, false).await;
        println!(
            "{:<52} {enqueue:>10.0} {drained:>10.0} {:>10} {rss:>10.0}",
            format!("no-op end to end, {processes} process(es), concurrency 32"),
            ratio(drained, celery.map(|c| c.1))
        );
    }
    for (concurrency, jobs) in [(8usize, 800usize), (32, 3_200)] {
        let (enqueue, drained, rss) = round(1, concurrency, jobs, 100, false).await;
        let ideal = concurrency as f64 / 0.1;
        println!(
            "{:<52} {enqueue:>10.0} {drained:>10.0} {:>9.0}% {rss:>10.0}",
            format!("100 ms I/O, 1 process, concurrency {concurrency} (ideal {ideal:.0}/s)"),
            100.0 * drained / ideal
        );
    }
}
