//! The real server on 127.0.0.1:0 against a fresh database: searches end to end (embedded mode and
//! PostgreSQL + Redis with a separate worker process), bad inputs, and the auth matrix.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use sentinela_api::{Application, Mode, auth};
use sentinela_core::repo::{cameras, recordings};
use sentinela_core::settings::Settings;
use sentinela_testkit::{KillOnDrop, TestDb, workspace_binary};
use serde_json::{Value, json};

const ADMIN: &str = "snt_test_admin_key";

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
        ("API_BIND", "127.0.0.1:0".to_owned()),
        ("METRICS_BIND", "127.0.0.1:0".to_owned()),
        ("SENTINELA_ADMIN_KEY", ADMIN.to_owned()),
        ("SENTINELA__API__BODY_LIMIT_BYTES", (16 * 1024).to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // The periodic jobs stay off: these tests are about the API and the workers.
    for job in [
        "RETENTION",
        "CLEANUP",
        "RECOVER",
        "INDEX_SYNC",
        "QUEUE_HYGIENE",
        "WEBHOOKS",
    ] {
        env.insert(format!("SENTINELA__SCHEDULER__{job}_CRON"), "off".into());
    }
    if let Some(r) = redis {
        env.insert("REDIS_URL".into(), r.to_owned());
    }
    // Keys and cities changed behind the API's back (as another replica would) are seen within
    // a second.
    env.insert("SENTINELA__API__AUTH_CACHE_SECS".into(), "1".into());
    Settings::from_sources(None, &env).unwrap()
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
    let sentinela_testkit::BusCities {
        city_a,
        city_b,
        camera_a,
    } = sentinela_testkit::bus_cities(&test.db, dir.path()).await;
    let key_a = "snt_test_city_a".to_owned();
    let key_b = "snt_test_city_b".to_owned();
    auth::create_key(&test.db, &key_a, "a", "operator-a", Some(city_a))
        .await
        .unwrap();
    auth::create_key(&test.db, &key_b, "b", "operator-b", Some(city_b))
        .await
        .unwrap();

    let mut worker = None;
    if let Some(redis) = redis {
        worker = Some(KillOnDrop(
            Command::new(workspace_binary("sentinela-worker"))
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
    }
    // The application as the binary runs it: embedded mode runs the workers in-process.
    let application = Application::build(
        settings,
        Mode {
            standalone: redis.is_none(),
            demo: false,
        },
    )
    .await
    .unwrap();
    let addr = application.address().to_owned();
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(application.run_until(async move {
        let _ = stop_rx.wait_for(|v| *v).await;
    }));
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
        sentinela_testkit::call(&self.client, &self.base, key, method, path, body).await
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
        // What the schema says (required, types, formats, bounds) is checked as the body is
        // parsed: 422 naming the field, like every other invalid field.
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
            "start not RFC 3339",
            with(json!({"start_date": "ontem"})),
            422,
            Some("start_date"),
        ),
        (
            "a date without an offset",
            with(json!({"start_date": "2026-11-29T08:00:00"})),
            422,
            Some("start_date"),
        ),
        (
            "city_id of the wrong type",
            with(json!({"city_id": "one"})),
            422,
            Some("city_id"),
        ),
    ];
    for (why, body, status, field) in cases {
        let resp = app
            .client
            .post(format!("{}/api/v1/searches", app.base))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let got = resp.status();
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{why}"
        );
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(got.as_u16(), status, "{why}: {answer}");
        assert_eq!(answer["status"], status, "{why}: {answer}");
        assert!(
            answer["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:sentinela:problem:")
                && answer["title"].is_string(),
            "{why}: a problem detail: {answer}"
        );
        assert!(
            answer["code"].is_string() && answer["detail"].is_string(),
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
    // Every fault of a request at once: those of its schema together, then those of its values.
    let (status, answer) = app
        .call(
            "POST",
            "/api/v1/searches",
            Some(ADMIN),
            Some(json!({"city_id": "one", "start_date": "ontem", "camera_ids": [1, "dois"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let mut fields: Vec<&str> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["camera_ids[1]", "city_id", "end_date", "start_date"],
        "{answer}"
    );
    let (status, answer) = app
        .call(
            "POST",
            "/api/v1/searches",
            Some(ADMIN),
            Some(json!({
                "city_id": app.city_a,
                "plate": "??",
                "color": "furta-cor",
                "start_date": "2026-11-29T09:00:00-03:00",
                "end_date": "2026-11-29T08:00:00-03:00",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let fields: Vec<&str> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["plate", "color", "end_date"], "{answer}");
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
    // The rest of the body is left unread, so the connection must not be reused: the answer
    // says so, and the same pooled client's next request then goes through.
    assert_eq!(
        resp.headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
    );
    drop(resp);
    let (status, answer) = app
        .call("GET", "/api/v1/searches/abc", Some(ADMIN), None)
        .await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("id"))
    );
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
    // Metrics are not on the public listener; the requests were counted by route template
    // (this process's registry, served on METRICS_BIND by the binary).
    let (status, _) = app.call("GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let text = sentinela_core::metrics::global().encode();
    assert!(
        text.contains(
            r#"vms_http_requests_total{method="GET",route="/api/v1/searches/{id}",status="404"}"#
        ),
        "requests by route template and status: {text}"
    );
    assert!(
        text.contains(r#"route="unmatched",status="404""#),
        "the /metrics request is unmatched: {text}"
    );
    assert!(
        text.contains("vms_http_request_duration_seconds_bucket"),
        "{text}"
    );
    let _ = app.camera_a;
    app.finish().await;
}

/// A new city key for `city` (its own, so a test's quotas and revocations touch nothing else).
async fn city_key(app: &TestApp, name: &str, city: i64) -> (i64, String) {
    let (status, key) = app
        .call(
            "POST",
            "/api/v1/api-keys",
            Some(ADMIN),
            Some(json!({"name": name, "user_id": name, "city_id": city})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    (
        key["key"]["id"].as_i64().unwrap(),
        key["secret"].as_str().unwrap().to_owned(),
    )
}

/// A bus search of city A created straight in the database, not queued: it stays pending.
async fn pending_search(app: &TestApp, minutes: i64) -> entity::vehicle_search::Model {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 11, 0, 0).unwrap();
    sentinela_core::repo::searches::create(
        &app.test.db,
        &app.test.db,
        sentinela_core::repo::searches::NewSearch {
            city_id: app.city_a,
            user_id: None,
            plate: None,
            color: None,
            vehicle_type: Some(sentinela_core::domain::VehicleType::parse("bus").unwrap()),
            window: sentinela_core::domain::TimeRange::new(t0, t0 + Span::minutes(minutes))
                .unwrap(),
            camera_ids: None,
            estimate: None,
            webhook: None,
        },
    )
    .await
    .unwrap()
}

/// Sets city A's own search limits.
/// Sets city A's caps and quotas as an administrator does: through the API (the replica that
/// serves the change forgets its cached copy of the city at once).
async fn limit_city_a(app: &TestApp, limits: sentinela_core::repo::cities::SearchLimits) {
    let (status, answer) = app
        .call(
            "PATCH",
            &format!("/api/v1/cities/{}", app.city_a),
            Some(ADMIN),
            Some(json!({
                "max_search_recordings": limits.max_search_recordings,
                "max_search_frames": limits.max_search_frames,
                "max_searches_in_flight": limits.max_searches_in_flight,
                "daily_detector_calls": limits.daily_detector_calls,
                "max_snapshot_bytes": limits.max_snapshot_bytes,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// Registers a recording as `key` and answers (status, body).
async fn register(app: &TestApp, key: &str, camera: i64, path: &str, minute: u32) -> (u16, Value) {
    let start = Utc.with_ymd_and_hms(2026, 11, 29, 12, minute, 0).unwrap();
    let (status, body) = app
        .call(
            "POST",
            "/api/v1/recordings",
            Some(key),
            Some(json!({
                "camera_id": camera,
                "file_path": path,
                "started_at": start.to_rfc3339(),
                "ended_at": (start + Span::seconds(60)).to_rfc3339(),
            })),
        )
        .await;
    (status.as_u16(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_paths_are_confined_to_the_root_and_the_camera_folder() {
    let app = spawn_app(None).await;
    let root = app._dir.path().to_owned();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.mp4");
    std::fs::write(&secret, b"not yours").unwrap();
    for folder in ["cam1", "cam2"] {
        std::fs::create_dir_all(root.join(folder)).unwrap();
        std::fs::copy(root.join("bus.mp4"), root.join(folder).join("ok.mp4")).unwrap();
    }
    std::os::unix::fs::symlink(&secret, root.join("cam1/link.mp4")).unwrap();
    std::os::unix::fs::symlink(root.join("cam2"), root.join("cam1/other")).unwrap();
    let mut cams = Vec::new();
    for (name, folder) in [("cam-1", "./cam1/"), ("cam-2", "cam2")] {
        let (status, cam) = app
            .call(
                "POST",
                "/api/v1/cameras",
                Some(ADMIN),
                Some(json!({"city_id": app.city_a, "name": name, "mediamtx_path": folder})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{cam}");
        cams.push(cam["id"].as_i64().unwrap());
    }
    let (cam1, cam2) = (cams[0], cams[1]);
    let (_, cam) = app.call("GET", "/api/v1/cameras", Some(ADMIN), None).await;
    assert!(
        cam.to_string().contains(r#""mediamtx_path":"cam1""#),
        "mediamtx_path is stored normalised: {cam}"
    );
    for bad in ["../x", "/etc", "cam1/../../x", ".", "a\\b"] {
        let (status, answer) = app
            .call(
                "POST",
                "/api/v1/cameras",
                Some(ADMIN),
                Some(json!({"city_id": app.city_a, "name": format!("bad {bad}"), "mediamtx_path": bad})),
            )
            .await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("mediamtx_path")),
            "mediamtx_path {bad:?}: {answer}"
        );
    }

    let secret_abs = secret.to_string_lossy().into_owned();
    let cases: Vec<(&str, String)> = vec![
        ("a system file", "/etc/shadow".into()),
        ("an absolute path outside the root", secret_abs.clone()),
        ("the database beside the root", "../sentinela.db".into()),
        ("`..` inside a camera folder", "cam1/../../x".into()),
        (
            "`..` to the outside file",
            format!("../{}", secret.file_name().unwrap().to_string_lossy()),
        ),
        ("a symlink leading outside", "cam1/link.mp4".into()),
        ("a missing file", "cam1/none.mp4".into()),
        ("the root itself", ".".into()),
    ];
    let mut messages = std::collections::HashMap::new();
    for (who, key) in [("admin", ADMIN), ("city", app.key_a.as_str())] {
        for (i, (why, path)) in cases.iter().enumerate() {
            let (status, answer) = register(&app, key, cam1, path, i as u32).await;
            assert_eq!(status, 422, "{who} key, {why} ({path}): {answer}");
            assert_eq!(answer["field"], "file_path", "{who}, {why}: {answer}");
            let message = answer["detail"].as_str().unwrap().to_owned();
            assert!(
                !message.contains(outside.path().to_str().unwrap()),
                "{who}, {why}: the answer does not echo host paths: {message}"
            );
            messages.insert(*why, message);
        }
    }
    assert_eq!(
        messages["a symlink leading outside"], messages["a missing file"],
        "a file outside and a missing file answer alike, so the API is no oracle"
    );
    // Another camera's folder: refused for a city key (even through a symlink), allowed for admin.
    for path in ["cam2/ok.mp4", "cam1/other/ok.mp4"] {
        let (status, answer) = register(&app, &app.key_a, cam1, path, 20).await;
        assert_eq!(status, 422, "city key, {path}: {answer}");
    }
    let (status, answer) = register(&app, &app.key_a, cam2, "cam1/ok.mp4", 21).await;
    assert_eq!(status, 422, "city key, cam2 with cam1's file: {answer}");
    // City B's key cannot even see city A's camera.
    let (status, answer) = register(&app, &app.key_b, cam1, "cam1/ok.mp4", 22).await;
    assert_eq!((status, answer["field"].as_str()), (422, Some("camera_id")));

    // A plain relative path under the camera's folder works for the city key, stored in one
    // canonical form; `./x` and `<root>/x` are the same file, not new rows.
    let (status, first) = register(&app, &app.key_a, cam1, "cam1/ok.mp4", 30).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["file_path"], "cam1/ok.mp4");
    let (status, again) = register(&app, &app.key_a, cam1, "./cam1//ok.mp4", 30).await;
    assert_eq!(
        (status, &again["id"]),
        (201, &first["id"]),
        "idempotent: {again}"
    );
    let rooted = root.join("cam1/ok.mp4").to_string_lossy().into_owned();
    for (path, minute) in [("./cam1/ok.mp4", 31), (rooted.as_str(), 32)] {
        let (status, answer) = register(&app, ADMIN, cam1, path, minute).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (409, Some("conflict")),
            "{path} is the same file: {answer}"
        );
    }
    let (status, admin_other) = register(&app, ADMIN, cam2, "cam2/ok.mp4", 33).await;
    assert_eq!(status, 201, "admin registers under the root: {admin_other}");
    let rows = recordings::find_by_path(&app.test.db, "cam1/ok.mp4")
        .await
        .unwrap();
    assert!(rows.is_some());
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_numbers_answer_422_naming_the_parameter() {
    let app = spawn_app(None).await;
    let window = "from=2026-11-29T00:00:00Z&to=2026-11-30T00:00:00Z";
    let cases = [
        ("/api/v1/searches?cursor=yesterday", "cursor"),
        ("/api/v1/searches?cursor=99999999999999999999_1", "cursor"),
        ("/api/v1/cameras?cursor=-1", "cursor"),
        ("/api/v1/api-keys?cursor=x", "cursor"),
        ("/api/v1/searches?limit=0", "limit"),
        ("/api/v1/searches?limit=201", "limit"),
        ("/api/v1/searches?limit=-3", "limit"),
        ("/api/v1/searches?status=lost", "status"),
        ("/api/v1/searches/99999999999999999999", "id"),
        ("/api/v1/searches/-5", "id"),
        ("/api/v1/searches/0/trajectory", "id"),
        ("/api/v1/cities/-1", "id"),
        ("/api/v1/cameras?city_id=-1", "city_id"),
        ("/api/v1/snapshots/-1/a.jpg", "search_id"),
        (
            &format!("/api/v1/recordings?camera_id=99999999999999999999&{window}"),
            "camera_id",
        ),
        (
            "/api/v1/recordings?camera_id=1&from=yesterday&to=today",
            "from",
        ),
    ];
    for (path, field) in cases {
        let (status, answer) = app.call("GET", path, Some(ADMIN), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {answer}");
        assert_eq!(answer["code"], "invalid", "{path}: {answer}");
        assert_eq!(answer["field"], field, "{path}: {answer}");
    }
    let (status, answer) = app
        .call(
            "POST",
            "/api/v1/api-keys/99999999999999999999/revoke",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("id"))
    );
    let (status, page) = app
        .call("GET", "/api/v1/searches?cursor=0_0", Some(ADMIN), None)
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a cursor before every search is a valid, empty page: {page}"
    );
    assert_eq!(page["items"], json!([]));
    app.finish().await;
}

/// Sends a POST over a raw TCP connection (HTTP/1.1) and returns the status code the server
/// answered, or `None` when it closed without one.
async fn raw_post(base: &str, head: &str, body: &[u8]) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before the whole body is sent: write errors are expected.
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace().nth(1).and_then(|s| s.parse().ok())
}

/// POSTs `body` to `/api/v1/searches` over HTTP/2 cleartext (prior knowledge) as DATA frames with
/// no `content-length`, and returns the status. The server may answer before the whole body is
/// sent and reset the stream: the answer still counts.
async fn h2_post(base: &str, body: &[u8]) -> u16 {
    let tcp = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("{base}/api/v1/searches"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (response, mut stream) = client.send_request(request, false).unwrap();
    let body = body.to_vec();
    let sender = tokio::spawn(async move {
        for chunk in body.chunks(8192) {
            stream.reserve_capacity(chunk.len());
            // Wait for flow-control window; stop when the server reset the stream.
            loop {
                match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                    Some(Ok(n)) if n >= chunk.len() => break,
                    Some(Ok(_)) => continue,
                    _ => return,
                }
            }
            if stream
                .send_data(bytes::Bytes::copy_from_slice(chunk), false)
                .is_err()
            {
                return;
            }
        }
        let _ = stream.send_data(bytes::Bytes::new(), true);
    });
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("an answer within 10 s")
        .expect("an HTTP/2 answer");
    sender.abort();
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_limit_holds_whatever_the_framing() {
    let app = spawn_app(None).await;
    let big = format!("{{\"plate\": \"{}\"}}", "A".repeat(100_000));
    // Chunked with another coding first, no Content-Length: counted while read.
    let mut chunked = Vec::new();
    for chunk in big.as_bytes().chunks(4096) {
        chunked.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend(chunk);
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    for te in ["gzip, chunked", "chunked", "Chunked"] {
        let head = format!(
            "POST /api/v1/searches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nTransfer-Encoding: {te}\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            raw_post(&app.base, &head, &chunked).await,
            Some(413),
            "Transfer-Encoding: {te}"
        );
    }
    // A small chunked body still works.
    let small = serde_json::to_vec(&app.bus_search()).unwrap();
    let mut body = format!("{:x}\r\n", small.len()).into_bytes();
    body.extend(&small);
    body.extend(b"\r\n0\r\n\r\n");
    let head = format!(
        "POST /api/v1/searches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw_post(&app.base, &head, &body).await, Some(202));

    // HTTP/2 cleartext (prior knowledge), the body sent as DATA frames without a length.
    assert_eq!(
        h2_post(&app.base, big.as_bytes()).await,
        413,
        "HTTP/2 without a length"
    );
    assert_eq!(h2_post(&app.base, &small).await, 202, "a small HTTP/2 body");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_streams_are_capped_per_key_and_end_on_revocation() {
    let app = spawn_app(None).await;
    // A city key of its own, and a search that stays pending (not queued).
    let (key_id, secret) = city_key(&app, "stream", app.city_a).await;
    let search = pending_search(&app, 5).await;
    let url = format!("{}/api/v1/searches/{}/events", app.base, search.id);
    let mut open = Vec::new();
    for _ in 0..4 {
        let resp = app
            .client
            .get(&url)
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        open.push(resp);
    }
    let fifth = app
        .client
        .get(&url)
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(fifth.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another key is not affected by this key's streams.
    let other = app
        .client
        .get(&url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    drop(other);
    // Closing one frees its slot.
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    let reopened = loop {
        let resp = app
            .client
            .get(&url)
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::OK || Instant::now() > deadline {
            break resp;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        reopened.status(),
        StatusCode::OK,
        "a closed stream frees its slot"
    );
    open.push(reopened);

    // Revoking the key ends every stream with a named final event.
    let (status, _) = app
        .call(
            "POST",
            &format!("/api/v1/api-keys/{key_id}/revoke"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for resp in open {
        let text = tokio::time::timeout(Duration::from_secs(10), resp.text())
            .await
            .expect("the stream ends after revocation")
            .unwrap();
        assert!(text.contains("event: progress"), "{text}");
        let last = text.trim_end().rsplit("\n\n").next().unwrap();
        assert!(
            last.contains("event: end") && last.contains(r#""reason":"key_revoked""#),
            "the last event is `end` with its reason: {last}"
        );
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_dependencies_without_their_errors() {
    let app = spawn_app(None).await;
    let (status, body) = app.call("GET", "/health/ready", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["checks"], json!({"database": "ok", "queue": "ok"}));
    assert!(body.get("details").is_none(), "{body}");
    app.finish().await;
}

/// `sentinela-api` as a process on a SQLite file, with `SENTINELA_ADMIN_KEY` set.
fn api_process(dir: &Path, port: u16, admin_key: &str) -> KillOnDrop {
    KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_sentinela-api"))
            .current_dir(dir)
            .env(
                "DATABASE_URL",
                format!("sqlite://{}/api.db?mode=rwc", dir.display()),
            )
            .env("API_BIND", format!("127.0.0.1:{port}"))
            .env("METRICS_BIND", "127.0.0.1:0")
            .env("SENTINELA_ADMIN_KEY", admin_key)
            .env("RECORDINGS_DIR", dir.join("recordings"))
            .env("SNAPSHOT_DIR", dir.join("snapshots"))
            .env("LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("api-{port}.log"))).unwrap())
            .spawn()
            .unwrap(),
    )
}

async fn wait_live(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .get(format!("{base}/health/live"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "{base} did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_bootstrap_key_stays_revoked_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let key = "snt_bootstrap_to_revoke";
    let client = reqwest::Client::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let server = api_process(dir.path(), port, key);
    wait_live(&client, &base).await;
    let keys: Value = client
        .get(format!("{base}/api/v1/api-keys"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = keys["items"][0]["id"].as_i64().unwrap();
    let revoked = client
        .post(format!("{base}/api/v1/api-keys/{id}/revoke"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    drop(server);
    let _server = api_process(dir.path(), port, key);
    wait_live(&client, &base).await;
    let after = client
        .get(format!("{base}/api/v1/cities"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        StatusCode::UNAUTHORIZED,
        "the restart did not revive the revoked bootstrap key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_estimate_matches_what_the_search_then_does() {
    let app = spawn_app(None).await;
    let (status, first) = app
        .call(
            "POST",
            "/api/v1/searches/estimate",
            Some(&app.key_a),
            Some(app.bus_search()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let e = &first["estimate"];
    // Two 6-second recordings at 1 frame per second, nothing cached, no history: every frame a call.
    assert_eq!(e["recordings"], 2, "{first}");
    assert_eq!(e["frames"], 12, "{first}");
    assert_eq!(e["video_seconds"], 12.0, "{first}");
    assert_eq!(e["cached_frames"], 0, "{first}");
    assert_eq!(e["detector_calls"], 12, "{first}");
    assert_eq!(e["cost_usd"], 0.0, "the local model is free: {first}");
    assert_eq!(first["within_caps"], true);

    let (status, created) = app
        .call(
            "POST",
            "/api/v1/searches",
            Some(&app.key_a),
            Some(app.bus_search()),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    assert_eq!(
        created["estimate"], *e,
        "the estimate is stored with the search"
    );
    let path = format!("/api/v1/searches/{}", created["id"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let (_, s) = app.call("GET", &path, Some(&app.key_a), None).await;
        if s["status"] != "pending" && s["status"] != "processing" {
            break s;
        }
        assert!(Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["progress"]["tasks_total"], e["recordings"],
        "recordings exactly"
    );
    assert_eq!(
        done["progress"]["frames_analyzed"], e["frames"],
        "frames exactly"
    );
    let calls = done["progress"]["detector_calls"].as_u64().unwrap();
    assert!(
        calls <= e["detector_calls"].as_u64().unwrap(),
        "calls within the estimate (the gate only removes calls): {done}"
    );

    // Again: the cache now answers every frame, and the observed rate enters the estimate.
    let (_, again) = app
        .call(
            "POST",
            "/api/v1/searches/estimate",
            Some(&app.key_a),
            Some(app.bus_search()),
        )
        .await;
    assert_eq!(again["estimate"]["cached_frames"], 12, "{again}");
    assert_eq!(again["estimate"]["detector_calls"], 0, "{again}");
    let rate = again["estimate"]["detector_rate"].as_f64().unwrap();
    assert!((rate - calls as f64 / 12.0).abs() < 1e-9, "{again}");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_over_a_cap_or_a_quota_are_refused_with_what_to_do() {
    let app = spawn_app(None).await;
    // A frames cap below the search's 12 frames: 422 with the estimate, the cap and a hint.
    limit_city_a(
        &app,
        sentinela_core::repo::cities::SearchLimits {
            max_search_frames: Some(5),
            ..Default::default()
        },
    )
    .await;
    let (status, answer) = app
        .call(
            "POST",
            "/api/v1/searches",
            Some(&app.key_a),
            Some(app.bus_search()),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["code"], "over_cap");
    assert_eq!(answer["estimate"]["frames"], 12, "{answer}");
    assert_eq!(answer["limit"], 5, "{answer}");
    assert!(
        answer["hint"].as_str().unwrap().contains("camera_ids"),
        "{answer}"
    );
    let (_, estimate) = app
        .call(
            "POST",
            "/api/v1/searches/estimate",
            Some(&app.key_a),
            Some(app.bus_search()),
        )
        .await;
    assert_eq!(
        (&estimate["within_caps"], &estimate["max_frames"]),
        (&json!(false), &json!(5))
    );
    let (_, list) = app.call("GET", "/api/v1/searches", Some(ADMIN), None).await;
    assert_eq!(list["total"], 0, "nothing was created");

    // One search in flight allowed: the second is 429 with Retry-After.
    limit_city_a(
        &app,
        sentinela_core::repo::cities::SearchLimits {
            max_searches_in_flight: Some(1),
            ..Default::default()
        },
    )
    .await;
    // The first search is created straight in the database, not queued: it stays pending and
    // holds the city's only place.
    let body = app.bus_search();
    pending_search(&app, 5).await;
    let resp = app
        .client
        .post(format!("{}/api/v1/searches", app.base))
        .bearer_auth(&app.key_a)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "30");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["code"], "too_many_requests", "{answer}");
    // A daily detector budget below what the search expects: 429 until 00:00 UTC.
    limit_city_a(
        &app,
        sentinela_core::repo::cities::SearchLimits {
            daily_detector_calls: Some(5),
            max_searches_in_flight: Some(100),
            ..Default::default()
        },
    )
    .await;
    let resp = app
        .client
        .post(format!("{}/api/v1/searches", app.base))
        .bearer_auth(&app.key_a)
        .json(&app.bus_search())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    let answer: Value = resp.json().await.unwrap();
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("of its 5 detector calls"),
        "{answer}"
    );
    // Another city is not held by city A's quota.
    let mut other = app.bus_search();
    other["city_id"] = json!(app.city_b);
    let (status, answer) = app
        .call("POST", "/api/v1/searches", Some(&app.key_b), Some(other))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_request_quota_gets_429_with_rate_limit_headers() {
    let app = spawn_app(None).await;
    let (_, secret) = city_key(&app, "busy", app.city_a).await;
    // 600 a minute by default; 1,300 requests land in at most two or three windows, so one of
    // them goes over.
    let mut refused = None;
    for _ in 0..1300 {
        let resp = app
            .client
            .get(format!("{}/api/v1/cities", app.base))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(resp);
            break;
        }
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = refused.expect("the quota was reached");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let retry = header("retry-after").expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(header("ratelimit-limit"), Some(600));
    assert_eq!(header("ratelimit-remaining"), Some(0));
    assert_eq!(header("ratelimit-reset"), Some(retry));
    // Other keys are not affected.
    let (status, _) = app.call("GET", "/api/v1/cities", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trajectory_of_10000_points_pages_without_duplicates_or_gaps() {
    use sea_orm::TransactionTrait;
    use sentinela_core::repo::points;
    let app = spawn_app(None).await;
    let cam_b = cameras::create(
        &app.test.db,
        &app.test.db,
        cameras::NewCamera {
            city_id: app.city_a,
            name: "cam-b".into(),
            location: None,
            latitude: None,
            longitude: None,
            mediamtx_path: None,
        },
    )
    .await
    .unwrap();
    let recording = recordings::find_by_path(&app.test.db, "bus.mp4")
        .await
        .unwrap()
        .unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 11, 0, 0).unwrap();
    let search = pending_search(&app, 120).await;
    // 5,000 instants seen by both cameras: equal timestamps exercise the cursor's tie-break.
    let txn = app.test.db.begin().await.unwrap();
    for i in 0..5000i64 {
        for camera in [app.camera_a, cam_b.id] {
            points::insert_idempotent(
                &txn,
                points::NewPoint {
                    search_id: search.id,
                    camera_id: camera,
                    recording_id: recording.id,
                    timestamp: t0 + Span::milliseconds(1000 * i + 250),
                    confidence: 0.9,
                    label: "bus".into(),
                    color: Some("red".into()),
                    plate_text: None,
                    plate_score: None,
                    bbox: json!({}),
                    image_path: None,
                },
            )
            .await
            .unwrap();
        }
    }
    txn.commit().await.unwrap();

    let base = format!("/api/v1/searches/{}/trajectory?limit=777", search.id);
    let (mut seen, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}&cursor={c}"),
            None => base.clone(),
        };
        let (status, page) = app.call("GET", &path, Some(&app.key_a), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        let visited = page["cameras_visited"].as_array().unwrap();
        assert_eq!(visited.len(), 2, "every page carries every camera");
        assert!(visited.iter().all(|v| v["sightings"] == 5000));
        for p in page["points"].as_array().unwrap() {
            seen.push((
                p["timestamp"].as_str().unwrap().to_owned(),
                p["camera_id"].as_i64().unwrap(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 100, "runaway paging");
    }
    assert_eq!(pages, 13, "10,000 / 777 rounded up");
    assert_eq!(seen.len(), 10_000, "no gap");
    let parsed: Vec<(DateTime<Utc>, i64)> =
        seen.iter().map(|(t, c)| (t.parse().unwrap(), *c)).collect();
    assert!(
        parsed.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing (time, camera): no duplicate, in order"
    );
    let (status, answer) = app
        .call("GET", &format!("{base}&cursor=x_y"), Some(&app.key_a), None)
        .await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("cursor"))
    );
    app.finish().await;
}

/// How many recordings a new bus search of city A would cover.
async fn estimated_recordings(app: &TestApp) -> u64 {
    let (status, answer) = app
        .call(
            "POST",
            "/api/v1/searches/estimate",
            Some(&app.key_a),
            Some(app.bus_search()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["estimate"]["recordings"].as_u64().unwrap()
}

/// Polls a search until it leaves pending/processing.
async fn wait_done(app: &TestApp, id: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, search) = app
            .call("GET", &format!("/api/v1/searches/{id}"), Some(ADMIN), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{search}");
        if search["status"] != "pending" && search["status"] != "processing" {
            return search;
        }
        assert!(Instant::now() < deadline, "search did not finish: {search}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administration_changes_and_removes_what_it_created() {
    let app = spawn_app(None).await;
    // The served contract is the committed one; ReDoc needs nothing from the Internet.
    let served = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json"))
            .unwrap();
    assert!(
        served.trim_end() == committed.trim_end(),
        "/openapi.json differs from docs/openapi.json"
    );
    let redoc = app
        .client
        .get(format!("{}/redoc", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(redoc.status(), StatusCode::OK);
    let redoc = redoc.text().await.unwrap();
    assert!(redoc.contains("Redoc.init") && !redoc.contains("googleapis"));

    // Cities: created with a Location, changed, a bad time zone refused, a city key may not.
    let resp = app
        .client
        .post(format!("{}/api/v1/cities", app.base))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "Cidade C"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let city_c: Value = resp.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/cities/{}", city_c["id"]));
    let (status, changed) = app
        .call(
            "PATCH",
            &location,
            Some(ADMIN),
            Some(json!({"name": "Cidade C2", "max_searches_in_flight": 2, "timezone": "America/Manaus"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        (
            &changed["name"],
            &changed["max_searches_in_flight"],
            &changed["timezone"]
        ),
        (&json!("Cidade C2"), &json!(2), &json!("America/Manaus"))
    );
    let (status, cleared) = app
        .call(
            "PATCH",
            &location,
            Some(ADMIN),
            Some(json!({"max_searches_in_flight": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(cleared.get("max_searches_in_flight").is_none(), "{cleared}");
    let (status, answer) = app
        .call(
            "PATCH",
            &location,
            Some(ADMIN),
            Some(json!({"timezone": "Mars/Olympus"})),
        )
        .await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("timezone"))
    );
    let (status, _) = app
        .call(
            "PATCH",
            &location,
            Some(&app.key_a),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = app
        .call(
            "PATCH",
            &location,
            Some(ADMIN),
            Some(json!({"name": "Cidade A"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");

    // Cameras: a new one, its folder taken by no other, changed; disabled, then deleted.
    let (status, cam) = app
        .call(
            "POST",
            "/api/v1/cameras",
            Some(ADMIN),
            Some(json!({"city_id": app.city_a, "name": "cam-nova", "mediamtx_path": "cam_nova"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{cam}");
    let cam_path = format!("/api/v1/cameras/{}", cam["id"]);
    let (status, moved) = app
        .call(
            "PATCH",
            &cam_path,
            Some(ADMIN),
            Some(json!({"latitude": -23.55, "longitude": -46.63, "location": null, "mediamtx_path": "cam_nova2"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(
        (&moved["latitude"], &moved["mediamtx_path"]),
        (&json!(-23.55), &json!("cam_nova2"))
    );
    let (status, answer) = app
        .call(
            "PATCH",
            &cam_path,
            Some(ADMIN),
            Some(json!({"name": "cam-a"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a name the city has already: {answer}"
    );
    let (status, _) = app.call("GET", &cam_path, Some(&app.key_b), None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another city's camera is not there"
    );

    // A disabled camera is skipped by new searches (the estimate and the plan), not by lists.
    let camera_a = format!("/api/v1/cameras/{}", app.camera_a);
    assert_eq!(estimated_recordings(&app).await, 2);
    let (status, off) = app
        .call(
            "PATCH",
            &camera_a,
            Some(ADMIN),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!((status, &off["enabled"]), (StatusCode::OK, &json!(false)));
    assert_eq!(estimated_recordings(&app).await, 0);
    let (status, skipped) = app
        .call(
            "POST",
            "/api/v1/searches",
            Some(&app.key_a),
            Some(app.bus_search()),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{skipped}");
    let skipped = wait_done(&app, &skipped["id"]).await;
    assert_eq!(
        (&skipped["status"], &skipped["progress"]["tasks_total"]),
        (&json!("completed"), &json!(0)),
        "nothing of a disabled camera is searched: {skipped}"
    );
    let (_, listed) = app
        .call(
            "GET",
            &format!("/api/v1/recordings?camera_id={}", app.camera_a),
            Some(&app.key_a),
            None,
        )
        .await;
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    app.call(
        "PATCH",
        &camera_a,
        Some(ADMIN),
        Some(json!({"enabled": true})),
    )
    .await;

    // Idempotency-Key: the same key and body give the same search; another body is refused.
    let post = |key: &'static str, body: Value, idem: &'static str| {
        let request = app
            .client
            .post(format!("{}/api/v1/searches", app.base))
            .bearer_auth(key)
            .header("Idempotency-Key", idem)
            .json(&body);
        async move {
            let resp = request.send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let key_a: &'static str = "snt_test_city_a";
    let (status, first) = post(key_a, app.bus_search(), "pedido-123").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, again) = post(key_a, app.bus_search(), "pedido-123").await;
    assert_eq!((status, &again["id"]), (StatusCode::ACCEPTED, &first["id"]));
    let mut other = app.bus_search();
    other["color"] = json!("azul");
    let (status, answer) = post(key_a, other, "pedido-123").await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("Idempotency-Key")),
        "{answer}"
    );
    let (status, admins) = post(ADMIN, app.bus_search(), "pedido-123").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_ne!(
        admins["id"], first["id"],
        "keys of another API key are its own"
    );
    let done = wait_done(&app, &first["id"]).await;
    assert_eq!(done["status"], "completed", "{done}");
    wait_done(&app, &admins["id"]).await;

    // Searches are filtered and paged by cursor without gaps or repeats.
    let (_, mine) = app
        .call(
            "GET",
            "/api/v1/searches?user_id=operator-a&status=completed",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(mine["total"], 2, "{mine}");
    let (status, answer) = app
        .call("GET", "/api/v1/searches?status=lost", Some(ADMIN), None)
        .await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("status"))
    );
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = app
            .call(
                "GET",
                &format!("/api/v1/searches?limit=1{cursor}"),
                Some(ADMIN),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[2], skipped["id"], "newest first");

    // Recordings: the one holding sightings cannot go; the other goes, with its file on request.
    let (_, recs) = app
        .call(
            "GET",
            &format!("/api/v1/recordings?camera_id={}&limit=1", app.camera_a),
            Some(&app.key_a),
            None,
        )
        .await;
    let empty = recs["items"][0].clone();
    let (_, rest) = app
        .call(
            "GET",
            &format!(
                "/api/v1/recordings?camera_id={}&limit=1&cursor={}",
                app.camera_a,
                recs["next_cursor"].as_str().unwrap()
            ),
            Some(&app.key_a),
            None,
        )
        .await;
    let bus = rest["items"][0].clone();
    assert_eq!(
        (&empty["file_path"], &bus["file_path"]),
        (&json!("empty.mp4"), &json!("bus.mp4"))
    );
    let rec_path = |r: &Value| format!("/api/v1/cameras/{}/recordings/{}", app.camera_a, r["id"]);
    let (status, answer) = app.call("DELETE", &rec_path(&bus), Some(ADMIN), None).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a sighting holds it: {answer}"
    );
    let (status, answer) = app.call("DELETE", &camera_a, Some(ADMIN), None).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "the camera has recordings: {answer}"
    );
    let (status, _) = app
        .call("DELETE", &rec_path(&empty), Some(&app.key_a), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .call(
            "DELETE",
            &format!("{}?remove_file=true", rec_path(&empty)),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        !app._dir.path().join("empty.mp4").exists(),
        "the file was removed on request"
    );
    assert!(app._dir.path().join("bus.mp4").exists());
    let (status, _) = app.call("GET", &rec_path(&empty), Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The new camera (no recordings) and the empty city go; city A (cameras, searches) stays.
    let (status, _) = app.call("DELETE", &cam_path, Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.call("GET", &cam_path, Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, reused) = app
        .call(
            "POST",
            "/api/v1/cameras",
            Some(ADMIN),
            Some(json!({"city_id": app.city_a, "name": "cam-nova", "mediamtx_path": "cam_nova2"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a deleted camera's folder is free again: {reused}"
    );
    let (status, answer) = app
        .call(
            "DELETE",
            &format!("/api/v1/cities/{}", app.city_a),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let (status, _) = app.call("DELETE", &location, Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.call("GET", &location, Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // API keys: expiry in the future only; renamed; last use recorded; expired and revoked
    // keys answer 401 saying which.
    let (status, answer) = app
        .call(
            "POST",
            "/api/v1/api-keys",
            Some(ADMIN),
            Some(json!({"name": "k", "user_id": "u", "city_id": app.city_a, "expires_at": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(
        (status, answer["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("expires_at"))
    );
    let (status, created) = app
        .call(
            "POST",
            "/api/v1/api-keys",
            Some(ADMIN),
            Some(json!({"name": "k", "user_id": "u", "city_id": app.city_a, "expires_at": "2099-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let key_path = format!("/api/v1/api-keys/{}", created["key"]["id"]);
    let (status, _) = app.call("GET", "/api/v1/cities", Some(&secret), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, renamed) = app
        .call(
            "PATCH",
            &key_path,
            Some(ADMIN),
            Some(json!({"name": "turno da noite"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(renamed["name"], "turno da noite");
    assert!(
        renamed["last_used_at"].is_string(),
        "last use recorded: {renamed}"
    );
    assert_eq!(
        DateTime::parse_from_rfc3339(renamed["expires_at"].as_str().unwrap()).unwrap(),
        Utc.with_ymd_and_hms(2099, 1, 1, 0, 0, 0).unwrap()
    );
    sentinela_core::repo::api_keys::update(
        &app.test.db,
        created["key"]["id"].as_i64().unwrap(),
        sentinela_core::repo::api_keys::KeyChanges {
            name: None,
            expires_at: Some(Some(Utc::now() - Span::seconds(1))),
        },
    )
    .await
    .unwrap();
    // Changed in the database, not through this replica: refused once the replica's cached copy
    // of the key expires (`api.auth_cache_secs`, 1 s here).
    let changed = std::time::Instant::now();
    let (status, answer) = loop {
        let (status, answer) = app.call("GET", "/api/v1/cities", Some(&secret), None).await;
        if status != StatusCode::OK || changed.elapsed() > std::time::Duration::from_secs(5) {
            break (status, answer);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(
        changed.elapsed() < std::time::Duration::from_secs(3),
        "refused within the cache's second (and some slack): {:?}",
        changed.elapsed()
    );
    assert!(
        answer["detail"].as_str().unwrap().contains("expired"),
        "{answer}"
    );
    let (status, _) = app
        .call(
            "PATCH",
            &key_path,
            Some(ADMIN),
            Some(json!({"expires_at": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.call("GET", "/api/v1/cities", Some(&secret), None).await;
    assert_eq!(status, StatusCode::OK, "no expiry any more");
    let (status, _) = app.call("DELETE", &key_path, Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, answer) = app.call("GET", "/api/v1/cities", Some(&secret), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        answer["detail"].as_str().unwrap().contains("revoked"),
        "{answer}"
    );
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, page) = app
            .call(
                "GET",
                &format!("/api/v1/api-keys?limit=2{cursor}"),
                Some(ADMIN),
                None,
            )
            .await;
        ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["id"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    let mut sorted = ids.clone();
    sorted.dedup();
    assert_eq!(ids, sorted, "ascending, no repeats");
    assert_eq!(
        ids.len(),
        4,
        "admin, two city keys and the new one: {ids:?}"
    );

    // The queue as the databases see it: a search whose two tasks wait (nothing queued them).
    let waiting = pending_search(&app, 1).await;
    let (_, recs) = app
        .call(
            "GET",
            &format!("/api/v1/recordings?camera_id={}", app.camera_a),
            Some(ADMIN),
            None,
        )
        .await;
    let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 11, 0, 0).unwrap();
    let tasks: Vec<_> = recs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| sentinela_core::repo::tasks::NewTask {
            recording_id: r["id"].as_i64().unwrap(),
            window: sentinela_core::domain::TimeRange::new(t0, t0 + Span::seconds(6)).unwrap(),
        })
        .collect();
    sentinela_core::repo::tasks::create_for_search(&app.test.db, waiting.id, &tasks)
        .await
        .unwrap();
    let (status, stats) = app
        .call("GET", "/api/v1/admin/queue", Some(ADMIN), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["queues"].as_array().map(Vec::len), Some(3), "{stats}");
    assert_eq!(
        stats["cities"],
        json!([{"city_id": app.city_a, "pending": tasks.len(), "processing": 0, "oldest_at": stats["oldest_at"]}]),
        "{stats}"
    );
    assert!(stats["oldest_at"].is_string(), "{stats}");
    let (status, _) = app
        .call("GET", "/api/v1/admin/queue", Some(&app.key_a), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    app.finish().await;
}

/// Starts that arrive together are written and enqueued in batches, yet each answers for itself:
/// of 48 concurrent starts, the one for a city that does not exist fails alone (its batch is
/// written again one search at a time), and every other search is written once with exactly one
/// job on the queue. A second round of 48 valid starts all succeed.
async fn concurrent_starts_succeed_or_fail_each_on_its_own(test: TestDb, redis: Option<String>) {
    use sea_orm::EntityTrait;
    use sentinela_api::starts::{StartError, Starts};
    use sentinela_core::domain::{TimeRange, VehicleType};
    use sentinela_core::jobs::SEARCH_QUEUE;
    use sentinela_core::queue::JobQueue;
    use sentinela_core::repo::searches::NewSearch;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&test, redis.as_deref(), dir.path());
    let queue = JobQueue::connect(&settings, &test.db).await.unwrap();
    let city = sentinela_testkit::city(&test.db, "Cidade").await;
    let starts = Starts::spawn(test.db.clone(), queue.clone());
    let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 11, 0, 0).unwrap();
    let new = |city_id| NewSearch {
        city_id,
        user_id: Some("operator".into()),
        plate: None,
        color: None,
        vehicle_type: Some(VehicleType::Bus),
        window: TimeRange::new(t0, t0 + Span::minutes(5)).unwrap(),
        camera_ids: None,
        estimate: None,
        webhook: None,
    };
    let mut started = std::collections::HashSet::new();
    for round in 0..2 {
        let bad = (round == 0).then_some(17);
        let answers = futures::future::join_all(
            (0..48).map(|i| starts.start(new(if Some(i) == bad { i64::MAX } else { city.id }))),
        )
        .await;
        for (i, answer) in answers.into_iter().enumerate() {
            match answer {
                Err(StartError::Db(_)) if Some(i) == bad => {}
                Ok(search) if Some(i) != bad => {
                    assert_eq!(search.city_id, city.id);
                    assert_eq!(search.status, sentinela_core::SearchStatus::Pending);
                    assert!(started.insert(search.id), "search {} twice", search.id);
                }
                other => panic!("round {round}, start {i}: {other:?}"),
            }
        }
        let rows = entity::vehicle_search::Entity::find()
            .all(&test.db)
            .await
            .unwrap();
        assert_eq!(
            rows.iter()
                .map(|r| r.id)
                .collect::<std::collections::HashSet<_>>(),
            started
        );
        let depth = queue.depth().await.unwrap();
        let searches = depth.iter().find(|(q, _)| *q == SEARCH_QUEUE).unwrap().1;
        assert_eq!(searches.pending, started.len() as u64, "one job per search");
    }
    assert_eq!(started.len(), 47 + 48);
    test.cleanup().await;
}

#[tokio::test]
async fn concurrent_starts_succeed_or_fail_each_on_its_own_on_postgres_and_redis() {
    let redis = sentinela_testkit::redis_db(14);
    concurrent_starts_succeed_or_fail_each_on_its_own(TestDb::postgres().await, Some(redis)).await;
}

#[tokio::test]
async fn concurrent_starts_succeed_or_fail_each_on_its_own_embedded() {
    concurrent_starts_succeed_or_fail_each_on_its_own(TestDb::sqlite().await, None).await;
}
