//! Observability end to end: the api, a worker and the scheduler run as separate processes on
//! PostgreSQL + Redis; a search runs; each `/metrics` (on its internal `METRICS_BIND` listener)
//! parses as OpenMetrics, passes `promtool check metrics` in the Prometheus text format, carries
//! the families the dashboards and alerts use, and its counters moved by what the search did.
//! The API's public listener does not serve `/metrics`, and requests to random paths add no
//! series.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use sentinela_core::repo::{cameras, cities, searches};
use sentinela_testkit::{KillOnDrop, TestDb, free_port, workspace_binary};

const ADMIN: &str = "snt_metrics_admin_key";

fn spawn(bin: PathBuf, env: &[(&str, String)], log: &Path) -> KillOnDrop {
    let mut cmd = Command::new(bin);
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .env("LOG_FORMAT", "json");
    for (k, v) in env {
        cmd.env(k, v);
    }
    KillOnDrop(cmd.spawn().unwrap())
}

/// One sample: `name{labels} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Parses the OpenMetrics/Prometheus text exposition strictly enough to fail on malformed lines.
fn parse(text: &str) -> (Vec<Sample>, HashMap<String, String>) {
    let mut samples = Vec::new();
    let mut types = HashMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"# EOF"),
        "exposition must end with # EOF"
    );
    assert_eq!(
        lines.iter().filter(|l| **l == "# EOF").count(),
        1,
        "exactly one # EOF"
    );
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in lines {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(name_ok(name), "{line}");
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
                let mut labels = HashMap::new();
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                    assert!(name_ok(k), "{line}");
                    labels.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
                }
                (name, labels)
            }
            None => (series, HashMap::new()),
        };
        assert!(name_ok(name), "{line}");
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    (samples, types)
}

/// Sum of the samples of `name` whose labels include `want`.
fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// `promtool check metrics` on the Prometheus text format of `url` (what curl gets); fails the
/// test with promtool's complaints.
async fn promtool_check(client: &reqwest::Client, url: &str) {
    let resp = client.get(url).send().await.unwrap();
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let text = resp.text().await.unwrap();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package) is installed by scripts/setup.sh");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics on {url}: {said}"
    );
}

