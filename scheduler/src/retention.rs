//! Recording retention: per city, delete the recordings older than the city's retention days and,
//! while the city's recordings exceed its storage cap, the oldest first. File first, then row; a
//! file already gone is not an error; a file that cannot be deleted keeps its row (and is counted)
//! and the job goes on.
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
use entity::status::SearchStatus;
use entity::{city, recording, search_task, trajectory_point, vehicle_search};
use sea_orm::sea_query::{Alias, Expr, Func};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, JoinType, QueryFilter, QueryOrder,
    QuerySelect, RelationTrait,
};
use sentinela_core::jobs::PeriodicJob;

use anyhow::Context;
use sentinela_core::files::{PathError, Root};

use crate::files::{Removed, remove_file};
use crate::report::Report;

const PAGE: u64 = 500;

/// Runs retention over every city at time `now`.
///
/// # Errors
/// Database errors (file errors are counted, not returned).
pub async fn run(
    db: &DatabaseConnection,
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
    for city in city::Entity::find().all(db).await? {
        city_retention(db, &root, &city, now, &mut report).await?;
    }
    Ok(report)
}

/// Recordings of the city that must be kept: `(in use, evidence)`.
async fn locked(
    db: &DatabaseConnection,
    city_id: i64,
) -> anyhow::Result<(HashSet<i64>, HashSet<i64>)> {
    let in_use: Vec<i64> = search_task::Entity::find()
        .select_only()
        .column(search_task::Column::RecordingId)
        .distinct()
        .join(
            JoinType::InnerJoin,
            search_task::Relation::VehicleSearch.def(),
        )
        .filter(vehicle_search::Column::CityId.eq(city_id))
        .filter(vehicle_search::Column::Status.is_in([
            SearchStatus::Pending.as_str(),
            SearchStatus::Processing.as_str(),
        ]))
        .into_tuple()
        .all(db)
        .await?;
    let evidence: Vec<i64> = trajectory_point::Entity::find()
        .select_only()
        .column(trajectory_point::Column::RecordingId)
        .distinct()
        .join(
            JoinType::InnerJoin,
            trajectory_point::Relation::VehicleSearch.def(),
        )
        .filter(vehicle_search::Column::CityId.eq(city_id))
        .into_tuple()
        .all(db)
        .await?;
    Ok((in_use.into_iter().collect(), evidence.into_iter().collect()))
}

async fn city_retention(
    db: &DatabaseConnection,
    root: &Root,
    city: &city::Model,
    now: DateTime<Utc>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (in_use, evidence) = locked(db, city.id).await?;
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

    // Age: everything that ended before the cut-off.
    if city.recording_retention_days > 0 {
        let cutoff = now - Duration::days(i64::from(city.recording_retention_days));
        let mut after: Option<(DateTime<Utc>, i64)> = None;
        loop {
            let page = oldest(db, city.id, Some(cutoff), after).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.started_at, last.id));
            for r in &page {
                if !keep(r, report) && !delete(db, root, r, report).await? {
                    failed.insert(r.id);
                }
            }
        }
    }

    // Cap: the oldest first until the city's recordings fit.
    if let Some(cap) = city.max_storage_bytes {
        let mut total = stored_bytes(db, city.id).await?;
        let mut after: Option<(DateTime<Utc>, i64)> = None;
        'pages: while total > cap {
            let page = oldest(db, city.id, None, after).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.started_at, last.id));
            for r in &page {
                if total <= cap {
                    break 'pages;
                }
                if keep(r, report) || failed.contains(&r.id) {
                    continue;
                }
                if delete(db, root, r, report).await? {
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

/// A page of the city's recordings in (start, id) order after `after`, optionally only those that
/// ended before `ended_before`.
async fn oldest(
    db: &DatabaseConnection,
    city_id: i64,
    ended_before: Option<DateTime<Utc>>,
    after: Option<(DateTime<Utc>, i64)>,
) -> anyhow::Result<Vec<recording::Model>> {
    let mut query = recording::Entity::find().filter(recording::Column::CityId.eq(city_id));
    if let Some(cutoff) = ended_before {
        query = query.filter(recording::Column::EndedAt.lt(cutoff));
    }
    if let Some((started, id)) = after {
        query = query.filter(
            Condition::any()
                .add(recording::Column::StartedAt.gt(started))
                .add(
                    Condition::all()
                        .add(recording::Column::StartedAt.eq(started))
                        .add(recording::Column::Id.gt(id)),
                ),
        );
    }
    Ok(query
        .order_by_asc(recording::Column::StartedAt)
        .order_by_asc(recording::Column::Id)
        .limit(PAGE)
        .all(db)
        .await?)
}

/// Bytes of the city's registered recordings.
async fn stored_bytes(db: &DatabaseConnection, city_id: i64) -> anyhow::Result<i64> {
    let sum: Option<Option<i64>> = recording::Entity::find()
        .select_only()
        .expr(Func::cast_as(
            Func::sum(Expr::col(recording::Column::SizeBytes)),
            Alias::new("BIGINT"),
        ))
        .filter(recording::Column::CityId.eq(city_id))
        .into_tuple()
        .one(db)
        .await?;
    Ok(sum.flatten().unwrap_or(0))
}

/// Deletes the file, then the row. Returns whether the recording is gone. A row whose path
/// leads outside the recordings directory keeps its row and its file (counted as `outside_root`).
async fn delete(
    db: &DatabaseConnection,
    root: &Root,
    r: &recording::Model,
    report: &mut Report,
) -> anyhow::Result<bool> {
    let removed = match root.resolve(&r.file_path) {
        Ok(path) => remove_file(&path).await,
        Err(PathError::NotFound) => Removed::Missing,
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
        Err(error) => Removed::Failed(std::io::Error::other(error)),
    };
    match removed {
        Removed::Deleted(bytes) => {
            report.add("files_deleted", 1);
            report.add("bytes_freed", bytes);
        }
        Removed::Missing => report.add("files_missing", 1),
        Removed::Failed(error) => {
            tracing::error!(
                recording_id = r.id,
                path = %r.file_path,
                %error,
                "cannot delete a recording's file; keeping its row"
            );
            report.add("file_errors", 1);
            return Ok(false);
        }
    }
    let deleted = recording::Entity::delete_by_id(r.id).exec(db).await?;
    report.add("recordings_deleted", deleted.rows_affected);
    Ok(true)
}
