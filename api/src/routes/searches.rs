//! Searches: create, list, read with progress, cancel, trajectory, progress events.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{camera, vehicle_search};
use futures::StreamExt;
use futures::stream::BoxStream;
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Binary, EventStream, Json};
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use sentinela_core::SearchStatus;
use sentinela_core::domain::{Color, PlatePattern, TimeRange, VehicleType};
use sentinela_core::estimate::{self, Estimate, EstimateRequest};
use sentinela_core::files::Root;
use sentinela_core::jobs::SearchVehicle;
use sentinela_core::repo::idempotency::{self, Reservation};
use sentinela_core::repo::{cameras, directory, points, searches, usage};

use super::cameras::listed_databases;

use crate::AppState;
use crate::auth::{self, ApiKeyAuth};
use crate::error::ApiError;
use crate::starts::StartError;

#[derive(Tags)]
pub(crate) enum SearchTags {
    /// Vehicle searches and their trajectories.
    Searches,
}

/// A new search.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none, example)]
pub struct CreateSearch {
    /// City whose recordings are searched.
    #[oai(validator(minimum(value = "1")))]
    pub city_id: i64,
    /// Brazilian plate (`ABC-1234`, `ABC1D23`), wildcards `*` and `?` allowed.
    #[oai(validator(max_length = 16))]
    pub plate: Option<String>,
    /// Colour, English or Portuguese (`red`, `vermelho`…).
    #[oai(validator(max_length = 32))]
    pub color: Option<String>,
    /// Vehicle type, English or Portuguese (`bus`, `ônibus`, `carro`…).
    #[oai(validator(max_length = 32))]
    pub vehicle_type: Option<String>,
    /// Window start, RFC 3339 with an offset (`2026-11-29T08:00:00-03:00`).
    pub start_date: DateTime<Utc>,
    /// Window end, RFC 3339 with an offset, after the start.
    pub end_date: DateTime<Utc>,
    /// Only these cameras of the city.
    #[oai(validator(min_items = 1, max_items = 1000))]
    pub camera_ids: Option<Vec<i64>>,
    /// Completion webhook: POSTed (signed JSON) once the search finishes. Public hosts only,
    /// unless the installation allows internal ones.
    #[oai(validator(max_length = 2000))]
    pub webhook_url: Option<String>,
    /// The key the webhook's payload is signed with (HMAC-SHA256, 16–200 characters); required
    /// with `webhook_url`. Write-only.
    #[oai(validator(min_length = 16, max_length = 200), write_only)]
    pub webhook_secret: Option<String>,
}

impl poem_openapi::types::Example for CreateSearch {
    fn example() -> Self {
        let at = |t: &str| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default()
        };
        Self {
            city_id: 1,
            plate: Some("ABC1D23".into()),
            color: Some("vermelho".into()),
            vehicle_type: Some("carro".into()),
            start_date: at("2026-11-29T08:00:00-03:00"),
            end_date: at("2026-11-29T12:00:00-03:00"),
            camera_ids: None,
            webhook_url: None,
            webhook_secret: None,
        }
    }
}

impl CreateSearch {
    /// Hex SHA-256 of the request as parsed (the secret included), for `Idempotency-Key`.
    fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::json!([
            self.city_id,
            self.plate,
            self.color,
            self.vehicle_type,
            self.start_date.timestamp_micros(),
            self.end_date.timestamp_micros(),
            self.camera_ids,
            self.webhook_url,
            self.webhook_secret,
        ]);
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// Where a search is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "snake_case")]
pub enum SearchState {
    /// Waiting to be planned.
    Pending,
    /// Its recordings are being analysed.
    Processing,
    /// Every recording analysed.
    Completed,
    /// Ended; some recordings could not be analysed (see its tasks).
    CompletedWithErrors,
    /// Could not run.
    Failed,
    /// Cancelled by a user.
    Cancelled,
    /// Stopped at its city's daily detector budget.
    BudgetExhausted,
}

impl From<SearchStatus> for SearchState {
    fn from(s: SearchStatus) -> Self {
        match s {
            SearchStatus::Pending => Self::Pending,
            SearchStatus::Processing => Self::Processing,
            SearchStatus::Completed => Self::Completed,
            SearchStatus::CompletedWithErrors => Self::CompletedWithErrors,
            SearchStatus::Failed => Self::Failed,
            SearchStatus::Cancelled => Self::Cancelled,
            SearchStatus::BudgetExhausted => Self::BudgetExhausted,
        }
    }
}

impl From<SearchState> for SearchStatus {
    fn from(s: SearchState) -> Self {
        match s {
            SearchState::Pending => Self::Pending,
            SearchState::Processing => Self::Processing,
            SearchState::Completed => Self::Completed,
            SearchState::CompletedWithErrors => Self::CompletedWithErrors,
            SearchState::Failed => Self::Failed,
            SearchState::Cancelled => Self::Cancelled,
            SearchState::BudgetExhausted => Self::BudgetExhausted,
        }
    }
}

/// Progress counters.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Progress {
    /// Recordings to analyse.
    pub tasks_total: i32,
    /// Recordings analysed.
    pub tasks_done: i32,
    /// Recordings that could not be analysed.
    pub tasks_failed: i32,
    /// Frames analysed.
    pub frames_analyzed: i64,
    /// Detector calls made.
    pub detector_calls: i64,
}

