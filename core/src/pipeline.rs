//! Analysing one recording for one search: sampler → motion gate → frame-analysis cache →
//! detector (bounded) → criteria → snapshot and idempotent trajectory points.
//!
//! Every step is safe to repeat: a re-run task finds its frames in the cache (no detector calls)
//! and its points already stored (no duplicates).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::Duration;
use entity::recording;
use entity::status::SearchStatus;
use opencv::core::Mat;
use sea_orm::DatabaseConnection;
use sha2::{Digest, Sha256};

use crate::detect::criteria::{Criteria, Match};
use crate::detect::limit::DetectorLimiter;
use crate::detect::{Analysis, DetectError, Detector, FrameImage};
use crate::domain::TimeRange;
use crate::repo::searches::SnapshotOutcome;
use crate::repo::{frames, points, searches};
use crate::settings::SamplerSettings;
use crate::video::gate::{GateDecision, MotionGate};
use crate::video::jpeg;
use crate::video::sampler::{
    SampleError, SampledFrame, SamplerOptions, planned_offsets, spawn_sampler,
};

/// What analysing a recording needs, shared by every task of a worker process.
pub struct Analyzer {
    /// The detector.
    pub detector: Arc<dyn Detector>,
    /// Caps detector calls.
    pub limiter: Arc<DetectorLimiter>,
    /// Sampling settings.
    pub sampler: SamplerSettings,
    /// Where relative recording paths are resolved.
    pub recordings_dir: PathBuf,
    /// Where snapshots are written.
    pub snapshot_dir: PathBuf,
    /// Snapshot bytes a city's stored searches may hold unless the city says otherwise
    /// (`storage.max_snapshot_bytes_per_city`); `None` = no budget.
    pub snapshot_budget: Option<u64>,
}

/// One task: a recording, the part of it to analyse, and what to look for.
#[derive(Debug, Clone)]
pub struct TaskInput {
    /// The database holding the search's city data.
    pub db: DatabaseConnection,
    /// The city's own snapshot budget (its `max_snapshot_bytes` in the control database); `None`
    /// uses [`Analyzer::snapshot_budget`].
    pub snapshot_budget: Option<i64>,
    /// The search.
    pub search_id: i64,
    /// The task.
    pub task_id: i64,
    /// The recording.
    pub recording: recording::Model,
    /// The search window clipped to the recording.
    pub window: TimeRange,
    /// The criteria.
    pub criteria: Criteria,
}

/// What a task did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskReport {
    /// Sightings kept without a snapshot because the city's snapshot budget was full.
    pub snapshots_skipped: i64,
    /// Sightings kept without a snapshot because the snapshot storage could not be written.
    pub snapshots_failed: i64,
    /// Frames sampled and analysed (by the detector, the cache or the gate).
    pub frames_analyzed: i64,
    /// Calls made to the detector.
    pub detector_calls: i64,
    /// Frames whose analysis came from the cache.
    pub cache_hits: i64,
    /// Frames the gate found unchanged (previous analysis reused).
    pub gate_skips: i64,
    /// Points inserted (0 for a re-run).
    pub points_inserted: i64,
    /// Matching frames seen (inserted or already there).
    pub matches: i64,
    /// The search was cancelled; the task stopped early.
    pub cancelled: bool,
    /// Every frame came from the cache and every snapshot from an earlier search: the recording
    /// was not decoded.
    pub replayed: bool,
}

/// Why a task failed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// Retrying cannot help (corrupt file, rejected image, bad stored criteria).
    #[error("{0}")]
    Permanent(String),
    /// Retrying may help (database, Redis, detector outage or sustained throttling).
    #[error(transparent)]
    Transient(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for AnalyzeError {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Transient(anyhow::Error::new(e).context("database"))
    }
}

impl From<SampleError> for AnalyzeError {
    fn from(e: SampleError) -> Self {
        if e.is_permanent() {
            Self::Permanent(e.to_string())
        } else {
            Self::Transient(e.into())
        }
    }
}

impl From<DetectError> for AnalyzeError {
    fn from(e: DetectError) -> Self {
        if e.is_permanent() {
            Self::Permanent(e.to_string())
        } else {
            Self::Transient(e.into())
        }
    }
}

