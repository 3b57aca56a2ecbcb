//! API keys: stored as SHA-256 hashes of their secrets, scoped to one city or admin.

use chrono::{DateTime, Utc};
use entity::api_key;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
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

/// Why a stored key may not be used, if it may not.
pub fn refusal(key: &api_key::Model, now: DateTime<Utc>) -> Option<&'static str> {
    if key.revoked_at.is_some() {
        Some("this API key has been revoked")
    } else if key.expires_at.is_some_and(|at| at <= now) {
        Some("this API key has expired")
    } else {
        None
    }
}

/// Whether the key with this id exists, is not revoked and has not expired.
///
/// # Errors
/// The database error.
pub async fn key_active(db: &impl ConnectionTrait, key_id: i64) -> Result<bool, DbErr> {
    Ok(api_key::Entity::find_by_id(key_id)
        .one(db)
        .await?
        .is_some_and(|k| refusal(&k, Utc::now()).is_none()))
}

/// Records that the key authenticated a request at `now`, at most once a minute per key (one
/// write per key per minute, not one per request). Whether it wrote.
///
/// # Errors
/// The database error.
pub async fn touch(
    db: &impl ConnectionTrait,
    key: &api_key::Model,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    if key
        .last_used_at
        .is_some_and(|at| now - at < chrono::Duration::seconds(60))
    {
        return Ok(false);
    }
    api_key::Entity::update_many()
        .col_expr(
            api_key::Column::LastUsedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(api_key::Column::Id.eq(key.id))
        .exec(db)
        .await
        .map(|_| true)
}

/// What an admin may change on a key: its name and its expiry (`Some(None)` removes it).
#[derive(Debug, Default)]
pub struct KeyChanges {
    /// New name.
    pub name: Option<String>,
    /// New expiry.
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

/// Applies `changes` to the key. Returns the key, `None` when there is none.
///
/// # Errors
/// The database error.
pub async fn update(
    db: &impl ConnectionTrait,
    id: i64,
    changes: KeyChanges,
) -> Result<Option<api_key::Model>, DbErr> {
    let Some(key) = get(db, id).await? else {
        return Ok(None);
    };
    let mut active: api_key::ActiveModel = key.into();
    if let Some(name) = changes.name {
        active.name = Set(name);
    }
    if let Some(expires_at) = changes.expires_at {
        active.expires_at = Set(expires_at);
    }
    active.update(db).await.map(Some)
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
        expires_at: Set(None),
        last_used_at: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await
}

/// Up to `limit` keys with ids after `after`, by id, optionally only `city`'s.
///
/// # Errors
/// The database error.
pub async fn page(
    db: &impl ConnectionTrait,
    city: Option<i64>,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<api_key::Model>, DbErr> {
    let mut query = api_key::Entity::find();
    if let Some(city) = city {
        query = query.filter(api_key::Column::CityId.eq(city));
    }
    if let Some(after) = after {
        query = query.filter(api_key::Column::Id.gt(after));
    }
    query
        .order_by_asc(api_key::Column::Id)
        .limit(limit)
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
