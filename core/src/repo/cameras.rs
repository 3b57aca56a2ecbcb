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

/// Every camera that has a MediaMTX folder, by id (what index sync scans).
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

/// Cameras a key may list: of `scope` (a city key's city; `None` for admin keys), further
/// restricted to `city` when asked, by id.
///
/// # Errors
/// The database error.
pub async fn list_visible(
    db: &impl ConnectionTrait,
    scope: Option<i64>,
    city: Option<i64>,
) -> Result<Vec<camera::Model>, DbErr> {
    let mut query = camera::Entity::find();
    for id in [scope, city].into_iter().flatten() {
        query = query.filter(camera::Column::CityId.eq(id));
    }
    query.order_by_asc(camera::Column::Id).all(db).await
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