impl Analyzer {
    /// The file of a recording, resolved under the recordings directory: a row that points
    /// outside it (an absolute path elsewhere, `..`, a symlink leading out) is never opened.
    ///
    /// # Errors
    /// [`AnalyzeError::Permanent`] naming why the file cannot be used.
    pub fn recording_path(&self, recording: &recording::Model) -> Result<PathBuf, AnalyzeError> {
        let root = crate::files::Root::open(&self.recordings_dir).map_err(|e| {
            AnalyzeError::Transient(
                anyhow::Error::new(e).context("RECORDINGS_DIR cannot be opened"),
            )
        })?;
        root.resolve(&recording.file_path).map_err(|e| match e {
            crate::files::PathError::NotFound => AnalyzeError::Permanent(format!(
                "recording {} is missing: no such file",
                recording.file_path
            )),
            e if e.is_confinement() => AnalyzeError::Permanent(format!(
                "recording file {} is refused: {e}",
                recording.file_path
            )),
            e => AnalyzeError::Transient(
                anyhow::Error::new(e).context(format!("recording file {}", recording.file_path)),
            ),
        })
    }

    /// Analyses one task. When the frame-analysis cache holds every sampled frame of the task and
    /// an earlier search already cut the snapshot of every matching frame, the recording is not
    /// decoded at all ([`TaskReport::replayed`]).
    ///
    /// # Errors
    /// [`AnalyzeError::Permanent`] for a file or image that can never be analysed,
    /// [`AnalyzeError::Transient`] otherwise.
    pub async fn analyze(&self, input: &TaskInput) -> Result<TaskReport, AnalyzeError> {
        let provider = self.detector.provider();
        let cache = frames::all_for_recording(&input.db, input.recording.id, provider).await?;
        let mut snapshots = self
            .snapshot_room(&input.db, input.recording.city_id, input.snapshot_budget)
            .await?;
        let path = self.recording_path(&input.recording)?;
        if let Some(report) = self.replay(input, &path, &cache, &mut snapshots).await? {
            return Ok(report);
        }
        self.decode(input, path, &cache, &mut snapshots).await
    }

    fn sampler_options(&self) -> SamplerOptions {
        SamplerOptions {
            fps: self.sampler.fps,
            snap_to_keyframes: false,
            // A stand-in is what the motion gate would decide on the decoded frame: reuse.
            quiet_threshold: self.sampler.gate_threshold,
        }
    }

    /// The task's window as offsets (ms) from the start of its recording.
    fn window_ms(input: &TaskInput) -> (i64, i64) {
        let started = input.recording.started_at;
        (
            (input.window.start() - started).num_milliseconds(),
            (input.window.end() - started).num_milliseconds(),
        )
    }

    /// The task from the cache alone, or `None` when some frame must be decoded (not cached, or a
    /// matching frame without a stored snapshot while the budget allows one).
    async fn replay(
        &self,
        input: &TaskInput,
        path: &std::path::Path,
        cache: &HashMap<i64, frames::Cached>,
        snapshots: &mut SnapshotRoom,
    ) -> Result<Option<TaskReport>, AnalyzeError> {
        if cache.is_empty() {
            return Ok(None);
        }
        let (from_ms, to_ms) = Self::window_ms(input);
        let (path, options) = (path.to_owned(), self.sampler_options());
        let planned =
            tokio::task::spawn_blocking(move || planned_offsets(&path, from_ms, to_ms, options))
                .await
                .map_err(|e| AnalyzeError::Transient(e.into()))?;
        let Some(offsets) = planned else {
            return Ok(None);
        };
        let wants_text = input.criteria.wants_text();
        let mut plan = Vec::with_capacity(offsets.len());
        for offset in offsets {
            let Some(analysis) = cached_analysis(cache, offset, wants_text) else {
                return Ok(None);
            };
            // Only a matching frame needs its stored snapshot (checked off the runtime's threads).
            let mut stored = None;
            if input.criteria.best_match(&analysis).is_some() {
                match cache.get(&offset).and_then(|c| c.snapshot.clone()) {
                    Some(sha) if self.object_exists(&sha).await => stored = Some(sha),
                    _ if snapshots.allows() => return Ok(None),
                    _ => {}
                }
            }
            plan.push((offset, analysis, stored));
        }

        let mut report = TaskReport {
            replayed: true,
            ..TaskReport::default()
        };
        let metrics = crate::metrics::global();
        for (i, (offset, analysis, stored)) in plan.iter().enumerate() {
            if i % 256 == 0 && self.cancelled(&input.db, input.search_id).await? {
                report.cancelled = true;
                return Ok(Some(report));
            }
            report.frames_analyzed += 1;
            report.cache_hits += 1;
            // Planned samples count as sampled whether decoded or not (the cache ratio holds).
            metrics.frames_sampled.inc();
            metrics.frames_cache_hits.inc();
            if let Some(found) = input.criteria.best_match(analysis) {
                let evidence = match stored {
                    Some(sha) => Evidence::Stored(sha),
                    None => Evidence::None,
                };
                self.sight(input, &mut report, snapshots, *offset, &found, evidence)
                    .await?;
            }
        }
        metrics.tasks_replayed.inc();
        Ok(Some(report))
    }

