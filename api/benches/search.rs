//! One search end to end in embedded mode, against the seed's figure (TARGETS.md): twelve one-minute
//! 720p30 H.264 recordings (three cameras, four minutes; a red bus crosses four of them), the
//! local detector (NanoDet-m on OpenCV dnn), SQLite and the embedded queue, all in one
//! `sentinela-api --standalone` process.
//!
//! Prints the wall time from `POST /api/v1/searches` to `completed`, video-seconds per
//! wall-second, detector calls, cameras found, the process's peak RSS; then the same search again
//! (every frame from the cache: zero detector calls). The seed's design re-built in Python took
//! 77 s, 720 detector calls and 643 MB RSS on this machine kind; the target is ≥ 3x faster,
//! ≤ 72 detector calls, all four sightings, RSS < 300 MB.
//!
//! `cargo bench -p sentinela-api --bench search` (recordings are generated once under
//! `$CARGO_TARGET_DIR/bench-data/search`, ~2 minutes); `BENCH_WORKER_CONCURRENCY` (default 4,
//! the product default) sets the in-process workers' concurrency.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use sentinela_core::db;
use sentinela_core::repo::{cameras, cities, recordings};
use sentinela_core::video::synth::{self, Scene, Sprite};

const SEED_SECONDS: f64 = 77.0;
const SEED_CALLS: i64 = 720;
const SEED_RSS_MB: f64 = 643.0;
const KEY: &str = "snt_bench_search_admin";

fn data_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(
        |_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("bench-data/search")
}

/// `(camera index, minute, with bus)` of the twelve recordings: the bus crosses camera
/// `minute % 3` during minute `minute`, four times in all.
fn plan() -> Vec<(usize, i64, bool)> {
    let mut out = Vec::new();
    for minute in 0..4 {
        for camera in 0..3 {
            out.push((camera, minute, camera as i64 == minute % 3));
        }
    }
    out
}

fn file_name(camera: usize, minute: i64) -> String {
    format!("cam-{camera}/minute-{minute}.mp4")
}

