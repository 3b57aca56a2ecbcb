//! Recording index sync: registers the segments MediaMTX writes under `RECORDINGS_DIR` with
//! `recordPath: %path/%Y-%m-%d_%H-%M-%S-%f` (fMP4) as recordings of the camera whose
//! `mediamtx_path` is `%path`.
//!
//! - The start time comes from the file name, read in the time zone MediaMTX writes names in
//!   (`RECORDINGS_TZ`); the end from the file's real length (its packets, demuxed).
//! - A segment is complete when a later segment of the same camera exists, or when it has not
//!   been modified for `segment_settle_secs`; the newest segment of a camera that is still
//!   being written is skipped until then.
//! - Idempotent: files already registered are not read again, and registration itself is
//!   idempotent on (camera, start).
//! - Only segments starting less than [`LOOKBACK`] before the camera's newest registered
//!   recording are considered, so a tick does not re-examine weeks of history.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use entity::camera;
use sea_orm::DatabaseConnection;
use sentinela_core::files::{PathError, Root, normalize};
use sentinela_core::jobs::PeriodicJob;
use sentinela_core::repo::{cameras, recordings};
use sentinela_core::video::sampler;

use crate::report::Report;

/// How far before a camera's newest registered recording index sync still looks for segments.
pub const LOOKBACK: Duration = Duration::hours(24);

/// The name format of MediaMTX segments (`%Y-%m-%d_%H-%M-%S-%f`, microseconds).
const NAME_FORMAT: &str = "%Y-%m-%d_%H-%M-%S-%6f";

/// What index sync needs.
#[derive(Debug, Clone)]
pub struct IndexSync {
    /// MediaMTX's recordPath root.
    pub recordings_dir: PathBuf,
    /// The time zone segment names are written in.
    pub timezone: Tz,
    /// How long the newest segment must stay unmodified to count as complete.
    pub settle: std::time::Duration,
}

/// A segment file found on disk.
#[derive(Debug, Clone)]
struct Segment {
    /// Path relative to the recordings root (what the recording row stores).
    relative: String,
    started_at: DateTime<Utc>,
    modified: SystemTime,
    size: u64,
}

