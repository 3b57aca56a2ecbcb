//! The same migrations run up → down → up on a fresh PostgreSQL database and a fresh SQLite file.

use migration::{Migrator, MigratorTrait, SchemaManager};
use sea_orm::DatabaseConnection;
use sentinela_testkit::TestDb;

const TABLES: [&str; 8] = [
    "city",
    "camera",
    "recording",
    "vehicle_search",
    "search_task",
    "trajectory_point",
    "frame_analysis",
    "api_key",
];

async fn present_tables(db: &DatabaseConnection) -> Vec<&'static str> {
    let manager = SchemaManager::new(db);
    let mut present = Vec::new();
    for table in TABLES {
        if manager.has_table(table).await.expect("has_table") {
            present.push(table);
        }
    }
    present
}

async fn up_down_up(test: &TestDb) {
    assert_eq!(present_tables(&test.db).await, TABLES, "after the first up");

    Migrator::down(&test.db, None).await.expect("down");
    assert!(
        present_tables(&test.db).await.is_empty(),
        "down must drop every table"
    );
    let status = Migrator::get_pending_migrations(&test.db)
        .await
        .expect("pending");
    assert_eq!(
        status.len(),
        Migrator::migrations().len(),
        "all pending after down"
    );

    Migrator::up(&test.db, None).await.expect("second up");
    assert_eq!(
        present_tables(&test.db).await,
        TABLES,
        "after the second up"
    );
    assert!(
        Migrator::get_pending_migrations(&test.db)
            .await
            .expect("pending")
            .is_empty()
    );
}

#[tokio::test]
async fn migrations_go_up_down_and_up_again_on_postgres() {
    let test = TestDb::postgres().await;
    up_down_up(&test).await;
    test.cleanup().await;
}

#[tokio::test]
async fn migrations_go_up_down_and_up_again_on_sqlite() {
    let test = TestDb::sqlite().await;
    up_down_up(&test).await;
    test.cleanup().await;
}

/// A binary older than the schema (a rollout still replacing processes, or a rollback) starts
/// against it; a database that has a migration this binary does not know but lacks one it does
/// is refused, naming the unknown one.
async fn an_older_binary_runs_against_a_newer_schema(test: &TestDb) {
    use sea_orm::ConnectionTrait;
    let newer = "m29991231_000001_from_a_newer_release";
    test.db
        .execute_unprepared(&format!(
            "INSERT INTO seaql_migrations (version, applied_at) VALUES ('{newer}', 0)"
        ))
        .await
        .unwrap();
    sentinela_core::db::migrate(&test.db, &test.url)
        .await
        .expect("an older binary starts against a newer schema");
    assert_eq!(present_tables(&test.db).await, TABLES);

    let last = Migrator::migrations().last().unwrap().name().to_owned();
    test.db
        .execute_unprepared(&format!(
            "DELETE FROM seaql_migrations WHERE version = '{last}'"
        ))
        .await
        .unwrap();
    let error = sentinela_core::db::migrate(&test.db, &test.url)
        .await
        .expect_err("not a newer release's schema")
        .to_string();
    assert!(error.contains(newer), "{error}");
}

#[tokio::test]
async fn an_older_binary_runs_against_a_newer_schema_on_postgres() {
    let test = TestDb::postgres().await;
    an_older_binary_runs_against_a_newer_schema(&test).await;
    test.cleanup().await;
}

#[tokio::test]
async fn an_older_binary_runs_against_a_newer_schema_on_sqlite() {
    let test = TestDb::sqlite().await;
    an_older_binary_runs_against_a_newer_schema(&test).await;
    test.cleanup().await;
}
