//! `frame_analysis`: the detector-result cache. A frame analysed once is never sent to the
//! detector again, whatever the next search's criteria.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A cached analysis of one frame of one recording by one provider.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "frame_analysis")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub recording_id: i64,
    /// Offset of the frame from the start of the recording, in milliseconds.
    pub offset_ms: i64,
    pub provider: String,
    /// The provider-independent analysis (labels, vehicles, texts) as JSON.
    #[sea_orm(column_type = "JsonBinary")]
    pub result: Json,
    pub created_at: DateTimeUtc,
    /// SHA-256 (hex) of the snapshot cut from this frame, stored content-addressed under
    /// `SNAPSHOT_DIR/objects/`; `None` until a search matched the frame and wrote one.
    pub snapshot: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::recording::Entity",
        from = "Column::RecordingId",
        to = "super::recording::Column::Id"
    )]
    Recording,
}

impl Related<super::recording::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Recording.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
