//! The web console's sessions (control database): created at sign-in, found by the SHA-256 of
//! the cookie's token, refreshed on use (at most once a minute), ended at sign-out or after
//! [`IDLE`] without use or [`LIFETIME`] in all.

use chrono::{DateTime, Duration, Utc};
use entity::console_session;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};

/// A session unused this long is over.
pub const IDLE: Duration = Duration::minutes(30);

/// A session is over this long after sign-in, used or not.
pub const LIFETIME: Duration = Duration::hours(12);

/// Starts a session for `api_key_id`; the cookie holds `token`, the forms `csrf`.
///
/// # Errors
/// The database error.
pub async fn create(
    db: &impl ConnectionTrait,
    token: &str,
    api_key_id: i64,
    csrf: &str,
    now: DateTime<Utc>,
) -> Result<console_session::Model, DbErr> {
    console_session::ActiveModel {
        token_hash: Set(super::api_keys::hash_key(token)),
        api_key_id: Set(api_key_id),
        csrf: Set(csrf.to_owned()),
        created_at: Set(now),
        last_seen_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
}

/// The live session of `token` at `now`, refreshed; `None` when there is none or it is over (an
/// expired one is deleted).
///
/// # Errors
/// The database error.
pub async fn find(
    db: &impl ConnectionTrait,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<console_session::Model>, DbErr> {
    let Some(session) = console_session::Entity::find()
        .filter(console_session::Column::TokenHash.eq(super::api_keys::hash_key(token)))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    if now - session.last_seen_at > IDLE || now - session.created_at > LIFETIME {
        console_session::Entity::delete_by_id(session.id)
            .exec(db)
            .await?;
        return Ok(None);
    }
    if now - session.last_seen_at > Duration::minutes(1) {
        console_session::Entity::update_many()
            .col_expr(
                console_session::Column::LastSeenAt,
                sea_orm::sea_query::Expr::value(now),
            )
            .filter(console_session::Column::Id.eq(session.id))
            .exec(db)
            .await?;
    }
    Ok(Some(session))
}

/// Ends the session of `token` (sign-out).
///
/// # Errors
/// The database error.
pub async fn end(db: &impl ConnectionTrait, token: &str) -> Result<(), DbErr> {
    console_session::Entity::delete_many()
        .filter(console_session::Column::TokenHash.eq(super::api_keys::hash_key(token)))
        .exec(db)
        .await
        .map(drop)
}

/// Deletes every session that is over at `now`; how many.
///
/// # Errors
/// The database error.
pub async fn sweep(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<u64, DbErr> {
    Ok(console_session::Entity::delete_many()
        .filter(
            Condition::any()
                .add(console_session::Column::LastSeenAt.lt(now - IDLE))
                .add(console_session::Column::CreatedAt.lt(now - LIFETIME)),
        )
        .exec(db)
        .await?
        .rows_affected)
}