/// Scrapes `url` as Prometheus does (asking for OpenMetrics).
async fn scrape(client: &reqwest::Client, url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let request = client.get(url).header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        );
        match request.send().await {
            Ok(resp) if resp.status().is_success() => {
                let kind = resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
                return resp.text().await.unwrap();
            }
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("{url} did not answer: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_worker_and_scheduler_metrics_move_with_a_search() {
    let test = TestDb::postgres().await;
    let redis = sentinela_testkit::redis_db(9);
    let dir = tempfile::tempdir().unwrap();
    let city = cities::create(
        &test.db,
        cities::NewCity {
            name: "Metrópole".into(),
            timezone: "America/Sao_Paulo".into(),
            recording_retention_days: 30,
            max_storage_bytes: None,
            database_url: None,
        },
    )
    .await
    .unwrap();
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
    sentinela_testkit::render_bus_pair(dir.path(), 6.0, 2.0);
    // The third file does not exist: its task fails for good (a failed job, not a retried one).
    sentinela_testkit::register_clips(
        &test.db,
        city.id,
        camera.id,
        &["empty.mp4", "bus.mp4", "missing.mp4"],
    )
    .await;

    let (api_port, api_metrics_port, worker_port, scheduler_port) =
        (free_port(), free_port(), free_port(), free_port());
    let common = |extra: &[(&'static str, String)]| {
        let mut env = vec![
            ("DATABASE_URL", test.url.expose_secret().to_owned()),
            ("REDIS_URL", redis.clone()),
            ("RECORDINGS_DIR", dir.path().to_string_lossy().into_owned()),
            (
                "SNAPSHOT_DIR",
                dir.path().join("snapshots").to_string_lossy().into_owned(),
            ),
            (
                "SENTINELA__DETECTOR__MODEL_PATH",
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../models/nanodet_m_416.onnx")
                    .to_string_lossy()
                    .into_owned(),
            ),
        ];
        env.extend(extra.iter().cloned());
        env
    };
    let _api = spawn(
        PathBuf::from(env!("CARGO_BIN_EXE_sentinela-api")),
        &common(&[
            ("API_BIND", format!("127.0.0.1:{api_port}")),
            ("METRICS_BIND", format!("127.0.0.1:{api_metrics_port}")),
            ("SENTINELA_ADMIN_KEY", ADMIN.to_owned()),
        ]),
        &dir.path().join("api.log"),
    );
    let _worker = spawn(
        workspace_binary("sentinela-worker"),
        &common(&[("METRICS_BIND", format!("127.0.0.1:{worker_port}"))]),
        &dir.path().join("worker.log"),
    );
    let _scheduler = spawn(
        workspace_binary("sentinela-scheduler"),
        &common(&[
            ("METRICS_BIND", format!("127.0.0.1:{scheduler_port}")),
            (
                "SENTINELA__SCHEDULER__RECOVER_CRON",
                "* * * * * *".to_owned(),
            ),
            ("SENTINELA__SCHEDULER__RETENTION_CRON", "off".to_owned()),
            ("SENTINELA__SCHEDULER__CLEANUP_CRON", "off".to_owned()),
            (
                "SENTINELA__SCHEDULER__INDEX_SYNC_CRON",
                "* * * * * *".to_owned(),
            ),
            ("SENTINELA__SCHEDULER__QUEUE_HYGIENE_CRON", "off".to_owned()),
            ("SENTINELA__SCHEDULER__WEBHOOKS_CRON", "off".to_owned()),
        ]),
        &dir.path().join("scheduler.log"),
    );
    let client = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{api_port}");
    // Before: the worker's counters are zero (the families exist once touched).
    let before = scrape(&client, &format!("http://127.0.0.1:{worker_port}/metrics")).await;
    let (before, _) = parse(&before);
    assert_eq!(sum(&before, "vms_frames_sampled_total", &[]), 0.0);

    let created = loop {
        let resp = client
            .post(format!("{api}/api/v1/searches"))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({
                "city_id": city.id,
                "vehicle_type": "ônibus",
                "color": "vermelho",
                "start_date": "2026-11-29T08:00:00-03:00",
                "end_date": "2026-11-29T08:10:00-03:00"
            }))
            .send()
            .await;
        match resp {
            Ok(resp) => break resp,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    assert_eq!(created.status(), 202);
    let id = created.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let search = loop {
        let s = searches::get(&test.db, id).await.unwrap().unwrap();
        if s.status.is_final() || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        search.status.as_str(),
        "completed_with_errors",
        "{search:?}"
    );
    assert_eq!(
        (search.tasks_done, search.tasks_failed),
        (2, 1),
        "{search:?}"
    );
    assert!(search.frames_analyzed >= 10, "{search:?}");
    // Let the scheduler tick at least twice.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Worker: frames, detector calls and jobs, by the amounts the search recorded.
    let text = scrape(&client, &format!("http://127.0.0.1:{worker_port}/metrics")).await;
    let (w, types) = parse(&text);
    for family in [
        "vms_detections",
        "vms_detection_latency_seconds",
        "vms_detector_calls",
        "vms_frames_sampled",
        "vms_frames_gate_skipped",
        "vms_frames_cache_hits",
        "vms_tasks_replayed",
        "vms_jobs_started",
        "vms_jobs_finished",
        "vms_job_duration_seconds",
        "vms_searches_finished",
        "vms_search_duration_seconds",
        "vms_queue_jobs",
        "vms_searches",
    ] {
        assert!(types.contains_key(family), "worker lacks {family}");
    }
    assert_eq!(types["vms_detections"], "counter");
    assert_eq!(types["vms_detection_latency_seconds"], "histogram");
    let frames = search.frames_analyzed as f64;
    let calls = search.detector_calls as f64;
    assert_eq!(sum(&w, "vms_frames_sampled_total", &[]), frames);
    assert_eq!(
        sum(
            &w,
            "vms_detector_calls_total",
            &[
                ("provider", "local"),
                ("operation", "nanodet"),
                ("outcome", "ok")
            ]
        ),
        calls
    );
    assert_eq!(
        sum(
            &w,
            "vms_detection_latency_seconds_count",
            &[("provider", "local")]
        ),
        calls
    );
    assert_eq!(
        calls
            + sum(&w, "vms_frames_gate_skipped_total", &[])
            + sum(&w, "vms_frames_cache_hits_total", &[]),
        frames
    );
    assert!(sum(&w, "vms_detections_total", &[("label", "bus")]) >= 1.0);
    assert_eq!(
        sum(
            &w,
            "vms_jobs_finished_total",
            &[("job_type", "analyze"), ("outcome", "succeeded")]
        ),
        2.0
    );
    assert_eq!(
        sum(
            &w,
            "vms_jobs_finished_total",
            &[("job_type", "search"), ("outcome", "succeeded")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &w,
            "vms_jobs_finished_total",
            &[("job_type", "analyze"), ("outcome", "failed")]
        ),
        1.0,
        "the missing file's job"
    );
    assert_eq!(
        sum(
            &w,
            "vms_jobs_finished_total",
            &[("job_type", "analyze"), ("outcome", "retried")]
        ),
        0.0
    );
    assert_eq!(
        sum(&w, "vms_jobs_started_total", &[("job_type", "analyze")]),
        3.0
    );
    assert_eq!(
        sum(
            &w,
            "vms_job_duration_seconds_count",
            &[("job_type", "analyze")]
        ),
        3.0
    );
    assert_eq!(
        sum(
            &w,
            "vms_searches_finished_total",
            &[("status", "completed_with_errors")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &w,
            "vms_queue_jobs",
            &[("queue", "sentinela:analyze"), ("state", "done")]
        ),
        3.0
    );

    // API: the request counted by route and status; shared state read when scraped.
    let api_metrics = format!("http://127.0.0.1:{api_metrics_port}/metrics");
    let text = scrape(&client, &api_metrics).await;
    let (a, types) = parse(&text);
    for family in [
        "vms_http_requests",
        "vms_http_request_duration_seconds",
        "vms_queue_jobs",
        "vms_searches",
        "vms_search_oldest_processing_age_seconds",
    ] {
        assert!(types.contains_key(family), "api lacks {family}");
    }
    assert_eq!(
        sum(
            &a,
            "vms_http_requests_total",
            &[
                ("method", "POST"),
                ("route", "/api/v1/searches"),
                ("status", "202")
            ]
        ),
        1.0
    );
    assert_eq!(
        sum(&a, "vms_searches", &[("status", "completed_with_errors")]),
        1.0
    );
    assert_eq!(sum(&a, "vms_searches", &[("status", "processing")]), 0.0);
    assert_eq!(
        sum(&a, "vms_search_oldest_processing_age_seconds", &[]),
        0.0
    );

    // Scheduler: its runs and what they did.
    let text = scrape(
        &client,
        &format!("http://127.0.0.1:{scheduler_port}/metrics"),
    )
    .await;
    let (s, types) = parse(&text);
    for family in [
        "vms_scheduler_runs",
        "vms_scheduler_items",
        "vms_scheduler_run_duration_seconds",
        "vms_queue_jobs",
    ] {
        assert!(types.contains_key(family), "scheduler lacks {family}");
    }
    let recover_runs = sum(
        &s,
        "vms_scheduler_runs_total",
        &[("job_type", "recover"), ("outcome", "succeeded")],
    );
    assert!(recover_runs >= 1.0, "{text}");
    assert_eq!(
        sum(
            &s,
            "vms_scheduler_run_duration_seconds_count",
            &[("job_type", "recover")]
        ),
        recover_runs
    );
    assert!(
        sum(
            &s,
            "vms_scheduler_items_total",
            &[("job_type", "index-sync"), ("item", "cameras_scanned")]
        ) == 0.0
    );
    assert!(
        sum(
            &s,
            "vms_scheduler_runs_total",
            &[("job_type", "index-sync")]
        ) >= 1.0
    );

    // promtool accepts what each binary serves.
    for url in [
        api_metrics.clone(),
        format!("http://127.0.0.1:{worker_port}/metrics"),
        format!("http://127.0.0.1:{scheduler_port}/metrics"),
    ] {
        promtool_check(&client, &url).await;
    }

    // The public listener has no /metrics, and 1,000 requests to distinct random paths (with and
    // without a key, odd methods included) add at most a handful of series.
    let public = client.get(format!("{api}/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    let before = series(&scrape(&client, &api_metrics).await);
    for i in 0..1000u32 {
        let path = format!("/{:x}/{}", rand_like(i), i * 7919);
        let method = if i % 10 == 0 { "PROPFIND" } else { "GET" };
        let mut req = client.request(method.parse().unwrap(), format!("{api}{path}"));
        if i % 2 == 0 {
            req = req.bearer_auth(ADMIN);
        }
        let status = req.send().await.unwrap().status();
        assert!(status.is_client_error(), "{path}: {status}");
    }
    let after = series(&scrape(&client, &api_metrics).await);
    assert!(
        after <= before + 40,
        "1,000 random paths grew the API's series from {before} to {after}"
    );
    test.cleanup().await;
}

/// A cheap scramble so each request's path differs (no RNG dependency needed).
fn rand_like(i: u32) -> u64 {
    u64::from(i)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17)
}
