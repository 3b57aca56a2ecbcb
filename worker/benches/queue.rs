//! Job-queue throughput through Redis with real worker processes, against the targets of
//! TARGETS.md (Celery 5.7 + Redis on this machine kind drained ~430–560 no-op tasks/s):
//! - no-op jobs end to end (enqueue + drain) with 1 and 2 worker processes;
//! - 100 ms I/O-bound jobs at concurrency 8 and 32, against the ideal (concurrency / 0.1 s).
//!
//! The bench re-executes itself as the worker process (`--worker`), so workers are separate
//! processes talking to Redis exactly like `sentinela-worker`: same apalis-redis configuration
//! (batch size 1, short heartbeat), concurrency layer and parallel execution.
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

fn config() -> apalis_redis::Config {
    apalis_redis::Config::default()
        .queue(QUEUE)
        .batch_size(1)
        .heartbeat_interval(Duration::from_millis(500))
        .missed_heartbeats(5)
}

async fn worker(concurrency: usize) {
    let conn = apalis_redis::connect(redis_url()).await.unwrap();
    let storage = RedisStorage::<BenchJob>::new(conn).with_config(config());
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

/// Pushes `jobs` jobs to idle workers and waits until all are done. Returns (enqueue/s, end-to-end
/// jobs/s, peak worker RSS MB).
async fn round(
    processes: usize,
    concurrency: usize,
    jobs: usize,
    sleep_ms: u64,
) -> (f64, f64, f64) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    redis::cmd("FLUSHDB").exec_async(&mut conn).await.unwrap();
    let mut workers = spawn_workers(processes, concurrency);
    // Let them start and register.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut storage = RedisStorage::<BenchJob>::new(conn.clone()).with_config(config());
    let start = Instant::now();
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(500) {
        storage
            .push_bulk(chunk.iter().map(|_| BenchJob { sleep_ms }).collect())
            .await
            .unwrap();
    }
    let enqueue = jobs as f64 / start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    while done_count(&mut conn).await < jobs as u64 {
        assert!(Instant::now() < deadline, "jobs did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = jobs as f64 / start.elapsed().as_secs_f64();
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

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--worker") {
        worker(args[i + 1].parse().unwrap()).await;
        return;
    }
    println!(
        "Redis job throughput (apalis-redis, batch size 1, heartbeat 500 ms), separate worker processes"
    );
    println!(
        "baseline (TARGETS.md, same machine kind): Celery 5.7 + Redis drained ~430-560 no-op tasks/s; target >= 2,500 jobs/s, worker RSS < 100 MB"
    );
    println!(
        "{:<44} {:>12} {:>14} {:>10} {:>12}",
        "case", "enqueue/s", "end-to-end/s", "vs ideal", "worker MB"
    );
    for processes in [1, 2] {
        let (enqueue, drained, rss) = round(processes, 32, 20_000, 0).await;
        println!(
            "{:<44} {enqueue:>12.0} {drained:>14.0} {:>10} {rss:>12.0}",
            format!("no-op, {processes} process(es), concurrency 32"),
            "-"
        );
    }
    for (concurrency, jobs) in [(8usize, 800usize), (32, 3_200)] {
        let (enqueue, drained, rss) = round(1, concurrency, jobs, 100).await;
        let ideal = concurrency as f64 / 0.1;
        println!(
            "{:<44} {enqueue:>12.0} {drained:>14.0} {:>9.0}% {rss:>12.0}",
            format!("100 ms I/O, 1 process, concurrency {concurrency} (ideal {ideal:.0}/s)"),
            100.0 * drained / ideal
        );
    }
}
