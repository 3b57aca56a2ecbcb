//! One module per resource, each with its own `#[OpenApi]` impl; [`api`] composes them.

pub mod admin;
pub mod api_keys;
pub mod cameras;
pub mod cities;
pub mod evidence;
pub mod health;
pub mod recordings;
pub mod searches;

use chrono::{DateTime, Utc};
use poem_openapi::ApiResponse;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;

use crate::error::ApiError;

/// Created.
#[derive(ApiResponse)]
pub enum Created<T: poem_openapi::types::ToJSON + Send + Sync> {
    /// Created; `Location` is the new object's URL.
    #[oai(status = 201)]
    Created(
        Json<T>,
        /// The new object's URL.
        #[oai(header = "Location")]
        String,
    ),
}

/// Deleted: nothing to say.
#[derive(ApiResponse)]
pub enum Deleted {
    /// Deleted.
    #[oai(status = 204)]
    Deleted,
}

/// A PATCH field: `None` when absent (unchanged), `Some(None)` for `null` (cleared).
pub(crate) fn change<T>(field: MaybeUndefined<T>) -> Option<Option<T>> {
    match field {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

/// Default and largest page sizes of the lists.
pub(crate) const PAGE_DEFAULT: i64 = 50;

/// A page size from its (validated) query parameter.
pub(crate) fn page_size(limit: Option<i64>) -> u64 {
    limit.unwrap_or(PAGE_DEFAULT).clamp(1, 1000).unsigned_abs()
}

fn bad_cursor() -> ApiError {
    ApiError::invalid(
        "cursor is not one this list gave (pass the previous page's next_cursor unchanged)",
        "cursor",
    )
}

/// The id a cursor over an id-ordered list names.
pub(crate) fn id_cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    cursor
        .map(|c| {
            c.parse::<i64>()
                .ok()
                .filter(|id| *id >= 0)
                .ok_or_else(bad_cursor)
        })
        .transpose()
}

/// A cursor over a (time, id)-ordered list: `<microseconds>_<id>`.
pub(crate) fn format_time_cursor(at: DateTime<Utc>, id: i64) -> String {
    format!("{}_{id}", at.timestamp_micros())
}

/// The (time, id) a cursor from [`format_time_cursor`] names.
pub(crate) fn time_cursor(cursor: Option<&str>) -> Result<Option<(DateTime<Utc>, i64)>, ApiError> {
    cursor
        .map(|c| {
            let (micros, id) = c.split_once('_').ok_or_else(bad_cursor)?;
            let at = micros
                .parse()
                .ok()
                .and_then(DateTime::from_timestamp_micros)
                .ok_or_else(bad_cursor)?;
            Ok((at, id.parse().map_err(|_| bad_cursor())?))
        })
        .transpose()
}

/// The next page's cursor: present only when the page is full.
pub(crate) fn next_cursor<T>(
    items: &[T],
    limit: u64,
    cursor: impl Fn(&T) -> String,
) -> Option<String> {
    (items.len() as u64 >= limit)
        .then(|| items.last().map(cursor))
        .flatten()
}

/// A page's rows as views, and the next page's cursor (see [`next_cursor`]).
pub(crate) fn paged<T, V: From<T>>(
    rows: Vec<T>,
    limit: u64,
    cursor: impl Fn(&T) -> String,
) -> (Vec<V>, Option<String>) {
    let next = next_cursor(&rows, limit, cursor);
    (rows.into_iter().map(V::from).collect(), next)
}

/// Every API resource, for `OpenApiService::new`.
pub fn api() -> (
    searches::SearchesApi,
    evidence::EvidenceApi,
    cities::CitiesApi,
    cameras::CamerasApi,
    recordings::RecordingsApi,
    api_keys::ApiKeysApi,
    admin::AdminApi,
    health::HealthApi,
) {
    (
        searches::SearchesApi,
        evidence::EvidenceApi,
        cities::CitiesApi,
        cameras::CamerasApi,
        recordings::RecordingsApi,
        api_keys::ApiKeysApi,
        admin::AdminApi,
        health::HealthApi,
    )
}
