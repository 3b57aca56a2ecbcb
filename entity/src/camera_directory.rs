//! `camera_directory` (control database): the id of every camera, the city that owns it, and
//! its MediaMTX path (unique across every database).

use sea_orm::entity::prelude::*;

/// A camera id allocated for a city.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "camera_directory")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub city_id: i64,
    pub mediamtx_path: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
