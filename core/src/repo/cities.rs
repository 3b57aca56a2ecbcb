//! Cities.

use chrono::Utc;
use entity::city;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set,
};

/// What creating a city needs.
#[derive(Debug, Clone)]
pub struct NewCity {
    /// Unique name.
    pub name: String,
    /// IANA time zone.
    pub timezone: String,
    /// Recordings older than this are deleted by retention.
    pub recording_retention_days: i32,
    /// Storage cap of the city's recordings.
    pub max_storage_bytes: Option<i64>,
}

/// Inserts a city.
///
/// # Errors
/// The database error; a duplicate name is a unique violation.
pub async fn create(db: &impl ConnectionTrait, new: NewCity) -> Result<city::Model, DbErr> {
    city::ActiveModel {
        name: Set(new.name),
        timezone: Set(new.timezone),
        recording_retention_days: Set(new.recording_retention_days),
        max_storage_bytes: Set(new.max_storage_bytes),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await
}

/// A city's own search caps and quota; `None` uses the global default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchLimits {
    /// Recordings per search.
    pub max_search_recordings: Option<i64>,
    /// Frames per search.
    pub max_search_frames: Option<i64>,
    /// Searches pending or processing at once.
    pub max_searches_in_flight: Option<i32>,
    /// Detector calls per UTC day.
    pub daily_detector_calls: Option<i64>,
    /// Snapshot bytes its stored searches may hold.
    pub max_snapshot_bytes: Option<i64>,
}

/// Sets a city's search caps and quota; returns the city.
///
/// # Errors
/// The database error ([`DbErr::RecordNotFound`] for an unknown city).
pub async fn set_search_limits(
    db: &impl ConnectionTrait,
    id: i64,
    limits: SearchLimits,
) -> Result<city::Model, DbErr> {
    city::ActiveModel {
        id: Set(id),
        max_search_recordings: Set(limits.max_search_recordings),
        max_search_frames: Set(limits.max_search_frames),
        max_searches_in_flight: Set(limits.max_searches_in_flight),
        daily_detector_calls: Set(limits.daily_detector_calls),
        max_snapshot_bytes: Set(limits.max_snapshot_bytes),
        ..Default::default()
    }
    .update(db)
    .await
}

/// Returns the city with this name, creating it if missing (idempotent under concurrency: a
/// racing insert loses on the unique name and the winner's row is returned).
///
/// # Errors
/// The database error.
pub async fn ensure(db: &impl ConnectionTrait, new: NewCity) -> Result<city::Model, DbErr> {
    if let Some(found) = find_by_name(db, &new.name).await? {
        return Ok(found);
    }
    let name = new.name.clone();
    match create(db, new).await {
        Ok(city) => Ok(city),
        Err(e) if super::is_unique_violation(&e) => find_by_name(db, &name)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("city {name}"))),
        Err(e) => Err(e),
    }
}

/// The city with this name.
///
/// # Errors
/// The database error.
pub async fn find_by_name(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<city::Model>, DbErr> {
    city::Entity::find()
        .filter(city::Column::Name.eq(name))
        .one(db)
        .await
}

/// The city with this id.
///
/// # Errors
/// The database error.
pub async fn get(db: &impl ConnectionTrait, id: i64) -> Result<Option<city::Model>, DbErr> {
    city::Entity::find_by_id(id).one(db).await
}

/// Every city, by id.
///
/// # Errors
/// The database error.
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<city::Model>, DbErr> {
    city::Entity::find()
        .order_by_asc(city::Column::Id)
        .all(db)
        .await
}
