//! One search end to end in embedded mode against the seed's pipeline in the same run: twelve
//! one-minute 720p30 H.264 recordings on three cameras (four minutes; a red bus crosses four of
//! them), the local detector (NanoDet-m on OpenCV dnn), SQLite and the embedded queue, all in one
//! `sentinela-api --standalone` process.
//!
//! Two data sets: the project's own (generated once under `$CARGO_TARGET_DIR/bench-data/search`)
//! and, when `BENCH_SEED_MANIFEST` names it, the seed pipeline's (`seed_pipeline/make_data.sh` of
//! the anchors). For each: the seed's pipeline (Python, Celery prefork c=2, cv2 reading every
//! frame, the same NanoDet model) runs first on the same files when `BENCH_SEED_ANCHORS` names a
//! copy of the anchors; then ours: wall time from `POST /api/v1/searches` to `completed`,
//! detector calls, sightings, the same search repeated (answered from the cache), peak RSS.
//!
//! `bash bench/search-vs-seed.sh` prepares both and runs this; alone:
//! `cargo bench -p sentinela-api --bench search`. `BENCH_WORKER_CONCURRENCY` sets the in-process
//! workers' concurrency (default: the product's default for this machine).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use sentinela_core::db;
use sentinela_core::repo::{cameras, cities, recordings};
use sentinela_core::video::synth::{self, Scene, Sprite};

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
    data: &Dataset,
) -> (f64, serde_json::Value) {
    let started = Instant::now();
    let created: serde_json::Value = client
        .post(format!("{base}/api/v1/searches"))
        .bearer_auth(KEY)
        .json(&serde_json::json!({
            "city_id": city_id,
            "vehicle_type": "ônibus",
            "color": "vermelho",
            "start_date": data.from.to_rfc3339(),
            "end_date": data.to.to_rfc3339()
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

/// One recording of a data set: camera name, path relative to the data set's folder, start.
struct Rec {
    camera: String,
    file: String,
    start: chrono::DateTime<Utc>,
}

/// A data set: a folder of recordings and the search window over them.
struct Dataset {
    name: &'static str,
    dir: PathBuf,
    recordings: Vec<Rec>,
    from: chrono::DateTime<Utc>,
    to: chrono::DateTime<Utc>,
}

fn own_dataset() -> Dataset {
    let dir = data_dir();
    render_missing(&dir);
    let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 11, 0, 0).unwrap();
    Dataset {
        name: "project data (core::video::synth scenes, GOP 2 s)",
        recordings: plan()
            .into_iter()
            .map(|(camera, minute, _)| Rec {
                camera: format!("cam-{camera}"),
                file: file_name(camera, minute),
                start: t0 + chrono::Duration::minutes(minute),
            })
            .collect(),
        dir,
        from: t0,
        to: t0 + chrono::Duration::minutes(4),
    }
}

/// The seed pipeline's data set from its manifest (`[{camera_id, file_path, started_at_epoch}]`).
fn seed_dataset(manifest: &Path) -> Dataset {
    let entries: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(manifest).expect("BENCH_SEED_MANIFEST readable"))
            .expect("a JSON array");
    let dir = manifest.parent().unwrap().to_owned();
    let recordings: Vec<Rec> = entries
        .iter()
        .map(|e| {
            let path = PathBuf::from(e["file_path"].as_str().unwrap());
            Rec {
                camera: e["camera_id"].as_str().unwrap().to_owned(),
                file: path
                    .strip_prefix(&dir)
                    .expect("recordings under the manifest's folder")
                    .to_string_lossy()
                    .into_owned(),
                start: chrono::DateTime::from_timestamp(e["started_at_epoch"].as_i64().unwrap(), 0)
                    .unwrap(),
            }
        })
        .collect();
    let from = recordings.iter().map(|r| r.start).min().unwrap();
    let to = recordings.iter().map(|r| r.start).max().unwrap() + chrono::Duration::minutes(1);
    Dataset {
        name: "seed pipeline data (seed_pipeline/make_data.sh, static street, GOP 2 s)",
        dir,
        recordings,
        from,
        to,
    }
}

/// The seed's pipeline on the same files, in this run: its one-line JSON summary.
fn run_seed(anchors: &Path, data: &Dataset, work: &Path) -> Option<serde_json::Value> {
    let manifest = work.join(format!("manifest-{}.json", data.name.len()));
    let entries: Vec<serde_json::Value> = data
        .recordings
        .iter()
        .map(|r| {
            serde_json::json!({
                "camera_id": r.camera,
                "file_path": data.dir.join(&r.file),
                "started_at_epoch": r.start.timestamp(),
            })
        })
        .collect();
    std::fs::write(&manifest, serde_json::to_vec(&entries).unwrap()).unwrap();
    let out = Command::new("bash")
        .arg(anchors.join("seed_pipeline/seed_pipeline.sh"))
        .arg(&manifest)
        .args(["ônibus", "vermelho"])
        .arg(data.from.timestamp().to_string())
        .arg(data.to.timestamp().to_string())
        .env("RAW_DIR", work.join("seed-raw"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run the seed pipeline");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    if summary.is_none() {
        println!("  seed pipeline failed ({}): {text}", out.status);
    }
    summary
}

/// How our processes run: one `sentinela-api --standalone` (SQLite, embedded queue), or the api
/// and `n` `sentinela-worker` processes on PostgreSQL and Redis.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Embedded,
    Distributed(usize),
}

/// What one run of ours measured.
struct Ours {
    first: f64,
    result: serde_json::Value,
    second: f64,
    again: serde_json::Value,
    /// Peak RSS of the process that analyses (the largest worker when distributed), MB.
    rss: f64,
    /// CPU seconds the analysing processes used over both searches.
    cpu: f64,
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) start at its closing parenthesis;
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

/// Our search on a data set, twice.
async fn run_ours(data: &Dataset, work: &Path, mode: Mode) -> Ours {
    let (conn, db_url, pg, redis) = match mode {
        Mode::Embedded => {
            let db_url = format!("sqlite://{}?mode=rwc", work.join("bench.db").display());
            let conn = db::connect_and_migrate(&secrecy::SecretString::from(db_url.clone()))
                .await
                .unwrap();
            (conn, db_url, None, None)
        }
        Mode::Distributed(_) => {
            use secrecy::ExposeSecret;
            let pg = sentinela_testkit::TestDb::postgres().await;
            let url = pg.url.expose_secret().to_owned();
            (
                pg.db.clone(),
                url,
                Some(pg),
                Some(sentinela_testkit::redis_db(11)),
            )
        }
    };
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
    let mut camera_ids = std::collections::BTreeMap::new();
    for rec in &data.recordings {
        if camera_ids.contains_key(&rec.camera) {
            continue;
        }
        let row = cameras::create(
            &conn,
            &conn,
            cameras::NewCamera {
                city_id: city.id,
                name: rec.camera.clone(),
                location: None,
                latitude: None,
                longitude: None,
                mediamtx_path: None,
            },
        )
        .await
        .unwrap();
        camera_ids.insert(rec.camera.clone(), row.id);
    }
    for rec in &data.recordings {
        recordings::register(
            &conn,
            recordings::NewRecording {
                camera_id: camera_ids[&rec.camera],
                city_id: city.id,
                file_path: rec.file.clone(),
                started_at: rec.start,
                ended_at: rec.start + chrono::Duration::minutes(1),
                size_bytes: std::fs::metadata(data.dir.join(&rec.file))
                    .map(|m| m.len() as i64)
                    .unwrap_or(0),
            },
        )
        .await
        .unwrap();
    }
    if pg.is_none() {
        conn.close().await.unwrap();
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api = Path::new(env!("CARGO_BIN_EXE_sentinela-api"));
    let mut command = Command::new(api);
    match &redis {
        None => command.arg("--standalone"),
        Some(redis) => command.env("REDIS_URL", redis),
    };
    command
        .env("DATABASE_URL", &db_url)
        .env("API_BIND", format!("127.0.0.1:{port}"))
        .env("SENTINELA_ADMIN_KEY", KEY)
        .env("RECORDINGS_DIR", &data.dir)
        .env("SNAPSHOT_DIR", work.join("snapshots"))
        .env("SENTINELA__SCHEDULER__INDEX_SYNC_CRON", "off")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Ok(concurrency) = std::env::var("BENCH_WORKER_CONCURRENCY") {
        command.env("WORKER_CONCURRENCY", concurrency);
    }
    let server = Server(command.spawn().expect("start sentinela-api"));
    let mut workers = Vec::new();
    if let (Mode::Distributed(n), Some(redis)) = (mode, &redis) {
        let binary = api.with_file_name("sentinela-worker");
        assert!(
            binary.exists(),
            "{} missing: cargo build --release -p sentinela-worker",
            binary.display()
        );
        for _ in 0..n {
            let mut worker = Command::new(&binary);
            worker
                .env("DATABASE_URL", &db_url)
                .env("REDIS_URL", redis)
                .env("RECORDINGS_DIR", &data.dir)
                .env("SNAPSHOT_DIR", work.join("snapshots"))
                .env("METRICS_BIND", "127.0.0.1:0")
                .env("LOG_FORMAT", "json")
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Ok(concurrency) = std::env::var("BENCH_WORKER_CONCURRENCY") {
                worker.env("WORKER_CONCURRENCY", concurrency);
            }
            workers.push(Server(worker.spawn().expect("start sentinela-worker")));
        }
    }
    let analysers: Vec<u32> = if workers.is_empty() {
        vec![server.0.id()]
    } else {
        workers.iter().map(|w| w.0.id()).collect()
    };
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
    let cpu_before: f64 = analysers.iter().map(|&p| cpu_seconds(p)).sum();
    let (first, result) = run_search(&client, &base, city.id, data).await;
    let (second, again) = run_search(&client, &base, city.id, data).await;
    let cpu = analysers.iter().map(|&p| cpu_seconds(p)).sum::<f64>() - cpu_before;
    let rss = analysers
        .iter()
        .map(|p| sentinela_testkit::peak_rss_mb(&p.to_string()))
        .fold(0.0, f64::max);
    drop(workers);
    drop(server);
    if let Some(pg) = pg {
        pg.cleanup().await;
    }
    Ours {
        first,
        result,
        second,
        again,
        rss,
        cpu,
    }
}

/// One search's throughput with 1, 2 and 3 worker processes (PostgreSQL + Redis, the project's
/// data, a fresh database each time so nothing is cached): what `--scale worker=N` gives.
async fn scaling() {
    let data = own_dataset();
    let video_seconds = data.recordings.len() as f64 * 60.0;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    println!(
        "scaling: one search over {} one-minute 720p30 recordings, api + N sentinela-worker processes on PostgreSQL + Redis, {cores} CPU cores, WORKER_CONCURRENCY={}",
        data.recordings.len(),
        std::env::var("BENCH_WORKER_CONCURRENCY").unwrap_or_else(|_| "default".into())
    );
    println!(
        "{:<10} {:>8} {:>16} {:>9} {:>18} {:>12}",
        "workers", "wall s", "video-s/wall-s", "speed-up", "CPU-s per video-s", "peak RSS MB"
    );
    let mut base = None;
    for n in 1..=3 {
        let work = tempfile::tempdir().unwrap();
        let ours = run_ours(&data, work.path(), Mode::Distributed(n)).await;
        let rate = video_seconds / ours.first;
        let one = *base.get_or_insert(rate);
        println!(
            "{n:<10} {:>8.1} {rate:>16.1} {:>8.2}x {:>18.3} {:>12.0}",
            ours.first,
            rate / one,
            // Both searches' CPU over the first's video: the repeat costs next to nothing.
            ours.cpu / video_seconds,
            ours.rss
        );
        assert!(
            progress(&ours.result, "detector_calls") > 0,
            "the search ran: {}",
            ours.result
        );
    }
}

fn progress(result: &serde_json::Value, field: &str) -> i64 {
    result["search"]["progress"][field].as_i64().unwrap_or(-1)
}

#[tokio::main]
async fn main() {
    if std::env::var_os("BENCH_SCALING").is_some() {
        scaling().await;
        return;
    }
    let mut datasets = vec![own_dataset()];
    if let Ok(manifest) = std::env::var("BENCH_SEED_MANIFEST") {
        datasets.push(seed_dataset(Path::new(&manifest)));
    }
    let anchors = std::env::var_os("BENCH_SEED_ANCHORS").map(PathBuf::from);
    println!(
        "one search (ônibus vermelho, 4 minutes, 12 one-minute 720p30 recordings, 3 cameras), local detector, embedded mode; WORKER_CONCURRENCY={}, MALLOC_ARENA_MAX={}",
        std::env::var("BENCH_WORKER_CONCURRENCY").unwrap_or_else(|_| "default".into()),
        std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "unset".into())
    );
    for data in &datasets {
        let work = tempfile::tempdir().unwrap();
        let video_seconds: f64 = data.recordings.len() as f64 * 60.0;
        println!("\n{}", data.name);
        let seed = anchors
            .as_deref()
            .and_then(|a| run_seed(a, data, work.path()));
        let Ours {
            first,
            result,
            second,
            again,
            rss,
            cpu: _,
        } = run_ours(data, work.path(), Mode::Embedded).await;
        let calls = progress(&result, "detector_calls");
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
        println!(
            "  ours, first search:    {first:.1} s ({:.1} video-s per wall-s), status {}, {} frames, {calls} detector calls; {points} sightings on {cameras_visited} cameras in {} distinct minutes",
            video_seconds / first,
            result["search"]["status"].as_str().unwrap_or_default(),
            progress(&result, "frames_analyzed"),
            minutes.len()
        );
        println!(
            "  ours, repeated search: {second:.2} s ({:.1} % of the first), {} detector calls, {} sightings",
            100.0 * second / first,
            progress(&again, "detector_calls"),
            again["trajectory"]["points"].as_array().map_or(0, Vec::len)
        );
        println!("  ours, peak RSS of the process: {rss:.0} MB");
        match seed {
            Some(seed) => {
                let wall = seed["wall_s"].as_f64().unwrap_or(f64::NAN);
                let seed_calls = seed["detector_calls"].as_f64().unwrap_or(f64::NAN);
                println!(
                    "  seed (same run, same files): {wall:.1} s, {seed_calls} detector calls, {} points, {:.0} MB worker tree peak RSS ({:.0} MB PSS), status {}",
                    seed["points_by_camera"]
                        .as_object()
                        .map_or(0, |m| m.values().filter_map(|v| v.as_i64()).sum::<i64>()),
                    seed["worker_peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
                    seed["worker_peak_pss_mib"].as_f64().unwrap_or(f64::NAN),
                    seed["status"].as_str().unwrap_or_default()
                );
                println!(
                    "  ratio: {:.1}x faster (target ≥ 3x), {:.1} % of the seed's detector calls (target ≤ 10 %)",
                    wall / first,
                    100.0 * calls as f64 / seed_calls
                );
            }
            None => {
                println!("  seed: not run (set BENCH_SEED_ANCHORS, or use bench/search-vs-seed.sh)")
            }
        }
    }
}
