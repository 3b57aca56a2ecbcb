//! Per-city databases: two cities, each on its own PostgreSQL database (A on the shared test
//! server, B on a server of this test's own), created through the API, searched by a
//! `sentinela-worker` process with a `sentinela-scheduler` process beside it. Each city's rows
//! live only in its database; stopping B's server fails B's requests with a clear 503 while A's
//! search completes; B's search queued before the outage waits and completes once B's server is
//! back; one `migrate` command brings the control database and both city databases up to date,
//! idempotently, and names the city database it cannot reach.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::{Database, DatabaseConnection, EntityTrait, PaginatorTrait};
use secrecy::ExposeSecret;
use sentinela_api::{Application, Mode};
use sentinela_core::entity::{
    camera, city, recording, search_task, trajectory_point, vehicle_search,
};
use sentinela_core::settings::Settings;
use sentinela_testkit::{KillOnDrop, PgServer, TestDb, workspace_binary};
use serde_json::{Value, json};

const ADMIN: &str = "snt_test_tenancy_admin";

/// The environment of the API, the worker and the scheduler: a city database that is down is
/// reported within 2 s; recovery every 2 s re-plans a search pending for 10 s.
fn environment(control: &TestDb, redis: &str, dir: &Path) -> Vec<(String, String)> {
    let mut env = sentinela_testkit::cluster_env(control.url.expose_secret(), redis, dir, ADMIN);
    env.push((
        "SENTINELA__CITY_DATABASES__ACQUIRE_TIMEOUT_SECS".into(),
        "2".into(),
    ));
    env
}

