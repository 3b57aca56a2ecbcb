//! Search cleanup: searches that ended (completed, failed or cancelled) and were created more
//! than the configured age ago are deleted with their tasks, points and snapshot files. Searches
//! still pending or processing are never touched. A snapshot folder that cannot be deleted keeps
//! its search (counted and logged) and the job goes on.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use sea_orm::DatabaseConnection;
use sentinela_core::jobs::PeriodicJob;
use sentinela_core::repo::{directory, points, searches};

use anyhow::Context;
use sentinela_core::files::{PathError, Root};

use crate::files::remove_dir;
use crate::report::Report;

const PAGE: u64 = 200;

/// Deletes searches of the database `db` that ended and are older than `max_age` at `now`, and
/// forgets their ids in the `control` database's directory.
///
/// # Errors
/// Database errors (file errors are counted, not returned).
pub async fn run(
    control: &DatabaseConnection,
    db: &DatabaseConnection,
    snapshot_dir: &Path,
    max_age: Duration,
    now: DateTime<Utc>,
) -> anyhow::Result<Report> {
    let mut report = Report::new(
        PeriodicJob::Cleanup,
        &[
            "searches_deleted",
            "points_deleted",
            "snapshot_files_deleted",
            "bytes_freed",
            "file_errors",
            "outside_root",
        ],
    );
    // No snapshot folder at all: no search has files to delete.
    let root = Root::open_if_exists(snapshot_dir)
        .with_context(|| format!("SNAPSHOT_DIR {} cannot be opened", snapshot_dir.display()))?;
    let cutoff = now - max_age;
    let mut after = 0i64;
    loop {
        let page = searches::ended_before(db, cutoff, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for search in page {
            // The search's folder, confined to SNAPSHOT_DIR: a folder that is a symlink leading
            // out is left alone, and so is its search.
            let folder = root.as_ref().map_or(Err(PathError::NotFound), |r| {
                r.resolve(&search.id.to_string())
            });
            let removed = match folder {
                Ok(dir) => remove_dir(&dir).await,
                Err(PathError::NotFound) => Ok((0, 0)),
                Err(error) if error.is_confinement() => {
                    tracing::error!(
                        search_id = search.id,
                        %error,
                        "a search's snapshot folder leads outside SNAPSHOT_DIR; keeping it and the search"
                    );
                    report.add("outside_root", 1);
                    continue;
                }
                Err(error) => Err(std::io::Error::other(error)),
            };
            match removed {
                Ok((files, bytes)) => {
                    report.add("snapshot_files_deleted", files);
                    report.add("bytes_freed", bytes);
                }
                Err(error) => {
                    tracing::error!(
                        search_id = search.id,
                        %error,
                        "cannot delete a search's snapshots; keeping the search"
                    );
                    report.add("file_errors", 1);
                    continue;
                }
            }
            let points = points::count_for_search(db, search.id).await?;
            // Tasks and points go with the row (ON DELETE CASCADE).
            if searches::delete(db, search.id).await? {
                report.add("searches_deleted", 1);
                report.add("points_deleted", points);
            }
            directory::release_search(control, search.id).await?;
        }
    }
    Ok(report)
}

/// Snapshot objects and temporary files younger than this are never swept: a task may have just
/// written an object and not yet linked it into its search's folder.
pub const OBJECT_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes content-addressed snapshots (`SNAPSHOT_DIR/objects/<aa>/<sha256>.jpg`) that no search
/// links any more (link count 1) and temporary files left by interrupted writes, both older than
/// `grace`. Returns the files and bytes removed; a file that cannot be removed is counted in
/// `errors` and left for the next run.
///
/// # Errors
/// The objects folder cannot be read (a missing one holds nothing to sweep).
pub async fn sweep_objects(
    snapshot_dir: &Path,
    grace: std::time::Duration,
) -> std::io::Result<ObjectSweep> {
    let objects = snapshot_dir.join(sentinela_core::pipeline::OBJECTS_DIR);
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::MetadataExt;
        let mut sweep = ObjectSweep::default();
        let now = std::time::SystemTime::now();
        let shards = match std::fs::read_dir(&objects) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(sweep),
            Err(e) => return Err(e),
        };
        for shard in shards {
            let shard = shard?;
            // Not followed: only real folders of the objects folder are walked.
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(shard.path())? {
                let entry = entry?;
                let meta = entry.path().symlink_metadata()?;
                if !meta.is_file() {
                    continue;
                }
                let old = meta
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|age| age >= grace);
                let name = entry.file_name();
                let temporary = name.to_string_lossy().ends_with(".tmp");
                if !old || (!temporary && meta.nlink() > 1) {
                    continue;
                }
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => {
                        sweep.files += 1;
                        sweep.bytes += meta.len();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => {
                        tracing::warn!(path = %entry.path().display(), %error, "cannot remove an unlinked snapshot object");
                        sweep.errors += 1;
                    }
                }
            }
        }
        Ok(sweep)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// What [`sweep_objects`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ObjectSweep {
    /// Files removed.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files that could not be removed.
    pub errors: u64,
}
