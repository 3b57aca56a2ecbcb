//! Resilience: a recording's row can no longer be deleted from under a task or a sighting (the
//! foreign keys from `search_task.recording_id` and `trajectory_point.recording_id` become
//! `ON DELETE NO ACTION` instead of `CASCADE`, so a delete racing a new task fails instead of taking
//! the task with it), and a search counts the sightings stored without a snapshot because the
//! snapshot storage could not be written (`snapshots_failed`).
//!
//! SQLite cannot alter a foreign key: each table is rebuilt from its own stored definition with
//! only that clause changed (the documented twelve-step procedure, without the steps for views and
//! triggers, which Sentinela has none of), keeping every column and index later migrations added.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000005_resilience"
    }
}

#[derive(DeriveIden)]
enum VehicleSearch {
    Table,
    SnapshotsFailed,
}

/// `(table, constraint)` of the foreign keys onto `recording` that change.
const KEYS: [(&str, &str); 2] = [
    ("search_task", "fk_search_task_recording"),
    ("trajectory_point", "fk_trajectory_point_recording"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_recording_keys(manager, "CASCADE", "NO ACTION").await?;
        manager
            .alter_table(
                Table::alter()
                    .table(VehicleSearch::Table)
                    .add_column(
                        ColumnDef::new(VehicleSearch::SnapshotsFailed)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(VehicleSearch::Table)
                    .drop_column(VehicleSearch::SnapshotsFailed)
                    .to_owned(),
            )
            .await?;
        set_recording_keys(manager, "NO ACTION", "CASCADE").await
    }
}

/// Changes the `ON DELETE` action of the foreign keys in [`KEYS`] from `from` to `to`.
async fn set_recording_keys(
    manager: &SchemaManager<'_>,
    from: &str,
    to: &str,
) -> Result<(), DbErr> {
    let db = manager.get_connection();
    match manager.get_database_backend() {
        DatabaseBackend::Sqlite => {
            for (table, _) in KEYS {
                rebuild_sqlite_table(db, table, from, to).await?;
            }
            Ok(())
        }
        _ => {
            for (table, constraint) in KEYS {
                db.execute_unprepared(&format!(
                    "ALTER TABLE \"{table}\" DROP CONSTRAINT \"{constraint}\", \
                     ADD CONSTRAINT \"{constraint}\" FOREIGN KEY (\"recording_id\") \
                     REFERENCES \"recording\" (\"id\") ON DELETE {to} ON UPDATE CASCADE"
                ))
                .await?;
            }
            Ok(())
        }
    }
}

/// Rebuilds SQLite `table` with `ON DELETE {from}` of its foreign key onto `recording` turned into
/// `ON DELETE {to}`: the new table from the stored `CREATE TABLE` text, the rows copied, the old
/// table dropped, the new one renamed, the indexes created again from their stored text.
async fn rebuild_sqlite_table(
    db: &SchemaManagerConnection<'_>,
    table: &str,
    from: &str,
    to: &str,
) -> Result<(), DbErr> {
    let stored = |kind: &str| {
        Statement::from_sql_and_values(
            DatabaseBackend::Sqlite,
            "SELECT name, sql FROM sqlite_master WHERE type = ? AND tbl_name = ? AND sql IS NOT NULL",
            [kind.into(), table.into()],
        )
    };
    let create: String = db
        .query_one_raw(stored("table"))
        .await?
        .ok_or_else(|| DbErr::Migration(format!("table {table} not found")))?
        .try_get("", "sql")?;
    let indexes: Vec<String> = db
        .query_all_raw(stored("index"))
        .await?
        .iter()
        .map(|row| row.try_get::<String>("", "sql"))
        .collect::<Result<_, _>>()?;
    // SQLite keeps no constraint names: the clause is found by its text, exactly once.
    let clause = |action: &str| {
        format!(
            "FOREIGN KEY (\"recording_id\") REFERENCES \"recording\" (\"id\") ON DELETE {action}"
        )
    };
    if create.matches(&clause(from)).count() != 1 {
        return Err(DbErr::Migration(format!(
            "{table}'s recording foreign key is not ON DELETE {from}: {create}"
        )));
    }
    let changed = create.replacen(&clause(from), &clause(to), 1);
    let new_table = format!("{table}_rebuilt");
    let changed = changed.replacen(
        &format!("CREATE TABLE \"{table}\""),
        &format!("CREATE TABLE \"{new_table}\""),
        1,
    );
    if !changed.starts_with(&format!("CREATE TABLE \"{new_table}\"")) {
        return Err(DbErr::Migration(format!(
            "unexpected definition of {table}: {create}"
        )));
    }
    // One batch on one connection (the migrator runs SQLite migrations outside a transaction,
    // on a pool: statements sent one by one could land on connections that disagree), inside
    // one transaction so a failure leaves the table as it was.
    let mut batch = format!(
        "BEGIN IMMEDIATE;\n{changed};\nINSERT INTO \"{new_table}\" SELECT * FROM \"{table}\";\n\
         DROP TABLE \"{table}\";\nALTER TABLE \"{new_table}\" RENAME TO \"{table}\";\n"
    );
    for index in indexes {
        batch.push_str(&index);
        batch.push_str(";\n");
    }
    batch.push_str("COMMIT;");
    db.execute_unprepared(&batch).await?;
    Ok(())
}
