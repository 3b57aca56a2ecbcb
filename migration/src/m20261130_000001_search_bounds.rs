//! Bounds on searches: per-city overrides of the search caps, the in-flight quota, the daily
//! detector budget and the snapshot disk budget, each search's snapshot bytes, the detector calls each city made per day, the estimate stored with each
//! search, and when each task was put on the queue (tasks are queued a few at a time per search,
//! so cities share the workers).

use sea_orm_migration::{prelude::*, schema::*};

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261130_000001_search_bounds"
    }
}

#[derive(DeriveIden)]
enum City {
    Table,
    MaxSearchRecordings,
    MaxSearchFrames,
    MaxSearchesInFlight,
    DailyDetectorCalls,
    MaxSnapshotBytes,
}

#[derive(DeriveIden)]
enum CityUsage {
    Table,
    CityId,
    Day,
    DetectorCalls,
}

#[derive(DeriveIden)]
enum VehicleSearch {
    Table,
    Estimate,
    SnapshotBytes,
    SnapshotsSkipped,
}

#[derive(DeriveIden)]
enum SearchTask {
    Table,
    EnqueuedAt,
    CreatedAt,
    SearchId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER: SQLite adds a single column at a time.
        for column in [
            big_integer_null(City::MaxSearchRecordings),
            big_integer_null(City::MaxSearchFrames),
            integer_null(City::MaxSearchesInFlight),
            big_integer_null(City::DailyDetectorCalls),
            big_integer_null(City::MaxSnapshotBytes),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(City::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        for mut column in [
            json_binary_null(VehicleSearch::Estimate),
            big_integer(VehicleSearch::SnapshotBytes)
                .default(0)
                .to_owned(),
            integer(VehicleSearch::SnapshotsSkipped)
                .default(0)
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(VehicleSearch::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(SearchTask::Table)
                    .add_column(timestamp_with_time_zone_null(SearchTask::EnqueuedAt))
                    .to_owned(),
            )
            .await?;
        // Tasks planned before this migration were all queued when their search was planned.
        manager
            .exec_stmt(
                Query::update()
                    .table(SearchTask::Table)
                    .value(SearchTask::EnqueuedAt, Expr::col(SearchTask::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CityUsage::Table)
                    .col(big_integer(CityUsage::CityId))
                    .col(string_len(CityUsage::Day, 10))
                    .col(big_integer(CityUsage::DetectorCalls).default(0))
                    .primary_key(Index::create().col(CityUsage::CityId).col(CityUsage::Day))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_search_task_search_enqueued")
                    .table(SearchTask::Table)
                    .col(SearchTask::SearchId)
                    .col(SearchTask::EnqueuedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CityUsage::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_search_task_search_enqueued")
                    .table(SearchTask::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(SearchTask::Table)
                    .drop_column(SearchTask::EnqueuedAt)
                    .to_owned(),
            )
            .await?;
        for column in [
            VehicleSearch::Estimate,
            VehicleSearch::SnapshotBytes,
            VehicleSearch::SnapshotsSkipped,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(VehicleSearch::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for column in [
            City::MaxSearchRecordings,
            City::MaxSearchFrames,
            City::MaxSearchesInFlight,
            City::DailyDetectorCalls,
            City::MaxSnapshotBytes,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(City::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
