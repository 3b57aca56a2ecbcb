//! `vehicle_search`: an operator's question ("where did this vehicle go?") and its progress.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::status::SearchStatus;

/// A vehicle search. Progress counters are updated atomically by the workers' fan-in.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "vehicle_search")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub city_id: i64,
    /// Who asked: the user id carried by the API key.
    pub user_id: Option<String>,
    /// Normalised plate pattern (may contain `*` / `?` wildcards).
    pub plate: Option<String>,
    /// Canonical colour name (English).
    pub color: Option<String>,
    /// Canonical vehicle type (English).
    pub vehicle_type: Option<String>,
    pub start_date: DateTimeUtc,
    pub end_date: DateTimeUtc,
    /// Restrict to these cameras (JSON array of ids); `None` means every camera of the city.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub camera_ids: Option<Json>,
    pub status: SearchStatus,
    #[sea_orm(column_type = "Text", nullable)]
    pub error_message: Option<String>,
    pub tasks_total: i32,
    pub tasks_done: i32,
    pub tasks_failed: i32,
    pub frames_analyzed: i64,
    pub detector_calls: i64,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub completed_at: Option<DateTimeUtc>,
    /// What the search was estimated to cost when it was created (recordings, frames, detector
    /// calls, cost), as JSON.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub estimate: Option<Json>,
    /// Bytes of the snapshots written for it (its share of the city's snapshot budget).
    pub snapshot_bytes: i64,
    /// Sightings stored without a snapshot because the city's snapshot budget was full.
    pub snapshots_skipped: i32,
    /// Sightings stored without a snapshot because the snapshot storage could not be written (a
    /// full or read-only disk).
    pub snapshots_failed: i32,
    /// Where the completion webhook is POSTed (`None`: no webhook).
    #[sea_orm(column_type = "Text", nullable)]
    pub webhook_url: Option<String>,
    /// The key its payload is signed with (HMAC-SHA256); never serialised.
    #[sea_orm(column_type = "Text", nullable)]
    #[serde(skip_serializing, default)]
    pub webhook_secret: Option<String>,
    /// `pending`, `delivered` or `given_up` (`None`: no webhook).
    pub webhook_state: Option<String>,
    /// Delivery attempts made.
    pub webhook_attempts: i32,
    /// Not before this is the next attempt made (also the lease of an attempt in progress).
    pub webhook_next_at: Option<DateTimeUtc>,
    /// The last attempt's error.
    #[sea_orm(column_type = "Text", nullable)]
    pub webhook_error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::city::Entity",
        from = "Column::CityId",
        to = "super::city::Column::Id"
    )]
    City,
    #[sea_orm(has_many = "super::search_task::Entity")]
    SearchTask,
    #[sea_orm(has_many = "super::trajectory_point::Entity")]
    TrajectoryPoint,
}

impl Related<super::city::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::City.def()
    }
}

impl Related<super::search_task::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::SearchTask.def()
    }
}

impl Related<super::trajectory_point::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TrajectoryPoint.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
