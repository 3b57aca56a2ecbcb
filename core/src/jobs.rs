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
}

/// Analyse one recording (a window of it) for one search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyzeRecording {
    /// The search.
    pub search_id: i64,
    /// The search's task for this recording.
    pub task_id: i64,
    /// The recording.
    pub recording_id: i64,
    /// Start of the window inside the recording.
    pub from: DateTime<Utc>,
    /// End of the window inside the recording.
    pub to: DateTime<Utc>,
}
