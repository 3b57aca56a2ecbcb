//! `api_key`: hashed API keys. A key is scoped to one city or is admin (`city_id` is `None`).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// An API key. Only the SHA-256 of the secret is stored.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "api_key")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Hex SHA-256 of the secret.
    #[sea_orm(unique)]
    pub key_hash: String,
    /// The first characters of the secret, to recognise a key in listings.
    pub prefix: String,
    pub name: String,
    /// `None` for admin keys.
    pub city_id: Option<i64>,
    pub is_admin: bool,
    pub user_id: String,
    pub created_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
    /// After this instant the key is refused (`None`: it does not expire).
    pub expires_at: Option<DateTimeUtc>,
    /// The last request the key authenticated (updated at most once a minute).
    pub last_used_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::city::Entity",
        from = "Column::CityId",
        to = "super::city::Column::Id"
    )]
    City,
}

impl Related<super::city::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::City.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
