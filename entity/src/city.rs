//! `city`: the unit of tenancy. Every camera, recording and search belongs to one city.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A city with its recording retention policy.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "city")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub name: String,
    /// IANA time zone name, e.g. `America/Sao_Paulo`.
    pub timezone: String,
    pub recording_retention_days: i32,
    /// Storage cap for the city's recordings; `None` means no cap.
    pub max_storage_bytes: Option<i64>,
    pub created_at: DateTimeUtc,
    /// Most recordings (tasks) one search may cover; `None` uses the global default.
    pub max_search_recordings: Option<i64>,
    /// Most frames one search may sample; `None` uses the global default.
    pub max_search_frames: Option<i64>,
    /// Searches pending or processing at once; `None` uses the global default.
    pub max_searches_in_flight: Option<i32>,
    /// Detector calls its searches may make per UTC day; `None` uses the global default.
    pub daily_detector_calls: Option<i64>,
    /// Bytes of snapshots its stored searches may hold; `None` uses the global default.
    pub max_snapshot_bytes: Option<i64>,
    /// Where the city's data lives: `None` = the shared database; otherwise its own database's
    /// URL. A secret: never serialised, never returned by the API, redacted in logs.
    #[serde(skip_serializing, default)]
    pub database_url: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::camera::Entity")]
    Camera,
    #[sea_orm(has_many = "super::recording::Entity")]
    Recording,
    #[sea_orm(has_many = "super::vehicle_search::Entity")]
    VehicleSearch,
}

impl Related<super::camera::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Camera.def()
    }
}

impl Related<super::recording::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Recording.def()
    }
}

impl Related<super::vehicle_search::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::VehicleSearch.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
