//! Trajectory points, inserted idempotently.

use chrono::{DateTime, Utc};
use entity::trajectory_point;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};

/// A sighting to record.
#[derive(Debug, Clone)]
pub struct NewPoint {
    /// The search it answers.
    pub search_id: i64,
    /// The camera that saw the vehicle.
    pub camera_id: i64,
    /// The recording it was seen in.
    pub recording_id: i64,
    /// When.
    pub timestamp: DateTime<Utc>,
    /// Detector confidence, 0..1.
    pub confidence: f64,
    /// Canonical vehicle type.
    pub label: String,
    /// Canonical colour.
    pub color: Option<String>,
    /// Plate text read.
    pub plate_text: Option<String>,
    /// Plate match score.
    pub plate_score: Option<f64>,
    /// Bounding box JSON.
    pub bbox: serde_json::Value,
    /// Snapshot file name.
    pub image_path: Option<String>,
}

/// Inserts a point unless the same (search, camera, timestamp) is already there. Returns whether a
/// row was inserted; a re-run job gets `false` and the trajectory keeps one row.
///
/// # Errors
/// The database error.
pub async fn insert_idempotent(db: &impl ConnectionTrait, new: NewPoint) -> Result<bool, DbErr> {
    let result = trajectory_point::Entity::insert(trajectory_point::ActiveModel {
        search_id: Set(new.search_id),
        camera_id: Set(new.camera_id),
        recording_id: Set(new.recording_id),
        timestamp: Set(new.timestamp),
        confidence: Set(new.confidence),
        label: Set(new.label),
        color: Set(new.color),
        plate_text: Set(new.plate_text),
        plate_score: Set(new.plate_score),
        bbox: Set(new.bbox),
        image_path: Set(new.image_path),
        created_at: Set(Utc::now()),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([
            trajectory_point::Column::SearchId,
            trajectory_point::Column::CameraId,
            trajectory_point::Column::Timestamp,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(db)
    .await;
    match result {
        Ok(rows) => Ok(rows > 0),
        Err(DbErr::RecordNotInserted) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A search's points in time order.
///
/// # Errors
/// The database error.
pub async fn list_for_search(
    db: &impl ConnectionTrait,
    search_id: i64,
) -> Result<Vec<trajectory_point::Model>, DbErr> {
    trajectory_point::Entity::find()
        .filter(trajectory_point::Column::SearchId.eq(search_id))
        .order_by_asc(trajectory_point::Column::Timestamp)
        .order_by_asc(trajectory_point::Column::CameraId)
        .all(db)
        .await
}