    /// The task by decoding its frames: the cache, the motion gate and the detector decide each.
    async fn decode(
        &self,
        input: &TaskInput,
        path: PathBuf,
        cache: &HashMap<i64, frames::Cached>,
        snapshots: &mut SnapshotRoom,
    ) -> Result<TaskReport, AnalyzeError> {
        let mut report = TaskReport::default();
        let provider = self.detector.provider();
        let (from_ms, to_ms) = Self::window_ms(input);
        let wants_text = input.criteria.wants_text();
        let mut rx = spawn_sampler(path, from_ms, to_ms, self.sampler_options());
        let mut gate = MotionGate::new(self.sampler.gate_threshold);
        let mut last: Option<Analysis> = None;

        let metrics = crate::metrics::global();
        while let Some(frame) = rx.recv().await {
            let mut frame = frame?;
            // One picture shared by the gate, the detector and the snapshot, never copied: two
            // analyses in flight would otherwise hold several 2.7 MB copies of each 720p frame.
            let image = Arc::new(std::mem::take(&mut frame.image));
            metrics.frames_sampled.inc();
            if self.cancelled(&input.db, input.search_id).await? {
                report.cancelled = true;
                return Ok(report);
            }
            let (next_gate, decision) = gate_frame(Arc::clone(&image), gate).await?;
            gate = next_gate;
            let cached = cached_analysis(cache, frame.offset_ms, wants_text);
            let mut encoded: Option<Vec<u8>> = None;
            let analysis = if let Some(analysis) = cached {
                report.cache_hits += 1;
                metrics.frames_cache_hits.inc();
                analysis
            } else if let Some(previous) = last
                .clone()
                .filter(|a| decision == GateDecision::Reuse && (a.text_checked || !wants_text))
            {
                report.gate_skips += 1;
                metrics.frames_gate_skipped.inc();
                self.store(input, &frame, &previous).await?;
                previous
            } else {
                // Only remote providers read the JPEG; a local one works on the decoded frame, and
                // the snapshot of a non-matching frame is never written, so don't encode for it.
                let bytes = if self.detector.wants_jpeg() {
                    self.encode(&image).await?
                } else {
                    Vec::new()
                };
                let analysis = {
                    let _permit = self
                        .limiter
                        .acquire()
                        .await
                        .map_err(|e| anyhow::Error::new(e).context("detector rate limit"))?;
                    let image = FrameImage {
                        image: Arc::clone(&image),
                        jpeg: bytes,
                    };
                    let called = std::time::Instant::now();
                    let analysis = self.detector.detect(&image, wants_text).await?;
                    metrics
                        .detection_latency
                        .get_or_create(&crate::metrics::ProviderLabels {
                            provider: provider.to_owned(),
                        })
                        .observe(called.elapsed().as_secs_f64());
                    for vehicle in &analysis.vehicles {
                        metrics
                            .detections
                            .get_or_create(&crate::metrics::DetectionLabels {
                                provider: provider.to_owned(),
                                label: vehicle.kind.as_str().to_owned(),
                            })
                            .inc();
                    }
                    encoded = Some(image.jpeg).filter(|b| !b.is_empty());
                    analysis
                };
                report.detector_calls += 1;
                self.store(input, &frame, &analysis).await?;
                analysis
            };
            report.frames_analyzed += 1;

            if let Some(found) = input.criteria.best_match(&analysis) {
                let evidence = Evidence::Frame {
                    image: &image,
                    encoded,
                };
                self.sight(
                    input,
                    &mut report,
                    snapshots,
                    frame.offset_ms,
                    &found,
                    evidence,
                )
                .await?;
            }
            last = Some(analysis);
        }
        Ok(report)
    }

