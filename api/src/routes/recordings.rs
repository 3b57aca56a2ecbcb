//! Recordings of a camera: registration (confined to `RECORDINGS_DIR` and, for a city key, to
//! the camera's folder) and the listing over a window.

use chrono::{DateTime, Utc};
use entity::{camera, recording};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Tags};
use sentinela_core::domain::TimeRange;
use sentinela_core::files::{Root, is_within};
use sentinela_core::repo::recordings;

use super::cameras::visible_camera;
use super::{Created, Deleted};
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;

#[derive(Tags)]
enum Tag {
    /// Recordings: registered by index sync or by hand (confined to `RECORDINGS_DIR`), listed
    /// per camera, corrected or deleted by an admin while no search or sighting holds them.
    Recordings,
}

/// A recording.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none, example)]
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
#[oai(skip_serializing_if_is_none, example)]
pub struct RegisterRecording {
    /// Camera.
    #[oai(validator(minimum(value = "1")))]
    pub camera_id: i64,
    /// File path relative to RECORDINGS_DIR (an absolute path must lie under it; it is stored
    /// relative). A city key may register only files under the camera's `mediamtx_path`.
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub file_path: String,
    /// First frame, RFC 3339 with an offset.
    pub started_at: DateTime<Utc>,
    /// After the last frame, RFC 3339 with an offset, after `started_at`.
    pub ended_at: DateTime<Utc>,
}