/// A search.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none, example)]
pub struct SearchView {
    /// Id.
    pub id: i64,
    /// City.
    pub city_id: i64,
    /// Where it is.
    pub status: SearchState,
    /// Normalised plate pattern.
    pub plate: Option<String>,
    /// Canonical colour.
    pub color: Option<String>,
    /// Canonical vehicle type.
    pub vehicle_type: Option<String>,
    /// Window start.
    pub start_date: DateTime<Utc>,
    /// Window end.
    pub end_date: DateTime<Utc>,
    /// Camera filter.
    pub camera_ids: Option<Vec<i64>>,
    /// Progress.
    pub progress: Progress,
    /// What failed, when something did.
    pub error_message: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Planned.
    pub started_at: Option<DateTime<Utc>>,
    /// Ended.
    pub completed_at: Option<DateTime<Utc>>,
    /// What it was estimated to cost when created.
    pub estimate: Option<EstimateView>,
    /// Bytes of the snapshots written for it.
    pub snapshot_bytes: i64,
    /// Sightings stored without a snapshot because the city's snapshot budget was full (the
    /// sightings themselves are all there).
    pub snapshots_skipped: i32,
    /// Sightings stored without a snapshot because the snapshot storage could not be written (a
    /// full or read-only disk: the operators are alerted; the sightings themselves are all there).
    pub snapshots_failed: i32,
    /// The completion webhook's delivery, when the search has one.
    pub webhook: Option<WebhookView>,
}

impl poem_openapi::types::Example for SearchView {
    fn example() -> Self {
        let request = CreateSearch::example();
        let created = request.start_date + chrono::Duration::hours(5);
        Self {
            id: 42,
            city_id: request.city_id,
            status: SearchState::Processing,
            plate: request.plate,
            color: Some("red".into()),
            vehicle_type: Some("car".into()),
            start_date: request.start_date,
            end_date: request.end_date,
            camera_ids: None,
            progress: Progress {
                tasks_total: 240,
                tasks_done: 96,
                tasks_failed: 0,
                frames_analyzed: 23_040,
                detector_calls: 812,
            },
            error_message: None,
            created_at: created,
            started_at: Some(created + chrono::Duration::seconds(1)),
            completed_at: None,
            estimate: None,
            snapshot_bytes: 1_843_200,
            snapshots_skipped: 0,
            snapshots_failed: 0,
            webhook: None,
        }
    }
}

/// A completion webhook's delivery (its URL and secret are not shown).
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WebhookView {
    /// `pending` (until the search finishes, and between attempts), `delivered`, `given_up`.
    pub state: String,
    /// Attempts made.
    pub attempts: i32,
    /// The last attempt's error.
    pub error: Option<String>,
}

impl From<vehicle_search::Model> for SearchView {
    fn from(s: vehicle_search::Model) -> Self {
        Self {
            camera_ids: searches::camera_filter(&s),
            id: s.id,
            city_id: s.city_id,
            status: s.status.into(),
            plate: s.plate,
            color: s.color,
            vehicle_type: s.vehicle_type,
            start_date: s.start_date,
            end_date: s.end_date,
            progress: Progress {
                tasks_total: s.tasks_total,
                tasks_done: s.tasks_done,
                tasks_failed: s.tasks_failed,
                frames_analyzed: s.frames_analyzed,
                detector_calls: s.detector_calls,
            },
            error_message: s.error_message,
            created_at: s.created_at,
            started_at: s.started_at,
            completed_at: s.completed_at,
            estimate: s
                .estimate
                .and_then(|e| serde_json::from_value::<Estimate>(e).ok())
                .map(Into::into),
            snapshot_bytes: s.snapshot_bytes,
            snapshots_skipped: s.snapshots_skipped,
            snapshots_failed: s.snapshots_failed,
            webhook: s.webhook_state.map(|state| WebhookView {
                state,
                attempts: s.webhook_attempts,
                error: s.webhook_error,
            }),
        }
    }
}

/// A search's estimated size and cost.
#[derive(Debug, Clone, Object)]
pub struct EstimateView {
    /// Recordings overlapping the window (one task each). Exact.
    pub recordings: u64,
    /// Seconds of video inside the window. Exact.
    pub video_seconds: f64,
    /// Frames the sampler will decode. Exact.
    pub frames: u64,
    /// Of those, frames the frame-analysis cache already answers (no detector call).
    pub cached_frames: u64,
    /// Share of uncached frames expected to reach the detector (the motion gate's and the
    /// cache's effect in the city's recent searches; 1.0 without history).
    pub detector_rate: f64,
    /// Detector calls to expect.
    pub detector_calls: u64,
    /// Price of one detector call, US dollars.
    pub price_per_call_usd: f64,
    /// Expected cost, US dollars.
    pub cost_usd: f64,
}

impl From<Estimate> for EstimateView {
    fn from(e: Estimate) -> Self {
        Self {
            recordings: e.recordings,
            video_seconds: e.video_seconds,
            frames: e.frames,
            cached_frames: e.cached_frames,
            detector_rate: e.detector_rate,
            detector_calls: e.detector_calls,
            price_per_call_usd: e.price_per_call_usd,
            cost_usd: e.cost_usd,
        }
    }
}

/// An estimate and the caps the search must fit.
#[derive(Debug, Object)]
pub struct EstimateAnswer {
    /// The estimate.
    pub estimate: EstimateView,
    /// Whether the search fits its city's caps (else creating it answers 422).
    pub within_caps: bool,
    /// Most recordings a search of this city may cover.
    pub max_recordings: u64,
    /// Most frames a search of this city may sample.
    pub max_frames: u64,
}

