//! `trajectory_point`: a sighting of the searched vehicle. Unique per (search, camera, timestamp)
//! so a re-run job cannot duplicate points.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A sighting.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "trajectory_point")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub search_id: i64,
    pub camera_id: i64,
    pub recording_id: i64,
    pub timestamp: DateTimeUtc,
    /// Detector confidence of the vehicle, 0..1.
    pub confidence: f64,
    /// Canonical vehicle type of the detection.
    pub label: String,
    pub color: Option<String>,
    pub plate_text: Option<String>,
    /// Plate match score, 0..1, when the search had a plate.
    pub plate_score: Option<f64>,
    /// Bounding box in pixels: `{"x":…, "y":…, "w":…, "h":…}`.
    #[sea_orm(column_type = "JsonBinary")]
    pub bbox: Json,
    /// Snapshot file name under the snapshot directory.
    pub image_path: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::vehicle_search::Entity",
        from = "Column::SearchId",
        to = "super::vehicle_search::Column::Id"
    )]
    VehicleSearch,
    #[sea_orm(
        belongs_to = "super::camera::Entity",
        from = "Column::CameraId",
        to = "super::camera::Column::Id"
    )]
    Camera,
}

impl Related<super::vehicle_search::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::VehicleSearch.def()
    }
}

impl Related<super::camera::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Camera.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