fn at(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

impl poem_openapi::types::Example for RegisterRecording {
    fn example() -> Self {
        Self {
            camera_id: 7,
            file_path: "cam_paulista_augusta/2026-11-29_08-00-00-000000.mp4".into(),
            started_at: at("2026-11-29T08:00:00-03:00"),
            ended_at: at("2026-11-29T08:01:00-03:00"),
        }
    }
}

impl poem_openapi::types::Example for RecordingView {
    fn example() -> Self {
        let r = RegisterRecording::example();
        Self {
            id: 1234,
            camera_id: r.camera_id,
            city_id: 1,
            file_path: r.file_path,
            started_at: r.started_at,
            ended_at: r.ended_at,
            size_bytes: 9_437_184,
        }
    }
}

impl poem_openapi::types::Example for UpdateRecording {
    fn example() -> Self {
        Self {
            started_at: None,
            ended_at: Some(at("2026-11-29T08:00:59-03:00")),
        }
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

/// Recording endpoints.
pub struct RecordingsApi;

/// A page of recordings.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RecordingPage {
    /// Recordings in start order.
    pub items: Vec<RecordingView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A recording's corrected span: absent fields stay as they are.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none, example)]
pub struct UpdateRecording {
    /// Wall-clock time of the first frame (RFC 3339).
    pub started_at: Option<DateTime<Utc>>,
    /// Wall-clock time after the last frame (RFC 3339), after `started_at`.
    pub ended_at: Option<DateTime<Utc>>,
}

/// Recording `id` of camera `camera_id` if the key sees the camera, with its city's database.
/// (Recording ids are unique within one database, so a recording is addressed under its camera,
/// whose id names the database.) Another city's recording answers 404, like a missing one.
async fn visible_recording(
    state: &AppState,
    auth: &ApiKeyAuth,
    camera_id: i64,
    id: i64,
) -> Result<(recording::Model, sea_orm::DatabaseConnection), ApiError> {
    let not_found = || ApiError::not_found("recording", id);
    let (camera, db) = visible_camera(state, auth, camera_id)
        .await
        .map_err(|e| match e {
            ApiError::NotFound(_) => not_found(),
            other => other,
        })?;
    match recordings::get(&db, id).await? {
        Some(r) if r.camera_id == camera.id => Ok((r, db)),
        _ => Err(not_found()),
    }
}

/// 409 while a search in flight reads the recording or a stored sighting holds it.
async fn refuse_held(db: &sea_orm::DatabaseConnection, id: i64) -> Result<(), ApiError> {
    let held = recordings::holders(db, id).await?;
    if held.searches_in_flight > 0 || held.sightings > 0 {
        return Err(ApiError::conflict(
            format!(
                "recording {id} is held by {} searches in flight and {} stored sightings; delete those searches first (or wait for them to end)",
                held.searches_in_flight, held.sightings
            ),
            None,
        ));
    }
    Ok(())
}

/// Deletes a recording's row; 409 when a search planned since [`refuse_held`] looked holds it
/// (the database refuses), 404 when it went meanwhile.
pub(crate) async fn delete_row(db: &sea_orm::DatabaseConnection, id: i64) -> Result<(), ApiError> {
    match recordings::delete_unheld(db, id, || async { Ok::<_, std::convert::Infallible>(()) })
        .await?
    {
        recordings::Deletion::Deleted(()) => Ok(()),
        recordings::Deletion::Missing => Err(ApiError::not_found("recording", id)),
        recordings::Deletion::Held | recordings::Deletion::Kept(_) => {
            refuse_held(db, id).await.and(Err(ApiError::conflict(
                format!("recording {id} was taken by a search; try again when it ends"),
                None,
            )))
        }
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Recordings")]
impl RecordingsApi {
    /// Register a recording file of a camera (idempotent per camera and start time).
    #[oai(
        path = "/recordings",
        method = "post",
        operation_id = "register_recording"
    )]
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
        let span = TimeRange::new(body.started_at, body.ended_at)
            .map_err(|e| ApiError::invalid(e.message, "ended_at"))?;
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
        let location = format!("/api/v1/cameras/{}/recordings/{}", row.camera_id, row.id);
        Ok(Created::Created(Json(row.into()), location))
    }

    /// A camera's recordings in start order, a page at a time, optionally only those
    /// overlapping a window (`from` and `to` together).
    // Each query parameter is its own argument, as poem-openapi documents them.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/recordings", method = "get", operation_id = "list_recordings")]
    async fn list_recordings(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        /// The camera.
        #[oai(validator(minimum(value = "1")))]
        camera_id: Query<i64>,
        /// Window start (RFC 3339); with `to`.
        from: Query<Option<DateTime<Utc>>>,
        /// Window end (RFC 3339), after `from`.
        to: Query<Option<DateTime<Utc>>>,
        /// Page size (1–1000, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<i64>>,
        /// The previous page's `next_cursor`.
        #[oai(validator(max_length = 64))]
        cursor: Query<Option<String>>,
    ) -> Result<Json<RecordingPage>, ApiError> {
        let (camera, db) = visible_camera(&state, &auth, camera_id.0).await?;
        let window = match (from.0, to.0) {
            (Some(from), Some(to)) => {
                Some(TimeRange::new(from, to).map_err(|e| ApiError::invalid(e.message, "to"))?)
            }
            (None, None) => None,
            (Some(_), None) => return Err(ApiError::invalid("to is required with from", "to")),
            (None, Some(_)) => {
                return Err(ApiError::invalid("from is required with to", "from"));
            }
        };
        let limit = super::page_size(limit.0);
        let after = super::time_cursor(cursor.0.as_deref())?;
        let rows = recordings::camera_page(&db, camera.id, window.as_ref(), after, limit).await?;
        let (items, next_cursor) = super::paged(rows, limit, |r| {
            super::format_time_cursor(r.started_at, r.id)
        });
        Ok(Json(RecordingPage { items, next_cursor }))
    }

    /// One recording.
    #[oai(
        path = "/cameras/:camera_id/recordings/:id",
        method = "get",
        operation_id = "get_recording"
    )]
    async fn get_recording(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] camera_id: Path<i64>,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
    ) -> Result<Json<RecordingView>, ApiError> {
        Ok(Json(
            visible_recording(&state, &auth, camera_id.0, id.0)
                .await?
                .0
                .into(),
        ))
    }

    /// Correct a recording's wall-clock span (admin). Refused (409) while a search in flight
    /// reads it or a stored sighting was found in it (its evidence would move).
    #[oai(
        path = "/cameras/:camera_id/recordings/:id",
        method = "patch",
        operation_id = "update_recording"
    )]
    async fn update_recording(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] camera_id: Path<i64>,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
        body: Json<UpdateRecording>,
    ) -> Result<Json<RecordingView>, ApiError> {
        auth.0.require_admin()?;
        let (recording, db) = visible_recording(&state, &auth, camera_id.0, id.0).await?;
        let body = body.0;
        let span = TimeRange::new(
            body.started_at.unwrap_or(recording.started_at),
            body.ended_at.unwrap_or(recording.ended_at),
        )
        .map_err(|e| ApiError::invalid(e.message, "ended_at"))?;
        refuse_held(&db, recording.id).await?;
        let updated = recordings::set_span(&db, recording, &span)
            .await
            .map_err(|e| match ApiError::from(e) {
                ApiError::Conflict(_) => ApiError::conflict(
                    "the camera already has a recording starting at started_at",
                    Some("started_at"),
                ),
                other => other,
            })?;
        Ok(Json(updated.into()))
    }

    /// Delete a recording (admin). Refused (409) while a search in flight reads it or a stored
    /// sighting was found in it. Its file stays unless `remove_file=true`; the row goes first,
    /// so a failure never leaves a row without its file.
    #[oai(
        path = "/cameras/:camera_id/recordings/:id",
        method = "delete",
        operation_id = "delete_recording"
    )]
    async fn delete_recording(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] camera_id: Path<i64>,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
        /// Also remove the file from `RECORDINGS_DIR`.
        remove_file: Query<Option<bool>>,
    ) -> Result<Deleted, ApiError> {
        auth.0.require_admin()?;
        let (recording, db) = visible_recording(&state, &auth, camera_id.0, id.0).await?;
        refuse_held(&db, recording.id).await?;
        delete_row(&db, recording.id).await?;
        if remove_file.0.unwrap_or(false) {
            let root = Root::open(&state.recordings_dir).map_err(|e| {
                tracing::error!(error = %e, "RECORDINGS_DIR cannot be opened");
                ApiError::unavailable("the recordings directory is not available")
            })?;
            match root.resolve(&recording.file_path) {
                Ok(path) => match tokio::fs::remove_file(&path).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(error = %e, recording = recording.id, "recording file not removed");
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, recording = recording.id, "recording file not removed");
                }
            }
        }
        Ok(Deleted::Deleted)
    }
}
