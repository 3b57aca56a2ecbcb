//! `search_load`: a city's searches in flight (pending or processing), kept by triggers on
//! `vehicle_search` (see the `m20261201_000008_search_load` migration); read by the quota.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Part of one city's searches in flight: those whose id modulo the shard count is `shard` (the
/// count is spread over a few rows so concurrent starts do not wait for each other's commits).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "search_load")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub city_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub shard: i32,
    pub in_flight: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
