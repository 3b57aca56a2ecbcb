//! Finalising big searches costs linear work: a search of N tasks, one in five failing (each
//! with its own error), every task finished through `tasks::finish` (which runs the fan-in) on a
//! fresh SQLite database. Printed per N: the total and the time per task, for
//!
//! (a) the previous fan-in, which read every failed task of the search on every finish to build
//!     the error message (replayed here as that extra query per finish), and
//! (b) the current one, which reads the search's counters (one row) and builds a bounded summary
//!     (one aggregate) only once the search is complete.
//!
//! Linear work shows as a flat time per task as N grows; (a)'s grows with N.
//!
//! `cargo bench -p sentinela-core --bench finalize` (`FINALIZE_BENCH_SIZES=1000,5000` to choose).

use std::time::Instant;

use chrono::{TimeZone, Utc};
use entity::search_task;
use entity::status::TaskStatus;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use sentinela_core::domain::{Color, TimeRange};
use sentinela_core::repo::{recordings, searches, tasks};
use sentinela_testkit::TestDb;

async fn run(n: usize, replay_old: bool) -> f64 {
    let test = TestDb::sqlite().await;
    let city = sentinela_testkit::city(&test.db, "bench").await;
    let camera = sentinela_testkit::camera(&test.db, city.id, "cam").await;
    let t0 = Utc.with_ymd_and_hms(2026, 11, 29, 8, 0, 0).unwrap();
    let mut new_tasks = Vec::with_capacity(n);
    for i in 0..n {
        let start = t0 + chrono::Duration::minutes(i as i64);
        let (rec, _) = recordings::register(
            &test.db,
            recordings::NewRecording {
                camera_id: camera.id,
                city_id: city.id,
                file_path: format!("cam/{i}.mp4"),
                started_at: start,
                ended_at: start + chrono::Duration::minutes(1),
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
        searches::NewSearch {
            city_id: city.id,
            user_id: None,
            plate: None,
            color: Some(Color::Red),
            vehicle_type: None,
            window: TimeRange::new(t0, t0 + chrono::Duration::days(7)).unwrap(),
            camera_ids: None,
            estimate: None,
            webhook: None,
        },
    )
    .await
    .unwrap();
    let created = tasks::create_for_search(&test.db, search.id, &new_tasks)
        .await
        .unwrap();
    searches::start_processing(&test.db, search.id, n as i32)
        .await
        .unwrap();

    let started = Instant::now();
    for (i, task) in created.iter().enumerate() {
        let outcome = if i % 5 == 0 {
            tasks::TaskOutcome::Failed {
                error: format!("recording cam/{i}.mp4 is missing: no such file"),
            }
        } else {
            tasks::TaskOutcome::Done {
                frames_analyzed: 60,
                detector_calls: 3,
            }
        };
        tasks::finish(&test.db, task.id, outcome).await.unwrap();
        if replay_old {
            let failed = search_task::Entity::find()
                .filter(search_task::Column::SearchId.eq(search.id))
                .filter(search_task::Column::Status.eq(TaskStatus::Failed.as_str()))
                .all(&test.db)
                .await
                .unwrap();
            std::hint::black_box(failed);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let row = searches::get(&test.db, search.id).await.unwrap().unwrap();
    assert!(row.status.is_final(), "{row:?}");
    let message = row.error_message.unwrap_or_default();
    assert!(
        message.len() < 1000,
        "the summary is bounded: {} bytes",
        message.len()
    );
    test.cleanup().await;
    seconds
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("FINALIZE_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,2500,5000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!(
        "| tasks (1/5 failed) | (a) previous: s | (a) ms/task | (b) current: s | (b) ms/task |"
    );
    println!("|---|---|---|---|---|");
    for n in sizes {
        let old = run(n, true).await;
        let new = run(n, false).await;
        println!(
            "| {n} | {old:.2} | {:.3} | {new:.2} | {:.3} |",
            old * 1000.0 / n as f64,
            new * 1000.0 / n as f64
        );
    }
}
