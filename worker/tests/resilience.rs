//! The resilience suite: real `sentinela-api`, `sentinela-worker` and `sentinela-scheduler`
//! processes against a PostgreSQL server and a Redis server of the test's own, which the tests
//! stop and restart in the middle of a search; a corpus of hostile recordings, one of which kills
//! every worker that opens it; a full snapshot disk; a worker under a memory limit given a 4K
//! recording. Each test prints the figures docs/reliability.md records.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use secrecy::SecretString;
use sentinela_core::repo::{points, tasks};
use sentinela_core::{SearchStatus, TaskStatus};
use sentinela_testkit::{KillOnDrop, PgServer, TestDb, free_port, workspace_binary};

const ADMIN: &str = "resilience-admin-key-0123456789abcdef";

/// The environment every process of a test shares (`testkit::cluster_env`: its database and
/// Redis, a 10 s task lease with recovery every 2 s), with quick polling and draining.
fn cluster_env(database_url: &str, redis: &str, dir: &Path) -> Vec<(String, String)> {
    with(
        &sentinela_testkit::cluster_env(database_url, redis, dir, ADMIN),
        &[
            ("RUST_LOG", "info"),
            ("DETECTOR_MAX_IN_FLIGHT", "2"),
            ("SENTINELA__WORKER__DRAIN_TIMEOUT_SECS", "5"),
            ("SENTINELA__WORKER__POLL_INTERVAL_MS", "200"),
        ],
    )
}

fn with(env: &[(String, String)], extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = env.to_vec();
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push(((*k).to_owned(), (*v).to_owned()));
    }
    env
}

fn spec(binary: PathBuf, env: Vec<(String, String)>, dir: &Path, name: &str) -> ProcessSpec {
    ProcessSpec {
        binary,
        env,
        log: dir.join(format!("{name}.log")),
        cgroup_procs: None,
    }
}

fn worker_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sentinela-worker"))
}

/// Asks the API for the bus search (as an operator's client would): its status and answer.
async fn post_search(
    http: &reqwest::Client,
    base: &str,
    city_id: i64,
) -> (reqwest::StatusCode, serde_json::Value) {
    sentinela_testkit::call(
        http,
        base,
        Some(ADMIN),
        "POST",
        "/api/v1/searches",
        Some(serde_json::json!({
            "city_id": city_id,
            "start_date": t0().to_rfc3339(),
            "end_date": (t0() + chrono::Duration::hours(12)).to_rfc3339(),
            "color": "vermelho",
            "vehicle_type": "ônibus",
        })),
    )
    .await
}

