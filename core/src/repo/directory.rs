//! The control database's id directories: every camera and search id is allocated here, with the
//! city that owns it, before its row is written to the city's database. Ids are therefore unique
//! across every city database, and an id alone is enough to find the database that holds it.

use entity::{camera_directory, search_directory};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};

/// Allocates a search id for `city_id`.
///
/// # Errors
/// The database error.
pub async fn allocate_search(control: &impl ConnectionTrait, city_id: i64) -> Result<i64, DbErr> {
    let row = search_directory::ActiveModel {
        city_id: Set(city_id),
        ..Default::default()
    }
    .insert(control)
    .await?;
    Ok(row.id)
}

/// Allocates a camera id for `city_id`; a MediaMTX path another camera (of any city) holds is a
/// unique violation.
///
/// # Errors
/// The database error.
pub async fn allocate_camera(
    control: &impl ConnectionTrait,
    city_id: i64,
    mediamtx_path: Option<&str>,
) -> Result<i64, DbErr> {
    let row = camera_directory::ActiveModel {
        city_id: Set(city_id),
        mediamtx_path: Set(mediamtx_path.map(str::to_owned)),
        ..Default::default()
    }
    .insert(control)
    .await?;
    Ok(row.id)
}

/// The city that owns search `id`.
///
/// # Errors
/// The database error.
pub async fn city_of_search(control: &impl ConnectionTrait, id: i64) -> Result<Option<i64>, DbErr> {
    Ok(search_directory::Entity::find_by_id(id)
        .one(control)
        .await?
        .map(|row| row.city_id))
}

/// The city that owns camera `id`.
///
/// # Errors
/// The database error.
pub async fn city_of_camera(control: &impl ConnectionTrait, id: i64) -> Result<Option<i64>, DbErr> {
    Ok(camera_directory::Entity::find_by_id(id)
        .one(control)
        .await?
        .map(|row| row.city_id))
}

/// Forgets a search id (its row was deleted, or never written).
///
/// # Errors
/// The database error.
pub async fn release_search(control: &impl ConnectionTrait, id: i64) -> Result<(), DbErr> {
    search_directory::Entity::delete_by_id(id)
        .exec(control)
        .await
        .map(drop)
}

/// Forgets a camera id whose row was never written.
///
/// # Errors
/// The database error.
pub async fn release_camera(control: &impl ConnectionTrait, id: i64) -> Result<(), DbErr> {
    camera_directory::Entity::delete_by_id(id)
        .exec(control)
        .await
        .map(drop)
}

/// Moves camera `id`'s MediaMTX folder in the directory (where folders are unique across every
/// database).
///
/// # Errors
/// The database error; a folder another camera has is a unique violation.
pub async fn set_camera_path(
    control: &impl ConnectionTrait,
    id: i64,
    mediamtx_path: Option<&str>,
) -> Result<(), DbErr> {
    camera_directory::Entity::update_many()
        .col_expr(
            camera_directory::Column::MediamtxPath,
            sea_orm::sea_query::Expr::value(mediamtx_path.map(str::to_owned)),
        )
        .filter(camera_directory::Column::Id.eq(id))
        .exec(control)
        .await
        .map(drop)
}
