//! The distributed queue with real Redis, real PostgreSQL and real `sentinela-worker` processes:
//! fan-out/fan-in, a worker killed mid-search, SIGTERM drain, idle pickup and cancellation.

mod common;

use std::time::{Duration, Instant};

use common::*;
use entity::trajectory_point;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use sentinela_core::jobs::SearchVehicle;
use sentinela_core::repo::{points, searches};
use sentinela_core::{SearchStatus, TaskStatus};
use sentinela_testkit::TestDb;
use sentinela_testkit::redis_db;

async fn point_count(test: &TestDb, search: i64) -> u64 {
    trajectory_point::Entity::find()
        .filter(trajectory_point::Column::SearchId.eq(search))
        .count(&test.db)
        .await
        .unwrap()
}

/// Each bus recording yields one point per sampled second.
fn expected_points(bus_recordings: usize) -> u64 {
    (bus_recordings as i64 * SECONDS) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_over_50_recordings_on_3_worker_processes_completes_with_exact_points() {
    let dir = tempfile::tempdir().unwrap();
    let test = TestDb::postgres().await;
    let redis = redis_db(1);
    let (city, with_bus) = city_with_recordings(&test.db, dir.path(), 50, 5).await;
    let workers: Vec<_> = (0..3)
        .map(|i| WorkerProcess::spawn(&test, &redis, dir.path(), i, &[]))
        .collect();
    let search = bus_search(&test.db, city).await;
    queue(&test, &redis)
        .await
        .push_search(SearchVehicle {
            search_id: search,
            city_id: None,
        })
        .await
        .unwrap();

    let row = wait_for(&test.db, search, Duration::from_secs(240), |s| {
        s.status.is_final()
    })
    .await;
    assert_eq!(
        row.status,
        SearchStatus::Completed,
        "{row:?}\n{}",
        workers[0].log_text()
    );
    assert_eq!(
        (row.tasks_total, row.tasks_done, row.tasks_failed),
        (50, 50, 0)
    );
    assert_eq!(row.frames_analyzed, 50 * SECONDS);
    assert_eq!(
        point_count(&test, search).await,
        expected_points(with_bus.len())
    );
    let trajectory = points::list_for_search(&test.db, search).await.unwrap();
    let recs: std::collections::BTreeSet<i64> = trajectory.iter().map(|p| p.recording_id).collect();
    assert_eq!(
        recs.into_iter().collect::<Vec<_>>(),
        with_bus,
        "the bus recordings, and only them"
    );
    let ran_on: std::collections::BTreeSet<String> =
        sentinela_core::repo::tasks::list_for_search(&test.db, search)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|t| t.worker)
            .map(|w| w.split("-analyze").next().unwrap_or_default().to_owned())
            .collect();
    assert!(
        ran_on.len() >= 2,
        "the work spread over processes: {ran_on:?}"
    );
    drop(workers);
    test.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_search_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let test = TestDb::postgres().await;
    let redis = redis_db(2);
    let (city, with_bus) = city_with_recordings(&test.db, dir.path(), 50, 5).await;
    // The first process (the victim) is held to 2 detector calls a second, so a task it holds
    // takes long enough to still be running when the kill lands.
    let mut workers: Vec<_> = (0..3)
        .map(|i| {
            let slow: &[(&str, &str)] = if i == 0 {
                &[("DETECTOR_RATE_LIMIT", "2")]
            } else {
                &[]
            };
            WorkerProcess::spawn(&test, &redis, dir.path(), i, slow)
        })
        .collect();
    let search = bus_search(&test.db, city).await;
    queue(&test, &redis)
        .await
        .push_search(SearchVehicle {
            search_id: search,
            city_id: None,
        })
        .await
        .unwrap();

    // Kill one process while it is analysing a recording, once the search is under way.
    wait_for(&test.db, search, Duration::from_secs(120), |s| {
        s.tasks_done >= 5
    })
    .await;
    let victim = workers.remove(0);
    let marker = format!("-{}-analyze", victim.pid());
    let deadline = Instant::now() + Duration::from_secs(60);
    let in_flight = loop {
        let tasks = sentinela_core::repo::tasks::list_for_search(&test.db, search)
            .await
            .unwrap();
        let mine: Vec<i64> = tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Processing)
            .filter(|t| t.worker.as_deref().is_some_and(|w| w.contains(&marker)))
            .map(|t| t.id)
            .collect();
        if !mine.is_empty() {
            break mine;
        }
        assert!(Instant::now() < deadline, "the victim never took a task");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    victim.signal("KILL");
    drop(victim);
    // The tasks it held that had not finished when it died.
    let interrupted: Vec<i64> = sentinela_core::repo::tasks::list_for_search(&test.db, search)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| in_flight.contains(&t.id) && t.status == TaskStatus::Processing)
        .map(|t| t.id)
        .collect();
    assert!(!interrupted.is_empty(), "the kill interrupted a task");

    let row = wait_for(&test.db, search, Duration::from_secs(240), |s| {
        s.status.is_final()
    })
    .await;
    assert_eq!(row.status, SearchStatus::Completed, "{row:?}");
    assert_eq!((row.tasks_done, row.tasks_failed), (50, 0));
    let tasks = sentinela_core::repo::tasks::list_for_search(&test.db, search)
        .await
        .unwrap();
    assert!(
        tasks.iter().all(|t| t.status == TaskStatus::Done),
        "every recording analysed"
    );
    let rerun: Vec<_> = tasks
        .iter()
        .filter(|t| interrupted.contains(&t.id))
        .collect();
    assert!(
        rerun
            .iter()
            .all(|t| t.attempts >= 2 && !t.worker.as_deref().unwrap_or_default().contains(&marker)),
        "the killed worker's jobs ran again elsewhere: {rerun:?}"
    );
    assert_eq!(
        point_count(&test, search).await,
        expected_points(with_bus.len()),
        "no point lost, none duplicated"
    );
    drop(workers);
    test.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_job_drains_within_the_timeout_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let test = TestDb::postgres().await;
    let redis = redis_db(3);
    let (city, with_bus) = city_with_recordings(&test.db, dir.path(), 20, 4).await;
    let mut first = WorkerProcess::spawn(&test, &redis, dir.path(), 0, &[]);
    let search = bus_search(&test.db, city).await;
    queue(&test, &redis)
        .await
        .push_search(SearchVehicle {
            search_id: search,
            city_id: None,
        })
        .await
        .unwrap();
    wait_for(&test.db, search, Duration::from_secs(120), |s| {
        s.tasks_done >= 3
    })
    .await;

    let asked = Instant::now();
    first.signal("TERM");
    let status = first
        .wait_exit(Duration::from_secs(25))
        .expect("exits within the drain timeout");
    assert!(
        status.success(),
        "clean exit: {status:?}\n{}",
        first.log_text()
    );
    let drained_in = asked.elapsed();
    assert!(drained_in < Duration::from_secs(21), "{drained_in:?}");

    // Whatever it had not finished is still queued: a new worker completes the search.
    let second = WorkerProcess::spawn(&test, &redis, dir.path(), 1, &[]);
    let row = wait_for(&test.db, search, Duration::from_secs(180), |s| {
        s.status.is_final()
    })
    .await;
    assert_eq!(
        row.status,
        SearchStatus::Completed,
        "{row:?}\n{}",
        second.log_text()
    );
    assert_eq!(row.tasks_done, 20);
    assert_eq!(
        point_count(&test, search).await,
        expected_points(with_bus.len())
    );
    test.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_pushed_to_idle_workers_starts_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let test = TestDb::postgres().await;
    let redis = redis_db(4);
    let (city, _) = city_with_recordings(&test.db, dir.path(), 1, 1).await;
    let worker = WorkerProcess::spawn(&test, &redis, dir.path(), 0, &[]);
    let queue = queue(&test, &redis).await;
    // Let the worker start, register and go idle.
    let warmup = bus_search(&test.db, city).await;
    queue
        .push_search(SearchVehicle {
            search_id: warmup,
            city_id: None,
        })
        .await
        .unwrap();
    let row = wait_for(&test.db, warmup, Duration::from_secs(60), |s| {
        s.status.is_final()
    })
    .await;
    assert_eq!(row.status, SearchStatus::Completed, "{}", worker.log_text());
    tokio::time::sleep(Duration::from_secs(3)).await;

    for _ in 0..3 {
        let search = bus_search(&test.db, city).await;
        let pushed = Instant::now();
        queue
            .push_search(SearchVehicle {
                search_id: search,
                city_id: None,
            })
            .await
            .unwrap();
        let row = wait_for(&test.db, search, Duration::from_secs(10), |s| {
            s.status != SearchStatus::Pending
        })
        .await;
        let picked_up = pushed.elapsed();
        assert_ne!(row.status, SearchStatus::Pending);
        assert!(
            picked_up < Duration::from_secs(2),
            "picked up after {picked_up:?}"
        );
        wait_for(&test.db, search, Duration::from_secs(30), |s| {
            s.status.is_final()
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    test.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_search_stops_and_its_remaining_jobs_call_no_detector() {
    let dir = tempfile::tempdir().unwrap();
    let test = TestDb::postgres().await;
    let redis = redis_db(5);
    let (city, _) = city_with_recordings(&test.db, dir.path(), 40, 2).await;
    let _worker =
        WorkerProcess::spawn(&test, &redis, dir.path(), 0, &[("WORKER_CONCURRENCY", "1")]);
    let search = bus_search(&test.db, city).await;
    let queue = queue(&test, &redis).await;
    queue
        .push_search(SearchVehicle {
            search_id: search,
            city_id: None,
        })
        .await
        .unwrap();
    wait_for(&test.db, search, Duration::from_secs(120), |s| {
        s.tasks_done >= 2
    })
    .await;

    assert!(searches::cancel(&test.db, search).await.unwrap());
    let analyses_at_cancel = entity::frame_analysis::Entity::find()
        .count(&test.db)
        .await
        .unwrap();
    // Let the queue drain.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let depth = queue.depth().await.unwrap();
        let open: u64 = depth
            .iter()
            .map(|(_, d)| d.pending + d.running + d.scheduled)
            .sum();
        if open == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let row = searches::get(&test.db, search).await.unwrap().unwrap();
    assert_eq!(row.status, SearchStatus::Cancelled);
    assert!(row.tasks_done < 40, "stopped early: {row:?}");
    let analyses_after = entity::frame_analysis::Entity::find()
        .count(&test.db)
        .await
        .unwrap();
    // At most the frame in flight when the cancel landed (one slot) reaches the detector.
    assert!(
        analyses_after <= analyses_at_cancel + SECONDS as u64,
        "{analyses_at_cancel} analyses at cancel, {analyses_after} after"
    );
    let open = sentinela_core::repo::tasks::list_for_search(&test.db, search)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| !t.status.is_final())
        .count();
    assert_eq!(open, 0, "no task left open");
    test.cleanup().await;
}