/// A page of searches.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SearchPage {
    /// The searches, newest first.
    pub items: Vec<SearchView>,
    /// How many match the filters (on every page).
    pub total: u64,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A sighting.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PointView {
    /// Id of the sighting (for its image, crop and clip).
    pub id: i64,
    /// Camera.
    pub camera_id: i64,
    /// Camera name.
    pub camera_name: String,
    /// When.
    pub timestamp: DateTime<Utc>,
    /// The snapshot with the vehicle's box drawn, JPEG (same API key).
    pub image_url: Option<String>,
    /// The vehicle cut out of the snapshot, JPEG.
    pub crop_url: Option<String>,
    /// A clip of the recording around the sighting, MP4 (`?before=5&after=5`).
    pub clip_url: String,
    /// The same moment in MediaMTX's playback server, for recordings of a MediaMTX path (when
    /// `api.playback_url` is set).
    pub playback_url: Option<String>,
    /// The vehicle's box in the frame, coordinates relative to the frame (0..1).
    pub bbox: Option<BoxView>,
    /// The recording it was seen in.
    pub recording_id: i64,
    /// Milliseconds from the recording's start.
    pub offset_ms: Option<i64>,
    /// Detector confidence, 0..1.
    pub confidence: f64,
    /// Camera location.
    pub location: Option<String>,
    /// Camera latitude.
    pub latitude: Option<f64>,
    /// Camera longitude.
    pub longitude: Option<f64>,
    /// Vehicle type seen.
    pub label: String,
    /// Colour seen.
    pub color: Option<String>,
    /// Plate read.
    pub plate: Option<String>,
    /// Plate match score, 0..1.
    pub plate_score: Option<f64>,
}

/// A box relative to the frame: every field in 0..1.
#[derive(Debug, Clone, Copy, Object)]
pub struct BoxView {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

/// One stay of the vehicle in front of a camera. A new visit starts when the vehicle is seen by
/// another camera, or by the same camera after more than `api.visit_gap_secs` unseen: a return
/// to a camera is a visit of its own.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct VisitView {
    /// Camera.
    pub camera_id: i64,
    /// Camera name.
    pub camera_name: String,
    /// Camera latitude.
    pub latitude: Option<f64>,
    /// Camera longitude.
    pub longitude: Option<f64>,
    /// First sighting of the visit.
    pub first_seen: DateTime<Utc>,
    /// Last sighting of the visit.
    pub last_seen: DateTime<Utc>,
    /// Sightings in the visit.
    pub sightings: u64,
    /// The most confident sighting of the visit.
    pub best_sighting_id: i64,
    /// Its confidence.
    pub best_confidence: f64,
    /// Its snapshot with the box drawn.
    pub best_image_url: Option<String>,
    /// The plate read with the best score during the visit.
    pub plate: Option<String>,
    /// The colour of the most confident sighting.
    pub color: Option<String>,
}

/// A camera on the trajectory.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CameraVisit {
    /// Camera.
    pub camera_id: i64,
    /// Camera name.
    pub camera_name: String,
    /// First sighting.
    pub first_seen: DateTime<Utc>,
    /// Last sighting.
    pub last_seen: DateTime<Utc>,
    /// Sightings.
    pub sightings: u64,
}

/// Where the vehicle went.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Trajectory {
    /// The search.
    pub search_id: i64,
    /// The search's status (the trajectory grows while it is processing).
    pub status: SearchState,
    /// Sightings in time order: this page.
    pub points: Vec<PointView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// The path: every visit in time order (on every page; a return to a camera is a visit of
    /// its own).
    pub visits: Vec<VisitView>,
    /// Per camera, all its sightings together, in the order the vehicle first reached them (a
    /// summary: it does not show returns — `visits` does).
    pub cameras_visited: Vec<CameraVisit>,
}

/// One progress event: `progress` while the search runs, `end` once (then the stream closes).
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ProgressEvent {
    /// `progress` or `end` (also the SSE event name).
    pub event: String,
    /// Why the stream ends (`end` only): `search_ended`, `key_revoked`, `search_deleted`.
    pub reason: Option<String>,
    /// The search as it is now.
    pub search: SearchView,
}

/// Progress streams open per API key, in this process.
#[derive(Debug, Clone)]
pub struct StreamSlots {
    /// Streams one key may hold.
    pub limit: usize,
    open: Arc<Mutex<HashMap<i64, usize>>>,
}

impl StreamSlots {
    /// At most `limit` streams per key.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Arc::default(),
        }
    }

    /// A slot for `key_id`, released when dropped; `None` when the key holds `limit` already.
    pub fn acquire(&self, key_id: i64) -> Option<StreamSlot> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(key_id).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            open: self.open.clone(),
            key_id,
        })
    }
}

/// One open progress stream; dropping it (the stream ended or the client left) frees the slot.
#[derive(Debug)]
pub struct StreamSlot {
    open: Arc<Mutex<HashMap<i64, usize>>>,
    key_id: i64,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key_id);
            }
        }
    }
}

