//! Stuck-task recovery on PostgreSQL + Redis: a search whose worker died after the lease is
//! re-enqueued and finished by a live worker; a task over its attempts is failed; a search whose
//! tasks all ended is finalised.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use entity::search_task;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use secrecy::ExposeSecret;
use sentinela_core::domain::TimeRange;
use sentinela_core::queue::JobQueue;
use sentinela_core::repo::{recordings, searches, tasks};
use sentinela_core::settings::Settings;
use sentinela_core::video::synth::{self, Scene};
use sentinela_core::{SearchStatus, TaskStatus};
use sentinela_scheduler::recover::recover_stuck;
use sentinela_testkit::TestDb;

async fn search_with_tasks(test: &TestDb, dir: &std::path::Path, n: usize) -> (i64, Vec<i64>) {
    let file = dir.join("street.mp4");
    if !file.exists() {
        synth::render(&Scene::new(320, 240, 10, 2.0), &file).unwrap();
    }
    let city = sentinela_testkit::city(&test.db, &format!("c{}", rand_id())).await;
    let camera = sentinela_testkit::camera(&test.db, city.id, "cam").await;
    let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 11, 0, 0).unwrap();
    let mut new_tasks = Vec::new();
    for i in 0..n {
        let start = t0 + chrono::Duration::seconds(2 * i as i64);
        let path = dir.join(format!("rec-{i}.mp4"));
        std::fs::hard_link(&file, &path).unwrap();
        let (rec, _) = recordings::register(
            &test.db,
            recordings::NewRecording {
                camera_id: camera.id,
                city_id: city.id,
                file_path: path.to_string_lossy().into_owned(),
                started_at: start,
                ended_at: start + chrono::Duration::seconds(2),
                size_bytes: 1,
            },
        )
        .await
        .unwrap();
        new_tasks.push(tasks::NewTask {
            recording_id: rec.id,
            window: TimeRange::new(rec.started_at, rec.ended_at).unwrap(),
        });
    }
    let search = searches::create(
        &test.db,
        &test.db,
        sentinela_testkit::red_bus_search(
            city.id,
            TimeRange::new(t0, t0 + chrono::Duration::hours(1)).unwrap(),
        ),
    )
    .await
    .unwrap();
    let created = tasks::create_for_search(&test.db, search.id, &new_tasks)
        .await
        .unwrap();
    searches::start_processing(&test.db, search.id, n as i32)
        .await
        .unwrap();
    (search.id, created.iter().map(|t| t.id).collect())
}

fn rand_id() -> u32 {
    std::process::id() ^ (Instant::now().elapsed().subsec_nanos())
}

/// Marks a task as taken by a worker that then vanished an hour ago, after `attempts` attempts.
async fn abandon(test: &TestDb, task: i64, attempts: i32) {
    tasks::start(&test.db, task, "dead-worker")
        .await
        .unwrap()
        .unwrap();
    search_task::Entity::update_many()
        .col_expr(
            search_task::Column::StartedAt,
            Expr::value(Utc::now() - chrono::Duration::hours(1)),
        )
        .col_expr(search_task::Column::Attempts, Expr::value(attempts))
        .filter(search_task::Column::Id.eq(task))
        .exec(&test.db)
        .await
        .unwrap();
}

