//! The test kit: helpers for integration tests and benchmarks across the workspace: a fresh PostgreSQL database or SQLite file
//! per test, migrated. Tests talk to real servers; nothing here mocks one.

use std::sync::atomic::{AtomicU32, Ordering};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use secrecy::SecretString;

use sentinela_core::db;

/// The server tests create their databases on (`TEST_DATABASE_URL`, default the local `test`
/// database).
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The Redis tests use (`TEST_REDIS_URL`, default the local server).
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// A Redis database of the test server for one test (`index` 0–15; give each test its own),
/// emptied.
///
/// # Panics
/// When Redis does not answer: the test cannot run.
pub fn redis_db(index: u8) -> String {
    let base = redis_url();
    let url = format!("{}/{index}", base.trim_end_matches('/'));
    let client = redis::Client::open(url.as_str()).expect("a Redis URL (TEST_REDIS_URL)");
    let mut conn = client
        .get_connection()
        .expect("Redis answers (TEST_REDIS_URL)");
    redis::cmd("FLUSHDB").exec(&mut conn).expect("FLUSHDB");
    url
}

/// What [`bus_cities`] creates.
#[derive(Debug, Clone, Copy)]
pub struct BusCities {
    /// "Cidade A", with the camera.
    pub city_a: i64,
    /// "Cidade B", empty.
    pub city_b: i64,
    /// City A's camera `cam-a` (at Av. A, -23.5, -46.6), with two six-second recordings from
    /// 2026-11-29 11:00:00 UTC: `empty.mp4`, then `bus.mp4`, where the red bus is in view from
    /// 2 s on.
    pub camera_a: i64,
}

/// Two cities in the shared database `db`; city A has one camera whose two recordings (rendered
/// into `dir`, see [`render_bus_pair`]) show the red bus in the second.
///
/// # Panics
/// On a database error or when the recordings cannot be rendered.
pub async fn bus_cities(db: &DatabaseConnection, dir: &std::path::Path) -> BusCities {
    use sentinela_core::repo::{cameras, cities};
    let new_city = |name: &str| cities::NewCity {
        name: name.into(),
        timezone: "America/Sao_Paulo".into(),
        recording_retention_days: 30,
        max_storage_bytes: None,
        database_url: None,
    };
    let a = cities::create(db, new_city("Cidade A")).await.unwrap();
    let b = cities::create(db, new_city("Cidade B")).await.unwrap();
    let cam = cameras::create(
        db,
        db,
        cameras::NewCamera {
            city_id: a.id,
            name: "cam-a".into(),
            location: Some("Av. A".into()),
            latitude: Some(-23.5),
            longitude: Some(-46.6),
            mediamtx_path: None,
        },
    )
    .await
    .unwrap();
    render_bus_pair(dir, 6.0, 2.0);
    register_clips(db, a.id, cam.id, &["empty.mp4", "bus.mp4"]).await;
    BusCities {
        city_a: a.id,
        city_b: b.id,
        camera_a: cam.id,
    }
}

/// Registers `files` (under `RECORDINGS_DIR`) as camera `camera_id`'s consecutive six-second
/// recordings from 2026-11-29 11:00:00 UTC (the clips [`render_bus_pair`] renders).
///
/// # Panics
/// On a database error.
pub async fn register_clips(db: &DatabaseConnection, city_id: i64, camera_id: i64, files: &[&str]) {
    use sentinela_core::repo::recordings;
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-29T11:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    for (i, file) in files.iter().enumerate() {
        let start = t0 + chrono::Duration::seconds(6 * i as i64);
        recordings::register(
            db,
            recordings::NewRecording {
                camera_id,
                city_id,
                file_path: (*file).to_owned(),
                started_at: start,
                ended_at: start + chrono::Duration::seconds(6),
                size_bytes: 1,
            },
        )
        .await
        .unwrap();
    }
}

/// Renders two small 416x320 10 fps recordings into `dir`: `bus.mp4`, where the red bus (the
/// real photo) stands in view from `bus_from_s` to the end, and `empty.mp4`, the same street
/// without it. Returns `(bus, empty)`.
///
/// # Panics
/// When ffmpeg or the photo (Debian's `opencv-doc`) is missing.
pub fn render_bus_pair(
    dir: &std::path::Path,
    seconds: f64,
    bus_from_s: f64,
) -> (std::path::PathBuf, std::path::PathBuf) {
    use sentinela_core::video::synth::{self, Scene, Sprite};
    let (bus, empty) = (dir.join("bus.mp4"), dir.join("empty.mp4"));
    let mut scene = Scene::new(416, 320, 10, seconds);
    synth::render(&scene, &empty).expect("render the empty street");
    scene.sprites.push(Sprite {
        image: synth::load_photo(synth::BUS_PHOTO, 300).expect("the bus photo (opencv-doc)"),
        enter_s: bus_from_s,
        exit_s: seconds + 1.0,
        y: 10,
        from_x: 8,
        to_x: 8,
    });
    synth::render(&scene, &bus).expect("render the bus");
    (bus, empty)
}