/// [`post_search`], which must be accepted; the search's id.
async fn create_search(http: &reqwest::Client, base: &str, city_id: i64) -> i64 {
    let (status, body) = post_search(http, base, city_id).await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_i64().unwrap()
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/health/ready")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "the API never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The checks every test ends with: the search completed with every task done and exactly one
/// point per second of bus footage (none lost, none duplicated).
async fn assert_complete_and_exact(
    db: &sea_orm::DatabaseConnection,
    search: &entity::vehicle_search::Model,
    recordings: i32,
    with_bus: &[i64],
    logs: &str,
) {
    assert_eq!(search.status, SearchStatus::Completed, "{search:?}\n{logs}");
    assert_eq!(
        (search.tasks_total, search.tasks_done, search.tasks_failed),
        (recordings, recordings, 0)
    );
    let all = tasks::list_for_search(db, search.id).await.unwrap();
    assert!(all.iter().all(|t| t.status == TaskStatus::Done));
    let trajectory = points::list_for_search(db, search.id).await.unwrap();
    assert_eq!(
        trajectory.len() as i64,
        with_bus.len() as i64 * SECONDS,
        "one point per second of bus footage: none lost, none duplicated"
    );
}

/// A scratch folder, a PostgreSQL database of the test's own (and its URL) and a Redis server of
/// its own without persistence.
async fn own_backends() -> (tempfile::TempDir, TestDb, String, RedisServer) {
    let test = TestDb::postgres().await;
    let url = secrecy::ExposeSecret::expose_secret(&test.url).to_owned();
    (
        tempfile::tempdir().unwrap(),
        test,
        url,
        RedisServer::start(false),
    )
}

/// An api, two workers and a scheduler as separate processes on one database and Redis, the api on
/// a free port; every process killed when the cluster is dropped (even when the test fails).
struct Cluster {
    processes: Vec<ProcessSpec>,
    children: Vec<KillOnDrop>,
    base: String,
}

impl Cluster {
    fn start(database_url: &str, redis: &str, dir: &Path, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let env = with(&cluster_env(database_url, redis, dir), extra);
        let api_env = with(&env, &[("API_BIND", &format!("127.0.0.1:{port}"))]);
        let scheduler = workspace_binary("sentinela-scheduler");
        let processes = vec![
            spec(workspace_binary("sentinela-api"), api_env, dir, "api"),
            spec(worker_binary(), env.clone(), dir, "worker-0"),
            spec(worker_binary(), env.clone(), dir, "worker-1"),
            spec(scheduler, env, dir, "scheduler"),
        ];
        let children = processes.iter().map(|p| KillOnDrop(p.spawn())).collect();
        Self {
            processes,
            children,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn logs(&self) -> String {
        self.processes.iter().map(ProcessSpec::log_text).collect()
    }

    /// Fails the test, with that process's log, if any process has exited.
    fn assert_all_running(&mut self, when: &str) {
        for (p, KillOnDrop(child)) in self.processes.iter().zip(self.children.iter_mut()) {
            assert!(
                child.try_wait().unwrap().is_none(),
                "{} exited {when}:\n{}",
                p.log.display(),
                p.log_text()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_stopped_for_20_s_mid_search_costs_time_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgServer::start();
    pg.create_database("sentinela").await;
    let url = pg.url("sentinela");
    let db = sentinela_core::db::connect_and_migrate(&SecretString::from(url.clone()))
        .await
        .unwrap();
    let redis = RedisServer::start(false);
    let (city, with_bus) = city_with_recordings(&db, dir.path(), 40, 4).await;
    let mut cluster = Cluster::start(&url, &redis.url(), dir.path(), &[]);
    let base = cluster.base.clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    wait_ready(&http, &base).await;
    let started = Instant::now();
    let search = create_search(&http, &base, city).await;
    wait_for(&db, search, Duration::from_secs(120), |s| s.tasks_done >= 4).await;

    // PostgreSQL goes away for 20 s in the middle of the search.
    pg.stop();
    let stopped = Instant::now();
    let mut statuses = Vec::new();
    while stopped.elapsed() < Duration::from_secs(20) {
        let status = match http.get(format!("{base}/health/ready")).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        statuses.push(status);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cluster.assert_all_running("during the outage");
    pg.start_again();
    let back = Instant::now();
    assert!(
        statuses.iter().all(|s| *s == 503),
        "/health/ready answers 503 for the whole outage: {statuses:?}"
    );

    let row = wait_for(&db, search, Duration::from_secs(300), |s| {
        s.status.is_final()
    })
    .await;
    let finished_after = back.elapsed();
    assert_complete_and_exact(&db, &row, 40, &with_bus, &cluster.logs()).await;
    cluster.assert_all_running("after the outage");
    wait_ready(&http, &base).await;
    println!(
        "figures: PostgreSQL down 20 s ({} readiness probes, all 503); search of 40 recordings \
         completed {:.1} s after it came back, {:.1} s in all; 0 failed tasks, {} points, 0 \
         process exits",
        statuses.len(),
        finished_after.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        with_bus.len() as i64 * SECONDS,
    );
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_mid_search_is_refilled_from_the_database() {
    let (dir, test, url, mut redis) = own_backends().await;
    let (city, with_bus) = city_with_recordings(&test.db, dir.path(), 30, 3).await;
    let mut cluster = Cluster::start(
        &url,
        &redis.url(),
        dir.path(),
        &[("WORKER_CONCURRENCY", "1")],
    );
    let base = cluster.base.clone();
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    let started = Instant::now();
    let search = create_search(&http, &base, city).await;
    let before = wait_for(&test.db, search, Duration::from_secs(120), |s| {
        s.tasks_done >= 4
    })
    .await;
    assert!(before.tasks_done < 30, "Redis goes down mid-search");

    // Killed (nothing written) and started again empty: every queued and running job is gone.
    redis.stop(true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.start_again();
    let back = Instant::now();
    let row = wait_for(&test.db, search, Duration::from_secs(300), |s| {
        s.status.is_final()
    })
    .await;
    assert_complete_and_exact(&test.db, &row, 30, &with_bus, &cluster.logs()).await;
    cluster.assert_all_running("after Redis came back");
    let scheduler_log = cluster.processes[3].log_text();
    assert!(
        scheduler_log.contains("requeued") || scheduler_log.contains("re-queu"),
        "the lost jobs came back through recovery:\n{scheduler_log}"
    );
    println!(
        "figures: Redis restarted empty after {} of 30 tasks; search completed {:.1} s after it \
         came back, {:.1} s in all; 0 failed tasks, 0 duplicate points",
        before.tasks_done,
        back.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    drop(cluster);
    drop(redis);
    test.cleanup().await;
}

// ---- hostile files ----

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An H.264 elementary stream whose sequence parameter set claims 100,000 × 100,000 pixels: a
/// real 320 × 240 stream from ffmpeg with the SPS's picture size rewritten.
fn huge_header_stream(dir: &Path) -> Vec<u8> {
    let base = dir.join("base.h264");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=10",
        "-t",
        "1",
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-pix_fmt",
        "yuv420p",
        "-f",
        "h264",
        base.to_str().unwrap(),
    ]);
    let data = std::fs::read(&base).unwrap();
    let mut starts = Vec::new();
    for i in 0..data.len().saturating_sub(3) {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
        }
    }
    let mut out = Vec::new();
    let mut rewritten = 0;
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(data.len(), |next| next - 3);
        let mut nal = data[start..end].to_vec();
        while n + 1 < starts.len() && nal.last() == Some(&0) {
            nal.pop();
        }
        if nal[0] & 0x1f == 7 {
            nal = huge_sps(&nal);
            rewritten += 1;
        }
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(&nal);
    }
    assert!(rewritten > 0, "the stream had a sequence parameter set");
    out
}

/// The SPS NAL `nal` (baseline profile) with 6,250 × 6,250 macroblocks (100,000 pixels a side).
fn huge_sps(nal: &[u8]) -> Vec<u8> {
    // Emulation prevention off, then back on.
    let mut rbsp = Vec::new();
    let mut zeros = 0;
    for &b in &nal[1..] {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        rbsp.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    let bits: Vec<u8> = rbsp
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let mut at = 0usize;
    let mut out: Vec<u8> = Vec::new();
    let copy = |n: usize, at: &mut usize, out: &mut Vec<u8>| {
        out.extend_from_slice(&bits[*at..*at + n]);
        *at += n;
    };
    let ue_len = |at: usize| {
        let zeros = bits[at..].iter().take_while(|b| **b == 0).count();
        2 * zeros + 1
    };
    let ue_value = |at: usize| {
        let n = ue_len(at);
        let zeros = n / 2;
        bits[at + zeros..at + n]
            .iter()
            .fold(0u64, |v, b| (v << 1) | u64::from(*b))
            - 1
    };
    assert_eq!(rbsp[0], 66, "a baseline-profile SPS");
    copy(24, &mut at, &mut out); // profile, constraint flags, level
    for _ in 0..2 {
        // seq_parameter_set_id, log2_max_frame_num_minus4
        copy(ue_len(at), &mut at, &mut out);
    }
    let poc_type = ue_value(at);
    copy(ue_len(at), &mut at, &mut out);
    assert_ne!(
        poc_type, 1,
        "pic_order_cnt_type 0 or 2 (what libx264 writes)"
    );
    if poc_type == 0 {
        copy(ue_len(at), &mut at, &mut out); // log2_max_pic_order_cnt_lsb_minus4
    }
    copy(ue_len(at), &mut at, &mut out); // max_num_ref_frames
    copy(1, &mut at, &mut out); // gaps_in_frame_num_value_allowed_flag
    for _ in 0..2 {
        // pic_width_in_mbs_minus1, pic_height_in_map_units_minus1 := 6249
        at += ue_len(at);
        let value = 6250u64;
        let n = 64 - value.leading_zeros() as usize;
        out.extend(std::iter::repeat_n(0, n - 1));
        out.extend((0..n).rev().map(|i| ((value >> i) & 1) as u8));
    }
    // The rest as it was, minus the byte padding: drop trailing zero bits, then the stop bit, and
    // end with a stop bit and padding again.
    let mut rest = bits[at..].to_vec();
    while rest.last() == Some(&0) {
        rest.pop();
    }
    out.extend_from_slice(&rest);
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    let bytes: Vec<u8> = out
        .chunks(8)
        .map(|c| c.iter().fold(0u8, |v, b| (v << 1) | b))
        .collect();
    let mut escaped = vec![nal[0]];
    let mut zeros = 0;
    for b in bytes {
        if zeros >= 2 && b <= 3 {
            escaped.push(3);
            zeros = 0;
        }
        escaped.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    escaped
}

/// Registers `files` (names under `dir`) as consecutive recordings of a new camera of `city`.
async fn register(
    db: &sea_orm::DatabaseConnection,
    city: i64,
    dir: &Path,
    files: &[&str],
    from: chrono::DateTime<chrono::Utc>,
) -> Vec<i64> {
    let camera = sentinela_testkit::camera(db, city, &format!("cam-{}", files[0])).await;
    let mut ids = Vec::new();
    for (i, name) in files.iter().enumerate() {
        let start = from + chrono::Duration::seconds(SECONDS * i as i64);
        let (rec, _) = sentinela_core::repo::recordings::register(
            db,
            sentinela_core::repo::recordings::NewRecording {
                camera_id: camera.id,
                city_id: city,
                file_path: dir.join(name).display().to_string(),
                started_at: start,
                ended_at: start + chrono::Duration::seconds(SECONDS),
                size_bytes: 1,
            },
        )
        .await
        .unwrap();
        ids.push(rec.id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_recordings_end_as_failed_tasks_and_the_rest_completes() {
    let (dir, test, url, redis) = own_backends().await;
    let d = dir.path();
    // Six good recordings (two with the bus) on three cameras.
    let (city, with_bus) = city_with_recordings(&test.db, d, 6, 3).await;

    // The hostile corpus.
    let bus = std::fs::read(d.join("bus.mp4")).unwrap();
    std::fs::write(d.join("truncated.mp4"), &bus[..bus.len() / 3]).unwrap();
    let noise: Vec<u8> = (0..200_000).map(|_| rand::random::<u8>()).collect();
    std::fs::write(d.join("random.mp4"), noise).unwrap();
    std::fs::write(d.join("zero-length.mp4"), b"").unwrap();
    std::fs::write(d.join("huge.mp4"), huge_header_stream(d)).unwrap();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=3",
        "-c:a",
        "aac",
        d.join("audio.mp4").to_str().unwrap(),
    ]);
    // A valid recording that "crashes the decoder": the supervisor kills every worker that opens
    // it, as a segfault in FFmpeg would.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=640x360:rate=10",
        "-t",
        "20",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        d.join("crash.mp4").to_str().unwrap(),
    ]);
    let hostile = [
        "truncated.mp4",
        "random.mp4",
        "zero-length.mp4",
        "huge.mp4",
        "audio.mp4",
        "crash.mp4",
    ];
    let hostile_ids = register(
        &test.db,
        city,
        d,
        &hostile,
        t0() + chrono::Duration::hours(1),
    )
    .await;

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env = with(
        &cluster_env(&url, &redis.url(), d),
        &[
            ("WORKER_CONCURRENCY", "1"),
            ("SENTINELA__SCHEDULER__MAX_TASK_ATTEMPTS", "2"),
        ],
    );
    let api_env = with(&env, &[("API_BIND", &format!("127.0.0.1:{port}"))]);
    let mut api = KillOnDrop(spec(workspace_binary("sentinela-api"), api_env, d, "api").spawn());
    let scheduler = Supervisor::start(
        spec(
            workspace_binary("sentinela-scheduler"),
            env.clone(),
            d,
            "scheduler",
        ),
        None,
    );
    let worker = Supervisor::start(
        spec(worker_binary(), env, d, "worker"),
        Some(d.join("crash.mp4")),
    );
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    let started = Instant::now();
    let search = create_search(&http, &base, city).await;
    let row = wait_for(&test.db, search, Duration::from_secs(420), |s| {
        s.status.is_final()
    })
    .await;
    let counts = worker.counts();
    let all = tasks::list_for_search(&test.db, search).await.unwrap();
    let report: String = all
        .iter()
        .map(|t| {
            format!(
                "\n  recording {} {:?} attempts {} error {:?}",
                t.recording_id, t.status, t.attempts, t.error
            )
        })
        .collect();
    assert_eq!(
        row.status,
        SearchStatus::CompletedWithErrors,
        "{row:?}{report}\nsupervisor: {counts:?}\n{}",
        worker.spec.log_text()
    );
    assert_eq!(
        (row.tasks_total, row.tasks_done, row.tasks_failed),
        (12, 6, 6)
    );
    for t in &all {
        if hostile_ids.contains(&t.recording_id) {
            assert_eq!(t.status, TaskStatus::Failed, "{report}");
            assert!(
                t.error.as_deref().is_some_and(|e| !e.is_empty()),
                "a failed task says why: {report}"
            );
        } else {
            assert_eq!(t.status, TaskStatus::Done, "{report}");
        }
    }
    // The file that kills its worker: given up after a bounded number of starts, with the reason.
    let crash = all
        .iter()
        .find(|t| t.recording_id == hostile_ids[5])
        .unwrap();
    let limit = 2 + i32::try_from(sentinela_worker::MAX_ATTEMPTS).unwrap();
    assert!(crash.attempts <= limit + 1, "{report}");
    assert!(
        counts.kills >= 1 && counts.kills <= (limit + 1) as usize,
        "the worker was killed each time it opened the file, a bounded number of times: {counts:?}"
    );
    // Failed by whichever saw it first: a worker refusing to open it again (poison), or recovery
    // giving up on a task whose worker kept disappearing.
    assert!(
        crash
            .error
            .as_deref()
            .is_some_and(|e| e.contains("without finishing") || e.contains("stopped responding")),
        "{report}"
    );
    // Every second of bus footage in the good recordings is a point (the truncated copy of the
    // bus clip may add the sightings of what it still holds).
    let trajectory = points::list_for_search(&test.db, search).await.unwrap();
    assert_eq!(
        trajectory
            .iter()
            .filter(|p| with_bus.contains(&p.recording_id))
            .count() as i64,
        with_bus.len() as i64 * SECONDS
    );
    assert!(api.0.try_wait().unwrap().is_none(), "the API stayed up");
    assert_eq!(scheduler.counts().restarts, 0, "the scheduler stayed up");
    println!(
        "figures: 6 hostile files + 6 good recordings: {:.1} s to completed_with_errors; the \
         crash file killed its worker {} times (task attempts {}), other worker restarts {}; \
         errors:{report}",
        started.elapsed().as_secs_f64(),
        counts.kills,
        crash.attempts,
        counts.restarts
    );
    drop(api);
    drop(worker);
    drop(scheduler);
    test.cleanup().await;
}

// ---- full disk, memory limit ----

/// A tmpfs of `size` mounted at `path` for the test (root is needed to mount); unmounted when
/// dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(path.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` until writing fails (no space left).
fn fill(dir: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0xAAu8; 4096];
    loop {
        if file
            .write_all(&block)
            .and_then(|()| file.sync_data())
            .is_err()
        {
            return;
        }
    }
}

/// A counter's value from a Prometheus text exposition.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_snapshot_disk_keeps_every_sighting_and_says_so() {
    let (dir, test, url, redis) = own_backends().await;
    let d = dir.path();
    let (city, with_bus) = city_with_recordings(&test.db, d, 6, 2).await;
    let snapshots = d.join("snapshots");
    let _disk = Tmpfs::mount(&snapshots, "256k");
    fill(&snapshots);
    let metrics_port = free_port();
    let env = with(
        &cluster_env(&url, &redis.url(), d),
        &[("METRICS_BIND", &format!("127.0.0.1:{metrics_port}"))],
    );
    let worker = Supervisor::start(spec(worker_binary(), env, d, "worker"), None);
    let search = sentinela_core::repo::searches::get(&test.db, bus_search(&test.db, city).await)
        .await
        .unwrap()
        .unwrap();
    queue(&test, &redis.url())
        .await
        .push_search(sentinela_core::jobs::SearchVehicle {
            search_id: search.id,
            city_id: None,
        })
        .await
        .unwrap();
    let row = wait_for(&test.db, search.id, Duration::from_secs(180), |s| {
        s.status.is_final()
    })
    .await;
    assert_complete_and_exact(&test.db, &row, 6, &with_bus, &worker.spec.log_text()).await;
    let trajectory = points::list_for_search(&test.db, search.id).await.unwrap();
    assert!(
        trajectory.iter().all(|p| p.image_path.is_none()),
        "no snapshot could be written"
    );
    assert!(row.snapshots_failed >= 1, "the search says so: {row:?}");
    let text = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures = metric(&text, "vms_snapshot_write_failures_total");
    assert!(failures >= f64::from(row.snapshots_failed), "{text}");
    assert_eq!(worker.counts().restarts, 0, "no crash");
    assert!(
        worker
            .spec
            .log_text()
            .contains("the sighting is stored without it"),
        "logged"
    );
    println!(
        "figures: snapshot disk full: {} sightings stored, {} without their snapshot, \
         vms_snapshot_write_failures_total {failures}, 0 crashes",
        trajectory.len(),
        row.snapshots_failed
    );
    drop(worker);
    test.cleanup().await;
}

/// A memory cgroup of the test's own with `limit` bytes (cgroup v1 or v2), removed when dropped.
struct MemoryCgroup(PathBuf);

impl MemoryCgroup {
    fn create(limit: u64) -> Self {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let (base, file) = own
            .lines()
            .find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                controllers.split(',').any(|c| c == "memory").then(|| {
                    (
                        format!("/sys/fs/cgroup/memory{path}"),
                        "memory.limit_in_bytes",
                    )
                })
            })
            .unwrap_or_else(|| {
                let path = own
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .unwrap_or("/");
                (format!("/sys/fs/cgroup{path}"), "memory.max")
            });
        let dir = PathBuf::from(base).join(format!("sentinela-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| {
            panic!(
                "a memory cgroup is needed (root, cgroup v1 or v2): {}: {e}",
                dir.display()
            )
        });
        std::fs::write(dir.join(file), limit.to_string()).unwrap();
        Self(dir)
    }

    fn procs(&self) -> PathBuf {
        self.0.join("cgroup.procs")
    }

    /// The most memory its processes held at once, when the kernel reports it.
    fn peak_mb(&self) -> Option<f64> {
        ["memory.max_usage_in_bytes", "memory.peak"]
            .iter()
            .find_map(|f| std::fs::read_to_string(self.0.join(f)).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .map(|b| b / 1e6)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_under_a_memory_limit_given_4k_loses_no_other_job() {
    let (dir, test, url, redis) = own_backends().await;
    let d = dir.path();
    let (city, with_bus) = city_with_recordings(&test.db, d, 8, 4).await;
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=3840x2160:rate=25",
        "-t",
        "3",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        d.join("4k.mp4").to_str().unwrap(),
    ]);
    let four_k = register(
        &test.db,
        city,
        d,
        &["4k.mp4"],
        t0() + chrono::Duration::hours(1),
    )
    .await[0];
    let cgroup = MemoryCgroup::create(300 * 1024 * 1024);
    let env = with(
        &cluster_env(&url, &redis.url(), d),
        &[("SENTINELA__SCHEDULER__MAX_TASK_ATTEMPTS", "1")],
    );
    let mut worker_spec = spec(worker_binary(), env.clone(), d, "worker");
    worker_spec.cgroup_procs = Some(cgroup.procs());
    let worker = Supervisor::start(worker_spec, None);
    let scheduler = Supervisor::start(
        spec(workspace_binary("sentinela-scheduler"), env, d, "scheduler"),
        None,
    );
    let search = bus_search(&test.db, city).await;
    queue(&test, &redis.url())
        .await
        .push_search(sentinela_core::jobs::SearchVehicle {
            search_id: search,
            city_id: None,
        })
        .await
        .unwrap();
    let row = wait_for(&test.db, search, Duration::from_secs(420), |s| {
        s.status.is_final()
    })
    .await;
    let counts = worker.counts();
    let all = tasks::list_for_search(&test.db, search).await.unwrap();
    let big = all.iter().find(|t| t.recording_id == four_k).unwrap();
    assert!(
        row.status.is_final() && row.status != SearchStatus::Failed,
        "{row:?}\n{counts:?}\n{}",
        worker.spec.log_text()
    );
    for t in &all {
        if t.recording_id == four_k {
            assert!(
                t.status == TaskStatus::Done
                    || (t.status == TaskStatus::Failed && t.error.is_some()),
                "the 4K task completes or fails with its reason: {t:?}"
            );
        } else {
            assert_eq!(t.status, TaskStatus::Done, "no other job lost: {t:?}");
        }
    }
    assert_eq!(
        points::list_for_search(&test.db, search)
            .await
            .unwrap()
            .len() as i64,
        with_bus.len() as i64 * SECONDS
    );
    println!(
        "figures: worker limited to 300 MB given a 4K recording: task {:?} after {} attempts \
         ({:?}); worker ended and restarted {} times ({:?}); peak {:?} MB; the 8 other tasks done",
        big.status,
        big.attempts,
        big.error,
        counts.restarts,
        counts.exits,
        cgroup.peak_mb()
    );
    drop(worker);
    drop(scheduler);
    test.cleanup().await;
}

// ---- the soak (not in CI: `bench/soak.sh`) ----

/// `SOAK_MINUTES` (30 by default) of searches from 3 cities on PostgreSQL and Redis (with AOF, as
/// in production), api + 3 workers + scheduler, a worker killed with SIGKILL every 2 minutes,
/// Redis restarted at a third of the run and PostgreSQL at two thirds; then every search must be
/// final and completed, every task done, every point there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 30-minute soak: bench/soak.sh"]
async fn soak() {
    let minutes: u64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(30);
    let run_for = Duration::from_secs(minutes * 60);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pg = PgServer::start();
    pg.create_database("sentinela").await;
    let url = pg.url("sentinela");
    let db = sentinela_core::db::connect_and_migrate(&SecretString::from(url.clone()))
        .await
        .unwrap();
    let mut redis = RedisServer::start(true);
    let mut cities = Vec::new();
    for i in 0..3 {
        let city_dir = d.join(format!("city-{i}"));
        std::fs::create_dir_all(&city_dir).unwrap();
        cities.push(city_with_recordings(&db, &city_dir, 12, 3).await);
    }
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env = cluster_env(&url, &redis.url(), d);
    let api = Supervisor::start(
        spec(
            workspace_binary("sentinela-api"),
            with(&env, &[("API_BIND", &format!("127.0.0.1:{port}"))]),
            d,
            "api",
        ),
        None,
    );
    let workers: Vec<_> = (0..3)
        .map(|i| {
            Supervisor::start(
                spec(worker_binary(), env.clone(), d, &format!("worker-{i}")),
                None,
            )
        })
        .collect();
    let scheduler = Supervisor::start(
        spec(
            workspace_binary("sentinela-scheduler"),
            env.clone(),
            d,
            "scheduler",
        ),
        None,
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    wait_ready(&http, &base).await;

    let started = Instant::now();
    let (mut searches, mut refused, mut kills) = (Vec::new(), 0u32, 0usize);
    // Kills at 90 s and every 2 minutes after: never at the same moment as the restarts of Redis
    // (a third) or PostgreSQL (two thirds) of a whole number of minutes.
    let (mut next_kill, mut redis_done, mut pg_done) = (Duration::from_secs(90), false, false);
    let mut n = 0usize;
    while started.elapsed() < run_for {
        let (city, with_bus) = &cities[n % 3];
        n += 1;
        // A search per 5 s; during an outage the API may refuse (503): counted, not an error.
        let (status, body) = post_search(&http, &base, *city).await;
        match body["id"].as_i64() {
            Some(id) if status == 202 => searches.push((id, with_bus.len())),
            _ => refused += 1,
        }
        if started.elapsed() >= next_kill {
            workers[kills % 3].kill9();
            kills += 1;
            next_kill += Duration::from_secs(120);
        }
        if !redis_done && started.elapsed() >= run_for / 3 {
            redis.stop(false);
            tokio::time::sleep(Duration::from_secs(3)).await;
            redis.start_again();
            redis_done = true;
        }
        if !pg_done && started.elapsed() >= run_for * 2 / 3 {
            pg.stop();
            tokio::time::sleep(Duration::from_secs(10)).await;
            pg.start_again();
            pg_done = true;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let load_ended = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut unfinished = searches.len();
    while unfinished > 0 && Instant::now() < deadline {
        unfinished = 0;
        for (id, _) in &searches {
            let row = sentinela_core::repo::searches::get(&db, *id)
                .await
                .unwrap()
                .unwrap();
            if !row.status.is_final() {
                unfinished += 1;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let drained_in = load_ended.elapsed();
    let (mut completed, mut tasks_total, mut lost, mut wrong_points) = (0, 0, 0, 0);
    let mut walls = Vec::new();
    for (id, bus) in &searches {
        let row = sentinela_core::repo::searches::get(&db, *id)
            .await
            .unwrap()
            .unwrap();
        if row.status == SearchStatus::Completed {
            completed += 1;
        }
        let all = tasks::list_for_search(&db, *id).await.unwrap();
        tasks_total += all.len();
        lost += all.iter().filter(|t| t.status != TaskStatus::Done).count();
        let points = points::list_for_search(&db, *id).await.unwrap().len() as i64;
        if points != *bus as i64 * SECONDS {
            wrong_points += 1;
        }
        if let (Some(from), Some(to)) = (row.started_at, row.completed_at) {
            walls.push((to - from).num_milliseconds() as f64 / 1000.0);
        }
    }
    walls.sort_by(f64::total_cmp);
    let restarts: usize = workers.iter().map(|w| w.counts().restarts).sum();
    println!(
        "soak figures: {minutes} min; {} searches accepted ({refused} refused during outages), \
         {completed} completed, {unfinished} not final; {tasks_total} tasks, {lost} not done; \
         {wrong_points} searches with a wrong point count; workers killed {kills} times \
         (restarted {restarts}); Redis restarted once, PostgreSQL once (10 s); api restarts {}, \
         scheduler restarts {}; search wall time p50 {:.1} s, max {:.1} s; drained {:.0} s after \
         the load stopped",
        searches.len(),
        api.counts().restarts,
        scheduler.counts().restarts,
        walls.get(walls.len() / 2).copied().unwrap_or(0.0),
        walls.last().copied().unwrap_or(0.0),
        drained_in.as_secs_f64(),
    );
    let exits: Vec<String> = workers.iter().flat_map(|w| w.counts().exits).collect();
    let tail: String = workers[0]
        .spec
        .log_text()
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN") || l.contains("panicked"))
        .take(20)
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        restarts, kills,
        "a worker ends only when killed: {exits:?}\n{tail}"
    );
    assert_eq!(unfinished, 0, "every search final");
    assert_eq!(completed, searches.len(), "every search completed");
    assert_eq!(lost, 0, "no task lost");
    assert_eq!(wrong_points, 0, "no point lost or duplicated");
    drop(workers);
    drop(scheduler);
    drop(api);
}
