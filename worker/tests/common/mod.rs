//! Helpers for the worker tests: generated recordings with a known ground truth, a fresh
//! PostgreSQL database and Redis database per test, and real `sentinela-worker` processes.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;
use sentinela_core::domain::{Color, PlatePattern, TimeRange, VehicleType};
use sentinela_core::queue::JobQueue;
use sentinela_core::repo::{cameras, recordings, searches};
use sentinela_core::settings::Settings;
use sentinela_testkit::TestDb;

/// Start of the first recording.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 8, 0, 0).unwrap()
}

/// Seconds per generated recording.
pub const SECONDS: i64 = 3;

/// Two small recordings: a street with the red bus parked in view the whole time, and an empty one.
pub fn render_pair(dir: &Path) -> (PathBuf, PathBuf) {
    sentinela_testkit::render_bus_pair(dir, SECONDS as f64, 0.0)
}

/// A city with three cameras and `n` recordings, one after another round-robin over the cameras;
/// every `bus_every`-th recording shows the bus. Returns the city id and the ids of the recordings
/// with the bus.
pub async fn city_with_recordings(
    db: &DatabaseConnection,
    dir: &Path,
    n: usize,
    bus_every: usize,
) -> (i64, Vec<i64>) {
    let (bus, empty) = render_pair(dir);
    let city = sentinela_testkit::city(db, &format!("city-{}", rand_suffix())).await;
    let mut cams = Vec::new();
    for i in 0..3 {
        cams.push(
            cameras::create(
                db,
                db,
                cameras::NewCamera {
                    city_id: city.id,
                    name: format!("cam-{i}"),
                    location: Some(format!("street {i}")),
                    latitude: None,
                    longitude: None,
                    mediamtx_path: None,
                },
            )
            .await
            .unwrap(),
        );
    }
    let mut with_bus = Vec::new();
    for i in 0..n {
        let source = if i % bus_every == 0 { &bus } else { &empty };
        let path = dir.join(format!("rec-{i:03}.mp4"));
        std::fs::hard_link(source, &path).unwrap();
        let start = t0() + chrono::Duration::seconds(SECONDS * i as i64);
        let (rec, _) = recordings::register(
            db,
            recordings::NewRecording {
                camera_id: cams[i % 3].id,
                city_id: city.id,
                file_path: path.to_string_lossy().into_owned(),
                started_at: start,
                ended_at: start + chrono::Duration::seconds(SECONDS),
                size_bytes: 1,
            },
        )
        .await
        .unwrap();
        if i % bus_every == 0 {
            with_bus.push(rec.id);
        }
    }
    (city.id, with_bus)
}

fn rand_suffix() -> u32 {
    rand::random()
}

/// A search for the red bus over the whole day.
pub async fn bus_search(db: &DatabaseConnection, city_id: i64) -> i64 {
    searches::create(
        db,
        db,
        searches::NewSearch {
            city_id,
            user_id: Some("test".into()),
            plate: None::<PlatePattern>,
            color: Some(Color::Red),
            vehicle_type: Some(VehicleType::Bus),
            window: TimeRange::new(t0(), t0() + chrono::Duration::hours(12)).unwrap(),
            camera_ids: None,
            estimate: None,
            webhook: None,
        },
    )
    .await
    .unwrap()
    .id
}

/// The workspace's model file.
pub fn model_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/nanodet_m_416.onnx")
}

/// A running `sentinela-worker` process; killed when dropped.
pub struct WorkerProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl WorkerProcess {
    pub fn spawn(
        test: &TestDb,
        redis: &str,
        dir: &Path,
        index: usize,
        extra: &[(&str, &str)],
    ) -> Self {
        let log = dir.join(format!("worker-{index}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sentinela-worker"));
        cmd.env("DATABASE_URL", test.url.expose_secret())
            .env("REDIS_URL", redis)
            .env("WORKER_CONCURRENCY", "2")
            .env("DETECTOR_MAX_IN_FLIGHT", "2")
            .env("SNAPSHOT_DIR", dir.join("snapshots"))
            .env("RECORDINGS_DIR", dir)
            .env("SENTINELA__DETECTOR__MODEL_PATH", model_path())
            .env("SENTINELA__WORKER__DRAIN_TIMEOUT_SECS", "20")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env("METRICS_BIND", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().expect("start sentinela-worker"),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls the search until `done(search)` or the time limit; returns the last row.
pub async fn wait_for(
    db: &DatabaseConnection,
    search_id: i64,
    limit: Duration,
    done: impl Fn(&entity::vehicle_search::Model) -> bool,
) -> entity::vehicle_search::Model {
    let deadline = Instant::now() + limit;
    loop {
        let search = searches::get(db, search_id).await.unwrap().unwrap();
        if done(&search) || Instant::now() > deadline {
            return search;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Settings for a test: its database, Redis (or the embedded queue), snapshots under `dir`, the
/// workspace's model, two analyse slots.
pub fn settings(test: &TestDb, redis: Option<&str>, dir: &Path) -> Settings {
    let mut env: std::collections::HashMap<String, String> = [
        ("DATABASE_URL", test.url.expose_secret().to_owned()),
        (
            "SNAPSHOT_DIR",
            dir.join("snapshots").to_string_lossy().into_owned(),
        ),
        ("RECORDINGS_DIR", dir.to_string_lossy().into_owned()),
        (
            "SENTINELA__DETECTOR__MODEL_PATH",
            model_path().to_string_lossy().into_owned(),
        ),
        ("WORKER_CONCURRENCY", "2".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(redis) = redis {
        env.insert("REDIS_URL".into(), redis.into());
    }
    Settings::from_sources(None, &env).unwrap()
}

/// The Redis queue a test pushes to.
pub async fn queue(test: &TestDb, redis: &str) -> JobQueue {
    let settings = settings(test, Some(redis), Path::new("."));
    JobQueue::connect(&settings, &test.db).await.unwrap()
}