    /// A matching frame: kept as the sighting of its camera and interval unless a more confident
    /// one is stored, with its snapshot when the city's budget and the storage allow.
    async fn sight(
        &self,
        input: &TaskInput,
        report: &mut TaskReport,
        snapshots: &mut SnapshotRoom,
        offset_ms: i64,
        found: &Match<'_>,
        evidence: Evidence<'_>,
    ) -> Result<(), AnalyzeError> {
        report.matches += 1;
        let timestamp = input.recording.started_at + Duration::milliseconds(offset_ms);
        // One sighting per camera per interval: the most confident one.
        let (from, to) = sighting_interval(timestamp, self.sampler.sighting_interval_secs);
        let best = points::best_between(
            &input.db,
            input.search_id,
            input.recording.camera_id,
            from,
            to,
        )
        .await?;
        if best
            .as_ref()
            .is_some_and(|b| b.confidence >= found.vehicle.confidence)
        {
            return Ok(());
        }
        let image_path = if !snapshots.allows() {
            report.snapshots_skipped += 1;
            searches::count_snapshot(&input.db, input.search_id, SnapshotOutcome::OverBudget)
                .await?;
            None
        } else {
            let source = match evidence {
                Evidence::Frame {
                    encoded: Some(bytes),
                    ..
                } => Some(Source::Bytes(bytes)),
                Evidence::Frame {
                    image,
                    encoded: None,
                } => Some(Source::Bytes(self.encode(image).await?)),
                Evidence::Stored(sha) => Some(Source::Stored(sha)),
                Evidence::None => None,
            };
            match source {
                None => None,
                Some(source) => match self.save_snapshot(input, offset_ms, source).await {
                    Ok(saved) => {
                        if saved.new_file {
                            snapshots.spent(saved.size);
                            searches::count_snapshot(
                                &input.db,
                                input.search_id,
                                SnapshotOutcome::Written(saved.size),
                            )
                            .await?;
                        }
                        Some(saved.name)
                    }
                    // The sighting matters more than its picture: it is stored without one, and
                    // the search, a metric and the log say why.
                    Err(error) => {
                        tracing::warn!(
                            search_id = input.search_id,
                            recording_id = input.recording.id,
                            error = %format!("{error:#}"),
                            "snapshot not written; the sighting is stored without it"
                        );
                        crate::metrics::global().snapshot_write_failures.inc();
                        report.snapshots_failed += 1;
                        searches::count_snapshot(
                            &input.db,
                            input.search_id,
                            SnapshotOutcome::StorageFailed,
                        )
                        .await?;
                        None
                    }
                },
            }
        };
        let point = points::NewPoint {
            search_id: input.search_id,
            camera_id: input.recording.camera_id,
            recording_id: input.recording.id,
            timestamp,
            confidence: found.vehicle.confidence,
            label: found.vehicle.kind.as_str().to_owned(),
            color: found.color.map(|c| c.as_str().to_owned()),
            plate_text: found.plate.as_ref().map(|p| p.candidate.clone()),
            plate_score: found.plate.as_ref().map(|p| p.score),
            bbox: serde_json::to_value(found.vehicle.bbox)
                .map_err(|e| AnalyzeError::Transient(e.into()))?,
            image_path,
        };
        match best {
            // A better sighting of the same interval replaces the one stored.
            Some(worse) => {
                points::replace(&input.db, worse.id, point).await?;
                self.forget_snapshot(worse.image_path.as_deref()).await;
            }
            None => {
                let inserted = points::insert_idempotent(&input.db, point).await?;
                report.points_inserted += i64::from(inserted);
            }
        }
        Ok(())
    }

    async fn cancelled(
        &self,
        db: &DatabaseConnection,
        search_id: i64,
    ) -> Result<bool, AnalyzeError> {
        Ok(searches::get(db, search_id).await?.is_none_or(|s| {
            matches!(
                s.status,
                SearchStatus::Cancelled | SearchStatus::BudgetExhausted
            )
        }))
    }

    async fn store(
        &self,
        input: &TaskInput,
        frame: &SampledFrame,
        analysis: &Analysis,
    ) -> Result<(), AnalyzeError> {
        let value =
            serde_json::to_value(analysis).map_err(|e| AnalyzeError::Transient(e.into()))?;
        frames::put(
            &input.db,
            input.recording.id,
            frame.offset_ms,
            self.detector.provider(),
            value,
        )
        .await?;
        Ok(())
    }

