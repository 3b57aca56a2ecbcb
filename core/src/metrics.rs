//! The process's Prometheus metrics (prometheus-client), shared by every binary: one registry per
//! process, exposed at `/metrics` by the api (port 8000), each worker (`METRICS_BIND`, 9999) and
//! the scheduler (9998).
//!
//! Names follow Prometheus conventions: base units in the name (`_seconds`, `_bytes`), counters
//! end in `_total` (prometheus-client appends it). The seed's `vms_detections_total` and
//! `vms_detection_latency_seconds` keep their names.
//!
//! Counters move where the work happens (the pipeline, the providers, the job handlers, the
//! scheduler). Gauges that describe shared state (queue depth, searches by status) are read from
//! the backends when scraped (`metrics_server`'s refresh, next to the endpoint), so every replica reports the same, current numbers.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `{provider}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// `local` or `rekognition`.
    pub provider: String,
}

/// `{provider, label}` of a detection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DetectionLabels {
    /// Detector.
    pub provider: String,
    /// Canonical vehicle type (`car`, `bus`…).
    pub label: String,
}

/// `{provider, operation, outcome}` of a detector call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// Detector.
    pub provider: String,
    /// `DetectLabels`, `DetectText`, `nanodet`, `tesseract`.
    pub operation: String,
    /// `ok`, `throttled`, `retried` (a transient failure tried again), `error`.
    pub outcome: String,
}

/// `{provider, operation}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// Detector.
    pub provider: String,
    /// Operation.
    pub operation: String,
}

/// `{job_type}` (not `job`, which Prometheus reserves for the scrape job).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// `search` (plan), `analyze`, or a periodic job's name.
    pub job_type: String,
}

/// `{job_type, outcome}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobOutcomeLabels {
    /// Job type.
    pub job_type: String,
    /// `succeeded`, `failed`, `retried`, `aborted` (jobs); `succeeded`, `failed`, `skipped`
    /// (scheduler runs).
    pub outcome: String,
}

/// `{outcome}` of a webhook delivery attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `delivered`, `retried`, `given_up`.
    pub outcome: String,
}

/// `{job_type, item}` of what a scheduler job did.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ItemLabels {
    /// Periodic job.
    pub job_type: String,
    /// What was counted (`recordings_deleted`, `bytes_freed`…).
    pub item: String,
}

/// `{queue, state}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// Queue name.
    pub queue: String,
    /// `pending`, `scheduled`, `running`, `done`, `dead`.
    pub state: String,
}

/// `{method, route, status}` of an HTTP request. Every value comes from a fixed set: the method
/// from [`http_method`], the route from the API's route templates (or `unmatched`), the status
/// from the codes the API answers with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// `GET`, `POST`… or `OTHER`.
    pub method: String,
    /// Route template (`/api/v1/searches/{id}`) or `unmatched`.
    pub route: String,
    /// Status code.
    pub status: String,
}

/// `{method, route}` of an HTTP request's latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRouteLabels {
    /// As in [`HttpLabels`].
    pub method: String,
    /// As in [`HttpLabels`].
    pub route: String,
}

/// A request method as a label: the standard methods by name, anything else `OTHER`, so a
/// client cannot add label values by inventing methods.
pub fn http_method(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    KNOWN
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("OTHER")
}

/// `{city_id}`: bounded by the cities an administrator created.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CityLabels {
    /// City id.
    pub city_id: String,
}

/// `{status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// Search status.
    pub status: String,
}

