//! Cities: an admin key creates them; a city key sees its own.

use entity::city;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Tags};
use sea_orm::TransactionTrait;
use sentinela_core::repo::cities;

use super::Created;
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;

#[derive(Tags)]
enum Tag {
    /// Cities.
    Cities,
}

/// A city.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
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

/// A new city.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
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

/// City endpoints.
pub struct CitiesApi;

#[OpenApi(prefix_path = "/api/v1")]
impl CitiesApi {
    /// Cities the key sees.
    #[oai(path = "/cities", method = "get", tag = "Tag::Cities")]
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
    #[oai(path = "/cities", method = "post", tag = "Tag::Cities")]
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
                timezone: body.timezone.unwrap_or_else(|| "America/Sao_Paulo".into()),
                recording_retention_days: body.recording_retention_days.unwrap_or(30),
                max_storage_bytes: body.max_storage_bytes,
                database_url,
            },
        )
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::Conflict(_) => {
                ApiError::conflict("a city with this name already exists", Some("name"))
            }
            other => other,
        })?;
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
        Ok(Created::Created(Json(created.into())))
    }

    /// A city.
    #[oai(path = "/cities/:id", method = "get", tag = "Tag::Cities")]
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
}
