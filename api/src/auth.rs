//! API keys: `Authorization: Bearer <key>`. Keys are stored as SHA-256 hashes; a key is scoped to
//! one city or is admin. Objects of another city answer 404, so ids do not leak.

use chrono::Utc;
use entity::api_key;
use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's id.
    pub key_id: i64,
    /// The key's user.
    pub user_id: String,
    /// `None` for admin keys.
    pub city_id: Option<i64>,
}

impl Principal {
    /// Whether the key is admin.
    pub fn is_admin(&self) -> bool {
        self.city_id.is_none()
    }

    /// Whether the key may see objects of `city_id`.
    pub fn sees_city(&self, city_id: i64) -> bool {
        self.city_id.is_none_or(|c| c == city_id)
    }

    /// Fails with 403 unless admin.
    ///
    /// # Errors
    /// [`ApiError::Forbidden`] for a city key.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs an admin API key"))
        }
    }
}

/// Bearer API key.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", key_name = "Authorization", checker = "check_key")]
pub struct ApiKeyAuth(pub Principal);

async fn check_key(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| poem::Error::from_status(poem::http::StatusCode::INTERNAL_SERVER_ERROR))?;
    let found = find_key(&state.db, &bearer.token)
        .await
        .map_err(|e| poem::Error::from(ApiError::internal(e)))?;
    match found {
        Some(key) if key.revoked_at.is_none() => Ok(Principal {
            key_id: key.id,
            user_id: key.user_id,
            city_id: key.city_id,
        }),
        Some(_) => Err(ApiError::unauthorized("this API key has been revoked").into()),
        None => Err(ApiError::unauthorized("unknown API key").into()),
    }
}

/// Hex SHA-256 of a secret.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random secret: `snt_` and 32 random bytes in hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("snt_{}", hex::encode(bytes))
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

/// Ensures the bootstrap admin key (`SENTINELA_ADMIN_KEY`) exists and is not revoked.
///
/// # Errors
/// The database error.
pub async fn ensure_admin_key(db: &impl ConnectionTrait, secret: &str) -> Result<(), DbErr> {
    match find_key(db, secret).await? {
        Some(key) if key.revoked_at.is_none() && key.city_id.is_none() => Ok(()),
        Some(key) => {
            let mut active: api_key::ActiveModel = key.into();
            active.revoked_at = Set(None);
            active.city_id = Set(None);
            active.is_admin = Set(true);
            active.update(db).await.map(drop)
        }
        None => create_key(db, secret, "bootstrap admin", "admin", None)
            .await
            .map(drop),
    }
}
