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
    /// Its own database's URL; `None` keeps its data in the shared database.
    pub database_url: Option<String>,
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
        database_url: Set(new.database_url),
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

/// Every city whose data lives in its own database, by id.
///
/// # Errors
/// The database error.
pub async fn with_own_database(db: &impl ConnectionTrait) -> Result<Vec<city::Model>, DbErr> {
    city::Entity::find()
        .filter(city::Column::DatabaseUrl.is_not_null())
        .order_by_asc(city::Column::Id)
        .all(db)
        .await
}

/// Every city whose data lives in the shared database, by id.
///
/// # Errors
/// The database error.
pub async fn in_shared_database(db: &impl ConnectionTrait) -> Result<Vec<city::Model>, DbErr> {
    city::Entity::find()
        .filter(city::Column::DatabaseUrl.is_null())
        .order_by_asc(city::Column::Id)
        .all(db)
        .await
}

/// Writes the control database's row of `city` into the city's own database (same id, name and
/// limits; no database URL), so its cameras, recordings and searches have their city there for
/// the foreign keys. Limits are always read from the control database, never from this copy.
/// Idempotent: an existing row is brought up to date.
///
/// # Errors
/// The database error.
pub async fn mirror(city_db: &impl ConnectionTrait, city: &city::Model) -> Result<(), DbErr> {
    use sea_orm::sea_query::OnConflict;
    let mut row = city::ActiveModel::from(city.clone()).reset_all();
    row.database_url = Set(None);
    city::Entity::insert(row)
        .on_conflict(
            OnConflict::column(city::Column::Id)
                .update_columns([
                    city::Column::Name,
                    city::Column::Timezone,
                    city::Column::RecordingRetentionDays,
                    city::Column::MaxStorageBytes,
                    city::Column::MaxSearchRecordings,
                    city::Column::MaxSearchFrames,
                    city::Column::MaxSearchesInFlight,
                    city::Column::DailyDetectorCalls,
                    city::Column::MaxSnapshotBytes,
                ])
                .to_owned(),
        )
        .exec(city_db)
        .await
        .map(drop)
}

/// Deletes a city that holds no data yet (a city whose database could not be prepared).
///
/// # Errors
/// The database error.
pub async fn delete(db: &impl ConnectionTrait, id: i64) -> Result<(), DbErr> {
    city::Entity::delete_by_id(id).exec(db).await.map(drop)
}

/// What an admin may change on a city. `None`: unchanged; for the optional limits `Some(None)`
/// removes the city's own value (the installation's default applies again).
#[derive(Debug, Clone, Default)]
pub struct CityChanges {
    /// New name.
    pub name: Option<String>,
    /// New IANA time zone.
    pub timezone: Option<String>,
    /// New retention, days.
    pub recording_retention_days: Option<i32>,
    /// Storage cap, bytes.
    pub max_storage_bytes: Option<Option<i64>>,
    /// Recordings per search.
    pub max_search_recordings: Option<Option<i64>>,
    /// Frames per search.
    pub max_search_frames: Option<Option<i64>>,
    /// Searches pending or processing at once.
    pub max_searches_in_flight: Option<Option<i32>>,
    /// Detector calls per UTC day.
    pub daily_detector_calls: Option<Option<i64>>,
    /// Snapshot bytes.
    pub max_snapshot_bytes: Option<Option<i64>>,
}

/// Applies `changes` to `city` in the control database and returns the updated row (the caller
/// mirrors it into the city's own database, if it has one).
///
/// # Errors
/// The database error; a duplicate name is a unique violation.
pub async fn update(
    db: &impl ConnectionTrait,
    city: city::Model,
    changes: CityChanges,
) -> Result<city::Model, DbErr> {
    let mut row: city::ActiveModel = city.into();
    if let Some(v) = changes.name {
        row.name = Set(v);
    }
    if let Some(v) = changes.timezone {
        row.timezone = Set(v);
    }
    if let Some(v) = changes.recording_retention_days {
        row.recording_retention_days = Set(v);
    }
    if let Some(v) = changes.max_storage_bytes {
        row.max_storage_bytes = Set(v);
    }
    if let Some(v) = changes.max_search_recordings {
        row.max_search_recordings = Set(v);
    }
    if let Some(v) = changes.max_search_frames {
        row.max_search_frames = Set(v);
    }
    if let Some(v) = changes.max_searches_in_flight {
        row.max_searches_in_flight = Set(v);
    }
    if let Some(v) = changes.daily_detector_calls {
        row.daily_detector_calls = Set(v);
    }
    if let Some(v) = changes.max_snapshot_bytes {
        row.max_snapshot_bytes = Set(v);
    }
    row.update(db).await
}

/// What still holds a city: (cameras, searches) in its data database and active API keys in the
/// control database. A city is deleted only when all three are zero.
///
/// # Errors
/// The database error.
pub async fn holdings(
    control: &impl ConnectionTrait,
    data: &impl ConnectionTrait,
    id: i64,
) -> Result<(u64, u64, u64), DbErr> {
    use entity::{api_key, camera, vehicle_search};
    use sea_orm::PaginatorTrait;
    let cameras = camera::Entity::find()
        .filter(camera::Column::CityId.eq(id))
        .count(data)
        .await?;
    let searches = vehicle_search::Entity::find()
        .filter(vehicle_search::Column::CityId.eq(id))
        .count(data)
        .await?;
    let keys = api_key::Entity::find()
        .filter(api_key::Column::CityId.eq(id))
        .filter(api_key::Column::RevokedAt.is_null())
        .count(control)
        .await?;
    Ok((cameras, searches, keys))
}
