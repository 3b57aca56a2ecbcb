//! `search_task`: one recording-range job of a search. Unique per (search, recording) so a re-run
//! plan cannot create a task twice.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::status::TaskStatus;

/// One recording-range task.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "search_task")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub search_id: i64,
    pub recording_id: i64,
    /// The part of the recording to analyse: the search window clipped to the recording.
    pub window_start: DateTimeUtc,
    pub window_end: DateTimeUtc,
    pub status: TaskStatus,
    pub attempts: i32,
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    /// Name of the worker that last took the task.
    pub worker: Option<String>,
    pub frames_analyzed: i64,
    pub detector_calls: i64,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    /// When its job was put on the queue; `None` while it waits for a slot of its search's
    /// queue window.
    pub enqueued_at: Option<DateTimeUtc>,
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
        belongs_to = "super::recording::Entity",
        from = "Column::RecordingId",
        to = "super::recording::Column::Id"
    )]
    Recording,
}

impl Related<super::vehicle_search::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::VehicleSearch.def()
    }
}

impl Related<super::recording::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Recording.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
