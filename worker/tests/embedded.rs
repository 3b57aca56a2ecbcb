//! Embedded mode: the same search on the SQLite queue in one process gives the same trajectory as
//! the distributed mode; and queue depth is read correctly from Redis' keys.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sentinela_core::SearchStatus;
use sentinela_core::jobs::{AnalyzeRecording, SearchVehicle};
use sentinela_core::queue::{JobQueue, QueueDepth, redis_depth};
use sentinela_core::repo::points;
use sentinela_testkit::TestDb;
use sentinela_testkit::redis_db;
use sentinela_worker::{WorkerState, run_workers};

/// Runs one search in-process on the queue the settings select; returns (camera, seconds since t0)
/// of each point.
/// The worker loops of this process (embedded mode) until the returned sender is used.
async fn in_process_workers(
    test: &TestDb,
    settings: &sentinela_core::settings::Settings,
    queue: &JobQueue,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let state = Arc::new(
        WorkerState::build(settings, test.databases(settings), queue.clone())
            .await
            .unwrap(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let workers = tokio::spawn({
        let settings = settings.clone();
        async move {
            run_workers(state, &settings, async {
                let _ = stopped.await;
            })
            .await
        }
    });
    (stop, workers)
}

async fn run_search(test: &TestDb, redis: Option<&str>, dir: &std::path::Path) -> Vec<(i64, i64)> {
    let settings = settings(test, redis, dir);
    let (city, _) = city_with_recordings(&test.db, dir, 12, 3).await;
    let queue = JobQueue::connect(&settings, &test.db).await.unwrap();
    let (stop, workers) = in_process_workers(test, &settings, &queue).await;
    let search = bus_search(&test.db, city).await;
    queue
        .push_search(SearchVehicle {
            search_id: search,
            city_id: None,
        })
        .await
        .unwrap();
    let row = wait_for(&test.db, search, Duration::from_secs(180), |s| {
        s.status.is_final()
    })
    .await;
    assert_eq!(row.status, SearchStatus::Completed, "{row:?}");
    assert_eq!(row.tasks_done, 12);
    let _ = stop.send(());
    workers.await.unwrap().unwrap();
    let cameras: Vec<i64> = {
        let mut ids: Vec<i64> = points::list_for_search(&test.db, search)
            .await
            .unwrap()
            .iter()
            .map(|p| p.camera_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    points::list_for_search(&test.db, search)
        .await
        .unwrap()
        .iter()
        .map(|p| {
            (
                cameras.iter().position(|c| *c == p.camera_id).unwrap() as i64,
                (p.timestamp - t0()).num_seconds(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_search_in_embedded_mode_gives_the_same_trajectory() {
    let embedded_dir = tempfile::tempdir().unwrap();
    let embedded_db = TestDb::sqlite().await;
    let embedded = run_search(&embedded_db, None, embedded_dir.path()).await;

    let distributed_dir = tempfile::tempdir().unwrap();
    let distributed_db = TestDb::postgres().await;
    let redis = redis_db(6);
    let distributed = run_search(&distributed_db, Some(&redis), distributed_dir.path()).await;

    assert!(!embedded.is_empty());
    assert_eq!(
        embedded.len() as i64,
        4 * SECONDS,
        "4 of 12 recordings show the bus"
    );
    assert_eq!(embedded, distributed);
    embedded_db.cleanup().await;
    distributed_db.cleanup().await;
}

#[tokio::test]
async fn queue_depth_is_read_from_the_redis_keys() {
    let redis = redis_db(7);
    let test = TestDb::postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&test, Some(&redis), dir.path());
    let queue = JobQueue::connect(&settings, &test.db).await.unwrap();
    let jobs: Vec<AnalyzeRecording> = (0..7)
        .map(|i| AnalyzeRecording {
            search_id: 1,
            city_id: None,
            task_id: i,
            recording_id: i,
            from: t0(),
            to: t0() + chrono::Duration::seconds(1),
        })
        .collect();
    queue.push_analyze(jobs).await.unwrap();
    queue
        .push_search(SearchVehicle {
            search_id: 1,
            city_id: None,
        })
        .await
        .unwrap();
    let depth: HashMap<&str, QueueDepth> = queue.depth().await.unwrap().into_iter().collect();
    assert_eq!(depth["sentinela:analyze"].pending, 7);
    assert_eq!(depth["sentinela:search"].pending, 1);
    assert_eq!(depth["sentinela:analyze"].running, 0);

    // Two jobs taken by a worker show as running, not pending (in-flight sets of live workers);
    // a job re-scheduled an hour ahead (a retry with backoff) shows as scheduled.
    let client = redis::Client::open(redis.as_str()).unwrap();
    let mut conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let inflight = "sentinela:analyze:inflight:test-worker";
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg("sentinela:analyze:scheduled")
        .arg(0)
        .arg(2)
        .query_async(&mut conn)
        .await
        .unwrap();
    for id in &ids[..2] {
        let _: () = redis::cmd("ZREM")
            .arg("sentinela:analyze:scheduled")
            .arg(id)
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = redis::cmd("SADD")
            .arg(inflight)
            .arg(id)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let later = chrono::Utc::now().timestamp() + 3600;
    let _: () = redis::cmd("ZADD")
        .arg("sentinela:analyze:scheduled")
        .arg(later)
        .arg(&ids[2])
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg("sentinela:analyze:workers")
        .arg(0)
        .arg("test-worker")
        .query_async(&mut conn)
        .await
        .unwrap();
    let depth = redis_depth(&conn, "sentinela:analyze").await.unwrap();
    assert_eq!((depth.pending, depth.running, depth.scheduled), (4, 2, 1));
    test.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_that_killed_every_worker_is_not_decoded_again() {
    use sentinela_core::repo::tasks;
    let test = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&test, None, dir.path());
    let (city, recording_ids) = city_with_recordings(&test.db, dir.path(), 1, 1).await;
    let search = bus_search(&test.db, city).await;
    let recording = sentinela_core::repo::recordings::get(&test.db, recording_ids[0])
        .await
        .unwrap()
        .unwrap();
    let window =
        sentinela_core::domain::TimeRange::new(recording.started_at, recording.ended_at).unwrap();
    let task = tasks::create_for_search(
        &test.db,
        search,
        &[tasks::NewTask {
            recording_id: recording.id,
            window,
        }],
    )
    .await
    .unwrap()
    .remove(0);
    // Workers that each started it and died (their runs never ended): the starts are counted.
    let limit = settings.scheduler.max_task_attempts
        + i32::try_from(sentinela_worker::MAX_ATTEMPTS).unwrap();
    for _ in 0..limit {
        tasks::start(&test.db, task.id, "died").await.unwrap();
    }
    let queue = JobQueue::connect(&settings, &test.db).await.unwrap();
    let (stop, workers) = in_process_workers(&test, &settings, &queue).await;
    // One more delivery: over the limit, it fails without decoding.
    queue
        .push_analyze(vec![AnalyzeRecording::of_task(&task, None)])
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let ended = loop {
        let row = tasks::get(&test.db, task.id).await.unwrap().unwrap();
        if row.status.is_final() {
            break row;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task still {:?}",
            row.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = stop.send(());
    workers.await.unwrap().unwrap();
    assert_eq!(
        ended.status,
        sentinela_core::TaskStatus::Failed,
        "{ended:?}"
    );
    let error = ended.error.unwrap_or_default();
    assert!(error.contains("without finishing"), "{error}");
    assert_eq!(ended.frames_analyzed, 0, "not decoded again");
    assert!(
        sentinela_core::metrics::global().tasks_poisoned.get() >= 1,
        "counted in vms_tasks_poisoned_total"
    );
    test.cleanup().await;
}
