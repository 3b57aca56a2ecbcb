//! Completion webhooks, end to end in embedded mode (API, workers and scheduler in one process):
//! a receiver on 127.0.0.1 gets exactly one signed POST per finished search (the signature
//! checked with Python's own `hmac`); a receiver that is down is retried with backoff, then given
//! up, and both are counted in `vms_webhook_deliveries_total`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Request, Route, Server, handler, post};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use sentinela_api::{Application, Mode};
use sentinela_core::repo::{cameras, cities};
use sentinela_core::settings::Settings;
use sentinela_testkit::{TestDb, free_port};
use serde_json::{Value, json};

const ADMIN: &str = "snt_test_webhooks_admin";
const SECRET: &str = "a-secret-of-the-integrator";

type Received = Arc<Mutex<Vec<(Vec<(String, String)>, Vec<u8>)>>>;

#[handler]
async fn receive(request: &Request, body: Vec<u8>, seen: Data<&Received>) -> &'static str {
    let headers = request
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    seen.lock().unwrap().push((headers, body));
    "ok"
}

/// Python's `hmac` recomputes the signature: an implementation independent of ours.
fn python_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import hmac,hashlib,sys; k,t=sys.argv[1].encode(),sys.argv[2]; b=sys.stdin.buffer.read(); \
             print('sha256='+hmac.new(k, t.encode()+b'.'+b, hashlib.sha256).hexdigest())",
            secret,
            timestamp,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_owned()
}

async fn metric(http: &reqwest::Client, metrics: &str, outcome: &str) -> u64 {
    let text = http
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("vms_webhook_deliveries_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_search_is_announced_once_signed_and_a_dead_receiver_is_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let test = TestDb::sqlite().await;
    sentinela_testkit::render_bus_pair(dir.path(), 6.0, 2.0);
    let city = sentinela_testkit::city(&test.db, "Cidade").await;
    let camera = cameras::create(
        &test.db,
        &test.db,
        cameras::NewCamera {
            city_id: city.id,
            name: "cam".into(),
            location: None,
            latitude: None,
            longitude: None,
            mediamtx_path: None,
        },
    )
    .await
    .unwrap();
    sentinela_testkit::register_clips(&test.db, city.id, camera.id, &["bus.mp4"]).await;
    let _ = cities::get(&test.db, city.id).await.unwrap().unwrap();

    // The receiver.
    let seen: Received = Arc::default();
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let receiver = acceptor.local_addr()[0]
        .to_string()
        .trim_start_matches("socket://")
        .to_owned();
    let app = Route::new().at("/hook", post(receive)).data(seen.clone());
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));

    let metrics = format!("127.0.0.1:{}", free_port());
    let mut env = sentinela_testkit::process_env(test.url.expose_secret(), dir.path());
    env.extend(
        [
            ("METRICS_BIND", metrics.as_str()),
            ("SENTINELA_ADMIN_KEY", ADMIN),
            ("SENTINELA__SCHEDULER__RECOVER_CRON", "off"),
            ("SENTINELA__SCHEDULER__INDEX_SYNC_CRON", "off"),
            ("SENTINELA__SCHEDULER__WEBHOOKS_CRON", "* * * * * *"),
            ("SENTINELA__SCHEDULER__WEBHOOK_MAX_ATTEMPTS", "3"),
            ("SENTINELA__SCHEDULER__WEBHOOK_RETRY_BASE_SECS", "1"),
            ("SENTINELA__SCHEDULER__WEBHOOK_ALLOW_INTERNAL", "true"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    // Later entries win (METRICS_BIND).
    let env: std::collections::HashMap<String, String> = env.into_iter().collect();
    let application = Application::build(
        Settings::from_sources(None, &env).unwrap(),
        Mode {
            standalone: true,
            demo: false,
        },
    )
    .await
    .unwrap();
    let base = format!("http://{}", application.address());
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(application.run_until(async move {
        let _ = stop_rx.wait_for(|v| *v).await;
    }));
    let http = reqwest::Client::new();
    let post_search = |webhook: Value| {
        let mut body = json!({
            "city_id": city.id,
            "vehicle_type": "ônibus",
            "start_date": "2026-11-29T11:00:00Z",
            "end_date": "2026-11-29T11:10:00Z"
        });
        body.as_object_mut()
            .unwrap()
            .extend(webhook.as_object().unwrap().clone());
        let request = http
            .post(format!("{base}/api/v1/searches"))
            .bearer_auth(ADMIN)
            .json(&body);
        async move {
            let resp = request.send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let get_search = |id: i64| {
        let request = http
            .get(format!("{base}/api/v1/searches/{id}"))
            .bearer_auth(ADMIN);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };

    // Bad webhooks are refused naming the field.
    for (webhook, field) in [
        (
            json!({"webhook_url": format!("http://{receiver}/hook")}),
            "webhook_secret",
        ),
        (
            json!({"webhook_url": "ftp://x/", "webhook_secret": SECRET}),
            "webhook_url",
        ),
        (json!({"webhook_secret": SECRET}), "webhook_url"),
        (
            json!({"webhook_url": format!("http://{receiver}/hook"), "webhook_secret": "short"}),
            "webhook_secret",
        ),
    ] {
        let (status, body) = post_search(webhook).await;
        // A body field over its declared bounds is a 400 from the schema, the rest 422.
        assert!(status.is_client_error(), "{body}");
        assert_eq!(body["field"], field, "{body}");
    }

    // A receiver that answers: one signed delivery.
    let (status, created) = post_search(json!({
        "webhook_url": format!("http://{receiver}/hook"),
        "webhook_secret": SECRET
    }))
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    assert!(
        created.to_string().find(SECRET).is_none(),
        "the secret is never returned"
    );
    assert_eq!(created["webhook"]["state"], "pending");
    let id = created["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no webhook: {}",
            get_search(id).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Several more ticks: still exactly one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deliveries = seen.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 1);
    let (headers, body) = &deliveries[0];
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let payload: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(payload["event"], "search.finished");
    assert_eq!(payload["search_id"], id);
    assert_eq!(payload["status"], "completed", "{payload}");
    assert_eq!(header("x-sentinela-delivery"), id.to_string());
    let expected = python_signature(SECRET, &header("x-sentinela-timestamp"), body);
    assert_eq!(header("x-sentinela-signature"), expected);
    assert_ne!(
        python_signature("another secret", &header("x-sentinela-timestamp"), body),
        expected
    );
    let search = get_search(id).await;
    assert_eq!(search["webhook"]["state"], "delivered", "{search}");
    assert_eq!(search["webhook"]["attempts"], 1, "{search}");

    // A receiver that is down: retried, then given up and counted.
    let (status, created) = post_search(json!({
        "webhook_url": format!("http://127.0.0.1:{}/hook", free_port()),
        "webhook_secret": SECRET
    }))
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let down = created["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let search = loop {
        let search = get_search(down).await;
        if search["webhook"]["state"] == "given_up" {
            break search;
        }
        assert!(Instant::now() < deadline, "not given up: {search}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(search["webhook"]["attempts"], 3, "{search}");
    assert!(search["webhook"]["error"].is_string(), "{search}");
    assert_eq!(metric(&http, &metrics, "delivered").await, 1);
    assert_eq!(metric(&http, &metrics, "retried").await, 2);
    assert_eq!(metric(&http, &metrics, "given_up").await, 1);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "nothing else reached the receiver"
    );

    let _ = stop.send(true);
    running.await.unwrap().unwrap();
}
