//! Evidence of a search an operator confirms before acting: each sighting's snapshot with the
//! vehicle's box drawn, a crop of the vehicle and a short clip of the recording around it; the
//! trajectory exported as CSV and GeoJSON; the search's tasks, and retrying the failed ones.
//! Everything answers under the same authorisation as the search (another city's: 404).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use entity::{camera, recording, trajectory_point, vehicle_search};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Object, OpenApi};
use sea_orm::DatabaseConnection;
use sentinela_core::detect::BBox;
use sentinela_core::files::Root;
use sentinela_core::repo::{cameras, points, recordings, tasks};
use sentinela_core::trajectory::{Visit, visits};
use sentinela_core::video::evidence;
use serde_json::json;

use super::searches::{SearchTags, SearchView, visible_search};
use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;

/// Evidence images never change for a sighting: private (per key), cacheable for a day.
pub(crate) const CACHE: &str = "private, max-age=86400";

/// A JPEG image.
#[derive(ApiResponse)]
pub enum JpegImage {
    /// The image.
    #[oai(status = 200, content_type = "image/jpeg")]
    Ok(Binary<Vec<u8>>, #[oai(header = "Cache-Control")] String),
}

/// A short MP4 clip.
#[derive(ApiResponse)]
pub enum Mp4Clip {
    /// The clip; `X-Clip-Start` is the recording time of its first frame (RFC 3339) and
    /// `X-Clip-Mode` `remuxed` (no re-encoding) or `reencoded`.
    #[oai(status = 200, content_type = "video/mp4")]
    Ok(
        Binary<Vec<u8>>,
        #[oai(header = "X-Clip-Start")] String,
        #[oai(header = "X-Clip-Mode")] String,
        #[oai(header = "Cache-Control")] String,
    ),
}

/// A CSV file.
#[derive(ApiResponse)]
pub enum CsvFile {
    /// One row per sighting, in time order.
    #[oai(status = 200, content_type = "text/csv; charset=utf-8")]
    Ok(
        Binary<Vec<u8>>,
        #[oai(header = "Content-Disposition")] String,
    ),
}

/// A GeoJSON document (RFC 7946).
#[derive(ApiResponse)]
pub enum GeoJsonFile {
    /// The cameras that saw the vehicle as points, and its path as a LineString in visit order.
    #[oai(status = 200, content_type = "application/geo+json")]
    Ok(
        Json<serde_json::Value>,
        #[oai(header = "Content-Disposition")] String,
    ),
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a worker.
    Pending,
    /// A worker is analysing it.
    Processing,
    /// Analysed.
    Done,
    /// Could not be analysed (see `error`).
    Failed,
    /// Its search was cancelled.
    Cancelled,
}

impl From<entity::status::TaskStatus> for TaskState {
    fn from(s: entity::status::TaskStatus) -> Self {
        use entity::status::TaskStatus;
        match s {
            TaskStatus::Pending => Self::Pending,
            TaskStatus::Processing => Self::Processing,
            TaskStatus::Done => Self::Done,
            TaskStatus::Failed => Self::Failed,
            TaskStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// One task of a search: a recording (the part of it inside the window) and how its analysis
/// went.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TaskView {
    /// Id.
    pub id: i64,
    /// The recording.
    pub recording_id: i64,
    /// Its camera.
    pub camera_id: Option<i64>,
    /// Where it is.
    pub status: TaskState,
    /// Runs so far.
    pub attempts: i32,
    /// Why it failed.
    pub error: Option<String>,
    /// Start of the part analysed.
    pub window_start: DateTime<Utc>,
    /// End of the part analysed.
    pub window_end: DateTime<Utc>,
    /// Frames analysed.
    pub frames_analyzed: i64,
    /// Detector calls made.
    pub detector_calls: i64,
    /// When it was put on the queue.
    pub enqueued_at: Option<DateTime<Utc>>,
    /// When a worker started it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A page of tasks.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TaskPage {
    /// Tasks by id.
    pub items: Vec<TaskView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A sighting of a visible search, with the database holding it.
pub(crate) async fn sighting(
    state: &AppState,
    auth: &ApiKeyAuth,
    search_id: i64,
    point_id: i64,
) -> Result<
    (
        vehicle_search::Model,
        DatabaseConnection,
        trajectory_point::Model,
    ),
    ApiError,
> {
    let (search, db) = visible_search(state, auth, search_id).await?;
    let point = points::get_in_search(&db, search.id, point_id)
        .await?
        .ok_or_else(|| ApiError::not_found("sighting", point_id))?;
    Ok((search, db, point))
}

/// The box of a stored point.
pub(crate) fn bbox_of(point: &trajectory_point::Model) -> Option<BBox> {
    serde_json::from_value(point.bbox.clone()).ok()
}

/// The snapshot file of a point, read from `SNAPSHOT_DIR` (confined, symlinks included).
async fn snapshot_bytes(
    state: &AppState,
    point: &trajectory_point::Model,
) -> Result<Vec<u8>, ApiError> {
    let not_found = || ApiError::not_found("snapshot of sighting", point.id);
    let name = point.image_path.as_deref().ok_or_else(not_found)?;
    let root = Root::open(&state.snapshot_dir).map_err(|_| not_found())?;
    let path = root.resolve(name).map_err(|_| not_found())?;
    tokio::fs::read(&path).await.map_err(|_| not_found())
}

/// Draws (or crops) on a blocking thread.
async fn render(bytes: Vec<u8>, bbox: BBox, quality: i32, crop: bool) -> Result<Vec<u8>, ApiError> {
    tokio::task::spawn_blocking(move || {
        if crop {
            evidence::crop(&bytes, &bbox, quality)
        } else {
            evidence::boxed(&bytes, &bbox, quality)
        }
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::internal(anyhow::anyhow!("evidence image: {e}")))
}

/// A CSV field, quoted when it holds a separator, a quote or a line break (RFC 4180).
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// Which visit (1-based) each point belongs to, by point id.
fn visit_of(visits: &[Visit], points: &[trajectory_point::Model]) -> BTreeMap<i64, usize> {
    let mut out = BTreeMap::new();
    for p in points {
        if let Some(i) = visits.iter().position(|v| {
            v.camera_id == p.camera_id && v.first_seen <= p.timestamp && p.timestamp <= v.last_seen
        }) {
            out.insert(p.id, i + 1);
        }
    }
    out
}

/// Evidence endpoints.
pub struct EvidenceApi;

#[OpenApi(prefix_path = "/api/v1", tag = "SearchTags::Searches")]
impl EvidenceApi {
    /// A sighting's snapshot with the vehicle's box drawn (red), as JPEG.
    #[oai(
        path = "/searches/:id/sightings/:sighting/image",
        method = "get",
        operation_id = "get_sighting_image"
    )]
    async fn image(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
        #[oai(validator(minimum(value = "1")))] sighting: Path<i64>,
    ) -> Result<JpegImage, ApiError> {
        let (_, _, point) = self::sighting(&state, &auth, id.0, sighting.0).await?;
        let bytes = snapshot_bytes(&state, &point).await?;
        let bytes = match bbox_of(&point) {
            Some(bbox) => render(bytes, bbox, state.jpeg_quality, false).await?,
            None => bytes,
        };
        Ok(JpegImage::Ok(Binary(bytes), CACHE.to_owned()))
    }

    /// The vehicle cut out of a sighting's snapshot, as JPEG.
    #[oai(
        path = "/searches/:id/sightings/:sighting/crop",
        method = "get",
        operation_id = "get_sighting_crop"
    )]
    async fn crop(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
        #[oai(validator(minimum(value = "1")))] sighting: Path<i64>,
    ) -> Result<JpegImage, ApiError> {
        let (_, _, point) = self::sighting(&state, &auth, id.0, sighting.0).await?;
        let bbox =
            bbox_of(&point).ok_or_else(|| ApiError::not_found("box of sighting", point.id))?;
        let bytes = snapshot_bytes(&state, &point).await?;
        let bytes = render(bytes, bbox, state.jpeg_quality, true).await?;
        Ok(JpegImage::Ok(Binary(bytes), CACHE.to_owned()))
    }

