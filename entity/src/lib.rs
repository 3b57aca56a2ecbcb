//! sea-orm entities for Sentinela's data model, one module per table.
//!
//! The schema itself is owned by the `migration` crate; these types mirror it. Column types are
//! chosen so the same entities work on PostgreSQL (production) and SQLite (embedded mode):
//! timestamps are UTC (`timestamptz` / ISO text), JSON is `jsonb` / text.
//!
//! # Layout
//! - [`city`]: a city and its recording retention policy.
//! - [`city_usage`]: detector calls per city and UTC day (the daily budget).
//! - [`camera`]: a camera of a city, with its MediaMTX path.
//! - [`recording`]: one recorded segment of a camera (a file with a start and an end).
//! - [`vehicle_search`]: an operator's search and its progress counters.
//! - [`search_task`]: one recording-range job of a search.
//! - [`search_load`]: a city's searches in flight, kept by triggers (the quota reads it).
//! - [`trajectory_point`]: a sighting of the searched vehicle.
//! - [`frame_analysis`]: the detector-result cache, per recording, offset and provider.
//! - [`api_key`]: hashed API keys, scoped to a city or admin.
//! - [`search_directory`], [`camera_directory`]: which city owns a search or camera id (control
//!   database; ids are unique across every city database).
//! - [`status`]: the status enums of searches and tasks.

// The sea-orm derive macros generate public items (Column, ActiveModel, Relation variants…) that
// cannot carry doc comments; the tables themselves are documented on each `Model`.
#![allow(missing_docs)]

pub mod api_key;
pub mod camera;
pub mod camera_directory;
pub mod city;
pub mod city_usage;
pub mod console_session;
pub mod frame_analysis;
pub mod idempotency_key;
pub mod recording;
pub mod search_directory;
pub mod search_load;
pub mod search_task;
pub mod status;
pub mod trajectory_point;
pub mod vehicle_search;

/// Each entity under a short name, the way sea-orm's generated code is usually imported.
pub mod prelude {
    pub use super::api_key::Entity as ApiKey;
    pub use super::camera::Entity as Camera;
    pub use super::city::Entity as City;
    pub use super::frame_analysis::Entity as FrameAnalysis;
    pub use super::recording::Entity as Recording;
    pub use super::search_task::Entity as SearchTask;
    pub use super::status::{SearchStatus, TaskStatus};
    pub use super::trajectory_point::Entity as TrajectoryPoint;
    pub use super::vehicle_search::Entity as VehicleSearch;
}
