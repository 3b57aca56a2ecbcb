//! Job payloads shared by the producer (API, planner) and the consumers (workers), and the names
//! of their queues. Queues are always named explicitly: apalis' default is the Rust type path,
//! which would change with a refactor and strand queued jobs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Queue of [`SearchVehicle`] jobs.
pub const SEARCH_QUEUE: &str = "sentinela:search";
/// Queue of [`AnalyzeRecording`] jobs.
pub const ANALYZE_QUEUE: &str = "sentinela:analyze";

/// Plan a search: list its recordings, create its tasks, fan out one [`AnalyzeRecording`] each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchVehicle {
    /// The search.
    pub search_id: i64,
    /// The search's city, which says which database holds it. Jobs queued before cities had
    /// their own databases carry none: their data is in the shared database.
    #[serde(default)]
    pub city_id: Option<i64>,
}

/// Analyse one recording (a window of it) for one search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyzeRecording {
    /// The search.
    pub search_id: i64,
    /// The search's city (see [`SearchVehicle::city_id`]).
    #[serde(default)]
    pub city_id: Option<i64>,
    /// The search's task for this recording.
    pub task_id: i64,
    /// The recording.
    pub recording_id: i64,
    /// Start of the window inside the recording.
    pub from: DateTime<Utc>,
    /// End of the window inside the recording.
    pub to: DateTime<Utc>,
}

impl AnalyzeRecording {
    /// The job of `task`, a task of a search of `city_id`.
    pub fn of_task(task: &entity::search_task::Model, city_id: Option<i64>) -> Self {
        Self {
            search_id: task.search_id,
            city_id,
            task_id: task.id,
            recording_id: task.recording_id,
            from: task.window_start,
            to: task.window_end,
        }
    }
}

/// Queue of [`PeriodicRun`] jobs (one per cron tick, whichever scheduler replica pushed it first).
pub const PERIODIC_QUEUE: &str = "sentinela:periodic";

/// The scheduler's periodic jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeriodicJob {
    /// Delete recordings past their city's retention or over its storage cap.
    Retention,
    /// Delete old searches with their tasks, points and snapshots.
    Cleanup,
    /// Re-enqueue tasks whose worker died; finalise searches whose tasks all ended.
    Recover,
    /// Register new MediaMTX segments as recordings.
    IndexSync,
    /// Prune finished and dead queue records.
    QueueHygiene,
    /// Deliver the completion webhooks of finished searches.
    Webhooks,
}

impl PeriodicJob {
    /// Every job, in a stable order.
    pub const ALL: [Self; 6] = [
        Self::Retention,
        Self::Cleanup,
        Self::Recover,
        Self::IndexSync,
        Self::QueueHygiene,
        Self::Webhooks,
    ];

    /// The job's name in logs, metrics and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retention => "retention",
            Self::Cleanup => "cleanup",
            Self::Recover => "recover",
            Self::IndexSync => "index-sync",
            Self::QueueHygiene => "queue-hygiene",
            Self::Webhooks => "webhooks",
        }
    }
}

/// One run of a periodic job, for the cron tick at `tick` (seconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodicRun {
    /// The job.
    pub job: PeriodicJob,
    /// The tick that fired it.
    pub tick: u64,
}

impl PeriodicRun {
    /// The key that makes every replica's push of this tick the same job.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.job.as_str(), self.tick)
    }
}
