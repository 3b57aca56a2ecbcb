//! Fewer index entries per search: every search start inserts into each index of
//! `vehicle_search`, and every status change updates the status ones.
//! - `ix_vehicle_search_status (status)` is dropped: `ix_vehicle_search_status_city (status,
//!   city_id)` serves every query on the status alone as well (its first column).
//! - `idx_vehicle_search_webhook_state` is replaced by `ix_vehicle_search_webhook`, partial, on
//!   the searches that have a webhook (`webhook_state IS NOT NULL`): the dispatcher only looks for `webhook_state = 'pending'`,
//!   which both PostgreSQL and SQLite answer from a partial index on `IS NOT NULL`, and most
//!   searches have no webhook.

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000009_search_index_trim"
    }
}

const STATUS: &str = "ix_vehicle_search_status";
const WEBHOOK: &str = "idx_vehicle_search_webhook_state";
const PARTIAL: &str = "ix_vehicle_search_webhook";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A partial index has no builder in sea-query; this text is the same on both. One call,
        // so one connection: another pooled SQLite connection could still hold the schema from
        // before the drops.
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "DROP INDEX {STATUS}; DROP INDEX {WEBHOOK}; \
                 CREATE INDEX {PARTIAL} ON vehicle_search (webhook_state) WHERE webhook_state IS NOT NULL"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "DROP INDEX {PARTIAL}; \
                 CREATE INDEX {STATUS} ON vehicle_search (status); \
                 CREATE INDEX {WEBHOOK} ON vehicle_search (webhook_state)"
            ))
            .await?;
        Ok(())
    }
}
