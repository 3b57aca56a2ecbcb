//! The typed settings tree every binary loads the same way: defaults, then an optional TOML file,
//! then `SENTINELA__SECTION__KEY` environment variables, then the plain names of the contract
//! (`DATABASE_URL`, `REDIS_URL`, `SAMPLE_FPS`…), which win.
//!
//! Secrets (database and Redis URLs, the admin key) are [`SecretString`]s: never logged, and shown
//! redacted in error messages.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Which detector analyses frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectorProvider {
    /// NanoDet-m on OpenCV `dnn` plus Tesseract OCR, offline.
    Local,
    /// AWS Rekognition DetectLabels / DetectText.
    Rekognition,
}

impl DetectorProvider {
    /// The name stored with cached analyses and used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Rekognition => "rekognition",
        }
    }
}

/// Everything a Sentinela process can be configured with.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// `postgres://…` or `sqlite://path?mode=rwc` (`DATABASE_URL`).
    pub database_url: SecretString,
    /// Redis for the distributed queue (`REDIS_URL`); `None` selects the embedded SQLite queue.
    pub redis_url: Option<SecretString>,
    /// Bootstrap admin API key ensured at start-up (`SENTINELA_ADMIN_KEY`).
    pub admin_key: Option<SecretString>,
    /// HTTP API.
    pub api: ApiSettings,
    /// Job workers.
    pub worker: WorkerSettings,
    /// Periodic jobs.
    pub scheduler: SchedulerSettings,
    /// Frame sampling.
    pub sampler: SamplerSettings,
    /// Detector providers.
    pub detector: DetectorSettings,
    /// Files on disk.
    pub storage: StorageSettings,
    /// Connections to cities' own databases.
    pub city_databases: CityDatabaseSettings,
}

/// How a process connects to the cities that have their own database. Pools are opened lazily,
/// on a city's first use, and hold no connection while idle.
#[derive(Debug, Clone, Deserialize)]
pub struct CityDatabaseSettings {
    /// Connections one process may hold to one city's database.
    pub max_connections: u32,
    /// An idle connection is closed after this many seconds.
    pub idle_timeout_secs: u64,
    /// How long a query waits for a connection before the city is reported unavailable.
    pub acquire_timeout_secs: u64,
    /// How long a process trusts what it read about where a city's data lives.
    pub route_ttl_secs: u64,
}

/// HTTP API settings.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiSettings {
    /// Listen address (`API_BIND`).
    pub bind: String,
    /// Longest search window accepted, in hours.
    pub max_search_window_hours: u32,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// Internal `/metrics` listen address (`METRICS_BIND`); loopback by default, never the
    /// public listener.
    pub metrics_bind: String,
    /// Progress streams (server-sent events) one API key may hold open at once.
    pub max_streams_per_key: usize,
    /// Most recordings (tasks) one search may cover, unless its city says otherwise.
    pub max_search_recordings: u64,
    /// Most frames one search may sample, unless its city says otherwise.
    pub max_search_frames: u64,
    /// Searches pending or processing at once per city, unless the city says otherwise.
    pub max_searches_in_flight: u32,
    /// Requests one API key may make per minute (across API replicas on Redis).
    pub requests_per_minute_per_key: u32,
    /// How long an API replica trusts an API key or a city it read (0: never cached). A key
    /// revoked, or a city changed, through another replica or directly in the database takes
    /// effect within this many seconds; through this replica at once.
    pub auth_cache_secs: u64,
    /// A vehicle unseen by a camera for longer than this, then seen there again, starts a new
    /// visit on the trajectory.
    pub visit_gap_secs: u64,
    /// MediaMTX's playback server as operators reach it (`https://host:9996`); when set, each
    /// sighting of a recording from a MediaMTX path carries a playback URL. Unset: none.
    pub playback_url: Option<String>,
    /// A map tile server for the web console's map (`https://tiles.example/{z}/{x}/{y}.png`,
    /// the usual XYZ scheme). Unset: the map draws the cameras by their coordinates on a plain
    /// canvas, which needs nothing from the network.
    pub map_tile_url: Option<String>,
}

