//! Cameras.

use chrono::Utc;
use entity::camera;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set,
};

/// What creating a camera needs.
#[derive(Debug, Clone)]
pub struct NewCamera {
    /// Owning city.
    pub city_id: i64,
    /// Name, unique within the city.
    pub name: String,
    /// Human description of where it points.
    pub location: Option<String>,
    /// WGS84 latitude.
    pub latitude: Option<f64>,
    /// WGS84 longitude.
    pub longitude: Option<f64>,
    /// MediaMTX path, unique.
    pub mediamtx_path: Option<String>,
}

/// Inserts a camera (enabled) into its city's database (`db`), with an id allocated in the
/// `control` database (the same connection for a city in the shared database); the id is
/// released again when the insert fails.
///
/// # Errors
/// The database error; a duplicate (city, name) or MediaMTX path is a unique violation.
pub async fn create(
    control: &impl ConnectionTrait,
    db: &impl ConnectionTrait,
    new: NewCamera,
) -> Result<camera::Model, DbErr> {
    let id = super::directory::allocate_camera(control, new.city_id, new.mediamtx_path.as_deref())
        .await?;
    let inserted = camera::ActiveModel {
        id: Set(id),
        city_id: Set(new.city_id),
        name: Set(new.name),
        location: Set(new.location),
        latitude: Set(new.latitude),
        longitude: Set(new.longitude),
        mediamtx_path: Set(new.mediamtx_path),
        enabled: Set(true),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await;
    if inserted.is_err() {
        super::directory::release_camera(control, id).await.ok();
    }
    inserted
}

/// Returns the camera of this city with this name, creating it if missing.
///
/// # Errors
/// The database error.
pub async fn ensure(
    control: &impl ConnectionTrait,
    db: &impl ConnectionTrait,
    new: NewCamera,
) -> Result<camera::Model, DbErr> {
    let find = |db, city_id, name: String| async move {
        camera::Entity::find()
            .filter(camera::Column::CityId.eq(city_id))
            .filter(camera::Column::Name.eq(name))
            .one(db)
            .await
    };
    if let Some(found) = find(db, new.city_id, new.name.clone()).await? {
        return Ok(found);
    }
    let (city_id, name) = (new.city_id, new.name.clone());
    match create(control, db, new).await {
        Ok(camera) => Ok(camera),
        Err(e) if super::is_unique_violation(&e) => find(db, city_id, name.clone())
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(format!("camera {name}"))),
        Err(e) => Err(e),
    }
}

/// The camera with this id.
///
/// # Errors
/// The database error.
pub async fn get(db: &impl ConnectionTrait, id: i64) -> Result<Option<camera::Model>, DbErr> {
    camera::Entity::find_by_id(id).one(db).await
}

/// A city's cameras, by id.
///
/// # Errors
/// The database error.
pub async fn list_by_city(
    db: &impl ConnectionTrait,
    city_id: i64,
) -> Result<Vec<camera::Model>, DbErr> {
    camera::Entity::find()
        .filter(camera::Column::CityId.eq(city_id))
        .order_by_asc(camera::Column::Id)
        .all(db)
        .await
}

/// The camera recording under this MediaMTX path.
///
/// # Errors
/// The database error.
pub async fn find_by_mediamtx_path(
    db: &impl ConnectionTrait,
    path: &str,
) -> Result<Option<camera::Model>, DbErr> {
    camera::Entity::find()
        .filter(camera::Column::MediamtxPath.eq(path))
        .one(db)
        .await
}

/// Every enabled camera that has a MediaMTX folder, by id: what index sync scans (a disabled
/// camera's new segments are not registered).
///
/// # Errors
/// The database error.
pub async fn enabled_with_folder(db: &impl ConnectionTrait) -> Result<Vec<camera::Model>, DbErr> {
    camera::Entity::find()
        .filter(camera::Column::MediamtxPath.is_not_null())
        .filter(camera::Column::Enabled.eq(true))
        .order_by_asc(camera::Column::Id)
        .all(db)
        .await
}

