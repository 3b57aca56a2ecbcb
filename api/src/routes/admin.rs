//! Administration: cities, cameras, recordings and API keys. Admin keys manage everything; a city
//! key sees its own city's cameras and recordings and may register recordings there.

use chrono::{DateTime, Utc};
use entity::{api_key, camera, city, recording};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use sentinela_core::domain::TimeRange;
use sentinela_core::files::{Root, is_within, normalize};
use sentinela_core::repo::{api_keys, cameras, cities, recordings};

use crate::AppState;
use crate::auth::{self, ApiKeyAuth};
use crate::error::ApiError;

#[derive(Tags)]
enum AdminTags {
    /// Cities.
    Cities,
    /// Cameras.
    Cameras,
    /// Recordings.
    Recordings,
    /// API keys (admin).
    ApiKeys,
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
}

impl From<city::Model> for CityView {
    fn from(c: city::Model) -> Self {
        Self {
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
}

/// A camera.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CameraView {
    /// Id.
    pub id: i64,
    /// City.
    pub city_id: i64,
    /// Name.
    pub name: String,
    /// Where it points.
    pub location: Option<String>,
    /// Latitude.
    pub latitude: Option<f64>,
    /// Longitude.
    pub longitude: Option<f64>,
    /// MediaMTX path.
    pub mediamtx_path: Option<String>,
    /// Enabled.
    pub enabled: bool,
}

impl From<camera::Model> for CameraView {
    fn from(c: camera::Model) -> Self {
        Self {
            id: c.id,
            city_id: c.city_id,
            name: c.name,
            location: c.location,
            latitude: c.latitude,
            longitude: c.longitude,
            mediamtx_path: c.mediamtx_path,
            enabled: c.enabled,
        }
    }
}

/// A new camera.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CreateCamera {
    /// City.
    pub city_id: i64,
    /// Name, unique in the city.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    /// Where it points.
    #[oai(validator(max_length = 500))]
    pub location: Option<String>,
    /// Latitude.
    #[oai(validator(minimum(value = "-90"), maximum(value = "90")))]
    pub latitude: Option<f64>,
    /// Longitude.
    #[oai(validator(minimum(value = "-180"), maximum(value = "180")))]
    pub longitude: Option<f64>,
    /// MediaMTX path (its recordings folder), unique.
    #[oai(validator(min_length = 1, max_length = 255))]
    pub mediamtx_path: Option<String>,
}

/// A recording.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RecordingView {
    /// Id.
    pub id: i64,
    /// Camera.
    pub camera_id: i64,
    /// City.
    pub city_id: i64,
    /// File.
    pub file_path: String,
    /// First frame.
    pub started_at: DateTime<Utc>,
    /// After the last frame.
    pub ended_at: DateTime<Utc>,
    /// Size.
    pub size_bytes: i64,
}

impl From<recording::Model> for RecordingView {
    fn from(r: recording::Model) -> Self {
        Self {
            id: r.id,
            camera_id: r.camera_id,
            city_id: r.city_id,
            file_path: r.file_path,
            started_at: r.started_at,
            ended_at: r.ended_at,
            size_bytes: r.size_bytes,
        }
    }
}

/// A recording to register.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RegisterRecording {
    /// Camera.
    pub camera_id: i64,
    /// File path relative to RECORDINGS_DIR (an absolute path must lie under it; it is stored
    /// relative). A city key may register only files under the camera's `mediamtx_path`.
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub file_path: String,
    /// First frame, RFC 3339.
    pub started_at: String,
    /// After the last frame, RFC 3339.
    pub ended_at: String,
}

/// A new API key.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CreateApiKey {
    /// A label.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    /// The user it acts for.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub user_id: String,
    /// The city it is scoped to; omit for an admin key.
    pub city_id: Option<i64>,
}