struct StreamState {
    /// The next event to send, with the reason the stream ends after it.
    next: Option<(vehicle_search::Model, Option<&'static str>)>,
    /// Where the key is checked.
    control: sea_orm::DatabaseConnection,
    /// Where the search is.
    db: sea_orm::DatabaseConnection,
    key_id: i64,
    _slot: StreamSlot,
}

/// Answer to a new search.
#[derive(ApiResponse)]
pub enum CreatedSearch {
    /// Accepted; poll `Location` for progress.
    #[oai(status = 202)]
    Accepted(Json<SearchView>, #[oai(header = "Location")] String),
}

/// Search endpoints.
pub struct SearchesApi;

fn criterion<T>(
    value: Option<&str>,
    parse: impl Fn(&str) -> Result<T, sentinela_core::domain::ParseError>,
) -> Result<Option<T>, sentinela_core::domain::ParseError> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(parse)
        .transpose()
}

/// The search `id` if the key sees its city, with the database holding that city's data. Another
/// city's search answers 404, like a missing one.
pub(crate) async fn visible_search(
    state: &AppState,
    auth: &ApiKeyAuth,
    id: i64,
) -> Result<(vehicle_search::Model, sea_orm::DatabaseConnection), ApiError> {
    let not_found = || ApiError::not_found("search", id);
    let city = directory::city_of_search(state.control(), id)
        .await?
        .filter(|city| auth.0.sees_city(*city))
        .ok_or_else(not_found)?;
    let db = state.city_db(city).await?;
    match searches::get(&db, id).await? {
        Some(s) if s.city_id == city => Ok((s, db)),
        _ => Err(not_found()),
    }
}

/// MediaMTX's playback URL for 10 s around `at` on camera folder `path` (its `/get` endpoint).
fn playback(base: Option<&str>, path: Option<&str>, at: DateTime<Utc>) -> Option<String> {
    let (base, path) = (base?, path?);
    let start = (at - chrono::Duration::seconds(5)).format("%Y-%m-%dT%H:%M:%SZ");
    Some(format!("{base}/get?path={path}&start={start}&duration=10"))
}

/// A trajectory cursor: the last point's time (microseconds) and camera, `<micros>_<camera>`.
fn format_cursor(timestamp: DateTime<Utc>, camera_id: i64) -> String {
    format!("{}_{camera_id}", timestamp.timestamp_micros())
}

fn parse_cursor(cursor: &str) -> Option<(DateTime<Utc>, i64)> {
    let (micros, camera) = cursor.split_once('_')?;
    let timestamp = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((timestamp, camera.parse().ok()?))
}

/// A request to search, validated.
struct Validated {
    city: entity::city::Model,
    /// The database holding the city's data.
    db: sea_orm::DatabaseConnection,
    /// Whether that is the shared (control) database.
    shared: bool,
    plate: Option<PlatePattern>,
    color: Option<Color>,
    vehicle_type: Option<VehicleType>,
    window: TimeRange,
    body: CreateSearch,
}

/// Checks a search request: criteria, window, the city (visible to the key) and its cameras.
async fn validate(
    state: &AppState,
    auth: &ApiKeyAuth,
    body: CreateSearch,
) -> Result<Validated, ApiError> {
    // Every fault of the request itself is reported at once; the city and its cameras after.
    let mut faults: Vec<(String, String)> = Vec::new();
    let mut fault = |e: sentinela_core::domain::ParseError| {
        faults.push((e.field.to_owned(), e.message));
    };
    let plate = criterion(body.plate.as_deref(), PlatePattern::parse).unwrap_or_else(|e| {
        fault(e);
        None
    });
    let color = criterion(body.color.as_deref(), Color::parse).unwrap_or_else(|e| {
        fault(e);
        None
    });
    let vehicle_type =
        criterion(body.vehicle_type.as_deref(), VehicleType::parse).unwrap_or_else(|e| {
            fault(e);
            None
        });
    let window = TimeRange::new(body.start_date, body.end_date)
        .and_then(|w| w.limit(chrono::Duration::hours(i64::from(state.max_window_hours))))
        .map_err(&mut fault)
        .ok();
    let given = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
    if !given(&body.plate) && !given(&body.color) && !given(&body.vehicle_type) {
        faults.push((
            "plate".into(),
            "give at least one criterion: plate, color or vehicle_type".into(),
        ));
    }
    match (&body.webhook_url, &body.webhook_secret) {
        (Some(url), Some(_)) => {
            if let Err(e) = sentinela_core::webhook::check_url(url.trim()) {
                faults.push(("webhook_url".into(), format!("webhook_url {e}")));
            }
        }
        (Some(_), None) => faults.push((
            "webhook_secret".into(),
            "webhook_secret is required with webhook_url (the payload is signed with it)".into(),
        )),
        (None, Some(_)) => faults.push((
            "webhook_url".into(),
            "webhook_secret was given without webhook_url".into(),
        )),
        (None, None) => {}
    }
    let Some(window) = window.filter(|_| faults.is_empty()) else {
        return Err(ApiError::invalid_fields(faults));
    };
    let city_id = body.city_id;
    let unknown_city = || ApiError::invalid(format!("unknown city {city_id}"), "city_id");
    let city = state.city(city_id).await?.ok_or_else(unknown_city)?;
    if !auth.0.sees_city(city.id) {
        return Err(unknown_city());
    }
    let (db, shared) = state.city_db_routed(city.id).await?;
    if let Some(ids) = &body.camera_ids {
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let known = cameras::count_in_city(&db, city.id, &distinct).await?;
        if known != distinct.len() as u64 {
            return Err(ApiError::invalid(
                format!("camera_ids has cameras that are not in city {}", city.id),
                "camera_ids",
            ));
        }
    }
    Ok(Validated {
        city,
        db,
        shared,
        plate,
        color,
        vehicle_type,
        window,
        body,
    })
}

/// The city's caps: (recordings, frames) per search.
fn caps(state: &AppState, city: &entity::city::Model) -> (u64, u64) {
    let cap =
        |own: Option<i64>, default: u64| own.and_then(|n| u64::try_from(n).ok()).unwrap_or(default);
    (
        cap(city.max_search_recordings, state.bounds.max_recordings),
        cap(city.max_search_frames, state.bounds.max_frames),
    )
}

/// The estimate of a validated search. The frame cache is consulted only for searches within
/// `cache_lookup_limit` recordings (a search far over its cap is answered without reading it).
async fn estimate_of(
    state: &AppState,
    v: &Validated,
    cache_lookup_limit: u64,
) -> Result<Estimate, ApiError> {
    let request = estimate_request(state, v).await?;
    Ok(estimate::estimate(&v.db, &request, cache_lookup_limit).await?)
}

/// What a validated search is estimated with.
async fn estimate_request<'a>(
    state: &AppState,
    v: &'a Validated,
) -> Result<EstimateRequest<'a>, ApiError> {
    Ok(EstimateRequest {
        city_id: v.city.id,
        window: &v.window,
        camera_ids: v.body.camera_ids.as_deref(),
        fps: state.bounds.fps,
        provider: state.bounds.provider,
        reads_text: v.plate.is_some(),
        price_per_call_usd: state.bounds.price_per_call,
        detector_rate: detector_rate(state, v).await?,
    })
}

