//! Cities: an admin key creates them; a city key sees its own.

use entity::city;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Object, OpenApi, Tags};
use sea_orm::TransactionTrait;
use sentinela_core::repo::cities;

use super::{Created, Deleted, change};
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;

#[derive(Tags)]
enum Tag {
    /// Cities (admin writes; a city key reads its own): time zone, retention, storage cap,
    /// search caps and quotas, and whether its data lives in a database of its own.
    Cities,
}

/// A city.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none, example)]
pub struct CityView {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// IANA time zone.
    pub timezone: String,
    /// Recordings are kept this many days.
    pub recording_retention_days: i32,
    /// Storage cap of its recordings.
    pub max_storage_bytes: Option<i64>,
    /// Most recordings one search may cover (unset: the global default).
    pub max_search_recordings: Option<i64>,
    /// Most frames one search may sample (unset: the global default).
    pub max_search_frames: Option<i64>,
    /// Searches pending or processing at once (unset: the global default).
    pub max_searches_in_flight: Option<i32>,
    /// Detector calls its searches may make per UTC day (unset: the global default).
    pub daily_detector_calls: Option<i64>,
    /// Snapshot bytes its stored searches may hold (unset: the global default).
    pub max_snapshot_bytes: Option<i64>,
    /// Whether its data lives in its own database (the URL itself is never returned).
    pub own_database: bool,
}

impl From<city::Model> for CityView {
    fn from(c: city::Model) -> Self {
        Self {
            own_database: c.database_url.is_some(),
            id: c.id,
            name: c.name,
            timezone: c.timezone,
            recording_retention_days: c.recording_retention_days,
            max_storage_bytes: c.max_storage_bytes,
            max_search_recordings: c.max_search_recordings,
            max_search_frames: c.max_search_frames,
            max_searches_in_flight: c.max_searches_in_flight,
            daily_detector_calls: c.daily_detector_calls,
            max_snapshot_bytes: c.max_snapshot_bytes,
        }
    }
}

impl poem_openapi::types::Example for CityView {
    fn example() -> Self {
        Self {
            id: 1,
            name: "São Paulo".into(),
            timezone: "America/Sao_Paulo".into(),
            recording_retention_days: 30,
            max_storage_bytes: Some(2_000_000_000_000),
            max_search_recordings: None,
            max_search_frames: None,
            max_searches_in_flight: Some(4),
            daily_detector_calls: Some(50_000),
            max_snapshot_bytes: None,
            own_database: true,
        }
    }
}

/// A new city.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none, example)]
pub struct CreateCity {
    /// Unique name.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    /// IANA time zone (default America/Sao_Paulo).
    pub timezone: Option<String>,
    /// Retention in days (default 30).
    #[oai(validator(minimum(value = "1"), maximum(value = "3650")))]
    pub recording_retention_days: Option<i32>,
    /// Storage cap in bytes.
    #[oai(validator(minimum(value = "1")))]
    pub max_storage_bytes: Option<i64>,
    /// Most recordings one search may cover (default: `api.max_search_recordings`).
    #[oai(validator(minimum(value = "1")))]
    pub max_search_recordings: Option<i64>,
    /// Most frames one search may sample (default: `api.max_search_frames`).
    #[oai(validator(minimum(value = "1")))]
    pub max_search_frames: Option<i64>,
    /// Searches pending or processing at once (default: `api.max_searches_in_flight`).
    #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
    pub max_searches_in_flight: Option<i32>,
    /// Detector calls its searches may make per UTC day (default:
    /// `detector.daily_calls_per_city`; none = no budget).
    #[oai(validator(minimum(value = "1")))]
    pub daily_detector_calls: Option<i64>,
    /// Snapshot bytes its stored searches may hold; past it sightings are stored without a
    /// snapshot (default: `storage.max_snapshot_bytes_per_city`; none = no budget).
    #[oai(validator(minimum(value = "1")))]
    pub max_snapshot_bytes: Option<i64>,
    /// The city's own PostgreSQL database (`postgres://user:password@host:5432/db`), empty or
    /// already this city's; its data (cameras, recordings, searches) then lives there instead of
    /// the shared database. Migrated when the city is created. Write-only: never returned.
    #[oai(validator(min_length = 1, max_length = 2000), write_only)]
    pub database_url: Option<String>,
}

