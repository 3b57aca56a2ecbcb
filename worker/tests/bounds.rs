//! Search bounds in the workers, with real PostgreSQL, Redis and `sentinela-worker` processes:
//!
//! - fair share: city A submits a search of 2,000 short recordings, then city B one of 5; B
//!   completes within a bound while A is still running, because each search keeps at most
//!   `worker.queued_tasks_per_search` jobs on the queue (B's jobs wait behind at most that many of
//!   A's, not behind 2,000);
//! - the daily detector budget: a search that reaches its city's budget mid-way ends as
//!   `budget_exhausted` with the sightings it found kept.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sentinela_core::SearchStatus;
use sentinela_core::jobs::SearchVehicle;
use sentinela_core::repo::{cameras, recordings, searches};
use sentinela_testkit::{TestDb, redis_db};

/// Registers `n` recordings of `file` (hard links, SECONDS long each) for a new city; returns it.
async fn city_of(
    test: &TestDb,
    dir: &std::path::Path,
    name: &str,
    file: &std::path::Path,
    n: usize,
) -> i64 {
    let city = sentinela_testkit::city(&test.db, name).await;
    let camera = cameras::create(
        &test.db,
        &test.db,
        cameras::NewCamera {
            city_id: city.id,
            name: format!("{name}-cam"),
            location: None,
            latitude: None,
            longitude: None,
            mediamtx_path: None,
        },
    )
    .await
    .unwrap();
    for i in 0..n {
        let relative = format!("{name}-{i:04}.mp4");
        std::fs::hard_link(file, dir.join(&relative)).unwrap();
        let start = t0() + chrono::Duration::seconds(SECONDS * i as i64);
        recordings::register(
            &test.db,
            recordings::NewRecording {
                camera_id: camera.id,
                city_id: city.id,
                file_path: relative,
                started_at: start,
                ended_at: start + chrono::Duration::seconds(SECONDS),
                size_bytes: 1,
            },
        )
        .await
        .unwrap();
    }
    city.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_search_of_another_city_is_not_stuck_behind_a_big_one() {
    let dir = tempfile::tempdir().unwrap();
    let test = TestDb::postgres().await;
    let redis = redis_db(13);
    let (bus, empty) = render_pair(dir.path());
    let city_a = city_of(&test, dir.path(), "a", &empty, 2000).await;
    let city_b = city_of(&test, dir.path(), "b", &bus, 5).await;
    let _workers: Vec<_> = (0..2)
        .map(|i| WorkerProcess::spawn(&test, &redis, dir.path(), i, &[]))
        .collect();
    let queue = queue(&test, &redis).await;

    let big = bus_search(&test.db, city_a).await;
    queue
        .push_search(SearchVehicle {
            search_id: big,
            city_id: None,
        })
        .await
        .unwrap();
    // A is under way before B arrives.
    let a = wait_for(&test.db, big, Duration::from_secs(60), |s| {
        s.tasks_done >= 10
    })
    .await;
    assert!(a.tasks_done >= 10, "A did not start: {a:?}");

    let small = bus_search(&test.db, city_b).await;
    let submitted = Instant::now();
    queue
        .push_search(SearchVehicle {
            search_id: small,
            city_id: None,
        })
        .await
        .unwrap();
    let b = wait_for(&test.db, small, Duration::from_secs(120), |s| {
        s.status.is_final()
    })
    .await;
    let waited = submitted.elapsed();
    let a = searches::get(&test.db, big).await.unwrap().unwrap();
    println!(
        "B ({} tasks) completed in {:.1} s; A had {} of {} tasks done",
        b.tasks_total,
        waited.as_secs_f64(),
        a.tasks_done + a.tasks_failed,
        a.tasks_total
    );
    assert_eq!(b.status, SearchStatus::Completed, "{b:?}");
    assert_eq!((b.tasks_total, b.tasks_done), (5, 5));
    // The bound: B's jobs wait behind at most the window of A's queued jobs (8), each a 3-second
    // recording; 30 s leaves room for a slow machine while 2,000 of A's jobs would take minutes.
    assert!(
        waited < Duration::from_secs(30),
        "B took {waited:?} behind A's search"
    );
    assert_eq!(
        a.status,
        SearchStatus::Processing,
        "A is still running when B is done: {a:?}"
    );
    assert!(a.tasks_done + a.tasks_failed < a.tasks_total);
    searches::cancel(&test.db, big).await.unwrap();
    test.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_that_reaches_its_city_budget_ends_as_budget_exhausted_keeping_its_points() {
    use sentinela_core::repo::{cities, points, tasks, usage};
    let dir = tempfile::tempdir().unwrap();
    let test = TestDb::postgres().await;
    let redis = redis_db(12);
    // 20 recordings with the bus, 3 frames each: the whole search needs far more than 4 calls.
    let (city, _) = city_with_recordings(&test.db, dir.path(), 20, 1).await;
    cities::set_search_limits(
        &test.db,
        city,
        cities::SearchLimits {
            daily_detector_calls: Some(4),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let _worker = WorkerProcess::spawn(&test, &redis, dir.path(), 0, &[]);
    let search = bus_search(&test.db, city).await;
    queue(&test, &redis)
        .await
        .push_search(SearchVehicle {
            search_id: search,
            city_id: None,
        })
        .await
        .unwrap();
    let row = wait_for(&test.db, search, Duration::from_secs(120), |s| {
        s.status.is_final()
    })
    .await;
    assert_eq!(row.status, SearchStatus::BudgetExhausted, "{row:?}");
    assert!(
        row.error_message
            .as_deref()
            .unwrap_or_default()
            .contains("daily detector budget (4 calls)"),
        "{row:?}"
    );
    assert!(row.tasks_done >= 1 && row.tasks_done < 20, "{row:?}");
    let used = usage::calls_on(&test.db, city, chrono::Utc::now())
        .await
        .unwrap();
    assert!(used >= 4, "the calls made were counted: {used}");
    assert_eq!(
        used, row.detector_calls,
        "usage counts exactly the search's calls"
    );
    let kept = points::list_for_search(&test.db, search).await.unwrap();
    assert!(
        !kept.is_empty(),
        "the sightings found before the budget ran out are kept"
    );
    let open = tasks::list_for_search(&test.db, search)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| !t.status.is_final())
        .count();
    assert_eq!(open, 0, "no task is left open");
    test.cleanup().await;
}
