//! Per-city databases: where each city's data lives (`city.database_url`, `NULL` = the shared
//! database), and the directories that keep camera and search ids unique across every database
//! and say which city owns an id (so an admin request for `/searches/{id}` is routed to the right
//! database, and snapshot folders named by search id never collide).
//!
//! Every database (control, shared and per city) carries the same schema; in a city's own
//! database the control tables (`api_key`, the directories) stay empty and `city` holds that one
//! city's row, which its cameras, recordings and searches reference.

use sea_orm_migration::{prelude::*, schema::*};

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000001_city_databases"
    }
}

#[derive(DeriveIden)]
enum City {
    Table,
    Id,
    DatabaseUrl,
}

#[derive(DeriveIden)]
enum SearchDirectory {
    Table,
    Id,
    CityId,
}

#[derive(DeriveIden)]
enum CameraDirectory {
    Table,
    Id,
    CityId,
    MediamtxPath,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(City::Table)
                    .add_column(text_null(City::DatabaseUrl))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SearchDirectory::Table)
                    .col(big_pk_auto(SearchDirectory::Id))
                    .col(big_integer(SearchDirectory::CityId))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_search_directory_city")
                            .from(SearchDirectory::Table, SearchDirectory::CityId)
                            .to(City::Table, City::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CameraDirectory::Table)
                    .col(big_pk_auto(CameraDirectory::Id))
                    .col(big_integer(CameraDirectory::CityId))
                    // MediaMTX paths are unique across every database, not only within one.
                    .col(string_len_null(CameraDirectory::MediamtxPath, 255).unique_key())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_camera_directory_city")
                            .from(CameraDirectory::Table, CameraDirectory::CityId)
                            .to(City::Table, City::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The ids that exist already (everything lived in one database until now).
        let db = manager.get_connection();
        db.execute_unprepared(
            "INSERT INTO search_directory (id, city_id) SELECT id, city_id FROM vehicle_search",
        )
        .await?;
        db.execute_unprepared(
            "INSERT INTO camera_directory (id, city_id, mediamtx_path) \
             SELECT id, city_id, mediamtx_path FROM camera",
        )
        .await?;
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            // SQLite continues after the largest id by itself; PostgreSQL's sequences do not.
            for table in ["search_directory", "camera_directory"] {
                db.execute_unprepared(&format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                     COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                ))
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            CameraDirectory::Table.into_iden(),
            SearchDirectory::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(City::Table)
                    .drop_column(City::DatabaseUrl)
                    .to_owned(),
            )
            .await
    }
}