fn render_missing(dir: &Path) {
    let bus = synth::load_photo(synth::BUS_PHOTO, 420).expect("the bus photo (opencv-doc)");
    for (camera, minute, with_bus) in plan() {
        let path = dir.join(file_name(camera, minute));
        if path.exists() {
            continue;
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut scene = Scene::new(1280, 720, 30, 60.0);
        scene.keyframe_interval = 60;
        if with_bus {
            scene.sprites.push(Sprite {
                image: bus.clone(),
                enter_s: 20.0,
                exit_s: 40.0,
                y: 150,
                from_x: -300,
                to_x: 1000,
            });
        }
        let started = Instant::now();
        let partial = path.with_extension("partial.mp4");
        synth::render(&scene, &partial).unwrap();
        std::fs::rename(&partial, &path).unwrap();
        println!(
            "generated {} in {:.1} s",
            path.display(),
            started.elapsed().as_secs_f64()
        );
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    client
        .get(url)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn run_search(
    client: &reqwest::Client,
    base: &str,
    city_id: i64,
) -> (f64, serde_json::Value) {
    let started = Instant::now();
    let created: serde_json::Value = client
        .post(format!("{base}/api/v1/searches"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({
            "city_id": city_id,
            "vehicle_type": "ônibus",
            "color": "vermelho",
            "start_date": "2026-11-29T08:00:00-03:00",
            "end_date": "2026-11-29T08:04:00-03:00"
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_i64().expect("search id");
    loop {
        let search = get_json(client, &format!("{base}/api/v1/searches/{id}")).await;
        let status = search["status"].as_str().unwrap_or_default().to_owned();
        if status != "pending" && status != "processing" {
            let seconds = started.elapsed().as_secs_f64();
            let trajectory =
                get_json(client, &format!("{base}/api/v1/searches/{id}/trajectory")).await;
            return (
                seconds,
                serde_json::json!({"search": search, "trajectory": trajectory}),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() {
    let data = data_dir();
    render_missing(&data);

    let work = tempfile::tempdir().unwrap();
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        work.path().join("bench.db").display()
    );
    let conn = db::connect_and_migrate(&secrecy::SecretString::from(db_url.clone()))
        .await
        .unwrap();
    let city = cities::create(
        &conn,
        cities::NewCity {
            name: "Bench City".into(),
            timezone: "America/Sao_Paulo".into(),
            recording_retention_days: 0,
            max_storage_bytes: None,
            database_url: None,
        },
    )
    .await
    .unwrap();
    let mut camera_ids = Vec::new();
    for camera in 0..3 {
        let row = cameras::create(
            &conn,
            &conn,
            cameras::NewCamera {
                city_id: city.id,
                name: format!("cam-{camera}"),
                location: None,
                latitude: None,
                longitude: None,
                mediamtx_path: None,
            },
        )
        .await
        .unwrap();
        camera_ids.push(row.id);
    }
    let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 11, 0, 0).unwrap();
    for (camera, minute, _) in plan() {
        let start = t0 + chrono::Duration::minutes(minute);
        recordings::register(
            &conn,
            recordings::NewRecording {
                camera_id: camera_ids[camera],
                city_id: city.id,
                file_path: file_name(camera, minute),
                started_at: start,
                ended_at: start + chrono::Duration::minutes(1),
                size_bytes: std::fs::metadata(data.join(file_name(camera, minute)))
                    .map(|m| m.len() as i64)
                    .unwrap_or(0),
            },
        )
        .await
        .unwrap();
    }
    conn.close().await.unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_sentinela-api"))
            .arg("--standalone")
            .env("DATABASE_URL", &db_url)
            .env("API_BIND", format!("127.0.0.1:{port}"))
            .env("SENTINELA_ADMIN_KEY", KEY)
            .env("RECORDINGS_DIR", &data)
            .env("SNAPSHOT_DIR", work.path().join("snapshots"))
            .env(
                "SENTINELA__DETECTOR__MODEL_PATH",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/nanodet_m_416.onnx"),
            )
            .env("SENTINELA__SCHEDULER__INDEX_SYNC_CRON", "off")
            .env(
                "WORKER_CONCURRENCY",
                std::env::var("BENCH_WORKER_CONCURRENCY").unwrap_or_else(|_| "4".into()),
            )
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sentinela-api --standalone"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .get(format!("{base}/health/live"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let video_seconds = 12.0 * 60.0;
    let (first, result) = run_search(&client, &base, city.id).await;
    let calls = result["search"]["progress"]["detector_calls"]
        .as_i64()
        .unwrap_or(-1);
    let frames = result["search"]["progress"]["frames_analyzed"]
        .as_i64()
        .unwrap_or(-1);
    let status = result["search"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let points = result["trajectory"]["points"]
        .as_array()
        .map_or(0, Vec::len);
    let cameras_visited = result["trajectory"]["cameras_visited"]
        .as_array()
        .map_or(0, Vec::len);
    let minutes: std::collections::BTreeSet<String> = result["trajectory"]["points"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["timestamp"].as_str().map(|t| t[..16].to_owned()))
        .collect();
    let (second, again) = run_search(&client, &base, city.id).await;
    let calls_again = again["search"]["progress"]["detector_calls"]
        .as_i64()
        .unwrap_or(-1);
    let rss = sentinela_testkit::peak_rss_mb(&server.0.id().to_string());

    println!(
        "search over 12 one-minute 720p30 recordings (3 cameras), local detector, embedded mode, WORKER_CONCURRENCY={}, MALLOC_ARENA_MAX={}",
        std::env::var("BENCH_WORKER_CONCURRENCY").unwrap_or_else(|_| "4".into()),
        std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "unset".into())
    );
    println!(
        "  first search:  {first:.1} s ({:.1} video-s per wall-s), status {status}, {frames} frames, {calls} detector calls",
        video_seconds / first
    );
    println!(
        "  sightings: {points} points on {cameras_visited} cameras in {} distinct minutes (the bus crosses 4 recordings)",
        minutes.len()
    );
    println!("  repeated search: {second:.1} s, {calls_again} detector calls");
    println!("  peak RSS of the process: {rss:.0} MB");
    println!(
        "baseline (seed, Python/Celery, TARGETS.md): {SEED_SECONDS:.0} s, {SEED_CALLS} detector calls, {SEED_RSS_MB:.0} MB"
    );
    println!(
        "ratio: {:.1}x faster (target ≥ 3x); calls {calls} (target ≤ 72); RSS {rss:.0} MB (target < 300)",
        SEED_SECONDS / first
    );
}