/// Every metric family of a Sentinela process.
pub struct Metrics {
    registry: Registry,
    /// `vms_detections_total{provider,label}`: vehicles the detector found.
    pub detections: Family<DetectionLabels, Counter>,
    /// `vms_detection_latency_seconds{provider}`: one frame's analysis by the detector.
    pub detection_latency: Family<ProviderLabels, Histogram>,
    /// `vms_detector_calls_total{provider,operation,outcome}`.
    pub detector_calls: Family<CallLabels, Counter>,
    /// `vms_detector_throttles_total{provider,operation}`.
    pub detector_throttles: Family<OperationLabels, Counter>,
    /// `vms_frames_sampled_total`: frames decoded out of recordings.
    pub frames_sampled: Counter,
    /// `vms_tasks_poisoned_total`: tasks failed because their recording was started too often
    /// without finishing (it kills or stalls the workers that open it).
    pub tasks_poisoned: Counter,
    /// `vms_snapshot_write_failures_total`: sightings stored without their snapshot because the
    /// snapshot storage could not be written (a full or read-only disk).
    pub snapshot_write_failures: Counter,
    /// `vms_frames_gate_skipped_total`: frames the motion gate found unchanged.
    pub frames_gate_skipped: Counter,
    /// `vms_frames_cache_hits_total`: frames whose analysis came from the cache.
    pub frames_cache_hits: Counter,
    /// `vms_tasks_replayed_total`: analysis tasks answered from the frame cache and stored
    /// snapshots without decoding their recording.
    pub tasks_replayed: Counter,
    /// `vms_jobs_started_total{job_type}`.
    pub jobs_started: Family<JobLabels, Counter>,
    /// `vms_jobs_finished_total{job_type,outcome}`.
    pub jobs_finished: Family<JobOutcomeLabels, Counter>,
    /// `vms_job_duration_seconds{job_type}`.
    pub job_duration: Family<JobLabels, Histogram>,
    /// `vms_searches_finished_total{status}`.
    pub searches_finished: Family<StatusLabels, Counter>,
    /// `vms_search_duration_seconds`: creation to final status.
    pub search_duration: Histogram,
    /// `vms_scheduler_runs_total{job_type,outcome}`.
    pub scheduler_runs: Family<JobOutcomeLabels, Counter>,
    /// `vms_scheduler_items_total{job_type,item}`.
    pub scheduler_items: Family<ItemLabels, Counter>,
    /// `vms_scheduler_run_duration_seconds{job_type}`.
    pub scheduler_duration: Family<JobLabels, Histogram>,
    /// `vms_queue_jobs{queue,state}` (read when scraped).
    pub queue_jobs: Family<QueueLabels, Gauge>,
    /// `vms_searches{status}` (read when scraped).
    pub searches: Family<StatusLabels, Gauge>,
    /// `vms_search_oldest_processing_age_seconds` (read when scraped; 0 when none).
    pub oldest_processing: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// `vms_city_detector_calls_total{city_id}`: calls the city's searches made (workers).
    pub city_calls: Family<CityLabels, Counter>,
    /// `vms_city_detector_cost_usd_total{city_id}`: their price (workers).
    pub city_cost: Family<CityLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// `vms_city_detector_calls_today{city_id}` (read when scraped).
    pub city_calls_today: Family<CityLabels, Gauge>,
    /// `vms_city_daily_detector_budget_calls{city_id}` (read when scraped; cities with a budget).
    pub city_budget: Family<CityLabels, Gauge>,
    /// `vms_webhook_deliveries_total{outcome}`: completion webhook attempts (scheduler).
    pub webhook_deliveries: Family<WebhookLabels, Counter>,
    /// `vms_city_database_up{city_id}`: 1 when a city's own database answered at the last
    /// scrape, 0 when not (cities in the shared database have no series).
    pub city_database_up: Family<CityLabels, Gauge>,
    /// `vms_http_requests_total{method,route,status}` (the API).
    pub http_requests: Family<HttpLabels, Counter>,
    /// `vms_http_request_duration_seconds{method,route}` (the API).
    pub http_latency: Family<HttpRouteLabels, Histogram>,
}