    /// A short MP4 of the recording around a sighting: `before` and `after` seconds (0–30,
    /// default 5 each), cut to the recording's ends. Remuxed without re-encoding when a keyframe
    /// sits at the start, re-encoded otherwise.
    #[oai(
        path = "/searches/:id/sightings/:sighting/clip",
        method = "get",
        operation_id = "get_sighting_clip"
    )]
    async fn clip(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
        #[oai(validator(minimum(value = "1")))] sighting: Path<i64>,
        /// Seconds before the sighting (0–30, default 5).
        #[oai(validator(minimum(value = "0"), maximum(value = "30")))]
        before: Query<Option<f64>>,
        /// Seconds after the sighting (0–30, default 5).
        #[oai(validator(minimum(value = "0"), maximum(value = "30")))]
        after: Query<Option<f64>>,
    ) -> Result<Mp4Clip, ApiError> {
        let (_, db, point) = self::sighting(&state, &auth, id.0, sighting.0).await?;
        let gone = || ApiError::not_found("recording of sighting", point.id);
        let recording = recordings::get(&db, point.recording_id)
            .await?
            .ok_or_else(gone)?;
        let root = Root::open(&state.recordings_dir).map_err(|_| gone())?;
        let file = root.resolve(&recording.file_path).map_err(|_| gone())?;
        let length = (recording.ended_at - recording.started_at).num_milliseconds() as f64 / 1000.0;
        let offset = (point.timestamp - recording.started_at).num_milliseconds() as f64 / 1000.0;
        let start = (offset - before.0.unwrap_or(5.0)).max(0.0);
        let end = (offset + after.0.unwrap_or(5.0)).min(length.max(offset));
        let duration = (end - start).max(0.1);
        let out = std::env::temp_dir().join(format!(
            "sentinela-clip-{}-{}.mp4",
            point.id,
            rand::random::<u64>()
        ));
        let made = {
            let out = out.clone();
            tokio::task::spawn_blocking(move || evidence::clip(&file, start, duration, &out))
                .await
                .map_err(ApiError::internal)?
        };
        let bytes = tokio::fs::read(&out).await;
        tokio::fs::remove_file(&out).await.ok();
        let mode = made.map_err(|e| {
            tracing::warn!(sighting = point.id, error = %e, "clip failed");
            ApiError::invalid(
                "the recording cannot be cut here (its file is unreadable or ends before the sighting)",
                "sighting",
            )
        })?;
        let bytes = bytes.map_err(ApiError::internal)?;
        let first =
            recording.started_at + chrono::Duration::milliseconds((start * 1000.0).round() as i64);
        Ok(Mp4Clip::Ok(
            Binary(bytes),
            first.to_rfc3339(),
            match mode {
                evidence::ClipMode::Remuxed => "remuxed",
                evidence::ClipMode::Reencoded => "reencoded",
            }
            .to_owned(),
            CACHE.to_owned(),
        ))
    }

    /// The trajectory as CSV: one row per sighting in time order, with its visit.
    #[oai(
        path = "/searches/:id/export.csv",
        method = "get",
        operation_id = "export_search_csv"
    )]
    async fn export_csv(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
    ) -> Result<CsvFile, ApiError> {
        let (search, db) = visible_search(&state, &auth, id.0).await?;
        let rows = points::list_for_search(&db, search.id).await?;
        let cams = camera_map(&db, search.city_id).await?;
        let starts = recording_starts(&db, &rows).await?;
        let visits = visits(&rows, state.visit_gap);
        let visit_of = visit_of(&visits, &rows);
        let mut out = String::from(
            "visit,timestamp,camera_id,camera_name,latitude,longitude,label,color,plate,plate_score,confidence,recording_id,offset_ms,sighting_id\n",
        );
        for p in &rows {
            let cam = cams.get(&p.camera_id);
            let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
            let fields = [
                visit_of
                    .get(&p.id)
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                p.timestamp.to_rfc3339(),
                p.camera_id.to_string(),
                cam.map(|c| c.name.clone()).unwrap_or_default(),
                opt(cam.and_then(|c| c.latitude)),
                opt(cam.and_then(|c| c.longitude)),
                p.label.clone(),
                p.color.clone().unwrap_or_default(),
                p.plate_text.clone().unwrap_or_default(),
                opt(p.plate_score),
                p.confidence.to_string(),
                p.recording_id.to_string(),
                starts
                    .get(&p.recording_id)
                    .map(|s| (p.timestamp - *s).num_milliseconds().to_string())
                    .unwrap_or_default(),
                p.id.to_string(),
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        Ok(CsvFile::Ok(
            Binary(out.into_bytes()),
            format!("attachment; filename=\"search-{}.csv\"", search.id),
        ))
    }

    /// The trajectory as GeoJSON (RFC 7946): each camera that saw the vehicle and has
    /// coordinates as a Point (with its sightings), and the path as a LineString through the
    /// visits' cameras in order (when at least two visits have coordinates).
    #[oai(
        path = "/searches/:id/export.geojson",
        method = "get",
        operation_id = "export_search_geojson"
    )]
    async fn export_geojson(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
    ) -> Result<GeoJsonFile, ApiError> {
        let (search, db) = visible_search(&state, &auth, id.0).await?;
        let rows = points::list_for_search(&db, search.id).await?;
        let cams = camera_map(&db, search.city_id).await?;
        let visits = visits(&rows, state.visit_gap);
        let position = |camera_id: i64| {
            cams.get(&camera_id)
                .and_then(|c| Some(json!([c.longitude?, c.latitude?])))
        };
        let mut features = Vec::new();
        let mut seen = BTreeMap::new();
        for v in &visits {
            *seen.entry(v.camera_id).or_insert(0u64) += v.sightings;
        }
        for (camera_id, sightings) in &seen {
            if let Some(coordinates) = position(*camera_id) {
                features.push(json!({
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": coordinates},
                    "properties": {
                        "camera_id": camera_id,
                        "camera_name": cams.get(camera_id).map(|c| c.name.clone()),
                        "sightings": sightings,
                    },
                }));
            }
        }
        let path: Vec<serde_json::Value> = visits
            .iter()
            .filter_map(|v| position(v.camera_id))
            .collect();
        if path.len() >= 2 {
            features.push(json!({
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": path},
                "properties": {
                    "search_id": search.id,
                    "visits": visits.iter().map(|v| json!({
                        "camera_id": v.camera_id,
                        "first_seen": v.first_seen.to_rfc3339(),
                        "last_seen": v.last_seen.to_rfc3339(),
                    })).collect::<Vec<_>>(),
                },
            }));
        }
        let document = json!({"type": "FeatureCollection", "features": features});
        Ok(GeoJsonFile::Ok(
            Json(document),
            format!("attachment; filename=\"search-{}.geojson\"", search.id),
        ))
    }

    /// A search's tasks, a page at a time (`limit`, then `cursor` = the previous page's
    /// `next_cursor`): recording, camera, status, attempts, error and timings.
    #[oai(
        path = "/searches/:id/tasks",
        method = "get",
        operation_id = "list_search_tasks"
    )]
    async fn tasks(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
        /// Tasks per page (1–500, default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<i64>>,
        /// The previous page's `next_cursor`.
        #[oai(validator(max_length = 64))]
        cursor: Query<Option<String>>,
    ) -> Result<Json<TaskPage>, ApiError> {
        let (search, db) = visible_search(&state, &auth, id.0).await?;
        let limit = limit.0.unwrap_or(100).clamp(1, 500).unsigned_abs();
        let after = super::id_cursor(cursor.0.as_deref())?;
        let mut rows = tasks::page_for_search(&db, search.id, after, limit + 1).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let ids: Vec<i64> = rows.iter().map(|t| t.recording_id).collect();
        let camera_of: BTreeMap<i64, i64> = recordings::by_ids(&db, &ids)
            .await?
            .into_iter()
            .map(|r| (r.id, r.camera_id))
            .collect();
        let next_cursor = more
            .then(|| rows.last().map(|t| t.id.to_string()))
            .flatten();
        let items = rows
            .into_iter()
            .map(|t| TaskView {
                id: t.id,
                recording_id: t.recording_id,
                camera_id: camera_of.get(&t.recording_id).copied(),
                status: t.status.into(),
                attempts: t.attempts,
                error: t.error,
                window_start: t.window_start,
                window_end: t.window_end,
                frames_analyzed: t.frames_analyzed,
                detector_calls: t.detector_calls,
                enqueued_at: t.enqueued_at,
                started_at: t.started_at,
                finished_at: t.finished_at,
            })
            .collect();
        Ok(Json(TaskPage { items, next_cursor }))
    }

    /// Run a finished search's failed tasks again (after their files were restored, say): the
    /// search goes back to `processing` and finalises again; counters stay exact and sightings
    /// are not duplicated. 409 when it has no failed task or has not finished.
    #[oai(
        path = "/searches/:id/retry",
        method = "post",
        operation_id = "retry_search"
    )]
    async fn retry(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
    ) -> Result<Json<SearchView>, ApiError> {
        Ok(Json(retry_search(&state, &auth, id.0).await?.into()))
    }
}