/// Worker settings.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSettings {
    /// Recording jobs in flight per worker process (`WORKER_CONCURRENCY`).
    pub concurrency: usize,
    /// `/metrics` listen address (`METRICS_BIND`).
    pub metrics_bind: String,
    /// A job running longer than this is failed and retried.
    pub job_timeout_secs: u64,
    /// How long SIGTERM waits for running jobs before exiting.
    pub drain_timeout_secs: u64,
    /// Heartbeat and poll interval of the queue: bounds how fast an idle worker sees a new job.
    pub poll_interval_ms: u64,
    /// Jobs of one search on the queue at once: the rest wait in the database and are queued as
    /// these finish, so a big search cannot hold the workers away from other cities' searches.
    pub queued_tasks_per_search: u32,
}

/// Scheduler settings. Each `*_cron` is a cron expression with a seconds field
/// (`sec min hour day month weekday`; a five-field crontab line is read as firing at second 0),
/// or `off` to disable the job.
#[derive(Debug, Clone, Deserialize)]
pub struct SchedulerSettings {
    /// `/metrics` listen address of the scheduler (`METRICS_BIND`).
    pub metrics_bind: String,
    /// Recording retention schedule.
    pub retention_cron: String,
    /// Search cleanup schedule.
    pub cleanup_cron: String,
    /// Stuck-task recovery schedule.
    pub recover_cron: String,
    /// Recording index sync schedule.
    pub index_sync_cron: String,
    /// Queue hygiene schedule.
    pub queue_hygiene_cron: String,
    /// Completion webhook delivery schedule.
    pub webhooks_cron: String,
    /// A webhook is given up after this many failed attempts.
    pub webhook_max_attempts: i32,
    /// Wait before the second attempt; it doubles for each further one (capped at an hour).
    pub webhook_retry_base_secs: u64,
    /// Whether webhooks may go to internal addresses (loopback, private networks, link-local).
    /// Off by default: a city key must not make the platform call its own network.
    pub webhook_allow_internal: bool,
    /// Searches that ended more than this many days ago are deleted with their points and
    /// snapshots.
    pub search_max_age_days: u32,
    /// A task `processing` (or `pending`) for longer than this counts as stuck.
    pub task_lease_secs: u64,
    /// Stuck-task recovery gives up on a task after this many attempts.
    pub max_task_attempts: i32,
    /// Finished and dead queue records older than this are pruned.
    pub queue_keep_hours: u64,
    /// Time zone MediaMTX names its segments in (`RECORDINGS_TZ`, an IANA name).
    pub recordings_timezone: String,
    /// The newest segment of a camera counts as complete once unmodified for this long.
    pub segment_settle_secs: u64,
}

/// Frame sampling settings.
#[derive(Debug, Clone, Deserialize)]
pub struct SamplerSettings {
    /// Frames sampled per second of video (`SAMPLE_FPS`).
    pub fps: f64,
    /// JPEG quality of frames sent to the detector, 1–100.
    pub jpeg_quality: i32,
    /// Frames larger than this (longest side, pixels) are scaled down before encoding.
    pub max_dimension: i32,
    /// Mean absolute grey-level difference (0–255) under which a frame counts as unchanged.
    pub gate_threshold: f64,
    /// Consecutive sightings on one camera are thinned to one per this many seconds (the most
    /// confident), on a grid anchored at 00:00 UTC.
    pub sighting_interval_secs: f64,
}