/// Reads a segment's start time from its file name (`2026-11-29_08-00-00-000000.mp4`).
pub fn parse_segment_name(name: &str, timezone: Tz) -> Option<DateTime<Utc>> {
    let stem = name.strip_suffix(".mp4")?;
    let naive = NaiveDateTime::parse_from_str(stem, NAME_FORMAT).ok()?;
    // A name in the repeated hour of a DST change is read as its first occurrence.
    timezone
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

impl IndexSync {
    /// Scans every camera's folder and registers new complete segments.
    ///
    /// # Errors
    /// Database errors; unreadable folders and files are counted and logged.
    pub async fn run(&self, db: &DatabaseConnection) -> anyhow::Result<Report> {
        let mut report = Report::new(
            PeriodicJob::IndexSync,
            &[
                "cameras_scanned",
                "segments_registered",
                "segments_in_progress",
                "segments_unreadable",
                "segments_conflicting",
                "cameras_failed",
                "folders_missing",
                "outside_root",
            ],
        );
        let Some(root) = Root::open_if_exists(&self.recordings_dir).with_context(|| {
            format!(
                "RECORDINGS_DIR {} cannot be opened",
                self.recordings_dir.display()
            )
        })?
        else {
            tracing::debug!(dir = %self.recordings_dir.display(), "no RECORDINGS_DIR yet");
            return Ok(report);
        };
        let cameras = cameras::enabled_with_folder(db).await?;
        for camera in cameras {
            let Some(path) = camera.mediamtx_path.clone() else {
                continue;
            };
            report.add("cameras_scanned", 1);
            // One camera's failure (an unreadable folder, a row it cannot write) is counted and
            // the other cameras are still scanned; a database that is down stops the run.
            if let Err(error) = self
                .sync_camera(db, &root, &camera, &path, &mut report)
                .await
            {
                if error
                    .downcast_ref::<sea_orm::DbErr>()
                    .is_some_and(sentinela_core::repo::is_unavailable)
                {
                    return Err(error);
                }
                report.add("cameras_failed", 1);
                tracing::error!(camera_id = camera.id, error = %format!("{error:#}"), "index sync failed for a camera; the others go on");
            }
        }
        Ok(report)
    }

    async fn sync_camera(
        &self,
        db: &DatabaseConnection,
        root: &Root,
        camera: &camera::Model,
        mediamtx_path: &str,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        let newest = recordings::newest_start(db, camera.id).await?;
        let since = newest.map(|t| t - LOOKBACK);
        // The camera's folder, confined to RECORDINGS_DIR (symlinks included).
        let (dir, folder) = match root
            .resolve(mediamtx_path)
            .and_then(|dir| Ok((dir, normalize(mediamtx_path)?)))
        {
            Ok(found) => found,
            Err(PathError::NotFound) => {
                report.add("folders_missing", 1);
                tracing::debug!(
                    camera_id = camera.id,
                    mediamtx_path,
                    "no recordings folder yet"
                );
                return Ok(());
            }
            Err(error) if error.is_confinement() => {
                report.add("outside_root", 1);
                tracing::error!(
                    camera_id = camera.id,
                    mediamtx_path,
                    %error,
                    "a camera's folder leads outside RECORDINGS_DIR; not scanned"
                );
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        let (segments, missing) = {
            let (dir, tz) = (dir.clone(), self.timezone);
            tokio::task::spawn_blocking(move || list_segments(&dir, &folder, tz, since)).await??
        };
        if missing {
            report.add("folders_missing", 1);
            tracing::debug!(camera_id = camera.id, dir = %dir.display(), "no recordings folder yet");
            return Ok(());
        }
        if segments.is_empty() {
            return Ok(());
        }
        let known = recordings::paths_since(db, camera.id, segments[0].started_at).await?;
        let now = SystemTime::now();
        let last = segments.len() - 1;
        for (i, segment) in segments.into_iter().enumerate() {
            if known.contains(&segment.relative) {
                continue;
            }
            let settled = now
                .duration_since(segment.modified)
                .is_ok_and(|age| age >= self.settle);
            if i == last && !settled {
                report.add("segments_in_progress", 1);
                continue;
            }
            let path = match root.resolve(&segment.relative) {
                Ok(path) => path,
                Err(error) => {
                    let item = if error.is_confinement() {
                        "outside_root"
                    } else {
                        "segments_unreadable"
                    };
                    report.add(item, 1);
                    tracing::warn!(
                        camera_id = camera.id,
                        file = %segment.relative,
                        %error,
                        "segment refused; not registered"
                    );
                    continue;
                }
            };
            let probed = tokio::task::spawn_blocking({
                let path = path.clone();
                move || sampler::probe(&path)
            })
            .await?;
            let info = match probed {
                Ok(info) => info,
                Err(error) => {
                    report.add("segments_unreadable", 1);
                    tracing::warn!(
                        camera_id = camera.id,
                        path = %path.display(),
                        %error,
                        "segment cannot be read; not registered"
                    );
                    continue;
                }
            };
            let duration = Duration::from_std(info.duration)?;
            let registered = recordings::register(
                db,
                recordings::NewRecording {
                    camera_id: camera.id,
                    city_id: camera.city_id,
                    file_path: segment.relative.clone(),
                    started_at: segment.started_at,
                    ended_at: segment.started_at + duration,
                    size_bytes: i64::try_from(segment.size).unwrap_or(i64::MAX),
                },
            )
            .await;
            let inserted = match registered {
                Ok((_, inserted)) => inserted,
                // Its path is registered already under another start (a recording registered
                // by hand, or names read in another time zone before RECORDINGS_TZ was
                // corrected): this segment is skipped, the others go on.
                Err(error) if sentinela_core::repo::is_unique_violation(&error) => {
                    report.add("segments_conflicting", 1);
                    tracing::warn!(
                        camera_id = camera.id,
                        file = %segment.relative,
                        started_at = %segment.started_at,
                        "segment's path is registered under another start time; not registered"
                    );
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            if inserted {
                report.add("segments_registered", 1);
                tracing::info!(
                    camera_id = camera.id,
                    file = %segment.relative,
                    seconds = info.duration.as_secs_f64(),
                    "segment registered"
                );
            }
        }
        Ok(())
    }
}

/// Segments in `dir` (named by MediaMTX) starting at or after `since`, in start order. Returns
/// `(segments, folder missing)`.
fn list_segments(
    dir: &Path,
    mediamtx_path: &str,
    timezone: Tz,
    since: Option<DateTime<Utc>>,
) -> std::io::Result<(Vec<Segment>, bool)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), true)),
        Err(e) => return Err(e),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(started_at) = parse_segment_name(name, timezone) else {
            continue;
        };
        if since.is_some_and(|since| started_at < since) {
            continue;
        }
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        segments.push(Segment {
            relative: format!("{mediamtx_path}/{name}"),
            started_at,
            modified: meta.modified()?,
            size: meta.len(),
        });
    }
    segments.sort_by_key(|s| s.started_at);
    Ok((segments, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_are_read_in_the_recordings_time_zone() {
        let utc = parse_segment_name("2026-11-29_08-00-05-250000.mp4", Tz::UTC).unwrap();
        assert_eq!(utc.to_rfc3339(), "2026-11-29T08:00:05.250+00:00");
        let sp =
            parse_segment_name("2026-11-29_08-00-05-250000.mp4", Tz::America__Sao_Paulo).unwrap();
        assert_eq!(sp.to_rfc3339(), "2026-11-29T11:00:05.250+00:00");
        for bad in [
            "2026-11-29_08-00-05-250000.mkv",
            "2026-11-29_08-00-05.mp4",
            "2026-13-29_08-00-05-250000.mp4",
            "notes.txt",
        ] {
            assert_eq!(parse_segment_name(bad, Tz::UTC), None, "{bad}");
        }
    }
}
