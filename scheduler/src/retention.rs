//! Recording retention: per city, delete the recordings older than the city's retention days and,
//! while the city's recordings exceed its storage cap, the oldest first. The row's deletion is
//! guarded by the database (a search planned meanwhile keeps its recording) and the file is
//! removed before it commits; a file already gone is not an error; a file that cannot be deleted
//! keeps its row (and is counted) and the job goes on.
//!
//! Two kinds of recordings are never deleted:
//! - **in use**: a task of a search still pending or processing points at it (kept until the
//!   search ends);
//! - **evidence**: a trajectory point of a stored search was seen in it (an evidence lock, as in
//!   commercial VMSs). The lock ends when search cleanup deletes the search.
//!
//! When only locked recordings are left over a city's cap, the run reports `over_cap_bytes` and
//! logs a warning.

use std::collections::HashSet;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use entity::{city, recording};
use sea_orm::DatabaseConnection;
use sentinela_core::jobs::PeriodicJob;
use sentinela_core::repo::recordings;

use anyhow::Context;
use sentinela_core::files::{PathError, Root};

use crate::files::{Removed, remove_file};
use crate::report::Report;

const PAGE: u64 = 500;

/// Runs retention at time `now` over `cities` (their rows as the control database has them:
/// retention days and storage caps), whose data is in `db`.
///
/// # Errors
/// Database errors (file errors are counted, not returned).
pub async fn run(
    db: &DatabaseConnection,
    cities: &[entity::city::Model],
    recordings_dir: &Path,
    now: DateTime<Utc>,
) -> anyhow::Result<Report> {
    let mut report = Report::new(
        PeriodicJob::Retention,
        &[
            "recordings_deleted",
            "files_deleted",
            "files_missing",
            "bytes_freed",
            "file_errors",
            "kept_in_use",
            "kept_evidence",
            "over_cap_bytes",
            "outside_root",
        ],
    );
    // No recordings folder (a volume not mounted yet): nothing can be deleted, and rows are not
    // dropped as if their files were gone.
    let Some(root) = Root::open_if_exists(recordings_dir).with_context(|| {
        format!(
            "RECORDINGS_DIR {} cannot be opened",
            recordings_dir.display()
        )
    })?
    else {
        tracing::warn!(dir = %recordings_dir.display(), "RECORDINGS_DIR does not exist; retention skipped");
        return Ok(report);
    };
    for city in cities {
        city_retention(db, &root, city, now, &mut report, None).await?;
    }
    Ok(report)
}

/// A recording retention would delete, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Doomed {
    /// The recording.
    pub recording: recording::Model,
    /// `age` (older than the city's retention) or `storage_cap` (the oldest while the city is
    /// over its cap).
    pub reason: &'static str,
}

/// What [`run`] would do at `now`, doing nothing: the recordings it would delete (in the order
/// it would) and its report with the counts it would give (`files_deleted`, `files_missing` and
/// `file_errors` stay zero: no file is touched).
///
/// # Errors
/// Database errors.
pub async fn preview(
    db: &DatabaseConnection,
    cities: &[entity::city::Model],
    recordings_dir: &Path,
    now: DateTime<Utc>,
) -> anyhow::Result<(Report, Vec<Doomed>)> {
    let mut report = Report::new(
        PeriodicJob::Retention,
        &[
            "recordings_deleted",
            "bytes_freed",
            "kept_in_use",
            "kept_evidence",
            "over_cap_bytes",
        ],
    );
    let mut doomed = Vec::new();
    let root = Root::open_if_exists(recordings_dir).ok().flatten();
    for city in cities {
        city_retention(db, root.as_ref(), city, now, &mut report, Some(&mut doomed)).await?;
    }
    Ok((report, doomed))
}