impl poem_openapi::types::Example for CreateCity {
    fn example() -> Self {
        Self {
            name: "São Paulo".into(),
            timezone: Some("America/Sao_Paulo".into()),
            recording_retention_days: Some(30),
            max_storage_bytes: None,
            max_search_recordings: Some(2000),
            max_search_frames: None,
            max_searches_in_flight: Some(4),
            daily_detector_calls: Some(50_000),
            max_snapshot_bytes: None,
            database_url: None,
        }
    }
}

/// Changes to a city: absent fields stay as they are; `null` removes a city's own limit (the
/// installation's default applies again). Where its data lives is not changed here (moving a city
/// between databases is an operator's procedure).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none, example)]
pub struct UpdateCity {
    /// A new unique name.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    /// A new IANA time zone.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub timezone: Option<String>,
    /// Retention in days.
    #[oai(validator(minimum(value = "1"), maximum(value = "3650")))]
    pub recording_retention_days: Option<i32>,
    /// Storage cap in bytes, or `null` for none.
    #[oai(validator(minimum(value = "1")))]
    pub max_storage_bytes: MaybeUndefined<i64>,
    /// Most recordings one search may cover, or `null` for the default.
    #[oai(validator(minimum(value = "1")))]
    pub max_search_recordings: MaybeUndefined<i64>,
    /// Most frames one search may sample, or `null` for the default.
    #[oai(validator(minimum(value = "1")))]
    pub max_search_frames: MaybeUndefined<i64>,
    /// Searches pending or processing at once, or `null` for the default.
    #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
    pub max_searches_in_flight: MaybeUndefined<i32>,
    /// Detector calls per UTC day, or `null` for the default.
    #[oai(validator(minimum(value = "1")))]
    pub daily_detector_calls: MaybeUndefined<i64>,
    /// Snapshot bytes its stored searches may hold, or `null` for the default.
    #[oai(validator(minimum(value = "1")))]
    pub max_snapshot_bytes: MaybeUndefined<i64>,
}

impl poem_openapi::types::Example for UpdateCity {
    fn example() -> Self {
        Self {
            name: None,
            timezone: None,
            recording_retention_days: Some(60),
            max_storage_bytes: MaybeUndefined::Undefined,
            max_search_recordings: MaybeUndefined::Undefined,
            max_search_frames: MaybeUndefined::Undefined,
            max_searches_in_flight: MaybeUndefined::Value(8),
            daily_detector_calls: MaybeUndefined::Null,
            max_snapshot_bytes: MaybeUndefined::Undefined,
        }
    }
}

/// An IANA time zone name, or 422.
fn valid_timezone(tz: String) -> Result<String, ApiError> {
    let tz = tz.trim().to_owned();
    if tz.parse::<chrono_tz::Tz>().is_err() {
        return Err(ApiError::invalid(
            format!("{tz:?} is not an IANA time zone (for example America/Sao_Paulo)"),
            "timezone",
        ));
    }
    Ok(tz)
}

fn duplicate_name(e: sea_orm::DbErr) -> ApiError {
    match ApiError::from(e) {
        ApiError::Conflict(_) => {
            ApiError::conflict("a city with this name already exists", Some("name"))
        }
        other => other,
    }
}

/// City endpoints.
pub struct CitiesApi;

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Cities")]
impl CitiesApi {
    /// Cities the key sees.
    #[oai(path = "/cities", method = "get", operation_id = "list_cities")]
    async fn list_cities(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
    ) -> Result<Json<Vec<CityView>>, ApiError> {
        let all = cities::list(state.control()).await?;
        Ok(Json(
            all.into_iter()
                .filter(|c| auth.0.sees_city(c.id))
                .map(Into::into)
                .collect(),
        ))
    }

