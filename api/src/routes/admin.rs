//! Operations (admin): the job queue as the queue backend and the databases see it (what Flower
//! showed Celery users), and what recording retention would delete now, deleting nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Tags};
use sentinela_core::repo::tasks;

use crate::AppState;
use crate::auth::ApiKeyAuth;
use crate::error::ApiError;

#[derive(Tags)]
enum Tag {
    /// Operations (admin): queue statistics and a dry run of recording retention — what
    /// `sentinela queue stats` and `sentinela retention --dry-run` show.
    Operations,
}

/// One queue's jobs by state, as the queue backend counts them.
#[derive(Debug, Object)]
pub struct QueueView {
    /// `search` (plans), `analyze` (one job per recording) or `periodic`.
    pub name: String,
    /// Waiting to be taken.
    pub pending: u64,
    /// Scheduled for later (retries with backoff).
    pub scheduled: u64,
    /// Taken by a live worker.
    pub running: u64,
    /// Finished.
    pub done: u64,
    /// Failed for good.
    pub dead: u64,
}

/// One city's unfinished analysis tasks, as its database counts them.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CityQueueView {
    /// The city.
    pub city_id: i64,
    /// Tasks waiting for a worker.
    pub pending: i64,
    /// Tasks a worker is analysing.
    pub processing: i64,
    /// When the oldest of them was queued.
    pub oldest_at: Option<DateTime<Utc>>,
}

/// The job queue now.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct QueueStats {
    /// Each queue by state.
    pub queues: Vec<QueueView>,
    /// Unfinished tasks per city (cities with none are absent).
    pub cities: Vec<CityQueueView>,
    /// When the oldest unfinished task of any city was queued.
    pub oldest_at: Option<DateTime<Utc>>,
    /// Databases that could not be read (their cities are missing above).
    pub unavailable_databases: Vec<String>,
}

/// A recording retention would delete.
#[derive(Debug, Object)]
pub struct DoomedRecording {
    /// The city.
    pub city_id: i64,
    /// The camera.
    pub camera_id: i64,
    /// The recording.
    pub recording_id: i64,
    /// Its file under `RECORDINGS_DIR`.
    pub file_path: String,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub ended_at: DateTime<Utc>,
    /// Bytes.
    pub size_bytes: i64,
    /// `age` (older than the city's retention) or `storage_cap` (the oldest while over the cap).
    pub reason: String,
}

/// What recording retention would do now.
#[derive(Debug, Object)]
pub struct RetentionPreview {
    /// How many recordings it would delete.
    pub recordings: u64,
    /// How many bytes that frees.
    pub bytes: u64,
    /// Recordings it keeps because a search in flight reads them.
    pub kept_in_use: u64,
    /// Recordings it keeps because a stored sighting was found in them.
    pub kept_evidence: u64,
    /// Bytes a city stays over its cap after that (what is left is held).
    pub over_cap_bytes: u64,
    /// The first `limit` of them, in the order it would delete them.
    pub items: Vec<DoomedRecording>,
}

/// The job queue now (see `GET /api/v1/admin/queue`).
pub(crate) async fn queue_stats(state: &AppState) -> Result<QueueStats, ApiError> {
    let depth = state.queue.depth().await.map_err(|e| {
        tracing::warn!(error = %format!("{e:#}"), "queue depth unavailable");
        ApiError::unavailable("the job queue is unavailable")
    })?;
    let queues = depth
        .into_iter()
        .map(|(name, d)| QueueView {
            name: name.to_owned(),
            pending: d.pending,
            scheduled: d.scheduled,
            running: d.running,
            done: d.done,
            dead: d.dead,
        })
        .collect();
    let mut cities: BTreeMap<i64, CityQueueView> = BTreeMap::new();
    let mut unavailable_databases = Vec::new();
    for database in state.dbs.all().await? {
        let rows = match tasks::backlog_by_city(&database.conn).await {
            Ok(rows) => rows,
            Err(e) if sentinela_core::repo::is_unavailable(&e) => {
                unavailable_databases.push(database.label);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for row in rows {
            let city = cities.entry(row.city_id).or_insert(CityQueueView {
                city_id: row.city_id,
                pending: 0,
                processing: 0,
                oldest_at: None,
            });
            match row.status {
                entity::status::TaskStatus::Pending => city.pending += row.tasks,
                _ => city.processing += row.tasks,
            }
            city.oldest_at = match (city.oldest_at, row.oldest) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    let oldest_at = cities.values().filter_map(|c| c.oldest_at).min();
    Ok(QueueStats {
        queues,
        cities: cities.into_values().collect(),
        oldest_at,
        unavailable_databases,
    })
}

/// Operations endpoints.
pub struct AdminApi;

#[OpenApi(prefix_path = "/api/v1/admin", tag = "Tag::Operations")]
impl AdminApi {
    /// The job queue (admin): each queue's jobs by state, and each city's unfinished tasks with
    /// the oldest one's age.
    #[oai(path = "/queue", method = "get", operation_id = "queue_stats")]
    async fn queue(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
    ) -> Result<Json<QueueStats>, ApiError> {
        auth.0.require_admin()?;
        Ok(Json(queue_stats(&state).await?))
    }

    /// What recording retention would delete now (admin), deleting nothing: per city the
    /// recordings past its retention and, while it is over its storage cap, the oldest — minus
    /// those in use or holding a sighting.
    #[oai(
        path = "/retention",
        method = "get",
        operation_id = "retention_preview"
    )]
    async fn retention(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        /// Only this city.
        #[oai(validator(minimum(value = "1")))]
        city_id: Query<Option<i64>>,
        /// Recordings listed (1–10000, default 1000); the counts cover all of them.
        #[oai(validator(minimum(value = "1"), maximum(value = "10000")))]
        limit: Query<Option<i64>>,
    ) -> Result<Json<RetentionPreview>, ApiError> {
        auth.0.require_admin()?;
        let limit = usize::try_from(limit.0.unwrap_or(1000)).unwrap_or(1000);
        let now = Utc::now();
        let mut answer = RetentionPreview {
            recordings: 0,
            bytes: 0,
            kept_in_use: 0,
            kept_evidence: 0,
            over_cap_bytes: 0,
            items: Vec::new(),
        };
        for database in state.dbs.all().await? {
            let cities: Vec<_> = database
                .cities
                .into_iter()
                .filter(|c| city_id.0.is_none_or(|only| only == c.id))
                .collect();
            if cities.is_empty() {
                continue;
            }
            let (report, doomed) = sentinela_scheduler::retention::preview(
                &database.conn,
                &cities,
                &state.recordings_dir,
                now,
            )
            .await
            .map_err(|e| match e.downcast::<sea_orm::DbErr>() {
                Ok(db) => ApiError::from(db),
                Err(other) => ApiError::internal(other),
            })?;
            answer.recordings += report.get("recordings_deleted");
            answer.bytes += report.get("bytes_freed");
            answer.kept_in_use += report.get("kept_in_use");
            answer.kept_evidence += report.get("kept_evidence");
            answer.over_cap_bytes += report.get("over_cap_bytes");
            let room = limit.saturating_sub(answer.items.len());
            answer
                .items
                .extend(doomed.into_iter().take(room).map(|d| DoomedRecording {
                    city_id: d.recording.city_id,
                    camera_id: d.recording.camera_id,
                    recording_id: d.recording.id,
                    file_path: d.recording.file_path,
                    started_at: d.recording.started_at,
                    ended_at: d.recording.ended_at,
                    size_bytes: d.recording.size_bytes,
                    reason: d.reason.to_owned(),
                }));
        }
        Ok(Json(answer))
    }
}
