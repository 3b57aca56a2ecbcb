//! Analysing a generated recording end to end with the local detector: points, snapshots, the
//! cache (a second analysis makes no detector call), cancellation and permanent failures.

use std::path::Path;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use sentinela_core::detect::criteria::Criteria;
use sentinela_core::detect::limit::DetectorLimiter;
use sentinela_core::detect::local::LocalDetector;
use sentinela_core::domain::{Color, TimeRange, VehicleType};
use sentinela_core::pipeline::{AnalyzeError, Analyzer, TaskInput};
use sentinela_core::repo::{points, recordings, searches};
use sentinela_core::settings::SamplerSettings;
use sentinela_core::video::synth::{self, Scene, Sprite};
use sentinela_testkit::TestDb;

struct Setup {
    test: TestDb,
    analyzer: Analyzer,
    recording: entity::recording::Model,
    city_id: i64,
    _dir: tempfile::TempDir,
}

async fn setup(file: Option<&[u8]>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cam-1.mp4");
    match file {
        Some(bytes) => std::fs::write(&path, bytes).unwrap(),
        None => {
            let mut scene = Scene::new(1280, 720, 15, 10.0);
            scene.sprites.push(Sprite {
                image: synth::load_photo(synth::BUS_PHOTO, 420).unwrap(),
                enter_s: 3.0,
                exit_s: 7.0,
                y: 150,
                from_x: 0,
                to_x: 640,
            });
            synth::render(&scene, &path).unwrap();
        }
    }
    let test = TestDb::sqlite().await;
    let city = sentinela_testkit::city(&test.db, "Campinas").await;
    let camera = sentinela_testkit::camera(&test.db, city.id, "cam-1").await;
    let start = Utc.with_ymd_and_hms(2026, 11, 29, 8, 0, 0).unwrap();
    let (recording, _) = recordings::register(
        &test.db,
        recordings::NewRecording {
            camera_id: camera.id,
            city_id: city.id,
            file_path: "cam-1.mp4".into(),
            started_at: start,
            ended_at: start + Duration::seconds(10),
            size_bytes: std::fs::metadata(&path).unwrap().len() as i64,
        },
    )
    .await
    .unwrap();
    let analyzer = Analyzer {
        detector: Arc::new(
            LocalDetector::load(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/nanodet_m_416.onnx"),
                0.35,
            )
            .unwrap(),
        ),
        limiter: Arc::new(DetectorLimiter::new(2, None)),
        sampler: SamplerSettings {
            fps: 1.0,
            jpeg_quality: 85,
            max_dimension: 1280,
            gate_threshold: 6.0,
            sighting_interval_secs: 1.0,
        },
        recordings_dir: dir.path().to_owned(),
        snapshot_dir: dir.path().join("snapshots"),
        snapshot_budget: None,
    };
    Setup {
        test,
        analyzer,
        recording,
        city_id: city.id,
        _dir: dir,
    }
}

async fn task(s: &Setup, criteria: Criteria) -> TaskInput {
    let window = TimeRange::new(s.recording.started_at, s.recording.ended_at).unwrap();
    let search = searches::create(
        &s.test.db,
        &s.test.db,
        searches::NewSearch {
            city_id: s.city_id,
            user_id: None,
            plate: criteria.plate.clone(),
            color: criteria.color,
            vehicle_type: criteria.vehicle_type,
            window,
            camera_ids: None,
            estimate: None,
            webhook: None,
        },
    )
    .await
    .unwrap();
    TaskInput {
        db: s.test.db.clone(),
        snapshot_budget: None,
        search_id: search.id,
        task_id: 0,
        recording: s.recording.clone(),
        window,
        criteria,
    }
}

