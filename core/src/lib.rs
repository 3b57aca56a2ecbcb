//! Sentinela's shared library: everything more than one binary needs.
//!
//! The API, the workers and the scheduler are thin binaries over this crate: they load the same
//! [`settings::Settings`], log through the same [`telemetry`], talk to the database through the
//! same [`repo`] functions and parse user input into the same [`domain`] types.
//!
//! # Layout
//! - [`settings`]: the typed settings tree (defaults → file → environment).
//! - [`telemetry`]: tracing set-up, JSON logs in production.
//! - [`domain`]: types that parse once — plates, colours, vehicle types, time ranges.
//! - [`estimate`]: a search's size and cost before it runs.
//! - [`files`]: recording and snapshot paths confined to their roots.
//! - [`db`]: connecting to PostgreSQL or SQLite and migrating.
//! - [`tenancy`]: the control database and where each city's data lives (shared or its own
//!   database), with lazily opened, bounded pools.
//! - [`jobs`], [`queue`]: job payloads and the queue backend (Redis or embedded SQLite).
//! - [`metrics`]: the process's Prometheus metrics (prometheus-client); [`metrics_server`]: the
//!   internal `/metrics` listener on `METRICS_BIND`.
//! - [`process`]: the stop flag raised by SIGTERM/SIGINT.
//! - [`pipeline`]: analysing one recording for one search (sampler → gate → cache → detector → points).
//! - [`repo`]: repository functions over sea-orm.
//! - [`seed`]: the idempotent demo city and cameras.
//! - [`trajectory`]: sightings read as visits (a return to a camera is a new visit).
//! - [`webhook`]: signed completion webhooks (signature, URL checks, delivery).
//! - [`detect`]: detector providers, criteria matching, detector concurrency limits.
//! - [`video`]: frame sampling, the motion gate, JPEG encoding, synthetic recordings.
//! - [`cli`]: one-line errors and exit codes for the binaries.

pub mod cli;
pub mod db;
pub mod detect;
pub mod domain;
pub mod estimate;
pub mod files;
pub mod jobs;
pub mod metrics;
pub mod metrics_server;
pub mod pipeline;
pub mod process;
pub mod queue;
pub mod repo;
pub mod seed;
pub mod settings;
pub mod telemetry;
pub mod tenancy;
pub mod trajectory;
pub mod video;
pub mod webhook;

pub use entity;
pub use entity::status::{SearchStatus, TaskStatus};
