//! The real server on 127.0.0.1:0 against a fresh database: searches end to end (embedded mode and
//! PostgreSQL + Redis with a separate worker process), bad inputs, and the auth matrix.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Duration as Span, TimeZone, Utc};
use poem::listener::Acceptor;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use sentinela_api::{AppState, app, auth};
use sentinela_core::queue::JobQueue;
use sentinela_core::repo::{cameras, cities, recordings};
use sentinela_core::settings::Settings;
use sentinela_core::testing::TestDb;
use serde_json::{Value, json};

const ADMIN: &str = "snt_test_admin_key";

/// A worker process that dies with the test, even when the test fails.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct TestApp {
    base: String,
    client: reqwest::Client,
    test: TestDb,
    city_a: i64,
    city_b: i64,
    key_a: String,
    key_b: String,
    camera_a: i64,
    _worker: Option<KillOnDrop>,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::watch::Sender<bool>>,
}

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/nanodet_m_416.onnx")
}

fn settings(test: &TestDb, redis: Option<&str>, dir: &Path) -> Settings {
    let mut env: std::collections::HashMap<String, String> = [
        ("DATABASE_URL", test.url.expose_secret().to_owned()),
        (
            "SNAPSHOT_DIR",
            dir.join("snapshots").to_string_lossy().into_owned(),
        ),
        ("RECORDINGS_DIR", dir.to_string_lossy().into_owned()),
        (
            "SENTINELA__DETECTOR__MODEL_PATH",
            model().to_string_lossy().into_owned(),
        ),
        ("WORKER_CONCURRENCY", "2".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(r) = redis {
        env.insert("REDIS_URL".into(), r.to_owned());
    }
    Settings::from_sources(None, &env).unwrap()
}

/// Two cities; city A has a camera with two one-minute recordings, the bus crossing the second.
async fn fixtures(test: &TestDb, dir: &Path) -> (i64, i64, i64) {
    let new_city = |name: &str| cities::NewCity {
        name: name.into(),
        timezone: "America/Sao_Paulo".into(),
        recording_retention_days: 30,
        max_storage_bytes: None,
    };
    let a = cities::create(&test.db, new_city("Cidade A"))
        .await
        .unwrap();
    let b = cities::create(&test.db, new_city("Cidade B"))
        .await
        .unwrap();
    let cam = cameras::create(
        &test.db,
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
    sentinela_core::testing::render_bus_pair(dir, 6.0, 2.0);
    let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 11, 0, 0).unwrap();
    for (i, file) in ["empty.mp4", "bus.mp4"].iter().enumerate() {
        let start = t0 + Span::seconds(6 * i as i64);
        recordings::register(
            &test.db,
            recordings::NewRecording {
                camera_id: cam.id,
                city_id: a.id,
                file_path: file.to_string(),
                started_at: start,
                ended_at: start + Span::seconds(6),
                size_bytes: 1,
            },
        )
        .await
        .unwrap();
    }
    (a.id, b.id, cam.id)
}

fn worker_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("sentinela-worker");
    assert!(
        bin.exists(),
        "build the worker first: cargo build -p sentinela-worker ({})",
        bin.display()
    );
    bin
}

/// `redis`: `None` for the embedded mode (SQLite + in-process workers), else PostgreSQL + Redis
/// with a separate `sentinela-worker` process.
async fn spawn_app(redis: Option<&str>) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let test = match redis {
        None => TestDb::sqlite().await,
        Some(_) => TestDb::postgres().await,
    };
    let settings = settings(&test, redis, dir.path());
    let (city_a, city_b, camera_a) = fixtures(&test, dir.path()).await;
    auth::ensure_admin_key(&test.db, ADMIN).await.unwrap();
    let key_a = "snt_test_city_a".to_owned();
    let key_b = "snt_test_city_b".to_owned();
    auth::create_key(&test.db, &key_a, "a", "operator-a", Some(city_a))
        .await
        .unwrap();
    auth::create_key(&test.db, &key_b, "b", "operator-b", Some(city_b))
        .await
        .unwrap();

    let queue = JobQueue::connect(&settings, &test.db).await.unwrap();
    let acceptor = sentinela_api::bind("127.0.0.1:0").await.unwrap();
    let addr = acceptor.local_addr()[0]
        .to_string()
        .trim_start_matches("socket://")
        .to_owned();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut worker = None;
    if let Some(redis) = redis {
        worker = Some(KillOnDrop(
            Command::new(worker_binary())
                .env("DATABASE_URL", test.url.expose_secret())
                .env("REDIS_URL", redis)
                .env("SNAPSHOT_DIR", dir.path().join("snapshots"))
                .env("RECORDINGS_DIR", dir.path())
                .env("SENTINELA__DETECTOR__MODEL_PATH", model())
                .env("METRICS_BIND", "127.0.0.1:0")
                .env("LOG_FORMAT", "json")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.path().join("worker.log")).unwrap())
                .spawn()
                .unwrap(),
        ));
    } else {
        let state = Arc::new(
            sentinela_worker::WorkerState::build(&settings, test.db.clone(), queue.clone())
                .await
                .unwrap(),
        );
        let (s, mut rx) = (settings.clone(), stop_rx.clone());
        tokio::spawn(async move {
            sentinela_worker::run_workers(state, &s, async move {
                let _ = rx.wait_for(|v| *v).await;
            })
            .await
        });
    }
    let state = AppState::new(&settings, test.db.clone(), queue);
    let mut rx = stop_rx;
    tokio::spawn(sentinela_api::serve(
        acceptor,
        app(state, 16 * 1024),
        async move {
            let _ = rx.wait_for(|v| *v).await;
        },
    ));
    TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        test,
        city_a,
        city_b,
        key_a,
        key_b,
        camera_a,
        _worker: worker,
        _dir: dir,
        stop: Some(stop),
    }
}

