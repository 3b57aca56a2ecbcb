//! An index on a search's status and city: starting a search counts the city's searches in flight
//! (its quota), which otherwise read every search the city ever made. Status first: SQLite's
//! planner then keeps the (city, created) index for "the city's latest searches".

use sea_orm_migration::prelude::*;

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000007_search_status_city_index"
    }
}

#[derive(DeriveIden)]
enum VehicleSearch {
    Table,
    CityId,
    Status,
}

const INDEX: &str = "ix_vehicle_search_status_city";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(VehicleSearch::Table)
                    .col(VehicleSearch::Status)
                    .col(VehicleSearch::CityId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(INDEX)
                    .table(VehicleSearch::Table)
                    .to_owned(),
            )
            .await
    }
}
