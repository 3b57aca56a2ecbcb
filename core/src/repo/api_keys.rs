//! API keys: stored as SHA-256 hashes of their secrets, scoped to one city or admin.

use chrono::Utc;
use entity::api_key;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set,
};
use sha2::{Digest, Sha256};

/// Hex SHA-256 of a secret.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The key with this secret.
///
/// # Errors
/// The database error.
pub async fn find_key(
    db: &impl ConnectionTrait,
    secret: &str,
) -> Result<Option<api_key::Model>, DbErr> {
    api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(hash_key(secret)))
        .one(db)
        .await
}

/// Whether the key with this id exists and is not revoked.
///
/// # Errors
/// The database error.
pub async fn key_active(db: &impl ConnectionTrait, key_id: i64) -> Result<bool, DbErr> {
    Ok(api_key::Entity::find_by_id(key_id)
        .one(db)
        .await?
        .is_some_and(|k| k.revoked_at.is_none()))
}

/// Stores a key for `secret`.
///
/// # Errors
/// The database error (a duplicate secret is a unique violation).
pub async fn create_key(
    db: &impl ConnectionTrait,
    secret: &str,
    name: &str,
    user_id: &str,
    city_id: Option<i64>,
) -> Result<api_key::Model, DbErr> {
    api_key::ActiveModel {
        key_hash: Set(hash_key(secret)),
        prefix: Set(secret.chars().take(12).collect()),
        name: Set(name.to_owned()),
        city_id: Set(city_id),
        is_admin: Set(city_id.is_none()),
        user_id: Set(user_id.to_owned()),
        created_at: Set(Utc::now()),
        revoked_at: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await
}

/// Every key, by id.
///
/// # Errors
/// The database error.
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<api_key::Model>, DbErr> {
    api_key::Entity::find()
        .order_by_asc(api_key::Column::Id)
        .all(db)
        .await
}

/// The key with this id.
///
/// # Errors
/// The database error.
pub async fn get(db: &impl ConnectionTrait, id: i64) -> Result<Option<api_key::Model>, DbErr> {
    api_key::Entity::find_by_id(id).one(db).await
}

/// Revokes a key (a revoked key stays as it is). Returns the key, `None` when there is none.
///
/// # Errors
/// The database error.
pub async fn revoke(db: &impl ConnectionTrait, id: i64) -> Result<Option<api_key::Model>, DbErr> {
    let Some(key) = get(db, id).await? else {
        return Ok(None);
    };
    if key.revoked_at.is_some() {
        return Ok(Some(key));
    }
    let mut active: api_key::ActiveModel = key.into();
    active.revoked_at = Set(Some(Utc::now()));
    active.update(db).await.map(Some)
}