impl TestApp {
    async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn bus_search(&self) -> Value {
        json!({
            "city_id": self.city_a,
            "vehicle_type": "ônibus",
            "color": "vermelho",
            "start_date": "2026-11-29T08:00:00-03:00",
            "end_date": "2026-11-29T09:00:00-03:00"
        })
    }

    async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(self._worker.take());
        self.test.cleanup().await;
    }
}

async fn search_end_to_end(app: &TestApp) {
    let resp = app
        .client
        .post(format!("{}/api/v1/searches", app.base))
        .bearer_auth(&app.key_a)
        .json(&app.bus_search())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = resp.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/searches/{}", created["id"]));
    assert_eq!(created["color"], "red");
    assert_eq!(created["vehicle_type"], "bus");

    let deadline = Instant::now() + Duration::from_secs(120);
    let search = loop {
        let (status, search) = app.call("GET", &location, Some(&app.key_a), None).await;
        assert_eq!(status, StatusCode::OK);
        if search["status"] != "pending" && search["status"] != "processing" {
            break search;
        }
        assert!(
            Instant::now() < deadline,
            "search did not finish: {search}\n{}",
            std::fs::read_to_string(app._dir.path().join("worker.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(search["status"], "completed", "{search}");
    assert_eq!(search["progress"]["tasks_total"], 2);
    assert_eq!(search["progress"]["tasks_done"], 2);
    assert_eq!(search["progress"]["frames_analyzed"], 12);

    let (status, trajectory) = app
        .call(
            "GET",
            &format!("{location}/trajectory"),
            Some(&app.key_a),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let points = trajectory["points"].as_array().unwrap();
    // The bus is on screen from 2 s into the second recording (starting 6 s after the first).
    let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 11, 0, 0).unwrap();
    let seconds: Vec<i64> = points
        .iter()
        .map(|p| {
            let at =
                chrono::DateTime::parse_from_rfc3339(p["timestamp"].as_str().unwrap()).unwrap();
            (at.with_timezone(&Utc) - t0).num_seconds()
        })
        .collect();
    assert_eq!(seconds, [8, 9, 10, 11]);
    assert_eq!(points[0]["camera_name"], "cam-a");
    assert_eq!(points[0]["label"], "bus");
    assert_eq!(points[0]["color"], "red");
    assert_eq!(points[0]["location"], "Av. A");
    assert_eq!(trajectory["cameras_visited"][0]["sightings"], 4);
    let image = points[0]["image_url"].as_str().unwrap();
    let resp = app
        .client
        .get(format!("{}{image}", app.base))
        .bearer_auth(&app.key_a)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        &resp.bytes().await.unwrap()[..2],
        &[0xFF, 0xD8],
        "the snapshot is a JPEG"
    );
    let resp = app
        .client
        .get(format!("{}{image}", app.base))
        .bearer_auth(&app.key_b)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "another city's snapshot is not served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_runs_end_to_end_in_embedded_mode() {
    let app = spawn_app(None).await;
    search_end_to_end(&app).await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_runs_end_to_end_on_postgres_and_redis_with_a_worker_process() {
    let redis = {
        let url = "redis://127.0.0.1:6379/8";
        let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
        redis::cmd("FLUSHDB").exec(&mut conn).unwrap();
        url
    };
    let app = spawn_app(Some(redis)).await;
    search_end_to_end(&app).await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_answer_4xx_naming_the_field() {
    let app = spawn_app(None).await;
    let base = app.bus_search();
    let with = |patch: Value| {
        let mut body = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let cases: Vec<(&str, Value, u16, Option<&str>)> = vec![
        (
            "plate that is not Brazilian",
            with(json!({"plate": "??"})),
            422,
            Some("plate"),
        ),
        (
            "unknown colour",
            with(json!({"color": "furta-cor"})),
            422,
            Some("color"),
        ),
        (
            "unknown vehicle type",
            with(json!({"vehicle_type": "bicicleta"})),
            422,
            Some("vehicle_type"),
        ),
        (
            "no criterion",
            with(json!({"color": null, "vehicle_type": null})),
            422,
            Some("plate"),
        ),
        (
            "start not RFC 3339",
            with(json!({"start_date": "ontem"})),
            422,
            Some("start_date"),
        ),
        (
            "end before start",
            with(json!({"end_date": "2026-11-29T07:00:00-03:00"})),
            422,
            Some("end_date"),
        ),
        (
            "window over 7 days",
            with(json!({"end_date": "2026-12-09T09:00:00-03:00"})),
            422,
            Some("end_date"),
        ),
        (
            "unknown city",
            with(json!({"city_id": 999_999})),
            422,
            Some("city_id"),
        ),
        (
            "camera of another city",
            with(json!({"camera_ids": [999_999]})),
            422,
            Some("camera_ids"),
        ),
        (
            "empty camera list",
            with(json!({"camera_ids": []})),
            422,
            Some("camera_ids"),
        ),
        (
            "missing city_id",
            with(json!({"city_id": null})),
            422,
            Some("city_id"),
        ),
        (
            "missing end_date",
            with(json!({"end_date": null})),
            422,
            Some("end_date"),
        ),
        (
            "city_id of the wrong type",
            with(json!({"city_id": "one"})),
            400,
            None,
        ),
    ];
    for (why, body, status, field) in cases {
        let (got, answer) = app
            .call("POST", "/api/v1/searches", Some(ADMIN), Some(body))
            .await;
        assert_eq!(got.as_u16(), status, "{why}: {answer}");
        assert!(
            answer["code"].is_string() && answer["message"].is_string(),
            "{why}: JSON error: {answer}"
        );
        if let Some(field) = field {
            assert_eq!(answer["field"], field, "{why}: {answer}");
        }
    }
    // Not JSON at all, and a body over the limit.
    let resp = app
        .client
        .post(format!("{}/api/v1/searches", app.base))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = app
        .client
        .post(format!("{}/api/v1/searches", app.base))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(format!("{{\"plate\": \"{}\"}}", "A".repeat(100_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = app
        .call("GET", "/api/v1/searches/abc", Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, answer) = app
        .call("GET", "/api/v1/searches/424242", Some(ADMIN), None)
        .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    // A duplicate city is a conflict, not a server error.
    let (status, answer) = app
        .call(
            "POST",
            "/api/v1/cities",
            Some(ADMIN),
            Some(json!({"name": "Cidade A"})),
        )
        .await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (StatusCode::CONFLICT, Some("name"))
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_matrix_holds() {
    let app = spawn_app(None).await;
    let (_, created) = app
        .call(
            "POST",
            "/api/v1/searches",
            Some(&app.key_a),
            Some(app.bus_search()),
        )
        .await;
    let search = format!("/api/v1/searches/{}", created["id"]);

    let (status, answer) = app.call("GET", &search, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no key: {answer}");
    assert_eq!(answer["code"], "unauthorized");
    let (status, _) = app.call("GET", &search, Some("snt_not_a_key"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "unknown key");

    let (status, _) = app.call("GET", &search, Some(&app.key_b), None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "city B's key on city A's search"
    );
    let (status, _) = app
        .call(
            "GET",
            &format!("{search}/trajectory"),
            Some(&app.key_b),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .call("POST", &format!("{search}/cancel"), Some(&app.key_b), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, list) = app
        .call("GET", "/api/v1/searches", Some(&app.key_b), None)
        .await;
    assert_eq!(
        (status, list["total"].as_u64()),
        (StatusCode::OK, Some(0)),
        "B lists none of A's searches"
    );
    let (_, list) = app
        .call("GET", "/api/v1/searches", Some(&app.key_a), None)
        .await;
    assert_eq!(list["total"], 1);
    let (status, _) = app
        .call(
            "GET",
            &format!("/api/v1/cameras?city_id={}", app.city_a),
            Some(&app.key_b),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    for (method, path, body) in [
        ("POST", "/api/v1/cities", json!({"name": "Nova"})),
        (
            "POST",
            "/api/v1/cameras",
            json!({"city_id": app.city_b, "name": "x"}),
        ),
        (
            "POST",
            "/api/v1/api-keys",
            json!({"name": "x", "user_id": "x"}),
        ),
        ("GET", "/api/v1/api-keys", Value::Null),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (status, _) = app.call(method, path, Some(&app.key_a), body).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "city key on admin route {method} {path}"
        );
    }

    // Admin: everything, including creating and revoking keys.
    let (status, _) = app.call("GET", &search, Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, key) = app
        .call(
            "POST",
            "/api/v1/api-keys",
            Some(ADMIN),
            Some(json!({"name": "c", "user_id": "u", "city_id": app.city_b})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = key["secret"].as_str().unwrap().to_owned();
    let (status, _) = app.call("GET", "/api/v1/cities", Some(&secret), None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, keys) = app.call("GET", "/api/v1/api-keys", Some(ADMIN), None).await;
    assert!(
        !keys.to_string().contains(&secret),
        "secrets are never listed"
    );
    let (status, _) = app
        .call(
            "POST",
            &format!("/api/v1/api-keys/{}/revoke", key["key"]["id"]),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = app.call("GET", "/api/v1/cities", Some(&secret), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked key: {answer}");

    let (status, _) = app
        .call("POST", &format!("{search}/cancel"), Some(&app.key_a), None)
        .await;
    assert!(status == StatusCode::OK || status == StatusCode::CONFLICT);
    let (status, body) = app.call("GET", "/health/ready", None, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, spec) = app.call("GET", "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(spec["paths"]["/api/v1/searches"].is_object());
    let resp = app
        .client
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("swagger"));
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains(
            r#"vms_http_requests_total{method="GET",route="/api/v1/searches/{id}",status="404"}"#
        ),
        "requests by route template and status: {text}"
    );
    assert!(
        text.contains("vms_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(r#"vms_queue_jobs{queue="sentinela:search",state="pending"}"#),
        "{text}"
    );
    let _ = app.camera_a;
    app.finish().await;
}