impl Metrics {
    fn new() -> Self {
        let mut r = Registry::default();
        let m = Self {
            detections: Family::default(),
            detection_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 2.0, 12))
            }),
            detector_calls: Family::default(),
            detector_throttles: Family::default(),
            frames_sampled: Counter::default(),
            tasks_poisoned: Counter::default(),
            snapshot_write_failures: Counter::default(),
            frames_gate_skipped: Counter::default(),
            frames_cache_hits: Counter::default(),
            tasks_replayed: Counter::default(),
            jobs_started: Family::default(),
            jobs_finished: Family::default(),
            job_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 2.0, 16))
            }),
            searches_finished: Family::default(),
            search_duration: Histogram::new(exponential_buckets(0.5, 2.0, 16)),
            scheduler_runs: Family::default(),
            scheduler_items: Family::default(),
            scheduler_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 16))
            }),
            queue_jobs: Family::default(),
            searches: Family::default(),
            oldest_processing: Gauge::default(),
            city_calls: Family::default(),
            city_cost: Family::default(),
            city_calls_today: Family::default(),
            city_budget: Family::default(),
            city_database_up: Family::default(),
            webhook_deliveries: Family::default(),
            http_requests: Family::default(),
            http_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            }),
            registry: Registry::default(),
        };
        r.register(
            "vms_detections",
            "Vehicles found by the detector, by provider and label",
            m.detections.clone(),
        );
        r.register(
            "vms_detection_latency_seconds",
            "Time the detector took to analyse one frame, by provider",
            m.detection_latency.clone(),
        );
        r.register(
            "vms_detector_calls",
            "Calls to the detector, by provider, operation and outcome",
            m.detector_calls.clone(),
        );
        r.register(
            "vms_detector_throttles",
            "Detector calls refused for throttling (each retried with backoff)",
            m.detector_throttles.clone(),
        );
        r.register(
            "vms_frames_sampled",
            "Frames sampled out of recordings (decoded, or answered from the cache without decoding)",
            m.frames_sampled.clone(),
        );
        r.register(
            "vms_tasks_poisoned",
            "Tasks failed because their recording was started too often without finishing",
            m.tasks_poisoned.clone(),
        );
        r.register(
            "vms_snapshot_write_failures",
            "Sightings stored without their snapshot because the snapshot storage could not be written",
            m.snapshot_write_failures.clone(),
        );
        r.register(
            "vms_frames_gate_skipped",
            "Sampled frames the motion gate found unchanged (previous analysis reused)",
            m.frames_gate_skipped.clone(),
        );
        r.register(
            "vms_frames_cache_hits",
            "Sampled frames whose analysis came from the frame-analysis cache",
            m.frames_cache_hits.clone(),
        );
        r.register(
            "vms_tasks_replayed",
            "Analysis tasks answered from the frame-analysis cache and stored snapshots, without decoding",
            m.tasks_replayed.clone(),
        );
        r.register(
            "vms_jobs_started",
            "Queue jobs started, by job type",
            m.jobs_started.clone(),
        );
        r.register(
            "vms_jobs_finished",
            "Queue jobs finished, by job type and outcome (succeeded; failed: its task failed for good; retried: will run again; aborted: its search is gone)",
            m.jobs_finished.clone(),
        );
        r.register(
            "vms_job_duration_seconds",
            "Time a queue job ran, by job type",
            m.job_duration.clone(),
        );
        r.register(
            "vms_searches_finished",
            "Searches that reached a final status, by status",
            m.searches_finished.clone(),
        );
        r.register(
            "vms_search_duration_seconds",
            "Time from a search's creation to its final status",
            m.search_duration.clone(),
        );
        r.register(
            "vms_scheduler_runs",
            "Periodic job runs, by job and outcome (succeeded, failed, skipped)",
            m.scheduler_runs.clone(),
        );
        r.register(
            "vms_scheduler_items",
            "What periodic jobs did (rows, files, bytes), by job and item",
            m.scheduler_items.clone(),
        );
        r.register(
            "vms_scheduler_run_duration_seconds",
            "Time a periodic job run took, by job",
            m.scheduler_duration.clone(),
        );
        r.register(
            "vms_queue_jobs",
            "Jobs in the queue by queue and state (read from the backend when scraped)",
            m.queue_jobs.clone(),
        );
        r.register(
            "vms_searches",
            "Searches by status (read from the database when scraped)",
            m.searches.clone(),
        );
        r.register(
            "vms_search_oldest_processing_age_seconds",
            "Age of the oldest search still processing, 0 when none (read when scraped)",
            m.oldest_processing.clone(),
        );
        r.register(
            "vms_city_detector_calls",
            "Detector calls made by a city's searches, by city",
            m.city_calls.clone(),
        );
        r.register(
            "vms_city_detector_cost_usd",
            "Price of the detector calls made by a city's searches in US dollars, by city",
            m.city_cost.clone(),
        );
        r.register(
            "vms_city_detector_calls_today",
            "Detector calls a city's searches made since 00:00 UTC (read from the database when scraped)",
            m.city_calls_today.clone(),
        );
        r.register(
            "vms_city_daily_detector_budget_calls",
            "A city's daily detector budget, for cities that have one (read when scraped)",
            m.city_budget.clone(),
        );
        r.register(
            "vms_webhook_deliveries",
            "Completion webhook attempts by outcome (delivered, retried, given_up)",
            m.webhook_deliveries.clone(),
        );
        r.register(
            "vms_city_database_up",
            "1 when a city's own database answered at the last scrape, 0 when not",
            m.city_database_up.clone(),
        );
        r.register(
            "vms_http_requests",
            "HTTP requests answered by the API, by method, route template and status",
            m.http_requests.clone(),
        );
        r.register(
            "vms_http_request_duration_seconds",
            "HTTP request latency of the API, by method and route template",
            m.http_latency.clone(),
        );
        Self { registry: r, ..m }
    }

    /// Counts the detector calls of a finished task against its city, with their price.
    pub fn city_detector_calls(&self, city_id: i64, calls: i64, price_per_call: f64) {
        if calls <= 0 {
            return;
        }
        let labels = CityLabels {
            city_id: city_id.to_string(),
        };
        self.city_calls
            .get_or_create(&labels)
            .inc_by(calls.unsigned_abs());
        self.city_cost
            .get_or_create(&labels)
            .inc_by(calls as f64 * price_per_call);
    }

    /// Counts one HTTP request (labels as in [`HttpLabels`]) and its latency.
    pub fn http_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status: status.to_string(),
            })
            .inc();
        self.http_latency
            .get_or_create(&HttpRouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Counts one detector call.
    pub fn detector_call(&self, provider: &str, operation: &str, outcome: &str) {
        self.detector_calls
            .get_or_create(&CallLabels {
                provider: provider.to_owned(),
                operation: operation.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts a throttled detector call.
    pub fn detector_throttled(&self, provider: &str, operation: &str) {
        self.detector_throttles
            .get_or_create(&OperationLabels {
                provider: provider.to_owned(),
                operation: operation.to_owned(),
            })
            .inc();
    }

    /// Counts a job's start.
    pub fn job_started(&self, job: &str) {
        self.jobs_started
            .get_or_create(&JobLabels {
                job_type: job.to_owned(),
            })
            .inc();
    }

    /// Counts a job's end and its duration.
    pub fn job_finished(&self, job: &str, outcome: &str, seconds: f64) {
        self.jobs_finished
            .get_or_create(&JobOutcomeLabels {
                job_type: job.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.job_duration
            .get_or_create(&JobLabels {
                job_type: job.to_owned(),
            })
            .observe(seconds);
    }

    /// Counts a search reaching its final status after `seconds`.
    pub fn search_finished(&self, status: &str, seconds: f64) {
        self.searches_finished
            .get_or_create(&StatusLabels {
                status: status.to_owned(),
            })
            .inc();
        self.search_duration.observe(seconds.max(0.0));
    }

    /// The registry in OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut body = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut body, &self.registry);
        body
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of [`to_prometheus_text`]'s output.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics text rewritten as Prometheus text format 0.0.4, for clients that do not ask for
/// OpenMetrics (`curl`, `promtool check metrics`): a counter family is named with its `_total`
/// suffix there, `# UNIT` lines do not exist, and there is no `# EOF`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(rewritten.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}