fn spawn(binary: &str, env: &[(String, String)], log: &Path) -> KillOnDrop {
    KillOnDrop(
        Command::new(workspace_binary(binary))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap(),
            )
            .spawn()
            .unwrap(),
    )
}

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        sentinela_testkit::call(&self.http, &self.base, Some(ADMIN), method, path, body).await
    }

    /// A city on its own database, a camera, and the bus pair registered as its two recordings.
    async fn city_with_bus(&self, name: &str, database_url: &str, folder: &str) -> i64 {
        let (status, city) = self
            .call(
                "POST",
                "/api/v1/cities",
                Some(json!({"name": name, "database_url": database_url})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{city}");
        assert_eq!(city["own_database"], true);
        assert!(
            !city.to_string().contains("postgres://"),
            "the URL is never returned: {city}"
        );
        let city_id = city["id"].as_i64().unwrap();
        let (status, camera) = self
            .call(
                "POST",
                "/api/v1/cameras",
                Some(json!({"city_id": city_id, "name": format!("cam-{folder}"), "mediamtx_path": folder})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{camera}");
        for (i, file) in ["empty.mp4", "bus.mp4"].iter().enumerate() {
            let start = chrono::DateTime::parse_from_rfc3339("2026-11-29T11:00:00Z").unwrap()
                + chrono::Duration::seconds(6 * i as i64);
            let (status, body) = self
                .call(
                    "POST",
                    "/api/v1/recordings",
                    Some(json!({
                        "camera_id": camera["id"],
                        "file_path": format!("{folder}/{file}"),
                        "started_at": start.to_rfc3339(),
                        "ended_at": (start + chrono::Duration::seconds(6)).to_rfc3339(),
                    })),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        city_id
    }

    async fn search(&self, city_id: i64) -> (StatusCode, Value) {
        self.call(
            "POST",
            "/api/v1/searches",
            Some(json!({
                "city_id": city_id,
                "vehicle_type": "ônibus",
                "color": "vermelho",
                "start_date": "2026-11-29T08:00:00-03:00",
                "end_date": "2026-11-29T09:00:00-03:00"
            })),
        )
        .await
    }

    /// Polls until the search ends (tolerating 503 while its database is down).
    async fn finished(&self, id: i64, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (status, search) = self
                .call("GET", &format!("/api/v1/searches/{id}"), None)
                .await;
            if status == StatusCode::OK
                && search["status"] != "pending"
                && search["status"] != "processing"
            {
                return search;
            }
            assert!(
                Instant::now() < deadline,
                "search {id} did not finish: {status} {search}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Rows of each city-data table in `db`: (cameras, recordings, searches, tasks, points).
async fn rows(db: &DatabaseConnection) -> [u64; 5] {
    [
        camera::Entity::find().count(db).await.unwrap(),
        recording::Entity::find().count(db).await.unwrap(),
        vehicle_search::Entity::find().count(db).await.unwrap(),
        search_task::Entity::find().count(db).await.unwrap(),
        trajectory_point::Entity::find().count(db).await.unwrap(),
    ]
}

fn migrate_command(control: &TestDb) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sentinela-api"))
        .arg("migrate")
        .env("DATABASE_URL", control.url.expose_secret())
        .env("SENTINELA__CITY_DATABASES__ACQUIRE_TIMEOUT_SECS", "2")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_city_on_its_own_database_and_one_down_does_not_stop_the_other() {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["a", "b"] {
        std::fs::create_dir_all(dir.path().join(folder)).unwrap();
        sentinela_testkit::render_bus_pair(&dir.path().join(folder), 6.0, 2.0);
    }
    let control = TestDb::postgres().await;
    // City A's own database on the shared server (created empty; migrated by the API).
    let a_db = TestDb::postgres().await;
    // City B's own database on a server of its own, which the test stops and starts.
    let b_server = PgServer::start();
    b_server.create_database("cidade_b").await;
    let b_url = b_server.url("cidade_b");

    let env = environment(&control, &sentinela_testkit::redis_db(10), dir.path());
    let settings = Settings::from_sources(None, &env.iter().cloned().collect()).unwrap();
    let application = Application::build(settings, Mode::default()).await.unwrap();
    let (worker_log, scheduler_log) = (
        dir.path().join("worker.log"),
        dir.path().join("scheduler.log"),
    );
    let mut worker = spawn("sentinela-worker", &env, &worker_log);
    let _scheduler = spawn("sentinela-scheduler", &env, &scheduler_log);
    let client = Client {
        base: format!("http://{}", application.address()),
        http: reqwest::Client::new(),
    };
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(application.run_until(async move {
        let _ = stop_rx.wait_for(|v| *v).await;
    }));

    // A city database must be PostgreSQL, reachable, and not another city's (or the control).
    for (url, why) in [
        ("sqlite://x.db?mode=rwc", "must be PostgreSQL"),
        ("postgres://postgres@127.0.0.1:1/nowhere", "cannot connect"),
        (control.url.expose_secret(), "other cities"),
    ] {
        let (status, body) = client
            .call(
                "POST",
                "/api/v1/cities",
                Some(json!({"name": format!("Bad {why}"), "database_url": url})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert_eq!(body["field"], "database_url", "{body}");
        assert!(body["detail"].as_str().unwrap().contains(why), "{body}");
    }

    let city_a = client
        .city_with_bus("Cidade A", a_db.url.expose_secret(), "a")
        .await;
    let city_b = client.city_with_bus("Cidade B", &b_url, "b").await;
    // Creating a city on a database that already holds another city is refused.
    let (status, body) = client
        .call(
            "POST",
            "/api/v1/cities",
            Some(json!({"name": "Cidade C", "database_url": b_url})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // A search in each city completes.
    let mut ids = Vec::new();
    for city in [city_a, city_b] {
        let (status, created) = client.search(city).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{created}");
        ids.push(created["id"].as_i64().unwrap());
    }
    for id in &ids {
        let search = client.finished(*id, Duration::from_secs(120)).await;
        assert_eq!(search["status"], "completed", "{search}");
        assert_eq!(search["progress"]["tasks_done"], 2, "{search}");
    }
    let (status, trajectory) = client
        .call(
            "GET",
            &format!("/api/v1/searches/{}/trajectory", ids[1]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        trajectory["points"].as_array().unwrap().len(),
        4,
        "{trajectory}"
    );

    // Each city's rows are in its own database only; the control database holds none.
    let b_conn = Database::connect(b_url.clone()).await.unwrap();
    assert_eq!(
        rows(&control.db).await,
        [0, 0, 0, 0, 0],
        "control holds no city data"
    );
    assert_eq!(rows(&a_db.db).await, [1, 2, 1, 2, 4], "city A's database");
    assert_eq!(rows(&b_conn).await, [1, 2, 1, 2, 4], "city B's database");
    let in_a = vehicle_search::Entity::find().all(&a_db.db).await.unwrap();
    let in_b = vehicle_search::Entity::find().all(&b_conn).await.unwrap();
    assert_eq!((in_a[0].id, in_a[0].city_id), (ids[0], city_a));
    assert_eq!((in_b[0].id, in_b[0].city_id), (ids[1], city_b));
    let mirrored: Vec<i64> = city::Entity::find()
        .all(&b_conn)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(mirrored, [city_b], "B's database knows city B only");
    b_conn.close().await.ok();
    // An admin listing spans both databases.
    let (status, list) = client.call("GET", "/api/v1/searches", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 2, "{list}");

    // B's search queued, not yet planned (no worker running), when B's server stops.
    drop(worker);
    let (status, created) = client.search(city_b).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let in_flight = created["id"].as_i64().unwrap();
    b_server.stop();
    let down_at = Instant::now();
    worker = spawn("sentinela-worker", &env, &worker_log);

    // B: clear errors, nothing accepted.
    let (status, body) = client.search(city_b).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "unavailable");
    let (status, body) = client
        .call("GET", &format!("/api/v1/searches/{}", ids[1]), None)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // Readiness stays 200 (the API serves the other cities) and says which city is down.
    let (status, ready) = client.call("GET", "/health/ready", None).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["checks"]["city_databases"], "degraded", "{ready}");
    let details = ready["details"].to_string();
    assert!(
        details.contains("Cidade B") && !details.contains("Cidade A"),
        "{ready}"
    );
    // The migrate command migrates what it can reach and names what it cannot.
    let (ok, out) = migrate_command(&control);
    assert!(!ok, "{out}");
    assert!(out.contains("control: migrations applied"), "{out}");
    assert!(
        out.contains(&format!("city {city_a} (Cidade A): migrations applied")),
        "{out}"
    );
    assert!(
        out.contains(&format!("city {city_b} (Cidade B): FAILED")),
        "{out}"
    );

    // A: a new search completes while B is down.
    let (status, created) = client.search(city_a).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let search = client
        .finished(created["id"].as_i64().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(search["status"], "completed", "{search}");
    eprintln!(
        "city A's search completed {:?} into B's outage",
        down_at.elapsed()
    );

    // The scheduler went on over the other databases and named B's.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = std::fs::read_to_string(&scheduler_log).unwrap();
    assert!(
        log.contains("periodic job failed on one database")
            && log.contains(&format!("city-{city_b}")),
        "{log}"
    );

    // B back: its queued search is planned (the job's retries, or the scheduler's re-planning)
    // and completes; new searches work.
    // (Read before starting: the server accepts connections a little before pg_ctl returns.)
    let back = chrono::Utc::now();
    b_server.start_again();
    let search = client.finished(in_flight, Duration::from_secs(120)).await;
    assert_eq!(search["status"], "completed", "{search}");
    let started =
        chrono::DateTime::parse_from_rfc3339(search["started_at"].as_str().unwrap()).unwrap();
    assert!(
        started > back,
        "planned only once B was being started again: {search}"
    );
    let (status, created) = client.search(city_b).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let search = client
        .finished(created["id"].as_i64().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(search["status"], "completed", "{search}");
    let (status, ready) = client.call("GET", "/health/ready", None).await;
    assert_eq!(
        (status, ready["status"].clone()),
        (StatusCode::OK, json!("ok")),
        "{ready}"
    );

    // One command, every database, idempotent.
    for _ in 0..2 {
        let (ok, out) = migrate_command(&control);
        assert!(ok, "{out}");
        assert_eq!(out.matches("migrations applied").count(), 3, "{out}");
    }

    let _ = stop.send(true);
    running.await.unwrap().unwrap();
    drop(worker);
    a_db.cleanup().await;
    control.cleanup().await;
}