/// Detector settings.
#[derive(Debug, Clone, Deserialize)]
pub struct DetectorSettings {
    /// `local` or `rekognition` (`DETECTOR`).
    pub provider: DetectorProvider,
    /// Detector calls in flight per process (`DETECTOR_MAX_IN_FLIGHT`).
    pub max_in_flight: usize,
    /// Detector calls per second across the cluster (`DETECTOR_RATE_LIMIT`); `None` is unlimited.
    pub rate_limit: Option<f64>,
    /// The local provider's ONNX model.
    pub model_path: PathBuf,
    /// Detections below this confidence (0–1) are dropped.
    pub min_confidence: f64,
    /// The local provider also looks at square tiles of wide frames (two for 16:9), which finds
    /// small and half-hidden vehicles the whole frame misses, for three runs of the network per
    /// call instead of one.
    pub tiles: bool,
    /// Price of one detector call in US dollars, for estimates; unset = the provider's list price
    /// (Rekognition US$0.001 per image, the local model free).
    pub price_per_call_usd: Option<f64>,
    /// Detector calls each city's searches may make per UTC day, unless the city says otherwise;
    /// unset = no budget.
    pub daily_calls_per_city: Option<u64>,
}

impl DetectorSettings {
    /// The price of one call used in estimates.
    pub fn price_per_call(&self) -> f64 {
        self.price_per_call_usd.unwrap_or(match self.provider {
            DetectorProvider::Rekognition => 0.001,
            DetectorProvider::Local => 0.0,
        })
    }
}

/// Where files live.
#[derive(Debug, Clone, Deserialize)]
pub struct StorageSettings {
    /// MediaMTX recordPath root (`RECORDINGS_DIR`).
    pub recordings_dir: PathBuf,
    /// Matched-frame JPEGs (`SNAPSHOT_DIR`).
    pub snapshot_dir: PathBuf,
    /// Bytes of snapshots each city's stored searches may hold, unless the city says otherwise;
    /// unset = no budget. Past it, sightings are stored without a snapshot.
    pub max_snapshot_bytes_per_city: Option<u64>,
}

/// A setting that cannot be used, naming the variable (or key) and the reason.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A plain environment variable with a bad value.
    #[error("{var}: {message}")]
    Invalid {
        /// The variable or settings key.
        var: String,
        /// What is wrong with it.
        message: String,
    },
    /// The settings file or the merged tree could not be read.
    #[error("settings: {0}")]
    Config(#[from] config::ConfigError),
}

/// The kind of value a plain variable holds, checked before merging so errors name the variable.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Float,
    Count,
    Provider,
}

/// The plain variable names of the contract and the settings keys they set.
const PLAIN_VARS: &[(&str, &str, Kind)] = &[
    ("DATABASE_URL", "database_url", Kind::Text),
    ("REDIS_URL", "redis_url", Kind::Text),
    ("SENTINELA_ADMIN_KEY", "admin_key", Kind::Text),
    ("API_BIND", "api.bind", Kind::Text),
    ("METRICS_BIND", "api.metrics_bind", Kind::Text),
    ("METRICS_BIND", "worker.metrics_bind", Kind::Text),
    ("METRICS_BIND", "scheduler.metrics_bind", Kind::Text),
    ("RECORDINGS_TZ", "scheduler.recordings_timezone", Kind::Text),
    ("DETECTOR", "detector.provider", Kind::Provider),
    ("SAMPLE_FPS", "sampler.fps", Kind::Float),
    ("WORKER_CONCURRENCY", "worker.concurrency", Kind::Count),
    (
        "DETECTOR_MAX_IN_FLIGHT",
        "detector.max_in_flight",
        Kind::Count,
    ),
    ("DETECTOR_RATE_LIMIT", "detector.rate_limit", Kind::Float),
    ("RECORDINGS_DIR", "storage.recordings_dir", Kind::Text),
    ("SNAPSHOT_DIR", "storage.snapshot_dir", Kind::Text),
];

/// The secrets that may also be given as a file (`DATABASE_URL_FILE`…), as Docker and
/// Kubernetes secrets are mounted.
const SECRET_VARS: [&str; 3] = ["DATABASE_URL", "REDIS_URL", "SENTINELA_ADMIN_KEY"];

