//! Helpers for the worker tests: generated recordings with a known ground truth, a fresh
//! PostgreSQL database and Redis database per test, and real `sentinela-worker` processes.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;
use sentinela_core::domain::TimeRange;
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
        sentinela_testkit::red_bus_search(
            city_id,
            TimeRange::new(t0(), t0() + chrono::Duration::hours(12)).unwrap(),
        ),
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

/// A Redis server of the test's own on a free port (so it can be stopped and restarted without
/// touching the shared one), with or without append-only persistence. Killed when dropped.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    aof: bool,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start(aof: bool) -> Self {
        let mut server = Self {
            port: sentinela_testkit::free_port(),
            dir: tempfile::tempdir().unwrap(),
            aof,
            child: None,
        };
        server.start_again();
        server
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it again on the same port and directory (with AOF, the data comes back from it).
    pub fn start_again(&mut self) {
        let aof = if self.aof { "yes" } else { "no" };
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--appendonly", aof, "--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        for _ in 0..100 {
            if redis::Client::open(self.url())
                .and_then(|c| c.get_connection())
                .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on {}", self.port);
    }

    /// Stops it: `SHUTDOWN` (which writes the append-only file when there is one), or a SIGKILL
    /// when `kill` (nothing written).
    pub fn stop(&mut self, kill: bool) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if kill {
            let _ = child.kill();
        } else {
            let _ = Command::new("redis-cli")
                .args(["-p", &self.port.to_string(), "shutdown"])
                .status();
        }
        child.wait().unwrap();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop(true);
    }
}

/// How to start one kind of Sentinela process again and again (a supervisor's unit).
#[derive(Clone)]
pub struct ProcessSpec {
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    /// Wrapped as `sh -c 'echo $$ > <cgroup.procs>; exec <binary>'`: started inside that cgroup.
    pub cgroup_procs: Option<PathBuf>,
}

impl ProcessSpec {
    pub fn spawn(&self) -> Child {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = match &self.cgroup_procs {
            Some(procs) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("echo $$ > '{}' && exec \"$0\"", procs.display()))
                    .arg(&self.binary);
                c
            }
            None => Command::new(&self.binary),
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// What a [`Supervisor`] saw.
#[derive(Debug, Default, Clone)]
pub struct SupervisorCounts {
    /// Times the process ended by itself (a crash, an out-of-memory kill) and was started again.
    pub restarts: usize,
    /// Times the supervisor killed it with SIGKILL because it had the poison file open.
    pub kills: usize,
    /// Exit statuses of the ends the supervisor did not cause.
    pub exits: Vec<String>,
}

/// A process kept running the way `restart: unless-stopped` keeps a container: started again
/// whenever it ends. Optionally a poison file: every time the process has it open, it is killed
/// with SIGKILL (a decoder that crashes on that file, reproduced from outside).
pub struct Supervisor {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    state: std::sync::Arc<std::sync::Mutex<(Child, SupervisorCounts)>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub spec: ProcessSpec,
}

impl Supervisor {
    pub fn start(spec: ProcessSpec, poison: Option<PathBuf>) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let state = std::sync::Arc::new(std::sync::Mutex::new((
            spec.spawn(),
            SupervisorCounts::default(),
        )));
        let thread = std::thread::spawn({
            let (stop, state, spec) = (stop.clone(), state.clone(), spec.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    {
                        let mut guard = state.lock().unwrap();
                        let (child, counts) = &mut *guard;
                        if let Some(status) = child.try_wait().unwrap() {
                            counts.restarts += 1;
                            counts.exits.push(format!("{status:?}"));
                            // Docker's restart policy waits before starting it again too.
                            std::thread::sleep(Duration::from_millis(500));
                            *child = spec.spawn();
                        } else if let Some(poison) = &poison
                            && has_open(child.id(), poison)
                        {
                            let _ = child.kill();
                            let _ = child.wait();
                            counts.kills += 1;
                            *child = spec.spawn();
                        }
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        Self {
            stop,
            state,
            thread: Some(thread),
            spec,
        }
    }

    pub fn counts(&self) -> SupervisorCounts {
        self.state.lock().unwrap().1.clone()
    }

    pub fn pid(&self) -> u32 {
        self.state.lock().unwrap().0.id()
    }

    /// Kills the running process with SIGKILL (it is started again, counted as a restart).
    pub fn kill9(&self) {
        let _ = self.state.lock().unwrap().0.kill();
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let mut guard = self.state.lock().unwrap();
        let _ = guard.0.kill();
        let _ = guard.0.wait();
    }
}

/// Whether process `pid` has `path` open (its `/proc/<pid>/fd` links).
fn has_open(pid: u32, path: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
}