fn onibus_vermelho() -> Criteria {
    Criteria::new(None, Some(Color::Red), Some(VehicleType::Bus))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_analysis_of_the_same_recording_makes_no_detector_call() {
    let s = setup(None).await;
    let first = task(&s, onibus_vermelho()).await;
    let report = s.analyzer.analyze(&first).await.expect("first analysis");
    assert_eq!(report.frames_analyzed, 10);
    assert!(
        report.detector_calls > 0 && report.detector_calls <= 10,
        "{report:?}"
    );
    assert_eq!(
        report.points_inserted, 4,
        "the bus is on screen from 3 s to 7 s: {report:?}"
    );
    let stored = points::list_for_search(&s.test.db, first.search_id)
        .await
        .unwrap();
    let seconds: Vec<i64> = stored
        .iter()
        .map(|p| (p.timestamp - s.recording.started_at).num_seconds())
        .collect();
    assert_eq!(seconds, vec![3, 4, 5, 6]);
    for point in &stored {
        let snapshot = s
            .analyzer
            .snapshot_dir
            .join(point.image_path.as_ref().unwrap());
        let bytes = std::fs::read(&snapshot).expect("snapshot written");
        assert_eq!(&bytes[..2], &[0xFF, 0xD8], "a JPEG");
        assert_eq!(point.color.as_deref(), Some("red"));
        assert_eq!(point.label, "bus");
    }

    // The same task again (a retried job): no detector call, no duplicate point.
    let again = s.analyzer.analyze(&first).await.unwrap();
    assert_eq!(again.detector_calls, 0, "{again:?}");
    assert_eq!(again.cache_hits, 10);
    assert_eq!(again.points_inserted, 0);
    assert_eq!(again.matches, 4);
    assert_eq!(
        points::list_for_search(&s.test.db, first.search_id)
            .await
            .unwrap()
            .len(),
        4
    );

    // Another search with other criteria over the same recording: answered from the cache.
    let blue_car = task(
        &s,
        Criteria::new(None, Some(Color::Blue), Some(VehicleType::Car)),
    )
    .await;
    let report = s.analyzer.analyze(&blue_car).await.unwrap();
    assert_eq!(
        (report.detector_calls, report.matches),
        (0, 0),
        "{report:?}"
    );
    s.test.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_search_is_answered_from_the_cache_without_decoding_and_shares_its_snapshots() {
    use std::os::unix::fs::MetadataExt;
    let s = setup(None).await;
    let first = task(&s, onibus_vermelho()).await;
    let report = s.analyzer.analyze(&first).await.unwrap();
    assert!(!report.replayed, "nothing cached yet: {report:?}");
    let before = points::list_for_search(&s.test.db, first.search_id)
        .await
        .unwrap();
    assert_eq!(before.len(), 4);

    // The same criteria in a new search: every frame cached, every matching frame's snapshot
    // stored; the recording is not decoded and the snapshots are the first search's files.
    let second = task(&s, onibus_vermelho()).await;
    let report = s.analyzer.analyze(&second).await.unwrap();
    assert!(report.replayed, "{report:?}");
    assert_eq!(
        (
            report.detector_calls,
            report.cache_hits,
            report.points_inserted
        ),
        (0, 10, 4),
        "{report:?}"
    );
    let after = points::list_for_search(&s.test.db, second.search_id)
        .await
        .unwrap();
    let key = |p: &entity::trajectory_point::Model| (p.timestamp, p.label.clone(), p.color.clone());
    assert_eq!(
        after.iter().map(key).collect::<Vec<_>>(),
        before.iter().map(key).collect::<Vec<_>>()
    );
    let file = |p: &entity::trajectory_point::Model| {
        let path = s.analyzer.snapshot_dir.join(p.image_path.as_ref().unwrap());
        std::fs::metadata(path).expect("snapshot linked")
    };
    for (a, b) in before.iter().zip(&after) {
        let (a, b) = (file(a), file(b));
        assert_eq!(a.ino(), b.ino(), "one file for both searches");
        assert_eq!(b.nlink(), 3, "the stored object and two searches");
    }
    let (one, two) = (
        searches::get(&s.test.db, first.search_id)
            .await
            .unwrap()
            .unwrap(),
        searches::get(&s.test.db, second.search_id)
            .await
            .unwrap()
            .unwrap(),
    );
    assert!(one.snapshot_bytes > 0);
    assert_eq!(
        two.snapshot_bytes, one.snapshot_bytes,
        "each search counts its snapshots"
    );

    // Stored snapshots gone (swept): the next search decodes again and stores them afresh.
    std::fs::remove_dir_all(s.analyzer.snapshot_dir.join("objects")).unwrap();
    let third = task(&s, onibus_vermelho()).await;
    let report = s.analyzer.analyze(&third).await.unwrap();
    assert!(!report.replayed, "{report:?}");
    assert_eq!(
        (report.detector_calls, report.points_inserted),
        (0, 4),
        "{report:?}"
    );
    let fourth = task(&s, onibus_vermelho()).await;
    assert!(s.analyzer.analyze(&fourth).await.unwrap().replayed);

    // A search that reads plates needs analyses that read text: the cache does not answer it.
    let plate = task(
        &s,
        Criteria::new(
            Some("ABC1D23".parse().unwrap()),
            Some(Color::Red),
            Some(VehicleType::Bus),
        ),
    )
    .await;
    let report = s.analyzer.analyze(&plate).await.unwrap();
    assert!(!report.replayed, "{report:?}");
    s.test.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_search_stops_before_any_detector_call_or_point() {
    let s = setup(None).await;
    let input = task(&s, onibus_vermelho()).await;
    assert!(searches::cancel(&s.test.db, input.search_id).await.unwrap());
    let report = s.analyzer.analyze(&input).await.unwrap();
    assert!(report.cancelled);
    assert_eq!((report.detector_calls, report.points_inserted), (0, 0));
    s.test.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_recording_is_a_permanent_failure_naming_the_file() {
    let s = setup(Some(b"this is not a video at all")).await;
    let input = task(&s, onibus_vermelho()).await;
    match s.analyzer.analyze(&input).await {
        Err(AnalyzeError::Permanent(message)) => {
            assert!(
                message.contains("cam-1.mp4") && message.contains("cannot be decoded"),
                "{message}"
            )
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    s.test.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sightings_are_thinned_to_the_best_per_interval_and_snapshots_keep_to_the_city_budget() {
    let mut s = setup(None).await;
    let dir_of = |search: i64| s_dir(&s.analyzer.snapshot_dir, search);
    // Every second: the bus at 3, 4, 5 and 6 s, each with its own snapshot.
    let every = task(&s, onibus_vermelho()).await;
    s.analyzer.analyze(&every).await.unwrap();
    let reference = points::list_for_search(&s.test.db, every.search_id)
        .await
        .unwrap();
    assert_eq!(reference.len(), 4);
    let row = searches::get(&s.test.db, every.search_id)
        .await
        .unwrap()
        .unwrap();
    let on_disk: u64 = jpegs(&dir_of(every.search_id))
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(
        row.snapshot_bytes as u64, on_disk,
        "the search counts its bytes"
    );
    assert_eq!(row.snapshots_skipped, 0);

    // One sighting per 4 s (the grid starts at 08:00:00): [0, 4) keeps the 3-s sighting, [4, 8)
    // the most confident of 4, 5 and 6 s; replaced snapshots are removed.
    s.analyzer.sampler.sighting_interval_secs = 4.0;
    let thinned = task(&s, onibus_vermelho()).await;
    s.analyzer.analyze(&thinned).await.unwrap();
    let kept = points::list_for_search(&s.test.db, thinned.search_id)
        .await
        .unwrap();
    let best_late = reference[1..]
        .iter()
        .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
        .unwrap();
    let summary: Vec<(i64, f64)> = kept
        .iter()
        .map(|p| {
            (
                (p.timestamp - s.recording.started_at).num_seconds(),
                p.confidence,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (3, reference[0].confidence),
            (
                (best_late.timestamp - s.recording.started_at).num_seconds(),
                best_late.confidence
            )
        ]
    );
    assert_eq!(
        jpegs(&dir_of(thinned.search_id)).len(),
        2,
        "one snapshot per kept sighting"
    );
    // Again (a retried task): the same two sightings.
    s.analyzer.analyze(&thinned).await.unwrap();
    assert_eq!(
        points::list_for_search(&s.test.db, thinned.search_id)
            .await
            .unwrap()
            .len(),
        2
    );

    // A city snapshot budget already used up: sightings are stored, snapshots are not, and the
    // search says how many it skipped.
    s.analyzer.sampler.sighting_interval_secs = 1.0;
    // (The worker passes the city's `max_snapshot_bytes` from the control database.)
    let mut full = task(&s, onibus_vermelho()).await;
    full.snapshot_budget = Some(1);
    let report = s.analyzer.analyze(&full).await.unwrap();
    assert_eq!(report.snapshots_skipped, 4, "{report:?}");
    let stored = points::list_for_search(&s.test.db, full.search_id)
        .await
        .unwrap();
    assert_eq!(stored.len(), 4, "every sighting is kept");
    assert!(stored.iter().all(|p| p.image_path.is_none()));
    assert!(jpegs(&dir_of(full.search_id)).is_empty());
    let row = searches::get(&s.test.db, full.search_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.snapshots_skipped, row.snapshot_bytes), (4, 0));
    s.test.cleanup().await;
}

fn s_dir(snapshots: &Path, search: i64) -> std::path::PathBuf {
    snapshots.join(search.to_string())
}

fn jpegs(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
                .collect()
        })
        .unwrap_or_default()
}
