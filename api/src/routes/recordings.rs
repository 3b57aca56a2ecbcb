//! Recordings of a camera: registration (confined to `RECORDINGS_DIR` and, for a city key, to
//! the camera's folder) and the listing over a window.

use chrono::{DateTime, Utc};
use entity::{camera, recording};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Tags};
use sentinela_core::domain::TimeRange;
use sentinela_core::files::{Root, is_within};
use sentinela_core::repo::recordings;

use super::Created;
use super::cameras::visible_camera;
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;

#[derive(Tags)]
enum Tag {
    /// Recordings.
    Recordings,
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

/// Recording endpoints.
pub struct RecordingsApi;

#[OpenApi(prefix_path = "/api/v1")]
impl RecordingsApi {
    /// Register a recording file of a camera (idempotent per camera and start time).
    #[oai(path = "/recordings", method = "post", tag = "Tag::Recordings")]
    async fn register_recording(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        body: Json<RegisterRecording>,
    ) -> Result<Created<RecordingView>, ApiError> {
        let body = body.0;
        let (camera, db) = visible_camera(&state, &auth, body.camera_id)
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
        if let Some(other) = recordings::find_by_path(&db, &file_path.0).await?
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
            &db,
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
    #[oai(path = "/recordings", method = "get", tag = "Tag::Recordings")]
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
        let (camera, db) = visible_camera(&state, &auth, camera_id.0).await?;
        let window =
            TimeRange::new(from.0, to.0).map_err(|e| ApiError::invalid(e.message, "to"))?;
        let rows =
            recordings::overlapping(&db, camera.city_id, &window, Some(&[camera.id])).await?;
        Ok(Json(rows.into_iter().map(Into::into).collect()))
    }
}
