//! Repository behaviour on real databases: idempotent writes and the fan-in under concurrency.

use chrono::{DateTime, Duration, TimeZone, Utc};
use entity::{camera, city, recording};
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use sentinela_core::domain::{Color, PlatePattern, TimeRange, VehicleType};
use sentinela_core::repo::cameras::{self, NewCamera};
use sentinela_core::repo::frames;
use sentinela_core::repo::points::{self, NewPoint};
use sentinela_core::repo::recordings::{self, NewRecording};
use sentinela_core::repo::searches::{self, NewSearch};
use sentinela_core::repo::tasks::{self, NewTask, TaskOutcome};
use sentinela_core::{SearchStatus, TaskStatus, seed};
use sentinela_testkit::TestDb;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, 8, 0, 0).unwrap()
}

struct Fixture {
    city: city::Model,
    cameras: Vec<camera::Model>,
}

async fn fixture(db: &DatabaseConnection) -> Fixture {
    let city = sentinela_testkit::city(db, "São Paulo").await;
    let mut cams = Vec::new();
    for i in 0..3 {
        cams.push(
            cameras::create(
                db,
                db,
                NewCamera {
                    city_id: city.id,
                    name: format!("cam-{i}"),
                    location: None,
                    latitude: None,
                    longitude: None,
                    mediamtx_path: Some(format!("sp/cam-{i}")),
                },
            )
            .await
            .unwrap(),
        );
    }
    Fixture {
        city,
        cameras: cams,
    }
}

/// One-minute recordings, round-robin over the cameras, starting at `t0`.
async fn minute_recordings(
    db: &DatabaseConnection,
    f: &Fixture,
    n: usize,
) -> Vec<recording::Model> {
    let mut out = Vec::new();
    for i in 0..n {
        let camera = &f.cameras[i % f.cameras.len()];
        let start = t0() + Duration::minutes(i as i64);
        let (rec, inserted) = recordings::register(
            db,
            NewRecording {
                camera_id: camera.id,
                city_id: f.city.id,
                file_path: format!("/rec/{}/{i}.mp4", camera.name),
                started_at: start,
                ended_at: start + Duration::minutes(1),
                size_bytes: 1_000,
            },
        )
        .await
        .unwrap();
        assert!(inserted);
        out.push(rec);
    }
    out
}

/// A search started as the API starts one in the shared database ([`searches::create_in_shared`]).
async fn search_over(db: &DatabaseConnection, f: &Fixture, window: TimeRange) -> i64 {
    searches::create_in_shared(
        db,
        NewSearch {
            city_id: f.city.id,
            user_id: Some("operator-1".into()),
            plate: Some(PlatePattern::parse("ABC1D23").unwrap()),
            color: Some(Color::Red),
            vehicle_type: Some(VehicleType::Bus),
            window,
            camera_ids: None,
            estimate: None,
            webhook: None,
        },
    )
    .await
    .unwrap()
    .id
}

fn point(search_id: i64, rec: &recording::Model, at: DateTime<Utc>) -> NewPoint {
    NewPoint {
        search_id,
        camera_id: rec.camera_id,
        recording_id: rec.id,
        timestamp: at,
        confidence: 0.9,
        label: "bus".into(),
        color: Some("red".into()),
        plate_text: Some("ABC1D23".into()),
        plate_score: Some(1.0),
        bbox: serde_json::json!({"x": 1, "y": 2, "w": 3, "h": 4}),
        image_path: Some("1/2.jpg".into()),
    }
}

async fn the_same_point_inserted_twice_leaves_one_row(test: TestDb) {
    let f = fixture(&test.db).await;
    let recs = minute_recordings(&test.db, &f, 1).await;
    let window = TimeRange::new(t0(), t0() + Duration::hours(1)).unwrap();
    let search = search_over(&test.db, &f, window).await;
    let at = t0() + Duration::seconds(12);

    assert!(
        points::insert_idempotent(&test.db, point(search, &recs[0], at))
            .await
            .unwrap()
    );
    assert!(
        !points::insert_idempotent(&test.db, point(search, &recs[0], at))
            .await
            .unwrap()
    );
    assert!(
        points::insert_idempotent(&test.db, point(search, &recs[0], at + Duration::seconds(1)))
            .await
            .unwrap(),
        "another second is another point"
    );
    let rows = points::list_for_search(&test.db, search).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0].timestamp < rows[1].timestamp, "time order");
    test.cleanup().await;
}

