//! Stuck-task recovery: tasks whose worker died without apalis re-running them (a lost job, a
//! worker gone for longer than the queue remembers) are re-enqueued a bounded number of times, then
//! failed; searches whose queue window lost jobs (a refill that could not be pushed) are topped
//! up; searches whose tasks have all ended but were never finalised are finalised; searches
//! still pending longer than the lease (their planning job lost, for instance after its retries
//! ran out while the city's database was down) are planned again — planning is idempotent.

use chrono::{Duration, Utc};
use entity::status::SearchStatus;
use sea_orm::DatabaseConnection;
use sentinela_core::jobs::{AnalyzeRecording, SearchVehicle};
use sentinela_core::queue::JobQueue;
use sentinela_core::repo::{searches, tasks};

/// What a recovery run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Tasks pushed to the queue again.
    pub requeued: u64,
    /// Tasks failed after too many attempts.
    pub failed: u64,
    /// Searches finalised.
    pub finalized: u64,
    /// Tasks queued to top up searches' queue windows.
    pub topped_up: u64,
    /// Pending searches whose planning job was pushed again.
    pub replanned: u64,
}

/// Recovers tasks left `processing` (or `pending`) for longer than `lease`.
///
/// A task is claimed for re-enqueueing with a conditional update of its start time, so two
/// scheduler replicas running at once push it once.
///
/// # Errors
/// Database or queue errors.
pub async fn recover_stuck(
    db: &DatabaseConnection,
    queue: &JobQueue,
    lease: Duration,
    max_attempts: i32,
    window: u32,
) -> anyhow::Result<RecoveryReport> {
    let mut report = RecoveryReport::default();
    let now = Utc::now();
    let cutoff = now - lease;
    let mut stale = tasks::stale_processing(db, cutoff).await?;
    // Pending tasks of a processing search whose job was lost before any worker took it (queued
    // longer ago than the lease; tasks still waiting for their search's queue window are not).
    let lost = tasks::lost_pending(db, cutoff).await?;
    stale.extend(lost);

    for search in searches::pending_before(db, cutoff).await? {
        tracing::warn!(
            search_id = search.id,
            city_id = search.city_id,
            "re-planning a search left pending"
        );
        queue
            .push_search(SearchVehicle {
                search_id: search.id,
                city_id: Some(search.city_id),
            })
            .await?;
        report.replanned += 1;
    }

    let mut jobs = Vec::new();
    for task in stale {
        let Some(search) = searches::get(db, task.search_id)
            .await?
            .filter(|s| s.status == SearchStatus::Processing)
        else {
            continue;
        };
        if task.attempts >= max_attempts {
            let error = format!(
                "its worker stopped responding {} time(s); giving up",
                task.attempts
            );
            let finished = tasks::finish(db, task.id, tasks::TaskOutcome::Failed { error }).await?;
            report.failed += u64::from(finished.counted);
            report.finalized += u64::from(finished.finalized.is_some());
            continue;
        }
        // Claim: only the replica whose update matches the old start time pushes the job.
        if !tasks::claim_for_requeue(db, &task, now).await? {
            continue;
        }
        tracing::warn!(
            task_id = task.id,
            search_id = task.search_id,
            attempts = task.attempts,
            "re-enqueueing a stuck task"
        );
        jobs.push(AnalyzeRecording::of_task(&task, Some(search.city_id)));
    }
    report.requeued = jobs.len() as u64;
    queue.push_analyze(jobs).await?;

    for search in searches::processing(db).await? {
        if searches::finalize_if_complete(db, search.id)
            .await?
            .is_some()
        {
            report.finalized += 1;
            continue;
        }
        let claimed = tasks::refill(db, search.id, window).await?;
        if claimed.is_empty() {
            continue;
        }
        let ids: Vec<i64> = claimed.iter().map(|t| t.id).collect();
        let jobs: Vec<AnalyzeRecording> = claimed
            .iter()
            .map(|t| AnalyzeRecording::of_task(t, Some(search.city_id)))
            .collect();
        if let Err(e) = queue.push_analyze(jobs).await {
            tasks::unclaim(db, &ids).await?;
            return Err(e);
        }
        tracing::warn!(
            search_id = search.id,
            tasks = ids.len(),
            "topped up a search's queue window"
        );
        report.topped_up += ids.len() as u64;
    }
    Ok(report)
}

impl From<RecoveryReport> for crate::report::Report {
    fn from(r: RecoveryReport) -> Self {
        let mut report = Self::new(
            sentinela_core::jobs::PeriodicJob::Recover,
            &[
                "tasks_requeued",
                "tasks_failed",
                "searches_finalized",
                "windows_topped_up",
                "searches_replanned",
            ],
        );
        report.add("searches_replanned", r.replanned);
        report.add("windows_topped_up", r.topped_up);
        report.add("tasks_requeued", r.requeued);
        report.add("tasks_failed", r.failed);
        report.add("searches_finalized", r.finalized);
        report
    }
}
