//! A city's searches in flight, kept as a count (`search_load`) by triggers on `vehicle_search`.
//!
//! Starting a search checks the city's quota. Counting the city's pending and processing rows
//! walks every index entry a recently ended search left behind until vacuum removes it: under a
//! steady stream of searches, most of the database's time went there. The triggers keep the count
//! exact in the same transaction as every change of a search's status (an insert, any update of
//! `status` by whatever code path, a delete), so the quota reads a few rows.
//!
//! The count of a city is spread over [`SHARDS`] rows, a search counting in the row of its id
//! modulo [`SHARDS`]: a row is locked from a search's insert to its commit, and one row per city
//! would make a city's concurrent starts wait for each other's commits. A statement changes one
//! search, so it locks one row and two statements cannot deadlock on them.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000008_search_load"
    }
}

/// Rows per city.
const SHARDS: u32 = 8;

/// The statuses of a search in flight (`SearchStatus::Pending` and `Processing`).
const IN_FLIGHT: &str = "('pending', 'processing')";

const CREATE_TABLE: &str = "CREATE TABLE search_load (\
     city_id BIGINT NOT NULL, \
     shard INTEGER NOT NULL, \
     in_flight BIGINT NOT NULL DEFAULT 0, \
     PRIMARY KEY (city_id, shard))";

/// The count as the rows are now (a database migrated with searches in flight).
fn backfill() -> String {
    format!(
        "INSERT INTO search_load (city_id, shard, in_flight) \
         SELECT city_id, id % {SHARDS}, COUNT(*) FROM vehicle_search \
         WHERE status IN {IN_FLIGHT} GROUP BY city_id, id % {SHARDS}"
    )
}

/// One up for the search `row` (`NEW` or `OLD`; its shard's row is created on first use).
fn count_up(row: &str) -> String {
    format!(
        "INSERT INTO search_load (city_id, shard, in_flight) VALUES ({row}.city_id, {row}.id % {SHARDS}, 1) \
         ON CONFLICT (city_id, shard) DO UPDATE SET in_flight = search_load.in_flight + 1"
    )
}

/// One down for the search `row`.
fn count_down(row: &str) -> String {
    format!(
        "UPDATE search_load SET in_flight = in_flight - 1 \
         WHERE city_id = {row}.city_id AND shard = {row}.id % {SHARDS}"
    )
}

fn postgres_up() -> Vec<String> {
    vec![
        CREATE_TABLE.to_owned(),
        backfill(),
        format!(
            "CREATE FUNCTION search_load_track() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was_in_flight boolean := false;
    is_in_flight boolean := false;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        was_in_flight := OLD.status IN {IN_FLIGHT};
    END IF;
    IF TG_OP <> 'DELETE' THEN
        is_in_flight := NEW.status IN {IN_FLIGHT};
    END IF;
    IF TG_OP = 'UPDATE' AND was_in_flight = is_in_flight AND OLD.city_id = NEW.city_id
        AND OLD.id = NEW.id THEN
        RETURN NULL;
    END IF;
    IF was_in_flight THEN
        {down};
    END IF;
    IF is_in_flight THEN
        {up};
    END IF;
    RETURN NULL;
END
$$",
            down = count_down("OLD"),
            up = count_up("NEW"),
        ),
        "CREATE TRIGGER search_load_track AFTER INSERT OR DELETE OR UPDATE OF status, city_id, id \
         ON vehicle_search FOR EACH ROW EXECUTE FUNCTION search_load_track()"
            .to_owned(),
    ]
}

fn sqlite_up() -> Vec<String> {
    let was = format!("OLD.status IN {IN_FLIGHT}");
    let is = format!("NEW.status IN {IN_FLIGHT}");
    vec![
        CREATE_TABLE.to_owned(),
        backfill(),
        format!(
            "CREATE TRIGGER search_load_insert AFTER INSERT ON vehicle_search WHEN {is} \
             BEGIN {}; END",
            count_up("NEW")
        ),
        format!(
            "CREATE TRIGGER search_load_delete AFTER DELETE ON vehicle_search WHEN {was} \
             BEGIN {}; END",
            count_down("OLD")
        ),
        // An update: down for the old row and up for the new one, unless both are in flight in
        // the same city.
        format!(
            "CREATE TRIGGER search_load_update_down AFTER UPDATE OF status, city_id, id ON vehicle_search \
             WHEN {was} AND NOT ({is} AND OLD.city_id = NEW.city_id AND OLD.id = NEW.id) BEGIN {}; END",
            count_down("OLD")
        ),
        format!(
            "CREATE TRIGGER search_load_update_up AFTER UPDATE OF status, city_id, id ON vehicle_search \
             WHEN {is} AND NOT ({was} AND OLD.city_id = NEW.city_id AND OLD.id = NEW.id) BEGIN {}; END",
            count_up("NEW")
        ),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements = match manager.get_database_backend() {
            DatabaseBackend::Sqlite => sqlite_up(),
            _ => postgres_up(),
        };
        let db = manager.get_connection();
        for statement in statements {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements: &[&str] = match manager.get_database_backend() {
            DatabaseBackend::Sqlite => &[
                "DROP TRIGGER search_load_insert",
                "DROP TRIGGER search_load_delete",
                "DROP TRIGGER search_load_update_down",
                "DROP TRIGGER search_load_update_up",
                "DROP TABLE search_load",
            ],
            _ => &[
                "DROP TRIGGER search_load_track ON vehicle_search",
                "DROP FUNCTION search_load_track()",
                "DROP TABLE search_load",
            ],
        };
        let db = manager.get_connection();
        for statement in statements {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