#[tokio::test]
async fn the_same_trajectory_point_inserted_twice_leaves_one_row_on_postgres() {
    the_same_point_inserted_twice_leaves_one_row(TestDb::postgres().await).await;
}

#[tokio::test]
async fn the_same_trajectory_point_inserted_twice_leaves_one_row_on_sqlite() {
    the_same_point_inserted_twice_leaves_one_row(TestDb::sqlite().await).await;
}

/// Plans 20 tasks, then finishes all of them from 20 tokio tasks at once — twice, as a
/// re-delivered job would — and checks the search was finalised once with exact counters.
async fn twenty_concurrent_finishes(test: TestDb, failures: usize) {
    let f = fixture(&test.db).await;
    let recs = minute_recordings(&test.db, &f, 20).await;
    let window = TimeRange::new(t0(), t0() + Duration::hours(1)).unwrap();
    let search = search_over(&test.db, &f, window).await;
    let new_tasks: Vec<NewTask> = recs
        .iter()
        .map(|r| NewTask {
            recording_id: r.id,
            window: TimeRange::new(r.started_at, r.ended_at).unwrap(),
        })
        .collect();
    let created = tasks::create_for_search(&test.db, search, &new_tasks)
        .await
        .unwrap();
    let again = tasks::create_for_search(&test.db, search, &new_tasks)
        .await
        .unwrap();
    assert_eq!(created.len(), 20);
    assert_eq!(again, created, "a re-run plan creates no task twice");
    assert!(
        searches::start_processing(&test.db, search, 20)
            .await
            .unwrap()
    );
    assert!(
        !searches::start_processing(&test.db, search, 20)
            .await
            .unwrap(),
        "planning twice does not reset progress"
    );
    for task in &created {
        tasks::start(&test.db, task.id, "worker-a")
            .await
            .unwrap()
            .expect("claimable");
    }

    let mut finalised = Vec::new();
    let mut counted = 0;
    for _round in 0..2 {
        let handles: Vec<_> = created
            .iter()
            .enumerate()
            .map(|(i, task)| {
                let db = test.db.clone();
                let id = task.id;
                let outcome = if i < failures {
                    TaskOutcome::Failed {
                        error: format!("corrupt file {i}"),
                    }
                } else {
                    TaskOutcome::Done {
                        frames_analyzed: 60,
                        detector_calls: 3,
                    }
                };
                tokio::spawn(async move { tasks::finish(&db, id, outcome).await.unwrap() })
            })
            .collect();
        for handle in handles {
            let finished = handle.await.unwrap();
            counted += usize::from(finished.counted);
            finalised.extend(finished.finalized);
        }
    }

    let expected = if failures > 0 {
        SearchStatus::CompletedWithErrors
    } else {
        SearchStatus::Completed
    };
    assert_eq!(
        counted, 20,
        "each task counted exactly once over two deliveries"
    );
    assert_eq!(finalised, vec![expected], "finalised exactly once");
    let row = searches::get(&test.db, search).await.unwrap().unwrap();
    assert_eq!(row.status, expected);
    assert_eq!(row.tasks_total, 20);
    assert_eq!(row.tasks_done, 20 - failures as i32);
    assert_eq!(row.tasks_failed, failures as i32);
    assert_eq!(row.frames_analyzed, 60 * (20 - failures as i64));
    assert_eq!(row.detector_calls, 3 * (20 - failures as i64));
    assert!(row.completed_at.is_some());
    if failures > 0 {
        let message = row.error_message.expect("failed recordings are reported");
        assert!(
            message.starts_with(&format!("{failures} recording(s) failed")),
            "{message}"
        );
        assert!(message.contains("corrupt file 0"), "{message}");
    }
    let states = tasks::list_for_search(&test.db, search).await.unwrap();
    assert!(states.iter().all(|t| t.status.is_final()));
    assert_eq!(
        states
            .iter()
            .filter(|t| t.status == TaskStatus::Failed)
            .count(),
        failures
    );
    test.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_tasks_finished_concurrently_complete_the_search_once_on_postgres() {
    twenty_concurrent_finishes(TestDb::postgres().await, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_tasks_end_the_search_completed_with_errors_once_on_postgres() {
    twenty_concurrent_finishes(TestDb::postgres().await, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_tasks_finished_concurrently_complete_the_search_once_on_sqlite() {
    twenty_concurrent_finishes(TestDb::sqlite().await, 0).await;
}

#[tokio::test]
async fn overlapping_recordings_respect_the_window_edges_and_the_camera_filter() {
    let test = TestDb::postgres().await;
    let f = fixture(&test.db).await;
    let recs = minute_recordings(&test.db, &f, 6).await; // 08:00..08:06, cameras 0,1,2,0,1,2
    // 08:01:30 – 08:03:00: overlaps minute 1 (partly) and minute 2; minute 3 starts at the end.
    let window = TimeRange::new(t0() + Duration::seconds(90), t0() + Duration::minutes(3)).unwrap();
    let found = recordings::overlapping(&test.db, f.city.id, &window, None)
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![recs[1].id, recs[2].id]
    );
    let only_cam2 = [f.cameras[2].id];
    let found = recordings::overlapping(&test.db, f.city.id, &window, Some(&only_cam2))
        .await
        .unwrap();
    assert_eq!(
        found.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![recs[2].id]
    );
    let other_city = sentinela_testkit::city(&test.db, "Rio").await;
    assert!(
        recordings::overlapping(&test.db, other_city.id, &window, None)
            .await
            .unwrap()
            .is_empty(),
        "another city's recordings are not listed"
    );
    // Registering the same segment again changes nothing.
    let (again, inserted) = recordings::register(
        &test.db,
        NewRecording {
            camera_id: recs[0].camera_id,
            city_id: f.city.id,
            file_path: "/elsewhere.mp4".into(),
            started_at: recs[0].started_at,
            ended_at: recs[0].ended_at,
            size_bytes: 1,
        },
    )
    .await
    .unwrap();
    assert!(!inserted);
    assert_eq!(again, recs[0]);
    assert_eq!(recording::Entity::find().count(&test.db).await.unwrap(), 6);
    test.cleanup().await;
}

#[tokio::test]
async fn cancelling_a_search_cancels_its_open_tasks_and_blocks_finalisation() {
    let test = TestDb::sqlite().await;
    let f = fixture(&test.db).await;
    let recs = minute_recordings(&test.db, &f, 3).await;
    let search = search_over(
        &test.db,
        &f,
        TimeRange::new(t0(), t0() + Duration::hours(1)).unwrap(),
    )
    .await;
    let new_tasks: Vec<NewTask> = recs
        .iter()
        .map(|r| NewTask {
            recording_id: r.id,
            window: TimeRange::new(r.started_at, r.ended_at).unwrap(),
        })
        .collect();
    let created = tasks::create_for_search(&test.db, search, &new_tasks)
        .await
        .unwrap();
    searches::start_processing(&test.db, search, 3)
        .await
        .unwrap();
    let done = tasks::finish(
        &test.db,
        created[0].id,
        TaskOutcome::Done {
            frames_analyzed: 1,
            detector_calls: 1,
        },
    )
    .await
    .unwrap();
    assert!(done.counted && done.finalized.is_none());

    assert!(searches::cancel(&test.db, search).await.unwrap());
    assert!(
        !searches::cancel(&test.db, search).await.unwrap(),
        "cancel is once"
    );
    assert!(
        tasks::start(&test.db, created[1].id, "w")
            .await
            .unwrap()
            .is_none(),
        "cancelled tasks are not claimable"
    );
    let late = tasks::finish(
        &test.db,
        created[2].id,
        TaskOutcome::Done {
            frames_analyzed: 1,
            detector_calls: 1,
        },
    )
    .await
    .unwrap();
    assert!(!late.counted && late.finalized.is_none());
    let row = searches::get(&test.db, search).await.unwrap().unwrap();
    assert_eq!(row.status, SearchStatus::Cancelled);
    assert_eq!(row.tasks_done, 1);
    test.cleanup().await;
}

#[tokio::test]
async fn frame_analyses_are_cached_per_recording_offset_and_provider() {
    let test = TestDb::postgres().await;
    let f = fixture(&test.db).await;
    let recs = minute_recordings(&test.db, &f, 1).await;
    let id = recs[0].id;
    assert_eq!(
        frames::get(&test.db, id, 1000, "local").await.unwrap(),
        None
    );
    frames::put(
        &test.db,
        id,
        1000,
        "local",
        serde_json::json!({"vehicles": [1]}),
    )
    .await
    .unwrap();
    frames::put(
        &test.db,
        id,
        1000,
        "local",
        serde_json::json!({"vehicles": [2]}),
    )
    .await
    .unwrap();
    assert_eq!(
        frames::get(&test.db, id, 1000, "local").await.unwrap(),
        Some(serde_json::json!({"vehicles": [2]})),
        "the latest analysis wins"
    );
    assert_eq!(
        frames::get(&test.db, id, 1000, "rekognition")
            .await
            .unwrap(),
        None
    );
    let all = frames::all_for_recording(&test.db, id, "local")
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    test.cleanup().await;
}

#[tokio::test]
async fn seeding_the_demo_twice_creates_it_once() {
    let test = TestDb::sqlite().await;
    let (city, cams) = seed::seed_demo(&test.db).await.unwrap();
    let (city2, cams2) = seed::seed_demo(&test.db).await.unwrap();
    assert_eq!(city, city2);
    assert_eq!(cams, cams2);
    assert_eq!(cams.len(), seed::DEMO_CAMERAS.len());
    assert_eq!(city::Entity::find().count(&test.db).await.unwrap(), 1);
    assert_eq!(camera::Entity::find().count(&test.db).await.unwrap(), 3);
    test.cleanup().await;
}

async fn set_search_status(db: &DatabaseConnection, id: i64, status: SearchStatus) {
    use sea_orm::{ColumnTrait, QueryFilter, sea_query::Expr};
    entity::vehicle_search::Entity::update_many()
        .col_expr(
            entity::vehicle_search::Column::Status,
            Expr::value(status.as_str()),
        )
        .filter(entity::vehicle_search::Column::Id.eq(id))
        .exec(db)
        .await
        .unwrap();
}

/// Retention's race: it reads which recordings are locked, then deletes; a search planned in
/// between must keep its recording (the foreign key no longer cascades onto tasks and sightings).
async fn a_recording_is_never_deleted_from_under_a_task_or_a_sighting(test: TestDb) {
    use recordings::Deletion;
    let db = &test.db;
    let f = fixture(db).await;
    let recs = minute_recordings(db, &f, 4).await;
    let window = |r: &recording::Model| TimeRange::new(r.started_at, r.ended_at).unwrap();
    let task_for = |r: &recording::Model| NewTask {
        recording_id: r.id,
        window: window(r),
    };
    // recs[0]: a task of a search in flight; recs[1]: a sighting of a completed search;
    // recs[2]: a task of a completed search; recs[3]: nothing.
    let running = search_over(db, &f, window(&recs[0])).await;
    tasks::create_for_search(db, running, &[task_for(&recs[0])])
        .await
        .unwrap();
    let seen = search_over(db, &f, window(&recs[1])).await;
    points::insert_idempotent(db, point(seen, &recs[1], recs[1].started_at))
        .await
        .unwrap();
    set_search_status(db, seen, SearchStatus::Completed).await;
    let ended = search_over(db, &f, window(&recs[2])).await;
    tasks::create_for_search(db, ended, &[task_for(&recs[2])])
        .await
        .unwrap();
    set_search_status(db, ended, SearchStatus::Completed).await;

    // A plain delete is refused by the database itself: nothing cascades.
    let refused = recording::Entity::delete_by_id(recs[0].id)
        .exec(db)
        .await
        .unwrap_err();
    assert!(
        sentinela_core::repo::is_foreign_key_violation(&refused),
        "{refused}"
    );
    let ok = || async { Ok::<_, &str>(()) };
    assert!(matches!(
        recordings::delete_unheld(db, recs[0].id, ok).await.unwrap(),
        Deletion::Held
    ));
    assert_eq!(tasks::list_for_search(db, running).await.unwrap().len(), 1);
    assert!(matches!(
        recordings::delete_unheld(db, recs[1].id, ok).await.unwrap(),
        Deletion::Held
    ));
    assert_eq!(points::list_for_search(db, seen).await.unwrap().len(), 1);
    // An ended search's task does not hold it: it goes with the row, the search stays.
    assert!(matches!(
        recordings::delete_unheld(db, recs[2].id, ok).await.unwrap(),
        Deletion::Deleted(())
    ));
    assert!(tasks::list_for_search(db, ended).await.unwrap().is_empty());
    assert!(searches::get(db, ended).await.unwrap().is_some());

    // The file cannot be removed: the row stays.
    let disk_error = || async { Err::<(), _>("read-only file system") };
    assert!(matches!(
        recordings::delete_unheld(db, recs[3].id, disk_error)
            .await
            .unwrap(),
        Deletion::Kept("read-only file system")
    ));
    assert!(recordings::get(db, recs[3].id).await.unwrap().is_some());

    // The race: retention reads the locks (recs[3] is free), a search takes recs[3], retention
    // deletes — and the database refuses.
    let (in_use, evidence) = recordings::locked_for_retention(db, f.city.id)
        .await
        .unwrap();
    assert!(!in_use.contains(&recs[3].id) && !evidence.contains(&recs[3].id));
    let late = search_over(db, &f, window(&recs[3])).await;
    tasks::create_for_search(db, late, &[task_for(&recs[3])])
        .await
        .unwrap();
    assert!(matches!(
        recordings::delete_unheld(db, recs[3].id, ok).await.unwrap(),
        Deletion::Held
    ));
    assert_eq!(tasks::list_for_search(db, late).await.unwrap().len(), 1);
    set_search_status(db, late, SearchStatus::Cancelled).await;
    assert!(matches!(
        recordings::delete_unheld(db, recs[3].id, ok).await.unwrap(),
        Deletion::Deleted(())
    ));
    assert!(matches!(
        recordings::delete_unheld(db, recs[3].id, ok).await.unwrap(),
        Deletion::Missing
    ));
    test.cleanup().await;
}

#[tokio::test]
async fn a_recording_is_never_deleted_from_under_a_task_or_a_sighting_on_postgres() {
    a_recording_is_never_deleted_from_under_a_task_or_a_sighting(TestDb::postgres().await).await;
}

#[tokio::test]
async fn a_recording_is_never_deleted_from_under_a_task_or_a_sighting_on_sqlite() {
    a_recording_is_never_deleted_from_under_a_task_or_a_sighting(TestDb::sqlite().await).await;
}

/// Each city's searches in flight as the rows say.
async fn counted_in_flight(db: &DatabaseConnection, city_id: i64) -> u64 {
    use sea_orm::{ColumnTrait, QueryFilter};
    entity::vehicle_search::Entity::find()
        .filter(entity::vehicle_search::Column::CityId.eq(city_id))
        .filter(entity::vehicle_search::Column::Status.is_in(["pending", "processing"]))
        .count(db)
        .await
        .unwrap()
}

/// The quota's count (`searches::in_flight`, kept by triggers) equals the rows' after `step`,
/// and so does the count a search start reads with the recordings.
async fn assert_in_flight(db: &DatabaseConnection, cities: &[(i64, u64)], step: &str) {
    let any = TimeRange::new(t0(), t0() + Duration::hours(1)).unwrap();
    for &(city, expected) in cities {
        let kept = searches::in_flight(db, city).await.unwrap();
        assert_eq!(
            counted_in_flight(db, city).await,
            expected,
            "{step}: the rows of city {city}"
        );
        assert_eq!(kept, expected, "{step}: the count of city {city}");
        let (read, _) = recordings::in_flight_and_overlapping_spans(db, city, &any, None)
            .await
            .unwrap();
        assert_eq!(
            read, expected,
            "{step}: the count read at a start, city {city}"
        );
    }
}

/// A search start reads the city's searches in flight and the window's recordings in one
/// statement: the same spans as `overlapping_spans` (window edges, camera filter, disabled
/// cameras, another city), with the count, also when no recording overlaps. A search created in
/// the shared database in one statement has its directory entry and the row `create` makes.
async fn a_search_start_reads_its_quota_and_recordings_together(test: TestDb) {
    use sea_orm::{ActiveModelTrait, Set};
    use sentinela_core::repo::directory;
    let db = &test.db;
    let f = fixture(db).await;
    let recs = minute_recordings(db, &f, 6).await;
    let other = sentinela_testkit::city(db, "Rio").await;
    let mut disabled: camera::ActiveModel = f.cameras[1].clone().into();
    disabled.enabled = Set(false);
    disabled.update(db).await.unwrap();
    let windows = [
        TimeRange::new(t0() + Duration::seconds(90), t0() + Duration::minutes(3)).unwrap(),
        TimeRange::new(t0(), t0() + Duration::minutes(6)).unwrap(),
        TimeRange::new(t0() + Duration::hours(2), t0() + Duration::hours(3)).unwrap(),
    ];
    let only_cam2 = [f.cameras[2].id];
    let mut in_flight = 0;
    for round in 0..2 {
        for window in &windows {
            for (city, cameras) in [
                (f.city.id, None),
                (f.city.id, Some(&only_cam2[..])),
                (other.id, None),
            ] {
                let (count, spans) =
                    recordings::in_flight_and_overlapping_spans(db, city, window, cameras)
                        .await
                        .unwrap();
                let alone = recordings::overlapping_spans(db, city, window, cameras)
                    .await
                    .unwrap();
                assert_eq!(spans, alone, "round {round}, city {city}, {window:?}");
                let expected = if city == f.city.id { in_flight } else { 0 };
                assert_eq!(count, expected, "round {round}, city {city}");
            }
        }
        let first = search_over(db, &f, windows[1]).await;
        let second = search_over(db, &f, windows[1]).await;
        in_flight += 2;
        assert!(second > first, "ids from the directory's sequence");
        for id in [first, second] {
            assert_eq!(
                directory::city_of_search(db, id).await.unwrap(),
                Some(f.city.id)
            );
            let row = searches::get(db, id).await.unwrap().unwrap();
            assert_eq!(row.status, SearchStatus::Pending);
            assert_eq!(row.plate.as_deref(), Some("ABC1D23"));
            assert_eq!(
                (row.start_date, row.end_date),
                (t0(), t0() + Duration::minutes(6))
            );
        }
    }
    let all = recordings::overlapping_spans(db, f.city.id, &windows[1], None)
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|s| s.0).collect::<Vec<_>>(),
        [0, 2, 3, 5].map(|i| recs[i].id),
        "camera 1 is disabled"
    );
    test.cleanup().await;
}

#[tokio::test]
async fn a_search_start_reads_its_quota_and_recordings_together_on_postgres() {
    a_search_start_reads_its_quota_and_recordings_together(TestDb::postgres().await).await;
}

#[tokio::test]
async fn a_search_start_reads_its_quota_and_recordings_together_on_sqlite() {
    a_search_start_reads_its_quota_and_recordings_together(TestDb::sqlite().await).await;
}

/// Searches started together are written in one go: each row as a lone start writes it, with its
/// directory entry, in the order given, across cities; the city's count in flight follows. A
/// batch with one row the database refuses (a city that does not exist) writes nothing at all.
async fn searches_started_together_are_written_all_or_none(test: TestDb) {
    use sentinela_core::repo::directory;
    let db = &test.db;
    let f = fixture(db).await;
    let other = sentinela_testkit::city(db, "Rio").await;
    let window = TimeRange::new(t0(), t0() + Duration::minutes(6)).unwrap();
    let new = |city_id: i64, plate: &str| NewSearch {
        city_id,
        user_id: Some(format!("operator-{plate}")),
        plate: Some(PlatePattern::parse(plate).unwrap()),
        color: Some(Color::Red),
        vehicle_type: None,
        window,
        camera_ids: (city_id == f.city.id).then(|| vec![f.cameras[0].id]),
        estimate: Some(serde_json::json!({ "frames": plate.len() })),
        webhook: (city_id == other.id)
            .then(|| ("https://hooks.example/x".to_owned(), "s3cret".to_owned())),
    };
    let plates = ["AAA1A11", "BBB2B22", "CCC3C33", "DDD4D44", "EEE5E55"];
    let news: Vec<NewSearch> = plates
        .iter()
        .enumerate()
        .map(|(i, p)| new(if i % 2 == 0 { f.city.id } else { other.id }, p))
        .collect();
    let lone = search_over(db, &f, window).await;
    let rows = searches::create_many_in_shared(db, &news).await.unwrap();
    assert_eq!(rows.len(), news.len());
    let mut ids = std::collections::HashSet::from([lone]);
    for (row, new) in rows.iter().zip(&news) {
        assert!(ids.insert(row.id), "distinct ids");
        assert_eq!(row.plate, new.plate.clone().map(String::from));
        assert_eq!(row.city_id, new.city_id);
        assert_eq!(row.user_id, new.user_id);
        assert_eq!(row.status, SearchStatus::Pending);
        assert_eq!((row.start_date, row.end_date), (t0(), window.end()));
        assert_eq!(row.estimate, new.estimate);
        assert_eq!(
            row.camera_ids,
            new.camera_ids.as_ref().map(|c| serde_json::json!(c))
        );
        assert_eq!(row.webhook_url, new.webhook.as_ref().map(|w| w.0.clone()));
        assert_eq!(row.webhook_state.is_some(), new.webhook.is_some());
        assert_eq!(
            directory::city_of_search(db, row.id).await.unwrap(),
            Some(new.city_id)
        );
        assert_eq!(searches::get(db, row.id).await.unwrap().as_ref(), Some(row));
    }
    let in_flight = |city| async move {
        let (count, _) = recordings::in_flight_and_overlapping_spans(db, city, &window, None)
            .await
            .unwrap();
        count
    };
    assert_eq!(in_flight(f.city.id).await, 1 + 3);
    assert_eq!(in_flight(other.id).await, 2);
    let before = entity::vehicle_search::Entity::find()
        .count(db)
        .await
        .unwrap();
    let refused = [new(f.city.id, "FFF6F66"), new(i64::MAX, "GGG7G77")];
    searches::create_many_in_shared(db, &refused)
        .await
        .expect_err("a city that does not exist");
    assert_eq!(
        entity::vehicle_search::Entity::find()
            .count(db)
            .await
            .unwrap(),
        before,
        "nothing of a refused batch is written"
    );
    assert_eq!(in_flight(f.city.id).await, 1 + 3);
    assert!(
        searches::create_many_in_shared(db, &[])
            .await
            .unwrap()
            .is_empty()
    );
    test.cleanup().await;
}

#[tokio::test]
async fn searches_started_together_are_written_all_or_none_on_postgres() {
    searches_started_together_are_written_all_or_none(TestDb::postgres().await).await;
}

#[tokio::test]
async fn searches_started_together_are_written_all_or_none_on_sqlite() {
    searches_started_together_are_written_all_or_none(TestDb::sqlite().await).await;
}

/// Batches of starts written at once on PostgreSQL wait for each other's rows of the in-flight
/// count but never deadlock (PostgreSQL would abort one of two deadlocked batches after 1 s): each
/// batch takes those rows in the same order. Batches of 11 start at a different row each time.
#[tokio::test]
async fn concurrent_batches_of_starts_never_deadlock_on_postgres() {
    let test = TestDb::postgres().await;
    let db = &test.db;
    let f = fixture(db).await;
    let window = TimeRange::new(t0(), t0() + Duration::minutes(6)).unwrap();
    let batch: Vec<NewSearch> = (0..11)
        .map(|_| NewSearch {
            city_id: f.city.id,
            user_id: None,
            plate: None,
            color: Some(Color::Red),
            vehicle_type: None,
            window,
            camera_ids: None,
            estimate: None,
            webhook: None,
        })
        .collect();
    let writer = || async {
        for _ in 0..25 {
            searches::create_many_in_shared(db, &batch).await.unwrap();
        }
    };
    tokio::join!(writer(), writer(), writer());
    let (in_flight, _) = recordings::in_flight_and_overlapping_spans(db, f.city.id, &window, None)
        .await
        .unwrap();
    assert_eq!(in_flight, 3 * 25 * 11);
    test.cleanup().await;
}

/// The quota reads a count the database keeps: it follows a search's every way in and out of
/// flight (created, planned, failed, cancelled, ended by a bulk update, reopened, deleted,
/// created concurrently), per city, and a database migrated with searches in flight starts with
/// them counted.
async fn the_in_flight_count_follows_every_status_change(test: TestDb) {
    use migration::{Migrator, MigratorTrait};
    let db = &test.db;
    let f = fixture(db).await;
    let other = Fixture {
        city: sentinela_testkit::city(db, "Campinas").await,
        cameras: Vec::new(),
    };
    let window = TimeRange::new(t0(), t0() + Duration::hours(1)).unwrap();
    // Searches made before the count existed are counted when it is created.
    // Down to before `m20261201_000008_search_load` (the last two migrations).
    Migrator::down(db, Some(2)).await.expect("down two");
    assert!(
        !migration::SchemaManager::new(db)
            .has_table("search_load")
            .await
            .unwrap(),
        "the count's table is gone"
    );
    let before = search_over(db, &f, window).await;
    Migrator::up(db, None).await.expect("up again");
    assert_in_flight(db, &[(f.city.id, 1), (other.city.id, 0)], "migrated").await;

    let mut ids = vec![before];
    for _ in 0..3 {
        ids.push(search_over(db, &f, window).await);
    }
    let elsewhere = search_over(db, &other, window).await;
    assert_in_flight(db, &[(f.city.id, 4), (other.city.id, 1)], "created").await;
    assert!(searches::start_processing(db, ids[0], 3).await.unwrap());
    assert_in_flight(db, &[(f.city.id, 4), (other.city.id, 1)], "planned").await;
    assert!(searches::fail(db, ids[1], "boom").await.unwrap());
    assert!(!searches::fail(db, ids[1], "again").await.unwrap());
    assert_in_flight(db, &[(f.city.id, 3), (other.city.id, 1)], "failed").await;
    assert!(searches::cancel(db, ids[2]).await.unwrap());
    assert_in_flight(db, &[(f.city.id, 2), (other.city.id, 1)], "cancelled").await;
    set_search_status(db, ids[0], SearchStatus::Completed).await;
    assert_in_flight(db, &[(f.city.id, 1), (other.city.id, 1)], "completed").await;
    set_search_status(db, ids[0], SearchStatus::Processing).await;
    assert_in_flight(db, &[(f.city.id, 2), (other.city.id, 1)], "reopened").await;
    assert!(searches::delete(db, ids[0]).await.unwrap());
    assert!(searches::delete(db, ids[1]).await.unwrap());
    assert_in_flight(db, &[(f.city.id, 1), (other.city.id, 1)], "deleted").await;

    let handles: Vec<_> = (0..16)
        .map(|_| {
            let db = db.clone();
            let city = other.city.clone();
            tokio::spawn(async move {
                let other = Fixture {
                    city,
                    cameras: Vec::new(),
                };
                search_over(&db, &other, window).await
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    assert_in_flight(db, &[(f.city.id, 1), (other.city.id, 17)], "concurrent").await;
    // One statement ending many searches, the way a loop standing in for workers does.
    use sea_orm::ConnectionTrait;
    db.execute_unprepared(&format!(
        "UPDATE vehicle_search SET status = 'completed' WHERE status = 'pending' AND city_id = {} AND id <> {elsewhere}",
        other.city.id
    ))
    .await
    .unwrap();
    assert_in_flight(db, &[(f.city.id, 1), (other.city.id, 1)], "ended in bulk").await;
    test.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_in_flight_count_follows_every_status_change_on_postgres() {
    the_in_flight_count_follows_every_status_change(TestDb::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_in_flight_count_follows_every_status_change_on_sqlite() {
    the_in_flight_count_follows_every_status_change(TestDb::sqlite().await).await;
}
