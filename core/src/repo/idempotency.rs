//! `Idempotency-Key`s of search requests (control database): the first request with a key
//! reserves it with the hash of its body; a retry with the same key and body gets the same
//! search back for [`KEPT`]; the same key with another body is refused.

use chrono::{DateTime, Duration, Utc};
use entity::idempotency_key;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};

/// How long a key is remembered.
pub const KEPT: Duration = Duration::hours(24);

/// How long a reservation without a search may stand before it counts as abandoned (its
/// request's process died between reserving and answering).
const ABANDONED: Duration = Duration::seconds(60);

/// What a key says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// A new key, reserved for this request under this row id: create the search, then
    /// [`complete`] (or [`release`] when the request fails).
    Reserved(i64),
    /// The same key and body created this search.
    Replay(i64),
    /// The same key is being answered for another request right now.
    InProgress,
    /// The same key came with another body.
    Mismatch,
}

/// Reserves `key` of API key `api_key_id` for a request whose body hashes to `request_hash`,
/// or says what the key already stands for. Keys older than [`KEPT`] are forgotten first.
///
/// # Errors
/// The database error.
pub async fn reserve(
    control: &impl ConnectionTrait,
    api_key_id: i64,
    key: &str,
    request_hash: &str,
    now: DateTime<Utc>,
) -> Result<Reservation, DbErr> {
    idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::ApiKeyId.eq(api_key_id))
        .filter(idempotency_key::Column::CreatedAt.lt(now - KEPT))
        .exec(control)
        .await?;
    idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::ApiKeyId.eq(api_key_id))
        .filter(idempotency_key::Column::SearchId.is_null())
        .filter(idempotency_key::Column::CreatedAt.lt(now - ABANDONED))
        .exec(control)
        .await?;
    let inserted = idempotency_key::ActiveModel {
        api_key_id: Set(api_key_id),
        key: Set(key.to_owned()),
        request_hash: Set(request_hash.to_owned()),
        search_id: Set(None),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(control)
    .await;
    match inserted {
        Ok(row) => Ok(Reservation::Reserved(row.id)),
        Err(e) if super::is_unique_violation(&e) => {
            let Some(row) = idempotency_key::Entity::find()
                .filter(idempotency_key::Column::ApiKeyId.eq(api_key_id))
                .filter(idempotency_key::Column::Key.eq(key))
                .one(control)
                .await?
            else {
                // Released between our insert and this read: the caller may try again.
                return Ok(Reservation::InProgress);
            };
            Ok(if row.request_hash != request_hash {
                Reservation::Mismatch
            } else if let Some(search) = row.search_id {
                Reservation::Replay(search)
            } else {
                Reservation::InProgress
            })
        }
        Err(e) => Err(e),
    }
}

/// Records the search a reservation created.
///
/// # Errors
/// The database error.
pub async fn complete(
    control: &impl ConnectionTrait,
    reservation: i64,
    search_id: i64,
) -> Result<(), DbErr> {
    idempotency_key::Entity::update_many()
        .col_expr(
            idempotency_key::Column::SearchId,
            sea_orm::sea_query::Expr::value(search_id),
        )
        .filter(idempotency_key::Column::Id.eq(reservation))
        .exec(control)
        .await
        .map(|_| ())
}

/// Forgets a reservation whose request failed, so the key can be used again.
///
/// # Errors
/// The database error.
pub async fn release(control: &impl ConnectionTrait, reservation: i64) -> Result<(), DbErr> {
    idempotency_key::Entity::delete_by_id(reservation)
        .exec(control)
        .await
        .map(|_| ())
}

/// Forgets every key older than [`KEPT`] at `now`, of every API key; how many.
///
/// # Errors
/// The database error.
pub async fn sweep(control: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<u64, DbErr> {
    Ok(idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::CreatedAt.lt(now - KEPT))
        .exec(control)
        .await?
        .rows_affected)
}