/// The city's observed detector rate (1 without history), from the replica's cache when read
/// less than `api.auth_cache_secs` ago: an average over the city's latest 50 searches, which one
/// more search moves by a fiftieth at most. When it has expired, one request reads it again and
/// the others meanwhile use the last value (under load, every request in flight would otherwise
/// read it at once).
async fn detector_rate(state: &AppState, v: &Validated) -> Result<f64, ApiError> {
    let rate = match state.detector_rates.get_or_claim_refresh(&v.city.id) {
        Some((rate, false)) => rate,
        _ => {
            let rate = searches::observed_detector_rate(&v.db, v.city.id).await?;
            state.detector_rates.put(v.city.id, rate);
            rate
        }
    };
    Ok(rate.unwrap_or(1.0))
}

/// The estimate of a search when it fits its city's caps, or 422 carrying the estimate.
fn within_caps(state: &AppState, v: &Validated, estimate: Estimate) -> Result<Estimate, ApiError> {
    let (max_recordings, max_frames) = caps(state, &v.city);
    if estimate.recordings > max_recordings {
        return Err(ApiError::over_cap(
            format!(
                "this search covers {} recordings; the cap is {max_recordings} per search",
                estimate.recordings
            ),
            "end_date",
            estimate.into(),
            max_recordings,
        ));
    }
    if estimate.frames > max_frames {
        return Err(ApiError::over_cap(
            format!(
                "this search would sample {} frames; the cap is {max_frames} per search",
                estimate.frames
            ),
            "end_date",
            estimate.into(),
            max_frames,
        ));
    }
    Ok(estimate)
}

/// Validates and starts a search (see `POST /searches`, without its `Idempotency-Key`).
pub(crate) async fn create_search(
    state: &AppState,
    auth: &ApiKeyAuth,
    body: CreateSearch,
) -> Result<vehicle_search::Model, ApiError> {
    let v = validate(state, auth, body).await?;
    start(state, auth, v).await
}

/// Up to `limit` searches matching `filter` the key sees (of `city`, or of every database for an
/// admin key without one), newest first after `before`, and how many match in all: each database
/// gives its first `limit` after the cursor, merged.
pub(crate) async fn list_searches(
    state: &AppState,
    auth: &ApiKeyAuth,
    city: Option<i64>,
    filter: &searches::SearchFilter,
    limit: u64,
    before: Option<(DateTime<Utc>, i64)>,
) -> Result<(u64, Vec<vehicle_search::Model>), ApiError> {
    let mut total = 0;
    let mut rows = Vec::new();
    for db in listed_databases(state, auth, city).await? {
        let (n, page) = searches::list(&db, filter, limit, before).await?;
        total += n;
        rows.extend(page);
    }
    rows.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.id)));
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok((total, rows))
}

/// What a search would cost and the caps it must fit (see `POST /searches/estimate`).
pub(crate) async fn estimate_search(
    state: &AppState,
    auth: &ApiKeyAuth,
    body: CreateSearch,
) -> Result<EstimateAnswer, ApiError> {
    let v = validate(state, auth, body).await?;
    let (max_recordings, max_frames) = caps(state, &v.city);
    let estimate = estimate_of(state, &v, max_recordings).await?;
    Ok(EstimateAnswer {
        within_caps: estimate.recordings <= max_recordings && estimate.frames <= max_frames,
        max_recordings,
        max_frames,
        estimate: estimate.into(),
    })
}

/// Cancels a search that has not ended (409 when it has); the search as it is then.
pub(crate) async fn cancel_search(
    state: &AppState,
    auth: &ApiKeyAuth,
    id: i64,
) -> Result<vehicle_search::Model, ApiError> {
    let (search, db) = visible_search(state, auth, id).await?;
    if !searches::cancel(&db, search.id).await? {
        return Err(ApiError::conflict(
            format!(
                "search {} has already ended ({})",
                search.id,
                search.status.as_str()
            ),
            None,
        ));
    }
    Ok(visible_search(state, auth, id).await?.0)
}

