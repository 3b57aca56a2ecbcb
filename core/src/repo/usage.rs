//! Detector calls per city and UTC day, against the city's daily budget.

use chrono::{DateTime, Utc};
use entity::{city, city_usage};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};

/// The UTC day of `now`, as stored.
pub fn day_of(now: DateTime<Utc>) -> String {
    now.format("%Y-%m-%d").to_string()
}

/// Seconds from `now` to the next UTC midnight (when daily budgets start again).
pub fn seconds_to_next_day(now: DateTime<Utc>) -> u64 {
    let next = (now.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(now);
    Ord::max(u64::try_from((next - now).num_seconds()).unwrap_or(0), 1)
}

/// Adds `calls` to the city's count of `now`'s day.
///
/// # Errors
/// The database error.
pub async fn add_calls(
    db: &impl ConnectionTrait,
    city_id: i64,
    calls: i64,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if calls <= 0 {
        return Ok(());
    }
    city_usage::Entity::insert(city_usage::ActiveModel {
        city_id: Set(city_id),
        day: Set(day_of(now)),
        detector_calls: Set(calls),
    })
    .on_conflict(
        OnConflict::columns([city_usage::Column::CityId, city_usage::Column::Day])
            .value(
                city_usage::Column::DetectorCalls,
                Expr::col((city_usage::Entity, city_usage::Column::DetectorCalls)).add(calls),
            )
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// The city's detector calls on `now`'s day.
///
/// # Errors
/// The database error.
pub async fn calls_on(
    db: &impl ConnectionTrait,
    city_id: i64,
    now: DateTime<Utc>,
) -> Result<i64, DbErr> {
    Ok(city_usage::Entity::find_by_id((city_id, day_of(now)))
        .one(db)
        .await?
        .map_or(0, |u| u.detector_calls))
}

/// The calls on `now`'s day of each of `cities` (rows as the control database has them), read
/// from `db`, the database holding their data, with each city's budget (`default` when the city
/// sets none): `(city, calls, budget)`.
///
/// # Errors
/// The database error.
pub async fn all_on(
    db: &impl ConnectionTrait,
    cities: &[city::Model],
    now: DateTime<Utc>,
    default: Option<i64>,
) -> Result<Vec<(i64, i64, Option<i64>)>, DbErr> {
    let usage: std::collections::HashMap<i64, i64> = city_usage::Entity::find()
        .filter(city_usage::Column::Day.eq(day_of(now)))
        .all(db)
        .await?
        .into_iter()
        .map(|u| (u.city_id, u.detector_calls))
        .collect();
    Ok(cities
        .iter()
        .map(|c| {
            (
                c.id,
                usage.get(&c.id).copied().unwrap_or(0),
                c.daily_detector_calls.or(default),
            )
        })
        .collect())
}