    /// Create a city (admin).
    #[oai(path = "/cities", method = "post", operation_id = "create_city")]
    async fn create_city(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        body: Json<CreateCity>,
    ) -> Result<Created<CityView>, ApiError> {
        auth.0.require_admin()?;
        let body = body.0;
        let limits = cities::SearchLimits {
            max_search_recordings: body.max_search_recordings,
            max_search_frames: body.max_search_frames,
            max_searches_in_flight: body.max_searches_in_flight,
            daily_detector_calls: body.daily_detector_calls,
            max_snapshot_bytes: body.max_snapshot_bytes,
        };
        let database_url = body.database_url.map(|u| u.trim().to_owned());
        if let Some(url) = &database_url {
            sentinela_core::tenancy::check_city_url(url)
                .map_err(|reason| ApiError::invalid(reason, "database_url"))?;
        }
        let txn = state.control().begin().await?;
        let created = cities::create(
            &txn,
            cities::NewCity {
                name: body.name.trim().to_owned(),
                timezone: match body.timezone {
                    Some(tz) => valid_timezone(tz)?,
                    None => "America/Sao_Paulo".into(),
                },
                recording_retention_days: body.recording_retention_days.unwrap_or(30),
                max_storage_bytes: body.max_storage_bytes,
                database_url,
            },
        )
        .await
        .map_err(duplicate_name)?;
        let created = cities::set_search_limits(&txn, created.id, limits).await?;
        txn.commit().await?;
        // Its own database is migrated and given the city's row; when that fails the city is
        // removed again, so a city never points at a database it cannot use. (Committed first:
        // the check that the database is not the control one reads this row there.)
        if let Err(e) = sentinela_core::tenancy::prepare_city_database(&created).await {
            cities::delete(state.control(), created.id).await?;
            return Err(ApiError::invalid(e.to_string(), "database_url"));
        }
        state.dbs.forget(created.id);
        let location = format!("/api/v1/cities/{}", created.id);
        Ok(Created::Created(Json(created.into()), location))
    }

    /// A city.
    #[oai(path = "/cities/:id", method = "get", operation_id = "get_city")]
    async fn get_city(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
    ) -> Result<Json<CityView>, ApiError> {
        match cities::get(state.control(), id.0).await? {
            Some(c) if auth.0.sees_city(c.id) => Ok(Json(c.into())),
            _ => Err(ApiError::not_found("city", id.0)),
        }
    }

    /// Change a city's name, time zone, retention or limits (admin). Its own database, when it
    /// has one, gets the same row.
    #[oai(path = "/cities/:id", method = "patch", operation_id = "update_city")]
    async fn update_city(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
        body: Json<UpdateCity>,
    ) -> Result<Json<CityView>, ApiError> {
        auth.0.require_admin()?;
        let city = cities::get(state.control(), id.0)
            .await?
            .ok_or_else(|| ApiError::not_found("city", id.0))?;
        let body = body.0;
        let changes = cities::CityChanges {
            name: body.name.map(|n| n.trim().to_owned()),
            timezone: body.timezone.map(valid_timezone).transpose()?,
            recording_retention_days: body.recording_retention_days,
            max_storage_bytes: change(body.max_storage_bytes),
            max_search_recordings: change(body.max_search_recordings),
            max_search_frames: change(body.max_search_frames),
            max_searches_in_flight: change(body.max_searches_in_flight),
            daily_detector_calls: change(body.daily_detector_calls),
            max_snapshot_bytes: change(body.max_snapshot_bytes),
        };
        let updated = cities::update(state.control(), city, changes)
            .await
            .map_err(duplicate_name)?;
        state.forget_city(id.0);
        if updated.database_url.is_some() {
            let db = state.city_db(updated.id).await?;
            cities::mirror(&db, &updated).await?;
        }
        Ok(Json(updated.into()))
    }

    /// Delete a city (admin). Refused (409) while it has cameras, searches or API keys that are
    /// not revoked: delete or move those first. Its revoked keys go with it; a database of its
    /// own is left as it is (drop it yourself once backed up).
    #[oai(path = "/cities/:id", method = "delete", operation_id = "delete_city")]
    async fn delete_city(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
    ) -> Result<Deleted, ApiError> {
        auth.0.require_admin()?;
        let city = cities::get(state.control(), id.0)
            .await?
            .ok_or_else(|| ApiError::not_found("city", id.0))?;
        let db = state.city_db(city.id).await?;
        let (cameras, searches, keys) = cities::holdings(state.control(), &db, city.id).await?;
        if cameras + searches + keys > 0 {
            return Err(ApiError::conflict(
                format!(
                    "city {} still has {cameras} cameras, {searches} searches and {keys} active API keys; delete them (or revoke the keys) first",
                    city.id
                ),
                None,
            ));
        }
        if city.database_url.is_some() {
            cities::delete(&db, city.id).await?;
        }
        cities::delete(state.control(), city.id).await?;
        state.forget_city(city.id);
        state.dbs.forget(city.id);
        Ok(Deleted::Deleted)
    }
}