/// Starts a validated search: the city's quota, caps and daily budget, then the row and its
/// plan job.
async fn start(
    state: &AppState,
    auth: &ApiKeyAuth,
    v: Validated,
) -> Result<vehicle_search::Model, ApiError> {
    let quota = v
        .city
        .max_searches_in_flight
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(u64::from(state.bounds.max_in_flight));
    // The city's searches in flight come with the window's recordings, in one statement; the
    // quota is checked first, then the caps.
    let estimate = {
        let request = estimate_request(state, &v).await?;
        let covered = estimate::covered(&v.db, &request).await?;
        let in_flight = covered.in_flight;
        if in_flight >= quota {
            return Err(ApiError::too_many(
                format!(
                    "city {} already has {in_flight} searches pending or processing (quota {quota}); try again when one ends",
                    v.city.id
                ),
                30,
            ));
        }
        let (max_recordings, _) = caps(state, &v.city);
        let estimate = estimate::estimate_covered(&v.db, &request, covered, max_recordings).await?;
        within_caps(state, &v, estimate)?
    };
    if let Some(budget) = v.city.daily_detector_calls.or(state.bounds.daily_budget) {
        let now = Utc::now();
        let used = usage::calls_on(&v.db, v.city.id, now).await?;
        let expected = i64::try_from(estimate.detector_calls).unwrap_or(i64::MAX);
        if used.saturating_add(expected) > budget {
            return Err(ApiError::too_many(
                format!(
                    "city {} has used {used} of its {budget} detector calls today and this search expects {expected}; narrow it or wait for 00:00 UTC",
                    v.city.id
                ),
                usage::seconds_to_next_day(now),
            ));
        }
    }
    let (city, db, plate, color, vehicle_type, window) =
        (v.city, v.db, v.plate, v.color, v.vehicle_type, v.window);
    let body = v.body;
    let new = searches::NewSearch {
        city_id: city.id,
        user_id: Some(auth.0.user_id.clone()),
        plate,
        color,
        vehicle_type,
        window,
        camera_ids: body.camera_ids,
        estimate: serde_json::to_value(&estimate).ok(),
        webhook: body
            .webhook_url
            .map(|u| u.trim().to_owned())
            .zip(body.webhook_secret),
    };
    if v.shared {
        // Written and enqueued with the other starts waiting (see `crate::starts`).
        return state.starts.start(new).await.map_err(|e| match e {
            StartError::Db(e) => e.into(),
            StartError::Queue => queue_unavailable(),
            StartError::Stopped => {
                ApiError::unavailable("the server could not start the search now; try again")
            }
        });
    }
    let search = searches::create(state.control(), &db, new).await?;
    if let Err(e) = state
        .queue
        .push_search(SearchVehicle {
            search_id: search.id,
            city_id: Some(city.id),
        })
        .await
    {
        crate::starts::unqueued(&db, search.id, &e).await;
        return Err(queue_unavailable());
    }
    Ok(search)
}

fn queue_unavailable() -> ApiError {
    ApiError::unavailable("the job queue is unavailable; try again")
}

#[OpenApi(prefix_path = "/api/v1", tag = "SearchTags::Searches")]
impl SearchesApi {
    /// Start a search. At least one of plate, colour or vehicle type is required. The search is
    /// estimated first (see `POST /searches/estimate`): over its city's recordings or frames cap
    /// it is refused (422 with the estimate, the cap and a hint); with the city's searches in
    /// flight at their quota it is refused (429 with `Retry-After`). The estimate is stored with
    /// the search. With an `Idempotency-Key`, a retry of the same request within 24 hours answers
    /// with the search the first one created (the same key with another body is 422).
    #[oai(path = "/searches", method = "post", operation_id = "create_search")]
    async fn create(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        body: Json<CreateSearch>,
        /// Any unique string (a UUID, say) naming this request, so a retry after a timeout or a
        /// lost answer does not start a second search. Kept 24 hours per API key.
        #[oai(name = "Idempotency-Key", validator(min_length = 1, max_length = 200))]
        idempotency_key: Header<Option<String>>,
    ) -> Result<CreatedSearch, ApiError> {
        let accepted = |search: vehicle_search::Model| {
            let location = format!("/api/v1/searches/{}", search.id);
            CreatedSearch::Accepted(Json(search.into()), location)
        };
        let reservation = match idempotency_key.0 {
            None => None,
            Some(key) => {
                let fingerprint = body.0.fingerprint();
                match idempotency::reserve(
                    state.control(),
                    auth.0.key_id,
                    &key,
                    &fingerprint,
                    Utc::now(),
                )
                .await?
                {
                    Reservation::Reserved(id) => Some(id),
                    Reservation::Replay(search) => {
                        return Ok(accepted(visible_search(&state, &auth, search).await?.0));
                    }
                    Reservation::InProgress => {
                        return Err(ApiError::conflict(
                            "a request with this Idempotency-Key is still being answered; retry in a moment",
                            Some("Idempotency-Key"),
                        ));
                    }
                    Reservation::Mismatch => {
                        return Err(ApiError::invalid(
                            "this Idempotency-Key was used with another request body in the last 24 hours; use a new key for a new request",
                            "Idempotency-Key",
                        ));
                    }
                }
            }
        };
        let started = create_search(&state, &auth, body.0).await;
        if let Some(reservation) = reservation {
            let kept = match &started {
                Ok(search) => idempotency::complete(state.control(), reservation, search.id).await,
                Err(_) => idempotency::release(state.control(), reservation).await,
            };
            if let Err(e) = kept {
                tracing::warn!(error = %e, "could not record an Idempotency-Key");
            }
        }
        started.map(accepted)
    }

