//! Recordings: registration and the window-overlap query.

use chrono::{DateTime, Utc};
use entity::recording;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};

use crate::domain::TimeRange;

/// What registering a recording needs.
#[derive(Debug, Clone)]
pub struct NewRecording {
    /// Camera that recorded it.
    pub camera_id: i64,
    /// The camera's city.
    pub city_id: i64,
    /// Path of the file.
    pub file_path: String,
    /// Wall-clock time of the first frame.
    pub started_at: DateTime<Utc>,
    /// Wall-clock time after the last frame.
    pub ended_at: DateTime<Utc>,
    /// File size.
    pub size_bytes: i64,
}

/// Registers a recording; registering the same (camera, start) again returns the existing row and
/// changes nothing.
///
/// # Errors
/// The database error.
pub async fn register(
    db: &impl ConnectionTrait,
    new: NewRecording,
) -> Result<(recording::Model, bool), DbErr> {
    let (camera_id, started_at) = (new.camera_id, new.started_at);
    let inserted = recording::Entity::insert(recording::ActiveModel {
        camera_id: Set(new.camera_id),
        city_id: Set(new.city_id),
        file_path: Set(new.file_path),
        started_at: Set(new.started_at),
        ended_at: Set(new.ended_at),
        size_bytes: Set(new.size_bytes),
        created_at: Set(Utc::now()),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([recording::Column::CameraId, recording::Column::StartedAt])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await
    .map(|rows| rows > 0)
    .or_else(|e| match e {
        DbErr::RecordNotInserted => Ok(false),
        e => Err(e),
    })?;
    let row = recording::Entity::find()
        .filter(recording::Column::CameraId.eq(camera_id))
        .filter(recording::Column::StartedAt.eq(started_at))
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("recording of camera {camera_id}")))?;
    Ok((row, inserted))
}

/// The recording stored with this (normalised, relative) file path.
///
/// # Errors
/// The database error.
pub async fn find_by_path(
    db: &impl ConnectionTrait,
    file_path: &str,
) -> Result<Option<recording::Model>, DbErr> {
    recording::Entity::find()
        .filter(recording::Column::FilePath.eq(file_path))
        .one(db)
        .await
}

/// The recording with this id.
///
/// # Errors
/// The database error.
pub async fn get(db: &impl ConnectionTrait, id: i64) -> Result<Option<recording::Model>, DbErr> {
    recording::Entity::find_by_id(id).one(db).await
}

/// A city's recordings that overlap `window` (optionally only those of `camera_ids`), in start
/// order. A recording overlaps when it starts before the window ends and ends after it starts.
///
/// # Errors
/// The database error.
pub async fn overlapping(
    db: &impl ConnectionTrait,
    city_id: i64,
    window: &TimeRange,
    camera_ids: Option<&[i64]>,
) -> Result<Vec<recording::Model>, DbErr> {
    let mut query = recording::Entity::find()
        .filter(recording::Column::CityId.eq(city_id))
        .filter(recording::Column::StartedAt.lt(window.end()))
        .filter(recording::Column::EndedAt.gt(window.start()));
    if let Some(ids) = camera_ids {
        query = query.filter(recording::Column::CameraId.is_in(ids.iter().copied()));
    }
    query
        .order_by_asc(recording::Column::StartedAt)
        .order_by_asc(recording::Column::Id)
        .all(db)
        .await
}

/// `(id, started_at, ended_at)` of a city's recordings that overlap `window` (optionally only
/// those of `camera_ids`), in start order: what planning and estimating need, without the rows.
///
/// # Errors
/// The database error.
pub async fn overlapping_spans(
    db: &impl ConnectionTrait,
    city_id: i64,
    window: &TimeRange,
    camera_ids: Option<&[i64]>,
) -> Result<Vec<(i64, DateTime<Utc>, DateTime<Utc>)>, DbErr> {
    use sea_orm::QuerySelect;
    let mut query = recording::Entity::find()
        .select_only()
        .column(recording::Column::Id)
        .column(recording::Column::StartedAt)
        .column(recording::Column::EndedAt)
        .filter(recording::Column::CityId.eq(city_id))
        .filter(recording::Column::StartedAt.lt(window.end()))
        .filter(recording::Column::EndedAt.gt(window.start()));
    if let Some(ids) = camera_ids {
        query = query.filter(recording::Column::CameraId.is_in(ids.iter().copied()));
    }
    query
        .order_by_asc(recording::Column::StartedAt)
        .order_by_asc(recording::Column::Id)
        .into_tuple()
        .all(db)
        .await
}