/// An API key (never its secret).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ApiKeyView {
    /// Id.
    pub id: i64,
    /// First characters of the secret.
    pub prefix: String,
    /// Label.
    pub name: String,
    /// User.
    pub user_id: String,
    /// City scope; `null` for admin.
    pub city_id: Option<i64>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<api_key::Model> for ApiKeyView {
    fn from(k: api_key::Model) -> Self {
        Self {
            id: k.id,
            prefix: k.prefix,
            name: k.name,
            user_id: k.user_id,
            city_id: k.city_id,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A created key: the secret is shown this once.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CreatedApiKey {
    /// The key.
    pub key: ApiKeyView,
    /// The secret for `Authorization: Bearer`; it is stored hashed and cannot be shown again.
    pub secret: String,
}

/// Created.
#[derive(ApiResponse)]
pub enum Created<T: poem_openapi::types::ToJSON + Send + Sync> {
    /// Created.
    #[oai(status = 201)]
    Created(Json<T>),
}

/// Administration endpoints.
pub struct AdminApi;

async fn visible_camera(
    state: &AppState,
    auth: &ApiKeyAuth,
    id: i64,
) -> Result<camera::Model, ApiError> {
    match cameras::get(&state.db, id).await? {
        Some(c) if auth.0.sees_city(c.city_id) => Ok(c),
        _ => Err(ApiError::not_found("camera", id)),
    }
}

/// The one answer for a file that cannot be used, whether it is missing, not a regular file or
/// leads (through a symlink) outside where the key may register: it does not tell which, so the
/// API cannot be used to probe the host's files.
fn unusable_file() -> ApiError {
    ApiError::invalid(
        "file_path must name an existing regular file inside the camera's recordings folder under RECORDINGS_DIR",
        "file_path",
    )
}

/// A recording path as it will be stored (relative to `RECORDINGS_DIR`, normalised) and the file
/// it resolves to. Admin keys may register any file under `RECORDINGS_DIR`; city keys only files
/// under their camera's `mediamtx_path` folder — symlinks included — so a city key cannot point
/// a recording at another camera's or another city's files.
fn confined_recording(
    state: &AppState,
    auth: &ApiKeyAuth,
    camera: &camera::Model,
    input: &str,
) -> Result<(String, std::path::PathBuf), ApiError> {
    let root = Root::open(&state.recordings_dir).map_err(|e| {
        tracing::error!(error = %e, dir = %state.recordings_dir.display(), "RECORDINGS_DIR cannot be opened");
        ApiError::unavailable("the recordings directory is not available")
    })?;
    let stored = root
        .relative(input)
        .map_err(|e| ApiError::invalid(format!("file_path: {e}"), "file_path"))?;
    let resolved = if auth.0.is_admin() {
        root.resolve(&stored)
    } else {
        let Some(folder) = camera.mediamtx_path.as_deref() else {
            return Err(ApiError::invalid(
                "this camera has no mediamtx_path folder; only an admin key can register its recordings",
                "file_path",
            ));
        };
        if !is_within(&stored, folder) {
            return Err(ApiError::invalid(
                format!("a city key can register only files under the camera's folder {folder}/"),
                "file_path",
            ));
        }
        root.resolve_within(&stored, folder)
    };
    let resolved = resolved.map_err(|_| unusable_file())?;
    Ok((stored, resolved))
}

/// A camera's `mediamtx_path`, normalised like a recording path (no `..`, no leading `/`).
fn camera_folder(input: Option<String>) -> Result<Option<String>, ApiError> {
    input
        .map(|p| {
            normalize(&p)
                .map_err(|e| ApiError::invalid(format!("mediamtx_path: {e}"), "mediamtx_path"))
        })
        .transpose()
}

#[OpenApi(prefix_path = "/api/v1")]
impl AdminApi {
    /// Cities the key sees.
    #[oai(path = "/cities", method = "get", tag = "AdminTags::Cities")]
    async fn list_cities(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
    ) -> Result<Json<Vec<CityView>>, ApiError> {
        let all = cities::list(&state.db).await?;
        Ok(Json(
            all.into_iter()
                .filter(|c| auth.0.sees_city(c.id))
                .map(Into::into)
                .collect(),
        ))
    }

    /// Create a city (admin).
    #[oai(path = "/cities", method = "post", tag = "AdminTags::Cities")]
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
        let created = cities::create(
            &state.db,
            cities::NewCity {
                name: body.name.trim().to_owned(),
                timezone: body.timezone.unwrap_or_else(|| "America/Sao_Paulo".into()),
                recording_retention_days: body.recording_retention_days.unwrap_or(30),
                max_storage_bytes: body.max_storage_bytes,
            },
        )
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::Conflict(_) => {
                ApiError::conflict("a city with this name already exists", Some("name"))
            }
            other => other,
        })?;
        let created = cities::set_search_limits(&state.db, created.id, limits).await?;
        Ok(Created::Created(Json(created.into())))
    }

    /// A city.
    #[oai(path = "/cities/:id", method = "get", tag = "AdminTags::Cities")]
    async fn get_city(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
    ) -> Result<Json<CityView>, ApiError> {
        match cities::get(&state.db, id.0).await? {
            Some(c) if auth.0.sees_city(c.id) => Ok(Json(c.into())),
            _ => Err(ApiError::not_found("city", id.0)),
        }
    }

    /// Cameras the key sees, optionally of one city.
    #[oai(path = "/cameras", method = "get", tag = "AdminTags::Cameras")]
    async fn list_cameras(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] city_id: Query<Option<i64>>,
    ) -> Result<Json<Vec<CameraView>>, ApiError> {
        let rows = cameras::list_visible(&state.db, auth.0.city_scope(), city_id.0).await?;
        Ok(Json(rows.into_iter().map(Into::into).collect()))
    }

    /// Create a camera (admin).
    #[oai(path = "/cameras", method = "post", tag = "AdminTags::Cameras")]
    async fn create_camera(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        body: Json<CreateCamera>,
    ) -> Result<Created<CameraView>, ApiError> {
        auth.0.require_admin()?;
        let body = body.0;
        if cities::get(&state.db, body.city_id).await?.is_none() {
            return Err(ApiError::invalid(
                format!("unknown city {}", body.city_id),
                "city_id",
            ));
        }
        let created = cameras::create(
            &state.db,
            cameras::NewCamera {
                city_id: body.city_id,
                name: body.name.trim().to_owned(),
                location: body.location,
                latitude: body.latitude,
                longitude: body.longitude,
                mediamtx_path: camera_folder(body.mediamtx_path)?,
            },
        )
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::Conflict(_) => ApiError::conflict(
                "a camera with this name (in the city) or MediaMTX path already exists",
                Some("name"),
            ),
            other => other,
        })?;
        Ok(Created::Created(Json(created.into())))
    }

    /// Register a recording file of a camera (idempotent per camera and start time).
    #[oai(path = "/recordings", method = "post", tag = "AdminTags::Recordings")]
    async fn register_recording(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        body: Json<RegisterRecording>,
    ) -> Result<Created<RecordingView>, ApiError> {
        let body = body.0;
        let camera = visible_camera(&state, &auth, body.camera_id)
            .await
            .map_err(|_| {
                ApiError::invalid(format!("unknown camera {}", body.camera_id), "camera_id")
            })?;
        let span = TimeRange::parse(&body.started_at, &body.ended_at).map_err(|e| {
            let field = if e.field == "start_date" {
                "started_at"
            } else {
                "ended_at"
            };
            ApiError::invalid(e.message, field)
        })?;
        let file_path = confined_recording(&state, &auth, &camera, &body.file_path)?;
        let size = match tokio::fs::metadata(&file_path.1).await {
            Ok(m) if m.is_file() => i64::try_from(m.len()).unwrap_or(i64::MAX),
            _ => return Err(unusable_file()),
        };
        if let Some(other) = recordings::find_by_path(&state.db, &file_path.0).await?
            && (other.camera_id, other.started_at) != (camera.id, span.start())
        {
            return Err(ApiError::conflict(
                format!(
                    "{} is already registered as recording {}",
                    file_path.0, other.id
                ),
                Some("file_path"),
            ));
        }
        let (row, _) = recordings::register(
            &state.db,
            recordings::NewRecording {
                camera_id: camera.id,
                city_id: camera.city_id,
                file_path: file_path.0,
                started_at: span.start(),
                ended_at: span.end(),
                size_bytes: size,
            },
        )
        .await?;
        Ok(Created::Created(Json(row.into())))
    }

    /// Recordings of a camera overlapping a window.
    #[oai(path = "/recordings", method = "get", tag = "AdminTags::Recordings")]
    async fn list_recordings(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        /// Camera.
        #[oai(validator(minimum(value = "1")))]
        camera_id: Query<i64>,
        /// Window start (RFC 3339).
        from: Query<DateTime<Utc>>,
        /// Window end (RFC 3339).
        to: Query<DateTime<Utc>>,
    ) -> Result<Json<Vec<RecordingView>>, ApiError> {
        let camera = visible_camera(&state, &auth, camera_id.0).await?;
        let window =
            TimeRange::new(from.0, to.0).map_err(|e| ApiError::invalid(e.message, "to"))?;
        let rows =
            recordings::overlapping(&state.db, camera.city_id, &window, Some(&[camera.id])).await?;
        Ok(Json(rows.into_iter().map(Into::into).collect()))
    }

    /// Create an API key (admin). The secret is in the answer, once.
    #[oai(path = "/api-keys", method = "post", tag = "AdminTags::ApiKeys")]
    async fn create_key(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        body: Json<CreateApiKey>,
    ) -> Result<Created<CreatedApiKey>, ApiError> {
        auth.0.require_admin()?;
        let body = body.0;
        if let Some(city) = body.city_id
            && cities::get(&state.db, city).await?.is_none()
        {
            return Err(ApiError::invalid(format!("unknown city {city}"), "city_id"));
        }
        let secret = auth::new_secret();
        let key =
            auth::create_key(&state.db, &secret, &body.name, &body.user_id, body.city_id).await?;
        Ok(Created::Created(Json(CreatedApiKey {
            key: key.into(),
            secret,
        })))
    }

    /// API keys (admin).
    #[oai(path = "/api-keys", method = "get", tag = "AdminTags::ApiKeys")]
    async fn list_keys(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
    ) -> Result<Json<Vec<ApiKeyView>>, ApiError> {
        auth.0.require_admin()?;
        let rows = api_keys::list(&state.db).await?;
        Ok(Json(rows.into_iter().map(Into::into).collect()))
    }

    /// Revoke an API key (admin); it answers 401 from then on.
    #[oai(
        path = "/api-keys/:id/revoke",
        method = "post",
        tag = "AdminTags::ApiKeys"
    )]
    async fn revoke_key(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
    ) -> Result<Json<ApiKeyView>, ApiError> {
        auth.0.require_admin()?;
        match api_keys::revoke(&state.db, id.0).await? {
            Some(key) => Ok(Json(key.into())),
            None => Err(ApiError::not_found("API key", id.0)),
        }
    }
}
