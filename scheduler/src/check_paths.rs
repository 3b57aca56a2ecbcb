//! `sentinela-scheduler check-paths`: reports every stored path that leads outside its root —
//! recordings outside `RECORDINGS_DIR` (absolute paths elsewhere, `..`, symlinks leading out),
//! camera folders that are not plain relative paths, snapshots outside `SNAPSHOT_DIR`. Such rows
//! come from versions before paths were confined; retention, cleanup and the workers already
//! refuse to touch them, and this check lists them so an operator can correct or delete them.

use std::path::Path;

use anyhow::Context;
use sea_orm::DatabaseConnection;
use sentinela_core::files::{PathError, Root, normalize};
use sentinela_core::repo::{cameras, points, recordings};

const PAGE: u64 = 1000;

/// One row whose path leads outside its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `recording`, `camera` or `trajectory_point`.
    pub table: &'static str,
    /// The row.
    pub id: i64,
    /// The stored path.
    pub path: String,
    /// Why it is refused.
    pub reason: String,
}

/// What the check looked at and found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Rows checked, per table.
    pub rows: u64,
    /// Rows that lead outside their root.
    pub findings: Vec<Finding>,
}

fn refused(result: Result<std::path::PathBuf, PathError>) -> Option<String> {
    match result {
        Err(e) if e.is_confinement() => Some(e.to_string()),
        _ => None,
    }
}

/// Checks every recording, camera folder and snapshot path.
///
/// # Errors
/// Database errors, or a root that cannot be opened.
pub async fn run(
    db: &DatabaseConnection,
    recordings_dir: &Path,
    snapshot_dir: &Path,
) -> anyhow::Result<Checked> {
    let open =
        |dir: &Path| Root::open(dir).with_context(|| format!("{} cannot be opened", dir.display()));
    let (recordings, snapshots) = (open(recordings_dir)?, open(snapshot_dir)?);
    let mut checked = Checked::default();
    let mut after = 0i64;
    loop {
        let page = recordings::path_page(db, after, PAGE).await?;
        let Some(&(last, _)) = page.last() else { break };
        after = last;
        for (id, path) in page {
            checked.rows += 1;
            if let Some(reason) = refused(recordings.resolve(&path)) {
                checked.findings.push(Finding {
                    table: "recording",
                    id,
                    path,
                    reason,
                });
            }
        }
    }
    for cam in cameras::with_folder(db).await? {
        checked.rows += 1;
        let Some(path) = cam.mediamtx_path else {
            continue;
        };
        let reason = match normalize(&path) {
            Err(e) => Some(e.to_string()),
            Ok(_) => refused(recordings.resolve(&path)),
        };
        if let Some(reason) = reason {
            checked.findings.push(Finding {
                table: "camera",
                id: cam.id,
                path,
                reason,
            });
        }
    }
    let mut after = 0i64;
    loop {
        let page = points::image_page(db, after, PAGE).await?;
        let Some(&(last, _)) = page.last() else { break };
        after = last;
        for (id, path) in page {
            checked.rows += 1;
            let Some(path) = path else { continue };
            if let Some(reason) = refused(snapshots.resolve(&path)) {
                checked.findings.push(Finding {
                    table: "trajectory_point",
                    id,
                    path,
                    reason,
                });
            }
        }
    }
    Ok(checked)
}