/// Every camera that has a MediaMTX folder, by id.
///
/// # Errors
/// The database error.
pub async fn with_folder(db: &impl ConnectionTrait) -> Result<Vec<camera::Model>, DbErr> {
    camera::Entity::find()
        .filter(camera::Column::MediamtxPath.is_not_null())
        .order_by_asc(camera::Column::Id)
        .all(db)
        .await
}

/// How many of `ids` (deduplicated) are cameras of `city_id`.
///
/// # Errors
/// The database error.
pub async fn count_in_city(
    db: &impl ConnectionTrait,
    city_id: i64,
    ids: &[i64],
) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    camera::Entity::find()
        .filter(camera::Column::CityId.eq(city_id))
        .filter(camera::Column::Id.is_in(ids.iter().copied()))
        .count(db)
        .await
}

/// What an admin may change on a camera. `None`: unchanged; `Some(None)` clears an optional field.
#[derive(Debug, Clone, Default)]
pub struct CameraChanges {
    /// New name (unique in the city).
    pub name: Option<String>,
    /// Where it points.
    pub location: Option<Option<String>>,
    /// WGS84 latitude.
    pub latitude: Option<Option<f64>>,
    /// WGS84 longitude.
    pub longitude: Option<Option<f64>>,
    /// MediaMTX folder (unique across every database).
    pub mediamtx_path: Option<Option<String>>,
    /// Whether new searches and index sync use the camera.
    pub enabled: Option<bool>,
}

/// Applies `changes` to `camera` in its city's database; a new MediaMTX folder is claimed in the
/// `control` database's directory first (and given back when the camera's row cannot be written).
///
/// # Errors
/// The database error; a duplicate name or folder is a unique violation.
pub async fn update(
    control: &impl ConnectionTrait,
    db: &impl ConnectionTrait,
    camera: camera::Model,
    changes: CameraChanges,
) -> Result<camera::Model, DbErr> {
    let (id, old_path) = (camera.id, camera.mediamtx_path.clone());
    let new_path = changes.mediamtx_path.clone().filter(|p| *p != old_path);
    if let Some(path) = &new_path {
        super::directory::set_camera_path(control, id, path.as_deref()).await?;
    }
    let mut row: camera::ActiveModel = camera.into();
    if let Some(v) = changes.name {
        row.name = Set(v);
    }
    if let Some(v) = changes.location {
        row.location = Set(v);
    }
    if let Some(v) = changes.latitude {
        row.latitude = Set(v);
    }
    if let Some(v) = changes.longitude {
        row.longitude = Set(v);
    }
    if let Some(v) = new_path.clone() {
        row.mediamtx_path = Set(v);
    }
    if let Some(v) = changes.enabled {
        row.enabled = Set(v);
    }
    let updated = row.update(db).await;
    if updated.is_err() && new_path.is_some() {
        super::directory::set_camera_path(control, id, old_path.as_deref())
            .await
            .ok();
    }
    updated
}

/// How many recordings the camera has.
///
/// # Errors
/// The database error.
pub async fn recording_count(db: &impl ConnectionTrait, id: i64) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    entity::recording::Entity::find()
        .filter(entity::recording::Column::CameraId.eq(id))
        .count(db)
        .await
}

/// Deletes a camera's row from its city's database, then its id from the `control` directory.
///
/// # Errors
/// The database error.
pub async fn delete(
    control: &impl ConnectionTrait,
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<(), DbErr> {
    camera::Entity::delete_by_id(id).exec(db).await?;
    super::directory::release_camera(control, id).await
}

/// Up to `limit` cameras a key may list — of `scope` (a city key's city; `None` for admin keys),
/// further restricted to `city` when asked — with ids after `after`, by id.
///
/// # Errors
/// The database error.
pub async fn page(
    db: &impl ConnectionTrait,
    scope: Option<i64>,
    city: Option<i64>,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<camera::Model>, DbErr> {
    use sea_orm::QuerySelect;
    let mut query = camera::Entity::find();
    for id in [scope, city].into_iter().flatten() {
        query = query.filter(camera::Column::CityId.eq(id));
    }
    if let Some(after) = after {
        query = query.filter(camera::Column::Id.gt(after));
    }
    query
        .order_by_asc(camera::Column::Id)
        .limit(limit)
        .all(db)
        .await
}
