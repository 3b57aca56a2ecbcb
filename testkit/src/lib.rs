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