fn settings(test: &TestDb, redis: &str, dir: &std::path::Path) -> Settings {
    let env = [
        ("DATABASE_URL", test.url.expose_secret().to_owned()),
        ("REDIS_URL", redis.to_owned()),
        (
            "SNAPSHOT_DIR",
            dir.join("snapshots").to_string_lossy().into_owned(),
        ),
        ("RECORDINGS_DIR", dir.to_string_lossy().into_owned()),
        (
            "SENTINELA__DETECTOR__MODEL_PATH",
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../models/nanodet_m_416.onnx")
                .to_string_lossy()
                .into_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Settings::from_sources(None, &env).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_task_recovery_finishes_a_search_whose_worker_died_after_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let test = TestDb::postgres().await;
    let redis = "redis://127.0.0.1:6379/10";
    let mut conn = redis::Client::open(redis)
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("FLUSHDB").exec(&mut conn).unwrap();
    let settings = settings(&test, redis, dir.path());
    let queue = JobQueue::connect(&settings, &test.db).await.unwrap();

    let (search, ids) = search_with_tasks(&test, dir.path(), 3).await;
    abandon(&test, ids[0], 1).await; // died once: re-enqueue
    abandon(&test, ids[1], 5).await; // died five times: give up
    tasks::finish(
        &test.db,
        ids[2],
        tasks::TaskOutcome::Done {
            frames_analyzed: 2,
            detector_calls: 1,
        },
    )
    .await
    .unwrap();

    let lease = chrono::Duration::minutes(10);
    let report = recover_stuck(&test.db, &queue, lease, 5, 8).await.unwrap();
    assert_eq!((report.requeued, report.failed), (1, 1), "{report:?}");
    let again = recover_stuck(&test.db, &queue, lease, 5, 8).await.unwrap();
    assert_eq!(
        again.requeued, 0,
        "a re-enqueued task is not pushed twice: {again:?}"
    );

    // A live worker takes the re-enqueued job and the search ends.
    let state = Arc::new(
        sentinela_worker::WorkerState::build(&settings, test.databases(&settings), queue.clone())
            .await
            .unwrap(),
    );
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let s = settings.clone();
    let workers = tokio::spawn(async move {
        sentinela_worker::run_workers(state, &s, async move {
            let _ = stopped.wait_for(|v| *v).await;
        })
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let row = loop {
        let row = searches::get(&test.db, search).await.unwrap().unwrap();
        if row.status.is_final() || Instant::now() > deadline {
            break row;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = stop.send(true);
    workers.await.unwrap().unwrap();
    assert_eq!(row.status, SearchStatus::CompletedWithErrors, "{row:?}");
    assert_eq!((row.tasks_done, row.tasks_failed), (2, 1));
    assert!(
        row.error_message
            .unwrap()
            .contains("stopped responding 5 time(s)")
    );
    let first = tasks::get(&test.db, ids[0]).await.unwrap().unwrap();
    assert_eq!(first.status, TaskStatus::Done);
    assert_eq!(first.attempts, 2);
    test.cleanup().await;
}

#[tokio::test]
async fn a_search_whose_tasks_all_ended_is_finalised() {
    let dir = tempfile::tempdir().unwrap();
    let test = TestDb::postgres().await;
    let redis = "redis://127.0.0.1:6379/11";
    let settings = settings(&test, redis, dir.path());
    let queue = JobQueue::connect(&settings, &test.db).await.unwrap();
    let (search, ids) = search_with_tasks(&test, dir.path(), 2).await;
    // Both tasks counted as done, but the process died before the fan-in ran.
    search_task::Entity::update_many()
        .col_expr(
            search_task::Column::Status,
            Expr::value(TaskStatus::Done.as_str()),
        )
        .filter(search_task::Column::Id.is_in(ids))
        .exec(&test.db)
        .await
        .unwrap();
    entity::vehicle_search::Entity::update_many()
        .col_expr(entity::vehicle_search::Column::TasksDone, Expr::value(2))
        .filter(entity::vehicle_search::Column::Id.eq(search))
        .exec(&test.db)
        .await
        .unwrap();
    let report = recover_stuck(&test.db, &queue, chrono::Duration::minutes(10), 5, 8)
        .await
        .unwrap();
    assert_eq!(report.finalized, 1);
    let row = searches::get(&test.db, search).await.unwrap().unwrap();
    assert_eq!(row.status, SearchStatus::Completed);
    test.cleanup().await;
}

#[tokio::test]
async fn a_search_left_pending_past_the_lease_is_planned_again() {
    let dir = tempfile::tempdir().unwrap();
    let test = TestDb::postgres().await;
    let redis = sentinela_testkit::redis_db(8);
    let settings = settings(&test, &redis, dir.path());
    let queue = JobQueue::connect(&settings, &test.db).await.unwrap();
    let city = sentinela_testkit::city(&test.db, &format!("c{}", rand_id())).await;
    let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 11, 0, 0).unwrap();
    let new_search = || {
        sentinela_testkit::red_bus_search(
            city.id,
            TimeRange::new(t0, t0 + chrono::Duration::hours(1)).unwrap(),
        )
    };
    // Its plan job was lost an hour ago (a Redis without persistence restarted, say); another
    // search was just created and its job is on its way.
    let lost = searches::create(&test.db, &test.db, new_search())
        .await
        .unwrap();
    entity::vehicle_search::Entity::update_many()
        .col_expr(
            entity::vehicle_search::Column::CreatedAt,
            Expr::value(Utc::now() - chrono::Duration::hours(1)),
        )
        .filter(entity::vehicle_search::Column::Id.eq(lost.id))
        .exec(&test.db)
        .await
        .unwrap();
    let fresh = searches::create(&test.db, &test.db, new_search())
        .await
        .unwrap();
    let report = recover_stuck(&test.db, &queue, chrono::Duration::minutes(10), 5, 8)
        .await
        .unwrap();
    assert_eq!(
        report.replanned, 1,
        "only the search pending past the lease"
    );
    let depth = queue.depth().await.unwrap();
    let (_, search_queue) = depth
        .iter()
        .find(|(name, _)| name.ends_with("search"))
        .unwrap();
    assert_eq!(
        search_queue.pending, 1,
        "one plan job queued again: {depth:?}"
    );
    assert_eq!(
        searches::get(&test.db, fresh.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        SearchStatus::Pending
    );
    test.cleanup().await;
}