/// Runs a finished search's failed tasks again (see `POST /searches/{id}/retry`); the search
/// as it is then.
pub(crate) async fn retry_search(
    state: &AppState,
    auth: &ApiKeyAuth,
    id: i64,
) -> Result<vehicle_search::Model, ApiError> {
    let (search, db) = visible_search(state, auth, id).await?;
    let reset = tasks::retry_failed(&db, search.id).await?;
    if reset == 0 {
        return Err(ApiError::conflict(
            format!(
                "search {} has no failed task to retry ({}, {} failed)",
                search.id,
                search.status.as_str(),
                search.tasks_failed
            ),
            None,
        ));
    }
    let claimed = tasks::refill(&db, search.id, state.queue_window).await?;
    let jobs: Vec<_> = claimed
        .iter()
        .map(|t| sentinela_core::jobs::AnalyzeRecording::of_task(t, Some(search.city_id)))
        .collect();
    if let Err(e) = state.queue.push_analyze(jobs).await {
        // The tasks stay pending and unqueued: the scheduler's recovery queues them.
        let ids: Vec<i64> = claimed.iter().map(|t| t.id).collect();
        tasks::unclaim(&db, &ids).await.ok();
        tracing::error!(search_id = search.id, error = %format!("{e:#}"), "retry: queue unavailable");
    }
    tracing::info!(search_id = search.id, tasks = reset, "failed tasks retried");
    let (search, _) = visible_search(state, auth, id).await?;
    Ok(search)
}

async fn camera_map(
    db: &DatabaseConnection,
    city_id: i64,
) -> Result<BTreeMap<i64, camera::Model>, ApiError> {
    Ok(cameras::list_by_city(db, city_id)
        .await?
        .into_iter()
        .map(|c| (c.id, c))
        .collect())
}

/// When each recording of `points` starts.
pub(crate) async fn recording_starts(
    db: &DatabaseConnection,
    points: &[trajectory_point::Model],
) -> Result<BTreeMap<i64, DateTime<Utc>>, ApiError> {
    let mut ids: Vec<i64> = points.iter().map(|p| p.recording_id).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(recordings::by_ids(db, &ids)
        .await?
        .into_iter()
        .map(|r: recording::Model| (r.id, r.started_at))
        .collect())
}
