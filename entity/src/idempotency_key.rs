//! `idempotency_key` (control database): the `Idempotency-Key` of a search request, the hash of
//! its body and the search it created, so a retried request returns the same search for 24 h.

use sea_orm::entity::prelude::*;

/// A remembered `Idempotency-Key`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_key")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The API key that sent it (keys of different API keys never collide).
    pub api_key_id: i64,
    pub key: String,
    /// Hex SHA-256 of the request body, as parsed.
    pub request_hash: String,
    /// The search created; `None` while the first request is still being answered.
    pub search_id: Option<i64>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
