//! The periodic jobs against real databases, files and Redis: retention (age, cap, locks, a file
//! that cannot be deleted), search cleanup, index sync over a MediaMTX-style tree, queue hygiene
//! on apalis-redis and the embedded SQLite queue.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{recording, vehicle_search};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use secrecy::ExposeSecret;
use sentinela_core::SearchStatus;
use sentinela_core::domain::TimeRange;
use sentinela_core::jobs::{PERIODIC_QUEUE, PeriodicJob, PeriodicRun};
use sentinela_core::queue::JobQueue;
use sentinela_core::repo::{cameras, cities, points, recordings, searches, tasks};
use sentinela_core::settings::Settings;
use sentinela_core::video::synth::{self, Scene};
use sentinela_scheduler::index_sync::IndexSync;
use sentinela_scheduler::periodic::{self, JobContext};
use sentinela_scheduler::{cleanup, hygiene, retention};
use sentinela_testkit::{TestDb, redis_db};

fn settings(test: &TestDb, redis: Option<&str>, extra: &[(&str, &str)]) -> Settings {
    let mut env: HashMap<String, String> = [(
        "DATABASE_URL".to_owned(),
        test.url.expose_secret().to_owned(),
    )]
    .into();
    if let Some(redis) = redis {
        env.insert("REDIS_URL".into(), redis.into());
    }
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    Settings::from_sources(None, &env).unwrap()
}

async fn search(test: &TestDb, city_id: i64, status: SearchStatus) -> i64 {
    let t0 = Utc::now() - chrono::Duration::days(20);
    let search = searches::create(
        &test.db,
        &test.db,
        sentinela_testkit::red_bus_search(
            city_id,
            TimeRange::new(t0, t0 + chrono::Duration::hours(1)).unwrap(),
        ),
    )
    .await
    .unwrap();
    set_status(test, search.id, status).await;
    search.id
}

async fn set_status(test: &TestDb, search_id: i64, status: SearchStatus) {
    vehicle_search::Entity::update_many()
        .col_expr(vehicle_search::Column::Status, Expr::value(status.as_str()))
        .filter(vehicle_search::Column::Id.eq(search_id))
        .exec(&test.db)
        .await
        .unwrap();
}

async fn point(test: &TestDb, search_id: i64, rec: &recording::Model) {
    points::insert_idempotent(
        &test.db,
        points::NewPoint {
            search_id,
            camera_id: rec.camera_id,
            recording_id: rec.id,
            timestamp: rec.started_at,
            confidence: 0.9,
            label: "bus".into(),
            color: Some("red".into()),
            plate_text: None,
            plate_score: None,
            bbox: serde_json::json!({"x": 0.1, "y": 0.1, "w": 0.2, "h": 0.2}),
            image_path: Some(format!("{search_id}/{}-0.jpg", rec.id)),
        },
    )
    .await
    .unwrap();
}

/// Registers a recording of `camera` starting `ago` before now, with a 1,000-byte file unless
/// `file` says otherwise.
async fn rec(
    test: &TestDb,
    dir: &Path,
    city_id: i64,
    camera_id: i64,
    name: &str,
    started_at: DateTime<Utc>,
    file: FileKind,
) -> recording::Model {
    let path = dir.join(name);
    match file {
        FileKind::Normal => std::fs::write(&path, vec![7u8; 1000]).unwrap(),
        FileKind::Missing => {}
        // A non-empty directory where the file should be: remove_file fails even for root.
        FileKind::Undeletable => {
            std::fs::create_dir_all(path.join("x")).unwrap();
        }
    }
    recordings::register(
        &test.db,
        recordings::NewRecording {
            camera_id,
            city_id,
            file_path: name.to_owned(),
            started_at,
            ended_at: started_at + chrono::Duration::minutes(1),
            size_bytes: 1000,
        },
    )
    .await
    .unwrap()
    .0
}

#[derive(Clone, Copy)]
enum FileKind {
    Normal,
    Missing,
    Undeletable,
}