/// Reads `<VAR>_FILE` for each secret: the file's content, trimmed, is the value. Setting both
/// `VAR` and `VAR_FILE` is refused, so it is never unclear which one is used.
fn secret_files(
    env: &HashMap<String, String>,
) -> Result<HashMap<&'static str, String>, SettingsError> {
    let mut values = HashMap::new();
    for var in SECRET_VARS {
        let file_var = format!("{var}_FILE");
        let Some(path) = env.get(&file_var).filter(|p| !p.trim().is_empty()) else {
            continue;
        };
        if env.get(var).is_some_and(|v| !v.trim().is_empty()) {
            return Err(SettingsError::Invalid {
                var: file_var,
                message: format!("set either {var} or {var}_FILE, not both"),
            });
        }
        let value = std::fs::read_to_string(path.trim()).map_err(|e| SettingsError::Invalid {
            var: file_var.clone(),
            message: format!("cannot read {}: {e}", path.trim()),
        })?;
        values.insert(var, value.trim().to_owned());
    }
    Ok(values)
}

/// The default database: a SQLite file in the working directory (or in systemd's
/// `STATE_DIRECTORY`), created on first use.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://sentinela.db?mode=rwc";

impl Settings {
    /// Loads settings from the process environment and the optional file named by
    /// `SENTINELA_CONFIG` (or `sentinela.toml` in the working directory, if present).
    ///
    /// # Errors
    /// [`SettingsError`] naming the variable whose value is unusable.
    pub fn load() -> Result<Self, SettingsError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let file = env.get("SENTINELA_CONFIG").map(PathBuf::from);
        Self::from_sources(file.as_deref(), &env)
    }

    /// Loads settings from an explicit file and environment map (tests use this).
    ///
    /// # Errors
    /// [`SettingsError`] naming the variable whose value is unusable, or the file that is
    /// missing or malformed.
    pub fn from_sources(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Self, SettingsError> {
        // Where data goes when nothing says otherwise: the working directory (the demo, a
        // checkout), or systemd's state directory (`StateDirectory=` sets STATE_DIRECTORY,
        // /var/lib/sentinela in the Debian package's units).
        let state = env
            .get("STATE_DIRECTORY")
            .and_then(|dirs| dirs.split(':').find(|d| !d.is_empty()))
            .map(PathBuf::from);
        let (database_url, recordings, snapshots) = match &state {
            Some(dir) => (
                format!("sqlite://{}?mode=rwc", dir.join("sentinela.db").display()),
                dir.join("recordings").display().to_string(),
                dir.join("snapshots").display().to_string(),
            ),
            None => (
                DEFAULT_DATABASE_URL.to_owned(),
                "./recordings".to_owned(),
                "./snapshots".to_owned(),
            ),
        };
        let mut builder = Config::builder()
            .set_default("database_url", database_url)?
            .set_default("api.bind", "0.0.0.0:8000")?
            .set_default("api.max_search_window_hours", 24 * 7)?
            .set_default("api.body_limit_bytes", 64 * 1024)?
            .set_default("api.metrics_bind", "127.0.0.1:9464")?
            .set_default("api.max_streams_per_key", 4)?
            .set_default("api.max_search_recordings", 20_000)?
            .set_default("api.max_search_frames", 1_000_000)?
            .set_default("api.max_searches_in_flight", 4)?
            .set_default("api.requests_per_minute_per_key", 600)?
            .set_default("api.auth_cache_secs", 5)?
            .set_default("api.visit_gap_secs", 60)?
            .set_default(
                "worker.concurrency",
                crate::process::default_concurrency() as u64,
            )?
            .set_default("worker.metrics_bind", "0.0.0.0:9999")?
            .set_default("worker.job_timeout_secs", 30 * 60)?
            .set_default("worker.drain_timeout_secs", 60)?
            .set_default("worker.poll_interval_ms", 500)?
            .set_default("worker.queued_tasks_per_search", 8)?
            .set_default("city_databases.max_connections", 5)?
            .set_default("city_databases.idle_timeout_secs", 60)?
            .set_default("city_databases.acquire_timeout_secs", 5)?
            .set_default("city_databases.route_ttl_secs", 30)?
            .set_default("scheduler.metrics_bind", "0.0.0.0:9998")?
            .set_default("scheduler.retention_cron", "0 */10 * * * *")?
            .set_default("scheduler.cleanup_cron", "0 30 3 * * *")?
            .set_default("scheduler.recover_cron", "30 * * * * *")?
            .set_default("scheduler.index_sync_cron", "*/20 * * * * *")?
            .set_default("scheduler.queue_hygiene_cron", "0 15 * * * *")?
            .set_default("scheduler.webhooks_cron", "*/5 * * * * *")?
            .set_default("scheduler.webhook_max_attempts", 6)?
            .set_default("scheduler.webhook_retry_base_secs", 10)?
            .set_default("scheduler.webhook_allow_internal", false)?
            .set_default("scheduler.search_max_age_days", 90)?
            .set_default("scheduler.task_lease_secs", 60 * 60)?
            .set_default("scheduler.max_task_attempts", 5)?
            .set_default("scheduler.queue_keep_hours", 24 * 7)?
            .set_default("scheduler.recordings_timezone", "UTC")?
            .set_default("scheduler.segment_settle_secs", 90)?
            .set_default("sampler.fps", 1.0)?
            .set_default("sampler.jpeg_quality", 85)?
            .set_default("sampler.max_dimension", 1280)?
            .set_default("sampler.gate_threshold", 2.0)?
            .set_default("sampler.sighting_interval_secs", 1.0)?
            .set_default("detector.provider", "local")?
            .set_default("detector.max_in_flight", 8)?
            .set_default(
                "detector.model_path",
                crate::detect::local::DEFAULT_MODEL_PATH,
            )?
            .set_default("detector.min_confidence", 0.35)?
            .set_default("detector.tiles", true)?
            .set_default("storage.recordings_dir", recordings)?
            .set_default("storage.snapshot_dir", snapshots)?;

        builder = match file {
            Some(path) => {
                builder.add_source(File::from(path).format(FileFormat::Toml).required(true))
            }
            None => {
                builder.add_source(File::new("sentinela.toml", FileFormat::Toml).required(false))
            }
        };
        builder = builder.add_source(
            Environment::with_prefix("SENTINELA")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env.clone())),
        );

        let from_files = secret_files(env)?;
        for (var, key, kind) in PLAIN_VARS {
            let Some(raw) = from_files.get(*var).or_else(|| env.get(*var)) else {
                continue;
            };
            let value = raw.trim();
            // An empty optional variable means "unset", as in most compose `.env` files.
            if value.is_empty() {
                continue;
            }
            check_kind(var, value, *kind)?;
            builder = builder.set_override(*key, value)?;
        }

        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |var: &str, message: String| {
            Err(SettingsError::Invalid {
                var: var.to_owned(),
                message,
            })
        };
        crate::db::Backend::from_url(self.database_url.expose_secret())?;
        if let Some(redis) = &self.redis_url {
            let url = redis.expose_secret();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return invalid(
                    "REDIS_URL",
                    format!(
                        "{:?} is not a Redis URL (expected redis://host:port/db)",
                        crate::db::redact_url(url)
                    ),
                );
            }
        }
        if !(self.sampler.fps > 0.0 && self.sampler.fps <= 30.0) {
            return invalid(
                "SAMPLE_FPS",
                format!("{} is out of range (0 < fps ≤ 30)", self.sampler.fps),
            );
        }
        if self.worker.concurrency == 0 {
            return invalid("WORKER_CONCURRENCY", "must be at least 1".into());
        }
        if self.detector.max_in_flight == 0 {
            return invalid("DETECTOR_MAX_IN_FLIGHT", "must be at least 1".into());
        }
        if let Some(rate) = self.detector.rate_limit
            && rate <= 0.0
        {
            return invalid(
                "DETECTOR_RATE_LIMIT",
                format!("{rate} must be a positive number of calls per second"),
            );
        }
        if !(1..=100).contains(&self.sampler.jpeg_quality) {
            return invalid(
                "sampler.jpeg_quality",
                format!("{} is out of range 1–100", self.sampler.jpeg_quality),
            );
        }
        if self.scheduler.max_task_attempts < 1 {
            return invalid("scheduler.max_task_attempts", "must be at least 1".into());
        }
        if self.scheduler.task_lease_secs <= self.worker.job_timeout_secs {
            return invalid(
                "scheduler.task_lease_secs",
                format!(
                    "{} must be longer than worker.job_timeout_secs ({}), or live tasks would be re-run",
                    self.scheduler.task_lease_secs, self.worker.job_timeout_secs
                ),
            );
        }
        if !(self.sampler.sighting_interval_secs > 0.0
            && self.sampler.sighting_interval_secs <= 3600.0)
        {
            return invalid(
                "sampler.sighting_interval_secs",
                format!(
                    "{} is out of range (0 < seconds ≤ 3600)",
                    self.sampler.sighting_interval_secs
                ),
            );
        }
        if self.city_databases.max_connections == 0 || self.city_databases.acquire_timeout_secs == 0
        {
            return invalid(
                "city_databases.max_connections",
                "connections and the acquire timeout must be at least 1".into(),
            );
        }
        if self.worker.queued_tasks_per_search == 0 {
            return invalid(
                "worker.queued_tasks_per_search",
                "must be at least 1".into(),
            );
        }
        if self.api.max_searches_in_flight == 0 || self.api.requests_per_minute_per_key == 0 {
            return invalid(
                "api.max_searches_in_flight",
                "the search and request quotas must be at least 1".into(),
            );
        }
        if let Some(price) = self.detector.price_per_call_usd
            && !(price >= 0.0 && price.is_finite())
        {
            return invalid(
                "detector.price_per_call_usd",
                format!("{price} must be a price of zero or more"),
            );
        }
        if self.api.max_streams_per_key == 0 {
            return invalid("api.max_streams_per_key", "must be at least 1".into());
        }
        if self.api.max_search_window_hours == 0 {
            return invalid("api.max_search_window_hours", "must be at least 1".into());
        }
        if let Some(url) = &self.api.map_tile_url
            && !((url.starts_with("https://") || url.starts_with("http://"))
                && ["{z}", "{x}", "{y}"].iter().all(|p| url.contains(p))
                && !url.contains(['"', '\'', ' ', ';']))
        {
            return invalid(
                "api.map_tile_url",
                format!("{url:?} must be an http(s) URL with {{z}}, {{x}} and {{y}}"),
            );
        }
        Ok(())
    }

    /// Whether the queue is the embedded SQLite one (no `REDIS_URL`).
    pub fn embedded_queue(&self) -> bool {
        self.redis_url.is_none()
    }
}

fn check_kind(var: &str, value: &str, kind: Kind) -> Result<(), SettingsError> {
    let error = |message: String| SettingsError::Invalid {
        var: var.to_owned(),
        message,
    };
    match kind {
        Kind::Text => Ok(()),
        Kind::Float => value
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(drop)
            .ok_or_else(|| error(format!("{value:?} is not a number"))),
        Kind::Count => value
            .parse::<usize>()
            .map(drop)
            .map_err(|_| error(format!("{value:?} is not a whole number"))),
        Kind::Provider => match value {
            "local" | "rekognition" => Ok(()),
            _ => Err(error(format!(
                "{value:?} is not a detector (expected local or rekognition)"
            ))),
        },
    }
}