    async fn encode(&self, image: &Arc<Mat>) -> Result<Vec<u8>, AnalyzeError> {
        let image = Arc::clone(image);
        let (max, quality) = (self.sampler.max_dimension, self.sampler.jpeg_quality);
        tokio::task::spawn_blocking(move || {
            let fitted = jpeg::fit(&image, max)?;
            jpeg::encode(&fitted, quality)
        })
        .await
        .map_err(|e| AnalyzeError::Transient(e.into()))?
        .map_err(|e| AnalyzeError::Transient(anyhow::Error::new(e).context("JPEG encoding")))
    }

    /// Where the content-addressed snapshot `sha256` lives.
    fn object_path(&self, sha256: &str) -> Option<PathBuf> {
        let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| {
            self.snapshot_dir
                .join(OBJECTS_DIR)
                .join(&sha256[..2])
                .join(format!("{sha256}.jpg"))
        })
    }

    async fn object_exists(&self, sha256: &str) -> bool {
        match self.object_path(sha256) {
            Some(path) => tokio::fs::metadata(path).await.is_ok_and(|m| m.is_file()),
            None => false,
        }
    }

    /// Stores the snapshot content-addressed (`objects/<aa>/<sha256>.jpg`, written once however
    /// many searches match the frame) and links it as `<search>/<recording>-<offset>.jpg` under
    /// the snapshot directory (a hard link, or a copy where the storage has none; atomically, so a
    /// reader never sees half a file). A re-run task finds the search's file there already, which
    /// is not counted twice.
    async fn save_snapshot(
        &self,
        input: &TaskInput,
        offset_ms: i64,
        source: Source<'_>,
    ) -> anyhow::Result<Saved> {
        let name = format!(
            "{}/{}-{}.jpg",
            input.search_id, input.recording.id, offset_ms
        );
        let path = self.snapshot_dir.join(&name);
        let (sha256, size) = match source {
            Source::Bytes(bytes) => {
                let sha256 = hex::encode(Sha256::digest(&bytes));
                let size = bytes.len() as i64;
                self.write_object(&sha256, bytes).await?;
                frames::set_snapshot(
                    &input.db,
                    input.recording.id,
                    offset_ms,
                    self.detector.provider(),
                    &sha256,
                )
                .await?;
                (sha256, size)
            }
            Source::Stored(sha256) => {
                let object = self
                    .object_path(sha256)
                    .ok_or_else(|| anyhow::anyhow!("invalid snapshot digest {sha256:?}"))?;
                let size = tokio::fs::metadata(&object).await?.len() as i64;
                (sha256.to_owned(), size)
            }
        };
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(Saved {
                name,
                new_file: false,
                size,
            });
        }
        let object = self
            .object_path(&sha256)
            .ok_or_else(|| anyhow::anyhow!("invalid snapshot digest"))?;
        let tmp = path.with_extension("jpg.tmp");
        let link = async {
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            let _ = tokio::fs::remove_file(&tmp).await;
            match tokio::fs::hard_link(&object, &tmp).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(e),
                // A storage without hard links (some network file systems) gets a copy.
                Err(_) => {
                    tokio::fs::copy(&object, &tmp).await?;
                }
            }
            tokio::fs::rename(&tmp, &path).await
        };
        if let Err(e) = link.await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(anyhow::Error::new(e)
                .context(format!("failed to write snapshot {}", path.display())));
        }
        Ok(Saved {
            name,
            new_file: true,
            size,
        })
    }

    /// Writes `objects/<aa>/<sha256>.jpg` unless it is there (atomically: a temporary file of
    /// this process and task, then a rename).
    async fn write_object(&self, sha256: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let object = self
            .object_path(sha256)
            .ok_or_else(|| anyhow::anyhow!("invalid snapshot digest"))?;
        if tokio::fs::try_exists(&object).await.unwrap_or(false) {
            return Ok(());
        }
        let tmp = object.with_extension(format!(
            "{}.{}.tmp",
            std::process::id(),
            OBJECT_TMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let write = async {
            if let Some(dir) = object.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            tokio::fs::write(&tmp, bytes).await?;
            tokio::fs::rename(&tmp, &object).await
        };
        if let Err(e) = write.await {
            // A half-written temporary file would only take more of a full disk.
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(anyhow::Error::new(e)
                .context(format!("failed to write snapshot {}", object.display())));
        }
        Ok(())
    }

    /// Removes the snapshot of a sighting that a better one replaced (confined to the snapshot
    /// directory; a file that cannot be removed is left for search cleanup).
    async fn forget_snapshot(&self, name: Option<&str>) {
        let Some(name) = name else { return };
        if let Ok(root) = crate::files::Root::open(&self.snapshot_dir)
            && let Ok(path) = root.resolve(name)
        {
            let _ = tokio::fs::remove_file(path).await;
        }
    }

    /// The room left in the city's snapshot budget, read once per task.
    async fn snapshot_room(
        &self,
        db: &DatabaseConnection,
        city_id: i64,
        own: Option<i64>,
    ) -> Result<SnapshotRoom, AnalyzeError> {
        let budget = own.or_else(|| {
            self.snapshot_budget
                .map(|b| i64::try_from(b).unwrap_or(i64::MAX))
        });
        Ok(match budget {
            None => SnapshotRoom { left: None },
            Some(budget) => SnapshotRoom {
                left: Some(budget - searches::city_snapshot_bytes(db, city_id).await?),
            },
        })
    }
}

/// The folder of `SNAPSHOT_DIR` holding snapshots by content (`objects/<aa>/<sha256>.jpg`); each
/// search's snapshot is a hard link to one of them. The scheduler's cleanup removes objects no
/// search links any more.
pub const OBJECTS_DIR: &str = "objects";

/// Distinguishes the temporary files of concurrent object writes in one process.
static OBJECT_TMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Where a sighting's snapshot can come from.
enum Evidence<'a> {
    /// The decoded frame, and its JPEG when one was encoded for the detector.
    Frame {
        image: &'a Arc<Mat>,
        encoded: Option<Vec<u8>>,
    },
    /// The snapshot an earlier search cut from the same frame (its SHA-256).
    Stored(&'a str),
    /// None (the budget was full when the task started; the sighting is counted as skipped or
    /// stored without a picture).
    None,
}

/// The bytes of a snapshot to store, or one stored already.
enum Source<'a> {
    Bytes(Vec<u8>),
    Stored(&'a str),
}

/// A snapshot linked into a search's folder.
struct Saved {
    /// Its name relative to the snapshot directory.
    name: String,
    /// The search's file was not there before (a re-run task finds it).
    new_file: bool,
    /// Its size in bytes.
    size: i64,
}

/// The cached analysis of the frame at `offset_ms`, when it answers the search (one that reads
/// text needs an analysis that read it).
fn cached_analysis(
    cache: &HashMap<i64, frames::Cached>,
    offset_ms: i64,
    wants_text: bool,
) -> Option<Analysis> {
    cache
        .get(&offset_ms)
        .and_then(|c| serde_json::from_value::<Analysis>(c.result.clone()).ok())
        .filter(|a| a.text_checked || !wants_text)
}

/// What is left of a city's snapshot budget during one task. Concurrent tasks of the city each
/// start from the stored total, so together they may go over by a few snapshots.
struct SnapshotRoom {
    /// Bytes left; `None` without a budget.
    left: Option<i64>,
}

impl SnapshotRoom {
    fn allows(&self) -> bool {
        self.left.is_none_or(|left| left > 0)
    }

    fn spent(&mut self, bytes: i64) {
        if let Some(left) = &mut self.left {
            *left -= bytes;
        }
    }
}

/// The interval of the sighting grid (anchored at 00:00 UTC) that `at` falls in.
fn sighting_interval(
    at: chrono::DateTime<chrono::Utc>,
    seconds: f64,
) -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
    let step = ((seconds * 1000.0).round() as i64).max(1);
    let start_ms = at.timestamp_millis().div_euclid(step) * step;
    let start = chrono::DateTime::from_timestamp_millis(start_ms).unwrap_or(at);
    (start, start + Duration::milliseconds(step))
}

/// Runs the gate off the async runtime; hands the gate back for the next frame.
async fn gate_frame(
    image: Arc<Mat>,
    mut gate: MotionGate,
) -> Result<(MotionGate, GateDecision), AnalyzeError> {
    tokio::task::spawn_blocking(move || {
        let decision = gate.check(&image)?;
        Ok((gate, decision))
    })
    .await
    .map_err(|e| AnalyzeError::Transient(e.into()))?
    .map_err(|e: opencv::Error| {
        AnalyzeError::Transient(anyhow::Error::new(e).context("motion gate"))
    })
}
