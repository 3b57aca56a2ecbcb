//! Bounds on searches: per-city overrides of the search caps and the in-flight quota, the
//! estimate stored with each search, and when each task was put on the queue (tasks are queued
//! a few at a time per search, so cities share the workers).

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
}

#[derive(DeriveIden)]
enum VehicleSearch {
    Table,
    Estimate,
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
        manager
            .alter_table(
                Table::alter()
                    .table(VehicleSearch::Table)
                    .add_column(json_binary_null(VehicleSearch::Estimate))
                    .to_owned(),
            )
            .await?;
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
        manager
            .alter_table(
                Table::alter()
                    .table(VehicleSearch::Table)
                    .drop_column(VehicleSearch::Estimate)
                    .to_owned(),
            )
            .await?;
        for column in [
            City::MaxSearchRecordings,
            City::MaxSearchFrames,
            City::MaxSearchesInFlight,
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