/// One city's retention; with `preview`, nothing is deleted and what would be is pushed there
/// instead (and `root` is not needed).
async fn city_retention(
    db: &DatabaseConnection,
    root: impl Into<Option<&Root>>,
    city: &city::Model,
    now: DateTime<Utc>,
    report: &mut Report,
    mut preview: Option<&mut Vec<Doomed>>,
) -> anyhow::Result<()> {
    let root: Option<&Root> = root.into();
    // Deletes `r` (or, previewing, records it); whether it is gone.
    macro_rules! remove {
        ($r:expr, $reason:expr) => {
            match (preview.as_deref_mut(), root) {
                (Some(doomed), _) => {
                    report.add("recordings_deleted", 1);
                    report.add("bytes_freed", $r.size_bytes.max(0) as u64);
                    doomed.push(Doomed {
                        recording: $r.clone(),
                        reason: $reason,
                    });
                    true
                }
                (None, Some(root)) => delete(db, root, $r, report).await?,
                (None, None) => false,
            }
        };
    }
    let (in_use, evidence) = recordings::locked_for_retention(db, city.id).await?;
    let mut kept: HashSet<i64> = HashSet::new();
    // Recordings whose file could not be deleted in this run: not tried twice.
    let mut failed: HashSet<i64> = HashSet::new();
    let mut keep = |r: &recording::Model, report: &mut Report| {
        let lock = if in_use.contains(&r.id) {
            Some("kept_in_use")
        } else if evidence.contains(&r.id) {
            Some("kept_evidence")
        } else {
            None
        };
        if let Some(lock) = lock
            && kept.insert(r.id)
        {
            report.add(lock, 1);
        }
        lock.is_some()
    };

    // Recordings the age pass removed (or, previewing, would remove), and their bytes.
    let mut gone: HashSet<i64> = HashSet::new();
    let mut gone_bytes = 0i64;

    // Age: everything that ended before the cut-off.
    if city.recording_retention_days > 0 {
        let cutoff = now - Duration::days(i64::from(city.recording_retention_days));
        let mut after: Option<(DateTime<Utc>, i64)> = None;
        loop {
            let page = recordings::oldest_page(db, city.id, Some(cutoff), after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.started_at, last.id));
            for r in &page {
                if keep(r, report) {
                    continue;
                }
                if remove!(r, "age") {
                    gone.insert(r.id);
                    gone_bytes += r.size_bytes;
                } else {
                    failed.insert(r.id);
                }
            }
        }
    }

    // Cap: the oldest first until the city's recordings fit.
    if let Some(cap) = city.max_storage_bytes {
        // (Previewing, the rows the age pass would have deleted are still there: not counted.)
        let mut total = recordings::stored_bytes(db, city.id).await?
            - if preview.is_some() { gone_bytes } else { 0 };
        let mut after: Option<(DateTime<Utc>, i64)> = None;
        'pages: while total > cap {
            let page = recordings::oldest_page(db, city.id, None, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.started_at, last.id));
            for r in &page {
                if total <= cap {
                    break 'pages;
                }
                if keep(r, report) || failed.contains(&r.id) || gone.contains(&r.id) {
                    continue;
                }
                if remove!(r, "storage_cap") {
                    total -= r.size_bytes;
                } else {
                    failed.insert(r.id);
                }
            }
        }
        if total > cap {
            let over = (total - cap) as u64;
            report.add("over_cap_bytes", over);
            tracing::warn!(
                city_id = city.id,
                cap_bytes = cap,
                stored_bytes = total,
                "the city's recordings stay over its storage cap: what is left is in use, evidence or undeletable"
            );
        }
    }
    Ok(())
}

/// Deletes the row and the file together. Returns whether the recording is gone.
///
/// [`recordings::delete_unheld`] deletes the row in a transaction guarded by the database (a task
/// created since this run read its locks — a search planned meanwhile — or a sighting makes it
/// refuse: the recording is kept, counted as `kept_in_use`) and removes the file before it
/// commits: a file that cannot be deleted keeps its row (counted as `file_errors`). A row whose
/// path leads outside the recordings directory keeps its row and its file (`outside_root`).
async fn delete(
    db: &DatabaseConnection,
    root: &Root,
    r: &recording::Model,
    report: &mut Report,
) -> anyhow::Result<bool> {
    let path = match root.resolve(&r.file_path) {
        Ok(path) => Some(path),
        Err(PathError::NotFound) => None,
        Err(error) if error.is_confinement() => {
            tracing::error!(
                recording_id = r.id,
                path = %r.file_path,
                %error,
                "a recording's path leads outside RECORDINGS_DIR; keeping its file and row"
            );
            report.add("outside_root", 1);
            return Ok(false);
        }
        Err(error) => {
            tracing::error!(
                recording_id = r.id,
                path = %r.file_path,
                %error,
                "cannot reach a recording's file; keeping its row"
            );
            report.add("file_errors", 1);
            return Ok(false);
        }
    };
    let outcome = recordings::delete_unheld(db, r.id, || async {
        match &path {
            None => Ok(Removed::Missing),
            Some(path) => match remove_file(path).await {
                Removed::Failed(error) => Err(error),
                removed => Ok(removed),
            },
        }
    })
    .await?;
    match outcome {
        recordings::Deletion::Deleted(removed) => {
            report.add("recordings_deleted", 1);
            match removed {
                Removed::Deleted(bytes) => {
                    report.add("files_deleted", 1);
                    report.add("bytes_freed", bytes);
                }
                _ => report.add("files_missing", 1),
            }
            Ok(true)
        }
        recordings::Deletion::Missing => Ok(true),
        recordings::Deletion::Held => {
            tracing::info!(
                recording_id = r.id,
                "a search took the recording after retention read its locks; kept"
            );
            report.add("kept_in_use", 1);
            Ok(false)
        }
        recordings::Deletion::Kept(error) => {
            tracing::error!(
                recording_id = r.id,
                path = %r.file_path,
                %error,
                "cannot delete a recording's file; keeping its row"
            );
            report.add("file_errors", 1);
            Ok(false)
        }
    }
}