/// Peak resident memory (`VmHWM`) of a live process, in MB; `"self"` for this one. 0 when the
/// process is gone. For benchmarks.
pub fn peak_rss_mb(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A fresh, migrated database that belongs to one test.
pub struct TestDb {
    /// Connection to it.
    pub db: DatabaseConnection,
    /// Its URL.
    pub url: SecretString,
    name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_name() -> String {
    format!(
        "sentinela_t_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

impl TestDb {
    /// Creates a new PostgreSQL database on [`admin_url`] and migrates it.
    ///
    /// # Panics
    /// When the server is unreachable: the test cannot run.
    pub async fn postgres() -> Self {
        let name = unique_name();
        let admin = Database::connect(admin_url())
            .await
            .expect("connect to the PostgreSQL test server (TEST_DATABASE_URL)");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        admin.close().await.ok();
        let base = admin_url();
        let url = match base.rfind('/') {
            Some(i) => format!("{}/{name}", &base[..i]),
            None => panic!("TEST_DATABASE_URL has no database part: {base}"),
        };
        let url = SecretString::from(url);
        let db = db::connect_and_migrate(&url)
            .await
            .expect("migrate test database");
        Self {
            db,
            url,
            name: Some(name),
            _dir: None,
        }
    }

    /// Creates a new SQLite file in a temporary directory and migrates it.
    ///
    /// # Panics
    /// When the file cannot be created.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = SecretString::from(format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("test.db").display()
        ));
        let db = db::connect_and_migrate(&url)
            .await
            .expect("migrate test database");
        Self {
            db,
            url,
            name: None,
            _dir: Some(dir),
        }
    }

    /// The routes to city data over this database as the control (and shared) database.
    pub fn databases(
        &self,
        settings: &sentinela_core::settings::Settings,
    ) -> std::sync::Arc<sentinela_core::tenancy::Databases> {
        std::sync::Arc::new(sentinela_core::tenancy::Databases::new(
            self.db.clone(),
            settings.city_databases.clone(),
        ))
    }

    /// Drops the PostgreSQL database (SQLite files go with their temporary directory).
    pub async fn cleanup(self) {
        self.db.close().await.ok();
        if let Some(name) = self.name
            && let Ok(admin) = Database::connect(admin_url()).await
        {
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .ok();
        }
    }
}

/// A city named `name` (São Paulo's time zone, 30-day retention, no storage cap).
///
/// # Panics
/// On a database error.
pub async fn city(db: &DatabaseConnection, name: &str) -> entity::city::Model {
    sentinela_core::repo::cities::create(
        db,
        sentinela_core::repo::cities::NewCity {
            name: name.to_owned(),
            timezone: "America/Sao_Paulo".into(),
            recording_retention_days: 30,
            max_storage_bytes: None,
            database_url: None,
        },
    )
    .await
    .expect("create city")
}

/// A camera named `name` of city `city_id`, without location or MediaMTX path.
///
/// # Panics
/// On a database error.
pub async fn camera(db: &DatabaseConnection, city_id: i64, name: &str) -> entity::camera::Model {
    sentinela_core::repo::cameras::create(
        db,
        db,
        sentinela_core::repo::cameras::NewCamera {
            city_id,
            name: name.to_owned(),
            location: None,
            latitude: None,
            longitude: None,
            mediamtx_path: None,
        },
    )
    .await
    .expect("create camera")
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
///
/// # Panics
/// When no port can be bound.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A PostgreSQL server of the test's own (initdb in a temporary directory, `pg_ctl` to start and
/// stop it), for tests about a database server going away. Stopped when dropped.
pub struct PgServer {
    dir: tempfile::TempDir,
    port: u16,
    bindir: std::path::PathBuf,
}

impl PgServer {
    /// Initialises and starts a server on a free port (trust auth for `postgres`, no fsync).
    ///
    /// # Panics
    /// When PostgreSQL's server binaries (`pg_config --bindir`) are missing or it does not start.
    pub fn start() -> Self {
        let bindir = std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|dir| std::path::Path::new(dir).join("initdb").exists())
            .or_else(|| {
                // Debian's pg_config (libpq-dev) can name the client binaries only.
                std::fs::read_dir("/usr/lib/postgresql")
                    .ok()?
                    .find_map(|e| {
                        let bin = e.ok()?.path().join("bin");
                        bin.join("initdb")
                            .exists()
                            .then(|| bin.display().to_string())
                    })
            })
            .expect("PostgreSQL's server binaries (initdb, pg_ctl)");
        let dir = tempfile::tempdir().expect("temp dir");
        let server = Self {
            dir,
            port: free_port(),
            bindir: bindir.into(),
        };
        if is_root() {
            // initdb and postgres refuse to run as root: the server runs as `postgres`.
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(server.dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown the server's directory to postgres");
        }
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        server.start_again();
        server
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` on it.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name`.
    ///
    /// # Panics
    /// When the server does not answer.
    pub async fn create_database(&self, name: &str) {
        let admin = Database::connect(self.url("postgres"))
            .await
            .expect("connect to the test's PostgreSQL server");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        admin.close().await.ok();
    }

    /// Stops the server (fast shutdown: open connections are cut), waiting until it is down.
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// Starts the (stopped) server again on the same port, waiting until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `program` of the server's binaries, run as `postgres` when the test runs as root.
    fn command(&self, program: &str) -> std::process::Command {
        let program = self.bindir.join(program);
        if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            std::process::Command::new(program)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args(["-D", data.as_str(), "-m", "immediate", "stop"])
            .output();
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A workspace binary (`sentinela-worker`, `sentinela-scheduler`, …) next to the running test's
/// own executable, in the same target directory and profile.
///
/// # Panics
/// When it has not been built (`cargo test --workspace` builds every binary).
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's executable");
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps")
        .join(name);
    assert!(
        bin.exists(),
        "build it first: cargo build -p {name} ({})",
        bin.display()
    );
    bin
}

/// A child process killed (and reaped) when the test ends, even when it fails.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What every Sentinela process of a test shares: the database, `RECORDINGS_DIR` = `dir` and
/// `SNAPSHOT_DIR` = `dir/snapshots`, the bundled detector model, and the API and metrics on
/// loopback port 0. Tests add what they are about.
pub fn process_env(database_url: &str, dir: &std::path::Path) -> Vec<(String, String)> {
    let model =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/nanodet_m_416.onnx");
    [
        ("DATABASE_URL", database_url.to_owned()),
        ("RECORDINGS_DIR", dir.display().to_string()),
        ("SNAPSHOT_DIR", dir.join("snapshots").display().to_string()),
        (
            "SENTINELA__DETECTOR__MODEL_PATH",
            model.display().to_string(),
        ),
        ("API_BIND", "127.0.0.1:0".to_owned()),
        ("METRICS_BIND", "127.0.0.1:0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A search of `city_id` for the red bus (`vermelho`, `ônibus`) over `window`, by user "test", no
/// camera filter, estimate or webhook.
pub fn red_bus_search(
    city_id: i64,
    window: sentinela_core::domain::TimeRange,
) -> sentinela_core::repo::searches::NewSearch {
    sentinela_core::repo::searches::NewSearch {
        city_id,
        user_id: Some("test".into()),
        plate: None,
        color: Some(sentinela_core::domain::Color::Red),
        vehicle_type: Some(sentinela_core::domain::VehicleType::Bus),
        window,
        camera_ids: None,
        estimate: None,
        webhook: None,
    }
}

/// [`process_env`] for a distributed cluster of processes: Redis at `redis`, the bootstrap admin
/// key `admin_key`, JSON logs, two analyses per worker, a 10 s task lease with recovery every 2 s
/// (lost work is found within seconds, not the production hour), the scheduler's other periodic
/// jobs off. Tests add what they are about.
pub fn cluster_env(
    database_url: &str,
    redis: &str,
    dir: &std::path::Path,
    admin_key: &str,
) -> Vec<(String, String)> {
    let mut env = process_env(database_url, dir);
    env.extend(
        [
            ("REDIS_URL", redis),
            ("SENTINELA_ADMIN_KEY", admin_key),
            ("LOG_FORMAT", "json"),
            ("WORKER_CONCURRENCY", "2"),
            ("SENTINELA__SCHEDULER__RECOVER_CRON", "*/2 * * * * *"),
            ("SENTINELA__SCHEDULER__TASK_LEASE_SECS", "10"),
            ("SENTINELA__WORKER__JOB_TIMEOUT_SECS", "9"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    for job in [
        "RETENTION",
        "CLEANUP",
        "INDEX_SYNC",
        "QUEUE_HYGIENE",
        "WEBHOOKS",
    ] {
        env.push((format!("SENTINELA__SCHEDULER__{job}_CRON"), "off".into()));
    }
    env
}

/// One API call: `method` on `base` + `path` with the bearer `key` and a JSON `body`; the status
/// and the JSON answer (a body that is not JSON comes back as a JSON string).
///
/// # Panics
/// When the server does not answer.
pub async fn call(
    http: &reqwest::Client,
    base: &str,
    key: Option<&str>,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut request = http.request(
        method.parse().expect("an HTTP method"),
        format!("{base}{path}"),
    );
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}
