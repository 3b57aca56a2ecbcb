//! What a search will cost before it runs: the recordings it covers, the video seconds, the frames
//! the sampler will decode, how many of those the frame-analysis cache already answers, the
//! detector calls to expect and their price.
//!
//! Recordings, video seconds and frames are exact: they come from the same window clipping the
//! planner does and the same sampling grid the sampler uses ([`grid_offsets`]). Detector calls are
//! an expectation: uncached frames × the share of frames that reached the detector in the city's
//! recent searches (the motion gate's pass rate and the cache together; 1.0 without history),
//! doubled for plate searches on Rekognition (a DetectText call per frame with a vehicle, at
//! most). A plate search over frames cached by a search without plates reads their text again,
//! which the estimate does not count.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::domain::TimeRange;
use crate::repo::{frames, recordings};
use crate::video::sampler::grid_offsets;

/// A search's estimated size and cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Recordings overlapping the window (one task each).
    pub recordings: u64,
    /// Seconds of video inside the window.
    pub video_seconds: f64,
    /// Frames the sampler will decode.
    pub frames: u64,
    /// Of those, frames the frame-analysis cache already holds (no detector call).
    pub cached_frames: u64,
    /// Share of uncached frames expected to reach the detector (0–1).
    pub detector_rate: f64,
    /// Detector calls to expect.
    pub detector_calls: u64,
    /// Price of one call, US dollars.
    pub price_per_call_usd: f64,
    /// `detector_calls × price_per_call_usd`.
    pub cost_usd: f64,
}

/// What to estimate.
#[derive(Debug, Clone)]
pub struct EstimateRequest<'a> {
    /// The city.
    pub city_id: i64,
    /// The search window.
    pub window: &'a TimeRange,
    /// Only these cameras.
    pub camera_ids: Option<&'a [i64]>,
    /// Frames sampled per second.
    pub fps: f64,
    /// The detector provider (whose cache counts).
    pub provider: &'a str,
    /// Whether plates are searched (Rekognition then also reads text).
    pub reads_text: bool,
    /// Price of one call.
    pub price_per_call_usd: f64,
    /// The share of uncached frames expected to reach the detector: the city's observed rate
    /// (`searches::observed_detector_rate`, 1 without history), which the caller reads (the api
    /// caches it).
    pub detector_rate: f64,
}

/// One recording's part of a search: its id and the sampled offsets' range `[from_ms, to_ms)`.
struct Part {
    recording_id: i64,
    from_ms: i64,
    to_ms: i64,
}

async fn parts(
    db: &impl sea_orm::ConnectionTrait,
    request: &EstimateRequest<'_>,
) -> Result<Vec<Part>, sea_orm::DbErr> {
    let spans =
        recordings::overlapping_spans(db, request.city_id, request.window, request.camera_ids)
            .await?;
    Ok(clip(request, spans))
}

/// A search's recordings read together with its city's searches in flight (one statement: a
/// search start checks the quota, then estimates from these).
pub struct Covered {
    /// The city's searches pending or processing.
    pub in_flight: u64,
    parts: Vec<Part>,
}

/// [`Covered`] for `request`.
///
/// # Errors
/// The database error.
pub async fn covered(
    db: &impl sea_orm::ConnectionTrait,
    request: &EstimateRequest<'_>,
) -> Result<Covered, sea_orm::DbErr> {
    let (in_flight, spans) = recordings::in_flight_and_overlapping_spans(
        db,
        request.city_id,
        request.window,
        request.camera_ids,
    )
    .await?;
    Ok(Covered {
        in_flight,
        parts: clip(request, spans),
    })
}

/// The parts of the recordings' spans inside the window.
fn clip(
    request: &EstimateRequest<'_>,
    spans: Vec<(
        i64,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    )>,
) -> Vec<Part> {
    spans
        .into_iter()
        .filter_map(|(id, started_at, ended_at)| {
            let recording = TimeRange::new(started_at, ended_at).ok()?;
            let clipped = request.window.intersect(&recording)?;
            Some(Part {
                recording_id: id,
                from_ms: (clipped.start() - started_at).num_milliseconds(),
                to_ms: (clipped.end() - started_at).num_milliseconds(),
            })
        })
        .collect()
}

fn frames_of(part: &Part, fps: f64) -> u64 {
    grid_offsets(part.from_ms, part.to_ms, fps).count() as u64
}

/// The estimate of a search, frame cache and detector rate included. The recordings are read
/// once; a search over more than `cache_lookup_limit` recordings (over its cap, and refused) is
/// answered without reading the frame cache or the city's history: every frame counts as a call.
///
/// # Errors
/// The database error.
pub async fn estimate(
    db: &impl sea_orm::ConnectionTrait,
    request: &EstimateRequest<'_>,
    cache_lookup_limit: u64,
) -> Result<Estimate, sea_orm::DbErr> {
    let parts = parts(db, request).await?;
    estimate_parts(db, request, parts, cache_lookup_limit).await
}

/// [`estimate`] over recordings already read with [`covered`].
///
/// # Errors
/// The database error.
pub async fn estimate_covered(
    db: &impl sea_orm::ConnectionTrait,
    request: &EstimateRequest<'_>,
    covered: Covered,
    cache_lookup_limit: u64,
) -> Result<Estimate, sea_orm::DbErr> {
    estimate_parts(db, request, covered.parts, cache_lookup_limit).await
}

async fn estimate_parts(
    db: &impl sea_orm::ConnectionTrait,
    request: &EstimateRequest<'_>,
    parts: Vec<Part>,
    cache_lookup_limit: u64,
) -> Result<Estimate, sea_orm::DbErr> {
    let millis: i64 = parts.iter().map(|p| p.to_ms - p.from_ms).sum();
    let recordings = parts.len() as u64;
    let (frames, cached_frames, detector_rate, detector_calls) = if recordings > cache_lookup_limit
    {
        // Over the cap and refused: every frame counts as a call, nothing more is read.
        let frames: u64 = parts.iter().map(|p| frames_of(p, request.fps)).sum();
        (frames, 0, 1.0, frames)
    } else {
        let ids: Vec<i64> = parts.iter().map(|p| p.recording_id).collect();
        let cached = frames::cached_offsets(db, &ids, request.provider).await?;
        let (mut frames, mut cached_frames) = (0u64, 0u64);
        for part in &parts {
            let in_cache: Option<&HashSet<i64>> = cached.get(&part.recording_id);
            for offset in grid_offsets(part.from_ms, part.to_ms, request.fps) {
                frames += 1;
                if in_cache.is_some_and(|c| c.contains(&offset)) {
                    cached_frames += 1;
                }
            }
        }
        let detector_rate = request.detector_rate.clamp(0.0, 1.0);
        let per_frame = if request.reads_text && request.provider == "rekognition" {
            2.0
        } else {
            1.0
        };
        let calls = ((frames - cached_frames) as f64 * detector_rate * per_frame).ceil() as u64;
        (frames, cached_frames, detector_rate, calls)
    };
    Ok(Estimate {
        recordings,
        video_seconds: millis as f64 / 1000.0,
        frames,
        cached_frames,
        detector_rate,
        detector_calls,
        price_per_call_usd: request.price_per_call_usd,
        cost_usd: detector_calls as f64 * request.price_per_call_usd,
    })
}
