//! Completion webhooks: a search may name a URL (and the secret its payload is signed with) that
//! is POSTed once the search finishes; the delivery's state, attempts, next attempt and last
//! error live with the search (an outbox the scheduler's `webhooks` job drains).

use sea_orm_migration::{prelude::*, schema::*};

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000002_search_webhooks"
    }
}

#[derive(DeriveIden)]
enum VehicleSearch {
    Table,
    WebhookUrl,
    WebhookSecret,
    WebhookState,
    WebhookAttempts,
    WebhookNextAt,
    WebhookError,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER: SQLite adds a single column at a time.
        for column in [
            text_null(VehicleSearch::WebhookUrl),
            text_null(VehicleSearch::WebhookSecret),
            string_len_null(VehicleSearch::WebhookState, 16),
            integer(VehicleSearch::WebhookAttempts)
                .default(0)
                .to_owned(),
            timestamp_with_time_zone_null(VehicleSearch::WebhookNextAt),
            text_null(VehicleSearch::WebhookError),
        ] {
            let mut column = column;
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
            .create_index(
                Index::create()
                    .name("idx_vehicle_search_webhook_state")
                    .table(VehicleSearch::Table)
                    .col(VehicleSearch::WebhookState)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_vehicle_search_webhook_state")
                    .table(VehicleSearch::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            VehicleSearch::WebhookUrl,
            VehicleSearch::WebhookSecret,
            VehicleSearch::WebhookState,
            VehicleSearch::WebhookAttempts,
            VehicleSearch::WebhookNextAt,
            VehicleSearch::WebhookError,
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
        Ok(())
    }
}