    /// What a search would cost, without starting it: the recordings it covers, the seconds of
    /// video, the frames the sampler would decode (exact), how many the frame-analysis cache
    /// already answers, the detector calls to expect and their price, and the caps it must fit.
    #[oai(
        path = "/searches/estimate",
        method = "post",
        operation_id = "estimate_search"
    )]
    async fn estimate(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        body: Json<CreateSearch>,
    ) -> Result<Json<EstimateAnswer>, ApiError> {
        Ok(Json(estimate_search(&state, &auth, body.0).await?))
    }

    /// List searches of the key's city (all cities for admin keys), newest first, a page at a
    /// time (`limit`, then `cursor` = the previous page's `next_cursor` until it is absent).
    // Each query parameter is its own argument, as poem-openapi documents them.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/searches", method = "get", operation_id = "list_searches")]
    async fn list(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        /// Only this city's searches (a city key sees only its own city's anyway).
        #[oai(validator(minimum(value = "1")))]
        city_id: Query<Option<i64>>,
        /// Only searches in this status.
        status: Query<Option<SearchState>>,
        /// Only searches whose plate pattern contains this (`ABC`, `1D23`).
        #[oai(validator(min_length = 1, max_length = 16))]
        plate: Query<Option<String>>,
        /// Only searches started by this user.
        #[oai(validator(min_length = 1, max_length = 200))]
        user_id: Query<Option<String>>,
        /// Created at or after (RFC 3339).
        created_after: Query<Option<DateTime<Utc>>>,
        /// Created before (RFC 3339).
        created_before: Query<Option<DateTime<Utc>>>,
        /// Page size (1–200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i64>>,
        /// The previous page's `next_cursor`.
        #[oai(validator(max_length = 64))]
        cursor: Query<Option<String>>,
    ) -> Result<Json<SearchPage>, ApiError> {
        // Bounded by its validator (422 naming the parameter otherwise).
        let limit = limit.0.unwrap_or(50).clamp(1, 200).unsigned_abs();
        let before = super::time_cursor(cursor.0.as_deref())?;
        let filter = searches::SearchFilter {
            city: auth.0.city_scope().or(city_id.0),
            status: status.0.map(Into::into),
            created_after: created_after.0,
            created_before: created_before.0,
            plate: plate
                .0
                .map(|p| p.trim().to_uppercase().replace('-', ""))
                .filter(|p| !p.is_empty()),
            user_id: user_id.0,
        };
        let (total, rows) = list_searches(&state, &auth, city_id.0, &filter, limit, before).await?;
        let (items, next_cursor) = super::paged(rows, limit, |s| {
            super::format_time_cursor(s.created_at, s.id)
        });
        Ok(Json(SearchPage {
            items,
            total,
            next_cursor,
        }))
    }

    /// A search with its progress.
    #[oai(path = "/searches/:id", method = "get", operation_id = "get_search")]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
    ) -> Result<Json<SearchView>, ApiError> {
        Ok(Json(visible_search(&state, &auth, id.0).await?.0.into()))
    }

    /// Cancel a search that has not ended; its remaining jobs stop without detector calls.
    #[oai(
        path = "/searches/:id/cancel",
        method = "post",
        operation_id = "cancel_search"
    )]
    async fn cancel(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
    ) -> Result<Json<SearchView>, ApiError> {
        Ok(Json(cancel_search(&state, &auth, id.0).await?.into()))
    }

    /// Where the vehicle went: sightings in time order, a page at a time (`limit`, then
    /// `cursor` = the previous page's `next_cursor` until it is absent), and the cameras visited
    /// (every camera, on every page).
    #[oai(
        path = "/searches/:id/trajectory",
        method = "get",
        operation_id = "get_trajectory"
    )]
    async fn trajectory(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
        /// Points per page (1–1000, default 1000).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<i64>>,
        /// Where the previous page ended (its `next_cursor`).
        #[oai(validator(max_length = 64))]
        cursor: Query<Option<String>>,
    ) -> Result<Json<Trajectory>, ApiError> {
        let (search, db) = visible_search(&state, &auth, id.0).await?;
        let after = cursor
            .0
            .as_deref()
            .map(|c| {
                parse_cursor(c).ok_or_else(|| {
                    ApiError::invalid("cursor is not a next_cursor of this API", "cursor")
                })
            })
            .transpose()?;
        let limit = limit.0.unwrap_or(1000).clamp(1, 1000).unsigned_abs();
        // One more than the page tells whether another page follows.
        let mut rows = points::page_for_search(&db, search.id, after, limit + 1).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = more
            .then(|| rows.last().map(|p| format_cursor(p.timestamp, p.camera_id)))
            .flatten();
        let cameras: BTreeMap<i64, camera::Model> = cameras::list_by_city(&db, search.city_id)
            .await?
            .into_iter()
            .map(|c| (c.id, c))
            .collect();
        let name_of = |id: i64| {
            cameras
                .get(&id)
                .map_or_else(|| format!("camera {id}"), |c| c.name.clone())
        };
        let visits = points::cameras_for_search(&db, search.id)
            .await?
            .into_iter()
            .map(
                |(camera_id, first_seen, last_seen, sightings)| CameraVisit {
                    camera_id,
                    camera_name: name_of(camera_id),
                    first_seen,
                    last_seen,
                    sightings: sightings.unsigned_abs(),
                },
            )
            .collect();
        let all = points::list_for_search(&db, search.id).await?;
        let path = sentinela_core::trajectory::visits(&all, state.visit_gap)
            .into_iter()
            .map(|v| {
                let cam = cameras.get(&v.camera_id);
                VisitView {
                    camera_id: v.camera_id,
                    camera_name: name_of(v.camera_id),
                    latitude: cam.and_then(|c| c.latitude),
                    longitude: cam.and_then(|c| c.longitude),
                    first_seen: v.first_seen,
                    last_seen: v.last_seen,
                    sightings: v.sightings,
                    best_sighting_id: v.best_point_id,
                    best_confidence: v.best_confidence,
                    best_image_url: v.best_image.as_ref().map(|_| {
                        format!(
                            "/api/v1/searches/{}/sightings/{}/image",
                            search.id, v.best_point_id
                        )
                    }),
                    plate: v.plate,
                    color: v.color,
                }
            })
            .collect();
        let starts = super::evidence::recording_starts(&db, &rows).await?;
        let out = rows
            .into_iter()
            .map(|p| {
                let cam = cameras.get(&p.camera_id);
                let base = format!("/api/v1/searches/{}/sightings/{}", search.id, p.id);
                let recording = starts.get(&p.recording_id);
                let bbox = super::evidence::bbox_of(&p).map(|b| BoxView {
                    x: b.x,
                    y: b.y,
                    w: b.w,
                    h: b.h,
                });
                PointView {
                    id: p.id,
                    camera_id: p.camera_id,
                    camera_name: name_of(p.camera_id),
                    timestamp: p.timestamp,
                    image_url: p.image_path.as_ref().map(|_| format!("{base}/image")),
                    crop_url: (p.image_path.is_some() && bbox.is_some())
                        .then(|| format!("{base}/crop")),
                    clip_url: format!("{base}/clip"),
                    playback_url: playback(
                        state.playback_url.as_deref(),
                        cam.and_then(|c| c.mediamtx_path.as_deref()),
                        p.timestamp,
                    ),
                    bbox,
                    recording_id: p.recording_id,
                    offset_ms: recording.map(|start| (p.timestamp - *start).num_milliseconds()),
                    confidence: p.confidence,
                    location: cam.and_then(|c| c.location.clone()),
                    latitude: cam.and_then(|c| c.latitude),
                    longitude: cam.and_then(|c| c.longitude),
                    label: p.label,
                    color: p.color,
                    plate: p.plate_text,
                    plate_score: p.plate_score,
                }
            })
            .collect();
        Ok(Json(Trajectory {
            search_id: search.id,
            status: search.status.into(),
            points: out,
            next_cursor,
            visits: path,
            cameras_visited: visits,
        }))
    }

    /// Progress as server-sent events: a `progress` event each second while the search runs,
    /// then one `end` event (its `reason`: `search_ended`, `key_revoked` or `search_deleted`)
    /// and the stream closes; a client should stop listening at `end` (an `EventSource` would
    /// otherwise reconnect). Comments keep idle proxies from closing the stream. Each API key may
    /// hold `api.max_streams_per_key` streams open (429 beyond), and a stream ends within a
    /// second of its key's revocation.
    #[oai(
        path = "/searches/:id/events",
        method = "get",
        operation_id = "search_events"
    )]
    async fn events(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] id: Path<i64>,
    ) -> Result<EventStream<BoxStream<'static, ProgressEvent>>, ApiError> {
        let (first, db) = visible_search(&state, &auth, id.0).await?;
        let slot = state.streams.acquire(auth.0.key_id).ok_or_else(|| {
            ApiError::too_many(
                format!(
                    "this API key already has {} progress streams open; close one first",
                    state.streams.limit
                ),
                5,
            )
        })?;
        let key_id = auth.0.key_id;
        let start = StreamState {
            next: Some((first, None)),
            control: state.control().clone(),
            db,
            key_id,
            _slot: slot,
        };
        let stream = futures::stream::unfold(start, |mut st| async move {
            let (current, reason) = st.next.take()?;
            let reason = reason.or_else(|| current.status.is_final().then_some("search_ended"));
            if reason.is_none() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                st.next = match auth::key_active(&st.control, st.key_id).await {
                    Ok(false) => Some((current.clone(), Some("key_revoked"))),
                    _ => match searches::get(&st.db, current.id).await {
                        Ok(Some(next)) => Some((next, None)),
                        Ok(None) => Some((current.clone(), Some("search_deleted"))),
                        // A database blip: say the same again and try on the next tick.
                        Err(_) => Some((current.clone(), None)),
                    },
                };
            }
            let event = ProgressEvent {
                event: if reason.is_some() { "end" } else { "progress" }.to_owned(),
                reason: reason.map(str::to_owned),
                search: SearchView::from(current),
            };
            Some((event, st))
        })
        .boxed();
        Ok(EventStream::new(stream)
            .keep_alive(Duration::from_secs(15))
            .to_event(|e| {
                let name = e.event.clone();
                poem::web::sse::Event::message(e.to_json_string()).event_type(name)
            }))
    }

    /// A matched frame as stored (JPEG, without the box); only for keys of the search's city.
    /// The trajectory's `image_url` (the box drawn) supersedes it.
    #[oai(
        path = "/snapshots/:search_id/:file",
        method = "get",
        operation_id = "get_snapshot"
    )]
    async fn snapshot(
        &self,
        state: Data<&AppState>,
        auth: ApiKeyAuth,
        #[oai(validator(minimum(value = "1")))] search_id: Path<i64>,
        file: Path<String>,
    ) -> Result<super::evidence::JpegImage, ApiError> {
        let (search, _) = visible_search(&state, &auth, search_id.0).await?;
        let name = file.0;
        let not_found = || ApiError::not_found("snapshot", format!("{}/{name}", search.id));
        if name.contains('/') || !name.ends_with(".jpg") {
            return Err(not_found());
        }
        // Confined to SNAPSHOT_DIR, symlinks included.
        let root = Root::open(&state.snapshot_dir).map_err(|_| not_found())?;
        let path = root
            .resolve(&format!("{}/{name}", search.id))
            .map_err(|_| not_found())?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(super::evidence::JpegImage::Ok(
                Binary(bytes),
                super::evidence::CACHE.to_owned(),
            )),
            Err(_) => Err(not_found()),
        }
    }
}