async fn ids(test: &TestDb, city_id: i64) -> Vec<i64> {
    recording::Entity::find()
        .filter(recording::Column::CityId.eq(city_id))
        .order_by_asc(recording::Column::StartedAt)
        .all(&test.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_by_age_then_oldest_over_the_cap_and_keeps_locked_recordings() {
    let test = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let city = cities::create(
        &test.db,
        cities::NewCity {
            name: "Retention".into(),
            timezone: "America/Sao_Paulo".into(),
            recording_retention_days: 7,
            max_storage_bytes: None,
            database_url: None,
        },
    )
    .await
    .unwrap();
    let other_city = sentinela_testkit::city(&test.db, "Untouched").await;
    let camera = sentinela_testkit::camera(&test.db, city.id, "cam").await;
    let other_camera = sentinela_testkit::camera(&test.db, other_city.id, "cam").await;
    let now = Utc::now();
    let day = chrono::Duration::days(1);
    let d = dir.path();
    let (c, cam) = (city.id, camera.id);
    let old_plain = rec(
        &test,
        d,
        c,
        cam,
        "old-plain.mp4",
        now - day * 10,
        FileKind::Normal,
    )
    .await;
    let old_missing = rec(
        &test,
        d,
        c,
        cam,
        "old-missing.mp4",
        now - day * 9,
        FileKind::Missing,
    )
    .await;
    let old_in_use = rec(
        &test,
        d,
        c,
        cam,
        "old-in-use.mp4",
        now - day * 8,
        FileKind::Normal,
    )
    .await;
    let old_evidence = rec(
        &test,
        d,
        c,
        cam,
        "old-evidence.mp4",
        now - day * 8 + chrono::Duration::hours(1),
        FileKind::Normal,
    )
    .await;
    let old_stuck = rec(
        &test,
        d,
        c,
        cam,
        "old-stuck.mp4",
        now - day * 8 + chrono::Duration::hours(2),
        FileKind::Undeletable,
    )
    .await;
    let mut recent = Vec::new();
    for (i, ago) in [day * 3, day * 2, day, chrono::Duration::hours(1)]
        .into_iter()
        .enumerate()
    {
        recent.push(
            rec(
                &test,
                d,
                c,
                cam,
                &format!("recent-{i}.mp4"),
                now - ago,
                FileKind::Normal,
            )
            .await,
        );
    }
    // Another city's old recording: its own 30-day retention keeps it.
    let foreign = rec(
        &test,
        d,
        other_city.id,
        other_camera.id,
        "foreign.mp4",
        now - day * 10,
        FileKind::Normal,
    )
    .await;

    // A running search analyses `old_in_use`; a completed one saw the vehicle in `old_evidence`.
    let running = search(&test, city.id, SearchStatus::Pending).await;
    tasks::create_for_search(
        &test.db,
        running,
        &[tasks::NewTask {
            recording_id: old_in_use.id,
            window: TimeRange::new(old_in_use.started_at, old_in_use.ended_at).unwrap(),
        }],
    )
    .await
    .unwrap();
    searches::start_processing(&test.db, running, 1)
        .await
        .unwrap();
    let finished = search(&test, city.id, SearchStatus::Completed).await;
    point(&test, finished, &old_evidence).await;

    // Age.
    let report = retention::run(&test.db, &cities::list(&test.db).await.unwrap(), d, now)
        .await
        .unwrap();
    println!("{report}");
    assert_eq!(report.get("recordings_deleted"), 2, "{report}");
    assert_eq!(report.get("files_deleted"), 1, "{report}");
    assert_eq!(report.get("files_missing"), 1, "{report}");
    assert_eq!(report.get("bytes_freed"), 1000, "{report}");
    assert_eq!(report.get("file_errors"), 1, "{report}");
    assert_eq!(report.get("kept_in_use"), 1, "{report}");
    assert_eq!(report.get("kept_evidence"), 1, "{report}");
    assert!(!d.join("old-plain.mp4").exists());
    let mut expected = vec![old_in_use.id, old_evidence.id, old_stuck.id];
    expected.extend(recent.iter().map(|r| r.id));
    assert_eq!(ids(&test, city.id).await, expected);
    assert!(
        recordings::get(&test.db, old_plain.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        recordings::get(&test.db, old_missing.id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(ids(&test, other_city.id).await, vec![foreign.id]);
    assert!(d.join("foreign.mp4").exists());

    // Running again changes nothing but the counts of what is kept.
    let again = retention::run(&test.db, &cities::list(&test.db).await.unwrap(), d, now)
        .await
        .unwrap();
    assert_eq!(again.get("recordings_deleted"), 0, "{again}");

    // Cap: 7 × 1,000 bytes stored, cap 4,500 → the oldest deletable go until it fits: the stuck
    // one fails (kept, counted), then recent-0, recent-1, recent-2.
    entity::city::Entity::update_many()
        .col_expr(entity::city::Column::MaxStorageBytes, Expr::value(4500i64))
        .filter(entity::city::Column::Id.eq(city.id))
        .exec(&test.db)
        .await
        .unwrap();
    let report = retention::run(&test.db, &cities::list(&test.db).await.unwrap(), d, now)
        .await
        .unwrap();
    println!("{report}");
    assert_eq!(report.get("recordings_deleted"), 3, "{report}");
    assert_eq!(report.get("bytes_freed"), 3000, "{report}");
    assert_eq!(report.get("file_errors"), 1, "{report}");
    assert_eq!(report.get("over_cap_bytes"), 0, "{report}");
    assert_eq!(
        ids(&test, city.id).await,
        vec![old_in_use.id, old_evidence.id, old_stuck.id, recent[3].id]
    );
    for i in 0..3 {
        assert!(!d.join(format!("recent-{i}.mp4")).exists());
    }
    assert!(d.join("recent-3.mp4").exists());

    // Once the running search ends, its recording is past the age and goes; the evidence stays.
    set_status(&test, running, SearchStatus::Completed).await;
    let report = retention::run(&test.db, &cities::list(&test.db).await.unwrap(), d, now)
        .await
        .unwrap();
    assert_eq!(report.get("recordings_deleted"), 1, "{report}");
    assert!(!d.join("old-in-use.mp4").exists());
    assert!(
        recordings::get(&test.db, old_evidence.id)
            .await
            .unwrap()
            .is_some()
    );
    // The completed search kept its sighting.
    assert_eq!(
        points::list_for_search(&test.db, finished)
            .await
            .unwrap()
            .len(),
        1
    );
    test.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_old_ended_searches_with_points_and_snapshots_only() {
    let test = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("snapshots");
    let city = sentinela_testkit::city(&test.db, "Cleanup").await;
    let camera = sentinela_testkit::camera(&test.db, city.id, "cam").await;
    let r = rec(
        &test,
        dir.path(),
        city.id,
        camera.id,
        "r.mp4",
        Utc::now(),
        FileKind::Normal,
    )
    .await;
    let old_done = search(&test, city.id, SearchStatus::Completed).await;
    let old_cancelled = search(&test, city.id, SearchStatus::Cancelled).await;
    let old_running = search(&test, city.id, SearchStatus::Processing).await;
    let old_blocked = search(&test, city.id, SearchStatus::Failed).await;
    let recent_done = search(&test, city.id, SearchStatus::Completed).await;
    for id in [old_done, old_cancelled, old_running, old_blocked] {
        vehicle_search::Entity::update_many()
            .col_expr(
                vehicle_search::Column::CreatedAt,
                Expr::value(Utc::now() - chrono::Duration::days(100)),
            )
            .filter(vehicle_search::Column::Id.eq(id))
            .exec(&test.db)
            .await
            .unwrap();
    }
    for id in [old_done, recent_done, old_running] {
        point(&test, id, &r).await;
        let folder = snapshots.join(id.to_string());
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("{}-0.jpg", r.id)), vec![1u8; 300]).unwrap();
        std::fs::write(folder.join(format!("{}-1000.jpg", r.id)), vec![1u8; 200]).unwrap();
    }
    // A snapshot "folder" that cannot be removed as one (a file in its place).
    std::fs::create_dir_all(&snapshots).unwrap();
    std::fs::write(snapshots.join(old_blocked.to_string()), b"not a folder").unwrap();

    let report = cleanup::run(
        &test.db,
        &test.db,
        &snapshots,
        chrono::Duration::days(90),
        Utc::now(),
    )
    .await
    .unwrap();
    println!("{report}");
    assert_eq!(report.get("searches_deleted"), 2, "{report}");
    assert_eq!(report.get("points_deleted"), 1, "{report}");
    assert_eq!(report.get("snapshot_files_deleted"), 2, "{report}");
    assert_eq!(report.get("bytes_freed"), 500, "{report}");
    assert_eq!(report.get("file_errors"), 1, "{report}");
    for gone in [old_done, old_cancelled] {
        assert!(searches::get(&test.db, gone).await.unwrap().is_none());
    }
    assert!(!snapshots.join(old_done.to_string()).exists());
    for kept in [old_running, old_blocked, recent_done] {
        assert!(searches::get(&test.db, kept).await.unwrap().is_some());
    }
    assert!(snapshots.join(recent_done.to_string()).exists());
    assert_eq!(
        points::list_for_search(&test.db, recent_done)
            .await
            .unwrap()
            .len(),
        1
    );
    // The recording itself is not the cleanup's business.
    assert!(recordings::get(&test.db, r.id).await.unwrap().is_some());
    test.cleanup().await;
}

#[tokio::test]
async fn the_object_sweep_removes_only_old_snapshots_no_search_links() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("snapshots");
    let shard = snapshots.join("objects").join("ab");
    std::fs::create_dir_all(&shard).unwrap();
    let object = |n: u8| shard.join(format!("ab{}.jpg", format!("{n:02x}").repeat(31)));
    // Linked from a search's folder (kept), unlinked (swept), an interrupted write (swept).
    std::fs::write(object(1), vec![1u8; 700]).unwrap();
    std::fs::write(object(2), vec![2u8; 300]).unwrap();
    std::fs::write(shard.join("partial.123.0.tmp"), vec![3u8; 50]).unwrap();
    let search = snapshots.join("42");
    std::fs::create_dir_all(&search).unwrap();
    std::fs::hard_link(object(1), search.join("1-0.jpg")).unwrap();

    // Young files are never swept (a task may not have linked its object yet).
    let young = cleanup::sweep_objects(&snapshots, cleanup::OBJECT_GRACE)
        .await
        .unwrap();
    assert_eq!(young, cleanup::ObjectSweep::default());
    assert!(object(2).exists());

    let swept = cleanup::sweep_objects(&snapshots, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((swept.files, swept.bytes, swept.errors), (2, 350, 0));
    assert!(object(1).exists() && !object(2).exists());
    assert_eq!(std::fs::read(search.join("1-0.jpg")).unwrap().len(), 700);

    // The search's folder removed (cleanup): its object is swept next, and only then counted
    // as freed.
    let (files, bytes) = {
        std::fs::remove_dir_all(&search).unwrap();
        let swept = cleanup::sweep_objects(&snapshots, std::time::Duration::ZERO)
            .await
            .unwrap();
        (swept.files, swept.bytes)
    };
    assert_eq!((files, bytes), (1, 700));
    assert!(!object(1).exists());
    // No objects folder at all: nothing to do.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(
        cleanup::sweep_objects(empty.path(), std::time::Duration::ZERO)
            .await
            .unwrap(),
        cleanup::ObjectSweep::default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_cleanup_never_delete_outside_their_roots() {
    let test = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let (root, outside, snapshots) = (
        dir.path().join("recordings"),
        dir.path().join("outside"),
        dir.path().join("snapshots"),
    );
    for d in [&root.join("cam"), &outside.join("snaps"), &snapshots] {
        std::fs::create_dir_all(d).unwrap();
    }
    for name in ["a.mp4", "b.mp4", "c.mp4", "snaps/1-0.jpg"] {
        std::fs::write(outside.join(name), vec![9u8; 100]).unwrap();
    }
    std::os::unix::fs::symlink(outside.join("c.mp4"), root.join("cam/link.mp4")).unwrap();
    let city = sentinela_testkit::city(&test.db, "Confined").await;
    let camera = sentinela_testkit::camera(&test.db, city.id, "cam").await;
    let old = Utc::now() - chrono::Duration::days(400);
    // Rows as an older version (or a hostile key) could have stored them.
    let a = outside.join("a.mp4").to_string_lossy().into_owned();
    let mut escaping = Vec::new();
    for (i, path) in [
        a.as_str(),
        "../outside/b.mp4",
        "cam/link.mp4",
        "cam/../../outside/a.mp4",
    ]
    .into_iter()
    .enumerate()
    {
        let (row, _) = recordings::register(
            &test.db,
            recordings::NewRecording {
                camera_id: camera.id,
                city_id: city.id,
                file_path: path.to_owned(),
                started_at: old + chrono::Duration::minutes(i as i64),
                ended_at: old + chrono::Duration::minutes(i as i64 + 1),
                size_bytes: 100,
            },
        )
        .await
        .unwrap();
        escaping.push(row.id);
    }
    let control = rec(
        &test,
        &root,
        city.id,
        camera.id,
        "cam/ok.mp4",
        old + chrono::Duration::minutes(10),
        FileKind::Normal,
    )
    .await;

    let report = retention::run(
        &test.db,
        &cities::list(&test.db).await.unwrap(),
        &root,
        Utc::now(),
    )
    .await
    .unwrap();
    println!("{report}");
    assert_eq!(report.get("outside_root"), 4, "{report}");
    assert_eq!(
        report.get("recordings_deleted"),
        1,
        "only the control: {report}"
    );
    assert!(
        recordings::get(&test.db, control.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!root.join("cam/ok.mp4").exists());
    for id in &escaping {
        assert!(
            recordings::get(&test.db, *id).await.unwrap().is_some(),
            "row {id} is kept"
        );
    }
    for name in ["a.mp4", "b.mp4", "c.mp4"] {
        assert!(
            outside.join(name).exists(),
            "{name} outside the root is untouched"
        );
    }
    assert!(
        root.join("cam/link.mp4").exists(),
        "the link itself is left too"
    );

    // `check-paths` lists exactly those rows, and the binary exits non-zero saying so.
    let checked = sentinela_scheduler::check_paths::run(&test.db, &root, &snapshots)
        .await
        .unwrap();
    let mut found: Vec<i64> = checked.findings.iter().map(|f| f.id).collect();
    found.sort_unstable();
    assert_eq!(found, escaping, "{:?}", checked.findings);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sentinela-scheduler"))
        .arg("check-paths")
        .env("DATABASE_URL", test.url.expose_secret())
        .env("RECORDINGS_DIR", &root)
        .env("SNAPSHOT_DIR", &snapshots)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("outside_root=4"), "{stdout}");
    assert!(stdout.contains("../outside/b.mp4"), "{stdout}");

    // Cleanup: a search whose snapshot folder is a symlink leading out keeps its folder, the
    // target's files and its row; a normal old search goes.
    let leaky = search(&test, city.id, SearchStatus::Completed).await;
    let normal = search(&test, city.id, SearchStatus::Completed).await;
    for id in [leaky, normal] {
        vehicle_search::Entity::update_many()
            .col_expr(
                vehicle_search::Column::CreatedAt,
                Expr::value(Utc::now() - chrono::Duration::days(100)),
            )
            .filter(vehicle_search::Column::Id.eq(id))
            .exec(&test.db)
            .await
            .unwrap();
    }
    std::os::unix::fs::symlink(outside.join("snaps"), snapshots.join(leaky.to_string())).unwrap();
    std::fs::create_dir_all(snapshots.join(normal.to_string())).unwrap();
    std::fs::write(snapshots.join(format!("{normal}/1-0.jpg")), [1u8; 10]).unwrap();
    let report = cleanup::run(
        &test.db,
        &test.db,
        &snapshots,
        chrono::Duration::days(90),
        Utc::now(),
    )
    .await
    .unwrap();
    println!("{report}");
    assert_eq!(report.get("outside_root"), 1, "{report}");
    assert_eq!(report.get("searches_deleted"), 1, "{report}");
    assert!(outside.join("snaps/1-0.jpg").exists());
    assert!(searches::get(&test.db, leaky).await.unwrap().is_some());
    assert!(searches::get(&test.db, normal).await.unwrap().is_none());
    assert!(!snapshots.join(normal.to_string()).exists());
    test.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_sync_registers_complete_mediamtx_segments_once_and_skips_a_partial_one() {
    let test = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("recordings");
    let city = sentinela_testkit::city(&test.db, "Index").await;
    let with_path = |name: &'static str, path: &'static str| {
        let db = test.db.clone();
        async move {
            cameras::create(
                &db,
                &db,
                cameras::NewCamera {
                    city_id: city.id,
                    name: name.into(),
                    location: None,
                    latitude: None,
                    longitude: None,
                    mediamtx_path: Some(path.into()),
                },
            )
            .await
            .unwrap()
        }
    };
    let north = with_path("north", "sp/north").await;
    let south = with_path("south", "sp/south").await;
    // A 2-second fragmented MP4, as MediaMTX writes (fMP4).
    let sample = dir.path().join("sample.mp4");
    let mut scene = Scene::new(320, 240, 10, 2.0);
    scene.fragmented = true;
    synth::render(&scene, &sample).unwrap();
    let bytes = std::fs::read(&sample).unwrap();

    let north_dir = root.join("sp/north");
    std::fs::create_dir_all(&north_dir).unwrap();
    for name in [
        "2026-11-29_08-00-00-000000.mp4",
        "2026-11-29_08-01-00-000000.mp4",
        "2026-11-29_08-02-00-000000.mp4",
    ] {
        std::fs::write(north_dir.join(name), &bytes).unwrap();
    }
    // Still being written: the newest, half there, just modified.
    std::fs::write(
        north_dir.join("2026-11-29_08-03-00-000000.mp4"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    // Not segments: ignored.
    std::fs::write(north_dir.join("notes.txt"), b"x").unwrap();
    std::fs::write(north_dir.join("2026-11-29_08-04-00-000000.mp4.tmp"), b"x").unwrap();
    // A folder no camera points at, and a camera (south) whose folder does not exist yet.
    std::fs::create_dir_all(root.join("unknown")).unwrap();
    std::fs::write(root.join("unknown/2026-11-29_08-00-00-000000.mp4"), &bytes).unwrap();

    let sync = IndexSync {
        recordings_dir: root.clone(),
        timezone: chrono_tz::Tz::America__Sao_Paulo,
        settle: Duration::from_secs(60),
    };
    let report = sync.run(&test.db).await.unwrap();
    println!("{report}");
    assert_eq!(report.get("segments_registered"), 3, "{report}");
    assert_eq!(report.get("segments_in_progress"), 1, "{report}");
    assert_eq!(report.get("folders_missing"), 1, "{report}");
    let rows = recording::Entity::find()
        .filter(recording::Column::CameraId.eq(north.id))
        .order_by_asc(recording::Column::StartedAt)
        .all(&test.db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    // 08:00 in São Paulo (UTC−3) is 11:00 UTC; the length is the file's, not the name gap's.
    assert_eq!(rows[0].started_at.to_rfc3339(), "2026-11-29T11:00:00+00:00");
    assert_eq!(rows[0].file_path, "sp/north/2026-11-29_08-00-00-000000.mp4");
    assert_eq!(rows[0].city_id, city.id);
    assert_eq!(rows[0].size_bytes, bytes.len() as i64);
    for row in &rows {
        let length = row.ended_at - row.started_at;
        assert!(
            (length - chrono::Duration::seconds(2))
                .num_milliseconds()
                .abs()
                <= 100,
            "{length}"
        );
    }
    assert_eq!(
        recording::Entity::find()
            .filter(recording::Column::CameraId.eq(south.id))
            .count(&test.db)
            .await
            .unwrap(),
        0
    );

    // Twice: nothing new.
    let again = sync.run(&test.db).await.unwrap();
    assert_eq!(again.get("segments_registered"), 0, "{again}");
    assert_eq!(recording::Entity::find().count(&test.db).await.unwrap(), 3);

    // The writer finished it (a later segment appeared): now it is registered.
    std::fs::write(north_dir.join("2026-11-29_08-03-00-000000.mp4"), &bytes).unwrap();
    std::fs::write(
        north_dir.join("2026-11-29_08-04-00-000000.mp4"),
        &bytes[..100],
    )
    .unwrap();
    let third = sync.run(&test.db).await.unwrap();
    assert_eq!(third.get("segments_registered"), 1, "{third}");
    assert_eq!(third.get("segments_in_progress"), 1, "{third}");

    // A segment whose path is registered already under another start (by hand, or read in
    // another time zone): counted and skipped; the camera's next segment is still registered.
    std::fs::write(north_dir.join("2026-11-29_08-04-00-000000.mp4"), &bytes).unwrap();
    std::fs::write(north_dir.join("2026-11-29_08-05-00-000000.mp4"), &bytes).unwrap();
    std::fs::write(
        north_dir.join("2026-11-29_08-06-00-000000.mp4"),
        &bytes[..100],
    )
    .unwrap();
    let day_before = chrono::DateTime::parse_from_rfc3339("2026-11-28T11:04:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    sentinela_core::repo::recordings::register(
        &test.db,
        sentinela_core::repo::recordings::NewRecording {
            camera_id: north.id,
            city_id: city.id,
            file_path: "sp/north/2026-11-29_08-04-00-000000.mp4".into(),
            started_at: day_before,
            ended_at: day_before + chrono::Duration::seconds(2),
            size_bytes: 1,
        },
    )
    .await
    .unwrap();
    let fourth = sync.run(&test.db).await.unwrap();
    assert_eq!(fourth.get("segments_conflicting"), 1, "{fourth}");
    assert_eq!(
        fourth.get("segments_registered"),
        1,
        "the 08:05 one: {fourth}"
    );
    assert_eq!(fourth.get("cameras_failed"), 0, "{fourth}");

    // A disabled camera is not scanned: its new segments wait.
    cameras::update(
        &test.db,
        &test.db,
        north.clone(),
        cameras::CameraChanges {
            enabled: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    std::fs::write(north_dir.join("2026-11-29_08-06-00-000000.mp4"), &bytes).unwrap();
    std::fs::write(
        north_dir.join("2026-11-29_08-07-00-000000.mp4"),
        &bytes[..100],
    )
    .unwrap();
    let fifth = sync.run(&test.db).await.unwrap();
    assert_eq!(fifth.get("segments_registered"), 0, "{fifth}");
    assert_eq!(fifth.get("cameras_scanned"), 1, "only south: {fifth}");
    test.cleanup().await;
}

/// Runs the periodic worker in-process with `recover` every second, so apalis records finished
/// runs, then prunes them.
async fn hygiene_prunes_finished_runs_only(test: &TestDb, redis: Option<&str>) {
    let settings = settings(
        test,
        redis,
        &[
            ("SENTINELA__SCHEDULER__RECOVER_CRON", "* * * * * *"),
            ("SENTINELA__SCHEDULER__RETENTION_CRON", "off"),
            ("SENTINELA__SCHEDULER__CLEANUP_CRON", "off"),
            ("SENTINELA__SCHEDULER__INDEX_SYNC_CRON", "off"),
            ("SENTINELA__SCHEDULER__QUEUE_HYGIENE_CRON", "off"),
            ("SENTINELA__SCHEDULER__WEBHOOKS_CRON", "off"),
            ("SENTINELA__WORKER__POLL_INTERVAL_MS", "200"),
        ],
    );
    let queue = JobQueue::connect(&settings, &test.db).await.unwrap();
    let schedules = periodic::schedules(&settings).unwrap();
    let ctx =
        Arc::new(JobContext::new(test.databases(&settings), queue.clone(), settings).unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let scheduler = tokio::spawn(periodic::run_scheduler(ctx, schedules, async move {
        let _ = rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(4500)).await;
    tx.send(()).unwrap();
    scheduler.await.unwrap().unwrap();
    // One run nobody has taken: pending, it must survive.
    queue
        .push_periodic(PeriodicRun {
            job: PeriodicJob::Recover,
            tick: 1,
        })
        .await
        .unwrap();
    let depth = |queue: JobQueue| async move {
        queue
            .depth()
            .await
            .unwrap()
            .into_iter()
            .find(|(q, _)| *q == PERIODIC_QUEUE)
            .unwrap()
            .1
    };
    let before = depth(queue.clone()).await;
    assert!(before.done >= 3, "{before:?}");
    // Ours, and perhaps a tick pushed while the scheduler was stopping.
    assert!(before.pending >= 1, "{before:?}");

    // Nothing finished more than an hour ago.
    let none = hygiene::run(&queue, Utc::now() - chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(none.get("done_pruned"), 0, "{none}");
    // Everything finished up to a minute from now.
    let all = hygiene::run(&queue, Utc::now() + chrono::Duration::minutes(1))
        .await
        .unwrap();
    println!("{all}");
    assert_eq!(all.get("done_pruned"), before.done, "{all}");
    let after = depth(queue.clone()).await;
    assert_eq!(after.done, 0, "{after:?}");
    assert_eq!(after.pending, before.pending, "{after:?}");
    if let JobQueue::Redis { conn, .. } = &queue {
        let mut conn = conn.clone();
        let payloads: u64 = redis::cmd("HLEN")
            .arg(format!("{PERIODIC_QUEUE}:data"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            payloads, before.pending,
            "only pending runs' payloads are left"
        );
        let metas: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{PERIODIC_QUEUE}:meta:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(metas.len() as u64, before.pending, "{metas:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_hygiene_on_redis() {
    let test = TestDb::postgres().await;
    let redis = redis_db(12);
    hygiene_prunes_finished_runs_only(&test, Some(&redis)).await;
    test.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_hygiene_on_the_embedded_queue() {
    let test = TestDb::sqlite().await;
    hygiene_prunes_finished_runs_only(&test, None).await;
    test.cleanup().await;
}
