//! Two `sentinela-scheduler` processes on one Redis with an every-second schedule: both push every
//! tick, each tick runs once (celery beat with two instances would run each twice).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use sentinela_testkit::{TestDb, redis_db};

struct Scheduler {
    child: Child,
    log: std::path::PathBuf,
}

impl Scheduler {
    fn spawn(test: &TestDb, redis: &str, dir: &Path, index: usize) -> Self {
        let log = dir.join(format!("scheduler-{index}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_sentinela-scheduler"))
            .env("DATABASE_URL", test.url.expose_secret())
            .env("REDIS_URL", redis)
            .env("RECORDINGS_DIR", dir.join("recordings"))
            .env("SNAPSHOT_DIR", dir.join("snapshots"))
            .env("SENTINELA__SCHEDULER__RECOVER_CRON", "* * * * * *")
            .env("SENTINELA__SCHEDULER__RETENTION_CRON", "off")
            .env("SENTINELA__SCHEDULER__CLEANUP_CRON", "off")
            .env("SENTINELA__SCHEDULER__INDEX_SYNC_CRON", "off")
            .env("SENTINELA__SCHEDULER__QUEUE_HYGIENE_CRON", "off")
            .env("SENTINELA__SCHEDULER__WEBHOOKS_CRON", "off")
            .env("SENTINELA__WORKER__POLL_INTERVAL_MS", "200")
            .env("LOG_FORMAT", "json")
            .env("METRICS_BIND", "127.0.0.1:0")
            .env("RUST_LOG", "info,sentinela_scheduler=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start sentinela-scheduler");
        Self { child, log }
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the scheduler did not stop on SIGTERM");
    }

    /// `(message, tick)` of every log line that carries a tick.
    fn ticks(&self) -> Vec<(String, u64)> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|v| {
                Some((
                    v.get("message")?.as_str()?.to_owned(),
                    v.get("tick")?.as_u64()?,
                ))
            })
            .collect()
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_run_each_tick_once() {
    let test = TestDb::postgres().await;
    let redis = redis_db(15);
    let dir = tempfile::tempdir().unwrap();
    let mut a = Scheduler::spawn(&test, &redis, dir.path(), 1);
    let mut b = Scheduler::spawn(&test, &redis, dir.path(), 2);
    // Both replicas up (migrations done), then at least 10 ticks.
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert!(a.stop().success());
    assert!(b.stop().success());

    let (ta, tb) = (a.ticks(), b.ticks());
    let pushed = |ticks: &[(String, u64)]| -> Vec<u64> {
        ticks
            .iter()
            .filter(|(m, _)| m == "tick pushed")
            .map(|(_, t)| *t)
            .collect()
    };
    let (pa, pb) = (pushed(&ta), pushed(&tb));
    // Ticks both replicas pushed: the ones whose single run proves the duplicate was dropped.
    let both: Vec<u64> = pa.iter().copied().filter(|t| pb.contains(t)).collect();
    assert!(
        both.len() >= 10,
        "both replicas should push at least 10 of the same ticks: {pa:?} / {pb:?}"
    );
    let mut runs: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for (who, ticks) in [("a", &ta), ("b", &tb)] {
        for (message, tick) in ticks {
            if message == "periodic job finished"
                || message == "previous run still going; tick skipped"
            {
                runs.entry(*tick).or_default().push(who);
            }
        }
    }
    // Ticks pushed just before the stop may not have run yet: they wait in the queue.
    let last_run = runs.keys().max().copied().unwrap_or(0);
    let ran_window: Vec<u64> = both.iter().copied().filter(|t| *t <= last_run).collect();
    assert!(
        ran_window.len() >= 10,
        "at least 10 ticks pushed by both replicas should have run: {ran_window:?} (runs {runs:?})"
    );
    for tick in &ran_window {
        let ran = runs.get(tick).cloned().unwrap_or_default();
        assert_eq!(ran.len(), 1, "tick {tick} ran {} times: {ran:?}", ran.len());
    }
    // Nothing ran that was never pushed, and no tick ran twice.
    for (tick, ran) in &runs {
        assert!(pa.contains(tick) || pb.contains(tick), "tick {tick}");
        assert_eq!(ran.len(), 1, "tick {tick} ran {ran:?}");
    }
    // The later ticks are not lost: each is one job left in the queue for the next scheduler.
    let mut pushed: Vec<u64> = pa.iter().chain(&pb).copied().collect();
    pushed.sort_unstable();
    pushed.dedup();
    let not_run = pushed.iter().filter(|t| !runs.contains_key(t)).count() as u64;
    let conn = redis::Client::open(redis.as_str())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let depth = sentinela_core::queue::redis_depth(&conn, sentinela_core::jobs::PERIODIC_QUEUE)
        .await
        .unwrap();
    assert_eq!(depth.pending, not_run, "{depth:?}");
    println!(
        "{} ticks pushed by both replicas, each run once ({} by a, {} by b)",
        both.len(),
        runs.values().filter(|r| r[0] == "a").count(),
        runs.values().filter(|r| r[0] == "b").count()
    );
    test.cleanup().await;
}
