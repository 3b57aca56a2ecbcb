//! Sentinela's schema migrations (sea-orm-migration).
//!
//! The same migrations run on PostgreSQL (production) and SQLite (embedded mode), so they use only
//! what both support: foreign keys declared inside `CREATE TABLE` (SQLite cannot add them later),
//! unique indexes for the idempotency constraints, and portable column types.
//!
//! # Layout
//! - [`Migrator`]: the ordered list of migrations; `Migrator::up(&db, None)` brings a database current.
//! - `m20261129_000001_create_schema`: every table of the data model, its constraints and indexes.
//! - `m20261130_000001_search_bounds`: per-city search caps and quota, the stored estimate, when
//!   each task was queued.
//! - `m20261201_000001_city_databases`: where each city's data lives, and the camera and search
//!   id directories that keep ids unique across databases.
//! - `m20261201_000002_search_webhooks`: a search's completion webhook and its delivery state.
//! - `m20261201_000003_api_contract`: API key expiry and last use, search `Idempotency-Key`s.
//! - `m20261201_000004_console_sessions`: the web console's server-side sessions.
//! - `m20261201_000005_resilience`: a recording's row cannot be deleted from under a task or a
//!   sighting (`ON DELETE NO ACTION`); sightings stored without a snapshot because the storage
//!   failed are counted.
//! - `m20261201_000006_frame_snapshots`: a cached frame analysis names its content-addressed
//!   snapshot, so a repeated search reuses it without decoding.
//! - `m20261201_000007_search_status_city_index`: counting a city's searches in flight reads only
//!   those.
//! - `m20261201_000008_search_load`: each city's searches in flight as a count kept by triggers,
//!   so the quota reads one row.

pub use sea_orm_migration::prelude::*;

mod m20261129_000001_create_schema;
mod m20261130_000001_search_bounds;
mod m20261201_000001_city_databases;
mod m20261201_000002_search_webhooks;
mod m20261201_000003_api_contract;
mod m20261201_000004_console_sessions;
mod m20261201_000005_resilience;
mod m20261201_000006_frame_snapshots;
mod m20261201_000007_search_status_city_index;
mod m20261201_000008_search_load;
mod m20261201_000009_search_index_trim;

/// Applies Sentinela's migrations in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261129_000001_create_schema::Migration),
            Box::new(m20261130_000001_search_bounds::Migration),
            Box::new(m20261201_000001_city_databases::Migration),
            Box::new(m20261201_000002_search_webhooks::Migration),
            Box::new(m20261201_000003_api_contract::Migration),
            Box::new(m20261201_000004_console_sessions::Migration),
            Box::new(m20261201_000005_resilience::Migration),
            Box::new(m20261201_000006_frame_snapshots::Migration),
            Box::new(m20261201_000007_search_status_city_index::Migration),
            Box::new(m20261201_000008_search_load::Migration),
            Box::new(m20261201_000009_search_index_trim::Migration),
        ]
    }
}
