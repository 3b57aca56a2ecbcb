//! Redis restarting mid-run (with AOF persistence, as in production): workers reconnect and the
//! search completes with nothing lost.

mod common;

use std::time::Duration;

use common::*;
use sea_orm::{EntityTrait, PaginatorTrait};
use sentinela_core::SearchStatus;
use sentinela_core::jobs::SearchVehicle;
use sentinela_testkit::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_reconnect_after_redis_restarts_and_lose_no_job() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = RedisServer::start(true);
    let redis = server.url();
    let test = TestDb::postgres().await;
    let (city, with_bus) = city_with_recordings(&test.db, dir.path(), 30, 3).await;
    let workers: Vec<_> = (0..2)
        .map(|i| WorkerProcess::spawn(&test, &redis, dir.path(), i, &[("WORKER_CONCURRENCY", "1")]))
        .collect();
    let queue = queue(&test, &redis).await;
    let search = bus_search(&test.db, city).await;
    queue
        .push_search(SearchVehicle {
            search_id: search,
            city_id: None,
        })
        .await
        .unwrap();
    let before = wait_for(&test.db, search, Duration::from_secs(120), |s| {
        s.tasks_done >= 4
    })
    .await;
    assert!(before.tasks_done < 30, "Redis goes down mid-search");

    // Restart Redis: SHUTDOWN writes the append-only file, the new server reads it back.
    server.stop(false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.start_again();

    let row = wait_for(&test.db, search, Duration::from_secs(180), |s| {
        s.status.is_final()
    })
    .await;
    assert_eq!(
        row.status,
        SearchStatus::Completed,
        "{row:?}\n{}",
        workers[0].log_text()
    );
    let logs: String = workers.iter().map(WorkerProcess::log_text).collect();
    let restarts = logs.matches("restarting").count();
    assert!(
        restarts >= 1,
        "the workers saw Redis go away and came back: {logs}"
    );
    assert!(
        restarts <= 40,
        "restarts are paced, not a busy loop: {restarts}"
    );
    assert_eq!((row.tasks_done, row.tasks_failed), (30, 0));
    let points = entity::trajectory_point::Entity::find()
        .count(&test.db)
        .await
        .unwrap();
    assert_eq!(points, (with_bus.len() as i64 * SECONDS) as u64);
    drop(workers);
    drop(server);
    test.cleanup().await;
}
