//! Sentinela's HTTP API (poem + poem-openapi), as a library so tests can start it on port 0.
//!
//! # Layout
//! - [`Cli`], [`run`]: the `sentinela-api` binary (`serve`, `seed`, `migrate`, `--standalone`,
//!   `--demo`).
//! - [`Application`], [`Mode`]: what the binary runs and the tests start — build from settings and
//!   mode, then run until stopped.
//! - [`AppState`], [`app`], [`serve`]: the HTTP application and its server loop.
//! - [`metrics`]: `/metrics` (HTTP requests and queue depth).
//! - [`error`]: the one error type, an RFC 9457 problem detail with `code` and the fields at
//!   fault; [`body_check`] lists every fault of a refused JSON body.
//! - [`auth`]: API keys.
//! - [`routes`]: one module per resource.
//! - [`demo`]: the demo city and its generated recordings.
//! - [`console`]: the web console at `/console` (Portuguese first).

pub mod auth;
pub mod body_check;
pub mod cache;
pub mod console;
pub mod demo;
pub mod error;
pub mod metrics;
pub mod quota;
pub mod routes;
pub mod starts;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::middleware::{CatchPanic, Tracing};
use poem::{Endpoint, EndpointExt, Route, Server};
use poem_openapi::OpenApiService;
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;
use sentinela_core::queue::JobQueue;
use sentinela_core::settings::Settings;
use sentinela_core::tenancy::{self, Databases};
use sentinela_core::{db, seed};

/// Command line of `sentinela-api`.
#[derive(Debug, Parser)]
#[command(
    name = "sentinela-api",
    version,
    about = "Sentinela HTTP API: vehicle searches over a city's camera recordings",
    long_about = "Sentinela HTTP API: vehicle searches over a city's camera recordings.\n\n\
        Settings come from the environment (DATABASE_URL, REDIS_URL, API_BIND, DETECTOR, \
        SAMPLE_FPS, SENTINELA_ADMIN_KEY, …; see .env.example) and an optional sentinela.toml. \
        Swagger UI is served at /docs, the OpenAPI document at /openapi.json."
)]
pub struct Cli {
    /// Run api + workers in one process (embedded mode: SQLite queue, local detector).
    #[arg(long)]
    pub standalone: bool,
    /// With --standalone: also create a demo city, cameras and sample recordings.
    #[arg(long, requires = "standalone")]
    pub demo: bool,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Idempotently create the demo city and its cameras.
    Seed,
    /// Print the OpenAPI document (what `/openapi.json` serves) and exit; needs no database.
    /// The repository keeps it as `docs/openapi.json`.
    Openapi,
}

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The control database and the routes to every city's data.
    pub dbs: Arc<Databases>,
    /// Job queue.
    pub queue: JobQueue,
    /// Snapshot files.
    pub snapshot_dir: PathBuf,
    /// Recording files.
    pub recordings_dir: PathBuf,
    /// Longest search window, hours.
    pub max_window_hours: u32,
    /// Progress streams open per API key.
    pub streams: routes::searches::StreamSlots,
    /// Requests per API key per minute.
    pub quota: quota::RequestQuota,
    /// What searches are estimated and capped with.
    pub bounds: SearchBounds,
    /// Jobs of one search on the queue at once (`worker.queued_tasks_per_search`), for retries.
    pub queue_window: u32,
    /// Longest absence from a camera within one visit.
    pub visit_gap: chrono::Duration,
    /// MediaMTX's playback server for operators, when configured.
    pub playback_url: Option<String>,
    /// The console map's tile server, when configured.
    pub map_tile_url: Option<String>,
    /// JPEG quality of the evidence images.
    pub jpeg_quality: i32,
    /// API keys by the hash of their secret, trusted for `api.auth_cache_secs`.
    pub keys: Arc<cache::TtlCache<String, sentinela_core::entity::api_key::Model>>,
    /// Cities by id, trusted for `api.auth_cache_secs`.
    pub cities: Arc<cache::TtlCache<i64, sentinela_core::entity::city::Model>>,
    /// Each city's observed detector rate (calls per analysed frame over its latest searches,
    /// `None` without history), an input of every estimate, trusted for `api.auth_cache_secs`.
    pub detector_rates: Arc<cache::TtlCache<i64, Option<f64>>>,
    /// Search starts of the cities in the shared database, written and enqueued in batches.
    pub starts: starts::Starts,
}

impl AppState {
    /// The control database (cities, API keys, id directories).
    pub fn control(&self) -> &DatabaseConnection {
        self.dbs.control()
    }

    /// A city (cached for `api.auth_cache_secs`: its caps and quotas are read on every search).
    ///
    /// # Errors
    /// The control database's error.
    pub async fn city(
        &self,
        id: i64,
    ) -> Result<Option<sentinela_core::entity::city::Model>, sea_orm::DbErr> {
        if let Some(city) = self.cities.get(&id) {
            return Ok(Some(city));
        }
        let city = sentinela_core::repo::cities::get(self.control(), id).await?;
        if let Some(city) = &city {
            self.cities.put(id, city.clone());
        }
        Ok(city)
    }

    /// Forgets what this replica cached about a city (after changing or deleting it).
    pub fn forget_city(&self, id: i64) {
        self.cities.forget(|c| c.id == id);
    }

    /// Forgets what this replica cached about an API key (after revoking or changing it).
    pub fn forget_key(&self, id: i64) {
        self.keys.forget(|k| k.id == id);
    }

    /// The database holding `city_id`'s data.
    ///
    /// # Errors
    /// 404 for an unknown city, 503 when its database URL cannot be used, the control
    /// database's error otherwise.
    pub async fn city_db(&self, city_id: i64) -> Result<DatabaseConnection, error::ApiError> {
        Ok(self.city_db_routed(city_id).await?.0)
    }

    /// [`AppState::city_db`], and whether it is the shared (control) database.
    ///
    /// # Errors
    /// See [`AppState::city_db`].
    pub async fn city_db_routed(
        &self,
        city_id: i64,
    ) -> Result<(DatabaseConnection, bool), error::ApiError> {
        use sentinela_core::tenancy::RouteError;
        self.dbs.city_routed(city_id).await.map_err(|e| match e {
            RouteError::UnknownCity(id) => error::ApiError::not_found("city", id),
            RouteError::BadUrl { city, .. } => {
                tracing::error!(error = %e, "city database misconfigured");
                error::ApiError::unavailable(format!(
                    "the database of city {city} is misconfigured; an administrator must correct it"
                ))
            }
            RouteError::Control(e) => e.into(),
        })
    }
}

/// What searches are estimated and capped with (from settings; caps overridable per city).
#[derive(Debug, Clone)]
pub struct SearchBounds {
    /// Frames sampled per second.
    pub fps: f64,
    /// The detector provider's name.
    pub provider: &'static str,
    /// Price of one detector call, US dollars.
    pub price_per_call: f64,
    /// Recordings per search.
    pub max_recordings: u64,
    /// Frames per search.
    pub max_frames: u64,
    /// Searches in flight per city.
    pub max_in_flight: u32,
    /// Detector calls per city per UTC day (unless the city says otherwise); `None` = no budget.
    pub daily_budget: Option<i64>,
}

impl AppState {
    /// State from settings and connections. Must be called within a Tokio runtime (it spawns
    /// the search starts' runners).
    pub fn new(settings: &Settings, dbs: Arc<Databases>, queue: JobQueue) -> Self {
        let quota = quota::RequestQuota::new(settings.api.requests_per_minute_per_key, &queue);
        let trusted = std::time::Duration::from_secs(settings.api.auth_cache_secs);
        Self {
            keys: Arc::new(cache::TtlCache::new(trusted)),
            cities: Arc::new(cache::TtlCache::new(trusted)),
            detector_rates: Arc::new(cache::TtlCache::new(trusted)),
            starts: starts::Starts::spawn(dbs.control().clone(), queue.clone()),
            dbs,
            queue,
            snapshot_dir: settings.storage.snapshot_dir.clone(),
            queue_window: settings.worker.queued_tasks_per_search,
            visit_gap: chrono::Duration::seconds(
                i64::try_from(settings.api.visit_gap_secs).unwrap_or(i64::MAX / 1000),
            ),
            playback_url: settings
                .api
                .playback_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_owned())
                .filter(|u| !u.is_empty()),
            map_tile_url: settings.api.map_tile_url.clone().filter(|u| !u.is_empty()),
            jpeg_quality: settings.sampler.jpeg_quality,
            recordings_dir: settings.storage.recordings_dir.clone(),
            max_window_hours: settings.api.max_search_window_hours,
            streams: routes::searches::StreamSlots::new(settings.api.max_streams_per_key),
            quota,
            bounds: SearchBounds {
                fps: settings.sampler.fps,
                provider: settings.detector.provider.as_str(),
                price_per_call: settings.detector.price_per_call(),
                max_recordings: settings.api.max_search_recordings,
                max_frames: settings.api.max_search_frames,
                max_in_flight: settings.api.max_searches_in_flight,
                daily_budget: settings
                    .detector
                    .daily_calls_per_city
                    .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            },
        }
    }
}

fn openapi_service() -> OpenApiService<impl poem_openapi::OpenApi, ()> {
    OpenApiService::new(routes::api(), "Sentinela", env!("CARGO_PKG_VERSION")).description(
        "Where did the vehicle go? Searches over a city's camera recordings.\n\n\
             Authenticate with `Authorization: Bearer <API key>`. A city key sees only its city \
             (another city's objects answer 404); an admin key sees every city and administers. \
             Lists are paged with `limit` and `cursor` (the previous page's `next_cursor`). \
             Errors are RFC 9457 problem details (`application/problem+json`: `type`, `title`, \
             `status`, `detail`, plus `code`, the `field` at fault and, when a request has \
             several, every one in `errors`). `POST /api/v1/searches` takes an \
             `Idempotency-Key`.",
    )
}

/// The OpenAPI document `/openapi.json` serves (and `docs/openapi.json` keeps): the generated
/// spec plus OpenAPI links from each create operation's answer to the operations on the object
/// it created, pretty-printed.
pub fn openapi_document() -> String {
    let spec = openapi_service().spec();
    let mut doc: serde_json::Value = match serde_json::from_str(&spec) {
        Ok(doc) => doc,
        // The generator's own output; if it ever fails to parse, serve it unchanged.
        Err(_) => return spec,
    };
    add_links(&mut doc);
    mark_nullable(&mut doc);
    describe_event_streams(&mut doc);
    let enums: Vec<String> = doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, schema)| schema.get("enum").is_some())
        .map(|(name, _)| format!("#/components/schemas/{name}"))
        .collect();
    plain_enum_refs(&mut doc, &enums);
    serde_json::to_string_pretty(&doc).unwrap_or(spec)
}

/// poem-openapi gives a described field of an enum type as `allOf: [{$ref}, {description}]`,
/// which generators refuse ("cannot take allOf a non-object"); such a field becomes the plain
/// `$ref` (the enum's own schema carries its description).
fn plain_enum_refs(value: &mut serde_json::Value, enums: &[String]) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let enum_ref = map
                .get("allOf")
                .and_then(Value::as_array)
                .and_then(|all| all.first())
                .and_then(|first| first.get("$ref"))
                .and_then(Value::as_str)
                .filter(|r| enums.iter().any(|e| e == r))
                .map(str::to_owned);
            if let Some(r) = enum_ref {
                map.clear();
                map.insert("$ref".into(), Value::String(r));
                return;
            }
            for v in map.values_mut() {
                plain_enum_refs(v, enums);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| plain_enum_refs(v, enums)),
        _ => {}
    }
}

/// poem-openapi describes a `text/event-stream` answer as an array of its events, which no event
/// matches; each event is described instead as what arrives: an `event` name and its `data`, the
/// JSON of the schema the generator named (OpenAPI 3.0 has no word for a stream's items).
fn describe_event_streams(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for op in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|ops| ops.values_mut())
    {
        let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
            continue;
        };
        for answer in responses.values_mut() {
            let Some(media) = answer.pointer_mut("/content/text~1event-stream") else {
                continue;
            };
            let item = media
                .pointer("/schema/items/$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.rsplit('/').next())
                .unwrap_or("event")
                .to_owned();
            media["schema"] = json!({
                "type": "object",
                "description": format!("One server-sent event: its name and, as `data`, a {item} as JSON."),
                "properties": {
                    "event": {"type": "string"},
                    "data": {"type": "string", "description": format!("A {item}, JSON.")},
                    "id": {"type": "string"},
                    "retry": {"type": "integer"}
                },
                "required": ["data"]
            });
        }
    }
}

/// The PATCH fields where `null` means "clear it" (poem-openapi's `MaybeUndefined`, whose schema
/// it does not mark): marked `nullable`, so clients may send it.
fn mark_nullable(doc: &mut serde_json::Value) {
    let fields: [(&str, &[&str]); 3] = [
        (
            "UpdateCity",
            &[
                "max_storage_bytes",
                "max_search_recordings",
                "max_search_frames",
                "max_searches_in_flight",
                "daily_detector_calls",
                "max_snapshot_bytes",
            ],
        ),
        (
            "UpdateCamera",
            &["location", "latitude", "longitude", "mediamtx_path"],
        ),
        ("UpdateApiKey", &["expires_at"]),
    ];
    for (schema, names) in fields {
        for name in names {
            if let Some(property) = doc
                .pointer_mut(&format!("/components/schemas/{schema}/properties/{name}"))
                .and_then(serde_json::Value::as_object_mut)
            {
                property.insert("nullable".into(), serde_json::Value::Bool(true));
            }
        }
    }
}

/// Adds `links` to the answers of the create operations: from the new object's id (in the
/// answer's body) to every operation on `item` and below it whose path parameters are all given.
fn add_links(doc: &mut serde_json::Value) {
    use serde_json::{Map, Value, json};
    // (create path, answer status, item path, path parameter → where its value is in the answer)
    type Creation<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);
    let creations: [Creation; 5] = [
        (
            "/api/v1/searches",
            "202",
            "/api/v1/searches/{id}",
            &[("id", "$response.body#/id")],
        ),
        (
            "/api/v1/cities",
            "201",
            "/api/v1/cities/{id}",
            &[("id", "$response.body#/id")],
        ),
        (
            "/api/v1/cameras",
            "201",
            "/api/v1/cameras/{id}",
            &[("id", "$response.body#/id")],
        ),
        (
            "/api/v1/recordings",
            "201",
            "/api/v1/cameras/{camera_id}/recordings/{id}",
            &[
                ("camera_id", "$response.body#/camera_id"),
                ("id", "$response.body#/id"),
            ],
        ),
        (
            "/api/v1/api-keys",
            "201",
            "/api/v1/api-keys/{id}",
            &[("id", "$response.body#/key/id")],
        ),
    ];
    let Some(paths) = doc.get("paths").and_then(Value::as_object).cloned() else {
        return;
    };
    for (create, status, item, params) in creations {
        let mut links = Map::new();
        for (path, ops) in &paths {
            let under = path == item || path.starts_with(&format!("{item}/"));
            let placeholders = path.matches('{').count();
            if !under || placeholders != params.len() {
                continue;
            }
            for (method, op) in ops.as_object().into_iter().flatten() {
                let Some(id) = op.get("operationId").and_then(Value::as_str) else {
                    continue;
                };
                // A DELETE link would remove the object before the other links are followed:
                // listed last by name (`z_`), so a stateful tester tries it after the rest.
                let name = if method == "delete" {
                    format!("z_{id}")
                } else {
                    id.to_owned()
                };
                let parameters: Map<String, Value> = params
                    .iter()
                    .map(|(p, at)| ((*p).to_owned(), json!(at)))
                    .collect();
                links.insert(name, json!({"operationId": id, "parameters": parameters}));
            }
        }
        if let Some(answer) = doc
            .pointer_mut(&format!(
                "/paths/{}/post/responses/{status}",
                create.replace('/', "~1")
            ))
            .and_then(Value::as_object_mut)
        {
            answer.insert("links".into(), Value::Object(links));
        }
    }
}

/// ReDoc at `/redoc`, its script served by this binary (the page poem-openapi generates, without
/// its web-font link, so it needs nothing from the Internet).
fn redoc_page() -> String {
    openapi_service()
        .redoc_html()
        .lines()
        .filter(|line| !line.contains("fonts.googleapis.com"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The application: every route, Swagger UI at `/docs`, ReDoc at `/redoc`, the spec at
/// `/openapi.json`, a body size limit, request metrics, request tracing, and every error (panics
/// included) as JSON. `/metrics` is not here: it is served on the internal `METRICS_BIND`
/// listener.
pub fn app(state: AppState, body_limit: usize) -> impl Endpoint {
    let service = openapi_service();
    let routes = Arc::new(metrics::Routes::from_spec(&service.spec()));
    let ui = service.swagger_ui();
    let document = openapi_document();
    let redoc = redoc_page();
    let param_routes = routes.clone();
    let bodies = Arc::new(body_check::BodySchemas::from_document(
        &serde_json::from_str(&document).unwrap_or_default(),
    ));
    Route::new()
        .nest("/", service)
        .nest("/docs", ui)
        .at(
            "/openapi.json",
            poem::endpoint::make_sync(move |_| {
                poem::Response::builder()
                    .content_type("application/json; charset=utf-8")
                    .body(document.clone())
            }),
        )
        .at(
            "/redoc",
            poem::endpoint::make_sync(move |_| poem::web::Html(redoc.clone())),
        )
        .nest("/console", console::routes(state.map_tile_url.as_deref()))
        .around(move |endpoint, request| {
            error::param_errors(endpoint, request, param_routes.clone(), bodies.clone())
        })
        .around(move |endpoint, request| limit_body(endpoint, request, body_limit))
        .around(auth::session_reads)
        .around(move |endpoint, request| metrics::track(endpoint, request, routes.clone()))
        // A panic in a handler answers 500 as JSON instead of dropping the connection.
        .with(CatchPanic::new().with_handler(error::panic_response))
        .with(Tracing)
        .data(state)
        .catch_all_error(error::to_json_error)
}

/// Refuses bodies over `limit` bytes with 413. A declared `Content-Length` over the limit is
/// refused before anything is read; every other body — chunked, with any `Transfer-Encoding`, or
/// HTTP/2 DATA frames without a length — is counted while it is read, and reading stops one byte
/// past the limit, so no header can side-step it.
async fn limit_body<E: Endpoint>(
    endpoint: Arc<E>,
    mut request: poem::Request,
    limit: usize,
) -> poem::Result<poem::Response> {
    use poem::IntoResponse;
    use poem::http::{StatusCode, header};
    use tokio::io::AsyncReadExt;
    // A refused body is not read to its end, so the connection cannot carry another request:
    // the answer says so, or a client's pool would reuse it and its next request fail half-way.
    let too_large = || async {
        let mut response = error::to_json_error(poem::Error::from_string(
            format!("the body is larger than the limit of {limit} bytes"),
            StatusCode::PAYLOAD_TOO_LARGE,
        ))
        .await;
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        response
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Ok(too_large().await);
    }
    let mut read = Vec::new();
    request
        .take_body()
        .into_async_read()
        .take(limit as u64 + 1)
        .read_to_end(&mut read)
        .await
        .map_err(|e| {
            poem::Error::from_string(
                format!("the body could not be read: {e}"),
                StatusCode::BAD_REQUEST,
            )
        })?;
    if read.len() > limit {
        return Ok(too_large().await);
    }
    // A JSON body is kept aside too: if poem-openapi refuses it, every fault is then listed.
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if json && !read.is_empty() {
        request
            .extensions_mut()
            .insert(error::RawBody(Arc::new(read.clone())));
    }
    request.set_body(read);
    Ok(endpoint.call(request).await?.into_response())
}

/// Serves `app` on an accepted listener until `shutdown` resolves, then drains for up to 10 s.
///
/// # Errors
/// The server's I/O error.
pub async fn serve(
    acceptor: TcpAcceptor,
    app: impl Endpoint + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, shutdown, Some(Duration::from_secs(10)))
        .await
}

/// Binds the API address.
///
/// # Errors
/// `API_BIND` unusable (taken, bad address).
pub async fn bind(addr: &str) -> anyhow::Result<TcpAcceptor> {
    TcpListener::bind(addr.to_owned())
        .into_acceptor()
        .await
        .with_context(|| format!("API_BIND: cannot listen on {addr}"))
}

/// Runs a parsed command line.
///
/// # Errors
/// Settings, database and server errors, each naming what failed.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Openapi) = cli.command {
        println!("{}", openapi_document());
        return Ok(());
    }
    let settings = Settings::load()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi => unreachable!("answered above"),
        Command::Migrate => {
            let control = db::connect(&settings.database_url).await?;
            let outcomes = tenancy::migrate_all(&control, &settings.database_url).await?;
            let mut failed = 0;
            for outcome in &outcomes {
                match &outcome.result {
                    Ok(()) => println!("{}: migrations applied", outcome.database),
                    Err(e) => {
                        failed += 1;
                        println!("{}: FAILED: {e}", outcome.database);
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!(
                    "{failed} of {} databases could not be migrated (the others are current)",
                    outcomes.len()
                );
            }
            Ok(())
        }
        Command::Seed => {
            let db = db::connect_and_migrate(&settings.database_url).await?;
            let (city, cameras) = seed::seed_demo(&db)
                .await
                .context("failed to seed the demo city")?;
            println!(
                "demo city {:?} (id {}) with {} cameras: {}",
                city.name,
                city.id,
                cameras.len(),
                cameras
                    .iter()
                    .map(|c| format!("{} (id {})", c.name, c.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        Command::Serve => serve_command(&settings, cli.standalone, cli.demo).await,
    }
}

async fn serve_command(settings: &Settings, standalone: bool, demo: bool) -> anyhow::Result<()> {
    let app = Application::build(settings.clone(), Mode { standalone, demo }).await?;
    app.run_until(sentinela_core::process::shutdown_signal())
        .await
}

/// How `sentinela-api` runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode {
    /// Workers and the scheduler in this process (embedded mode).
    pub standalone: bool,
    /// With `standalone`: the demo city, its recordings and a ready search printed.
    pub demo: bool,
}

/// The application `sentinela-api` runs, and the tests start: built from settings and a mode
/// (database connected and migrated, bootstrap admin key ensured, queue connected, the API address
/// bound), then run until stopped (the internal metrics listener, in standalone mode the workers
/// and the scheduler, the HTTP server; all stopped and drained together).
pub struct Application {
    settings: Settings,
    mode: Mode,
    dbs: Arc<Databases>,
    queue: JobQueue,
    acceptor: TcpAcceptor,
    address: String,
    admin_key: Option<String>,
}

impl Application {
    /// Connects, migrates, ensures the bootstrap admin key and binds `API_BIND`.
    ///
    /// # Errors
    /// Database, queue or bind errors, naming what failed.
    pub async fn build(settings: Settings, mode: Mode) -> anyhow::Result<Self> {
        // Serving requests alone, the api trusts a connection used in the last second (a
        // statement on one the server has just dropped costs a request a 503); running jobs
        // too (standalone), it pings before every statement, as the workers do.
        let liveness = if mode.standalone {
            db::Liveness::PingAlways
        } else {
            db::Liveness::PingIfIdle
        };
        let db = db::connect_and_migrate_with(&settings.database_url, liveness).await?;
        let mut admin_key = settings
            .admin_key
            .as_ref()
            .map(|k| k.expose_secret().to_owned());
        if mode.demo && admin_key.is_none() {
            admin_key = Some(auth::new_secret());
        }
        if let Some(key) = &admin_key {
            match auth::ensure_admin_key(&db, key)
                .await
                .context("failed to ensure the bootstrap admin key")?
            {
                auth::Bootstrap::Created => tracing::info!("bootstrap admin key created"),
                auth::Bootstrap::Present => {}
                auth::Bootstrap::Revoked => tracing::warn!(
                    "SENTINELA_ADMIN_KEY names a revoked key; it stays revoked (set a new secret to rotate it)"
                ),
                auth::Bootstrap::NotAdmin => tracing::warn!(
                    "SENTINELA_ADMIN_KEY names a city key; it is left as it is and is not admin"
                ),
            }
        }
        // Cities' own databases are brought up to date too; one that is down is reported and
        // does not keep the API (and the other cities) from starting.
        for outcome in tenancy::migrate_all(&db, &settings.database_url)
            .await?
            .into_iter()
            .skip(1)
        {
            if let Err(e) = outcome.result {
                tracing::error!(database = %outcome.database, error = %e, "city database not migrated");
            }
        }
        let queue = JobQueue::connect(&settings, &db).await?;
        let dbs =
            Arc::new(Databases::new(db, settings.city_databases.clone()).with_liveness(liveness));
        let acceptor = bind(&settings.api.bind).await?;
        let address = acceptor.local_addr()[0]
            .to_string()
            .trim_start_matches("socket://")
            .to_owned();
        Ok(Self {
            settings,
            mode,
            dbs,
            queue,
            acceptor,
            address,
            admin_key,
        })
    }

    /// The bound API address (`host:port`; the real port when `API_BIND` asked for port 0).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Runs until `shutdown` resolves, then stops the server, the workers and the scheduler.
    ///
    /// # Errors
    /// The server's, the workers' or the scheduler's failure.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            settings,
            mode,
            dbs,
            queue,
            acceptor,
            address,
            admin_key,
        } = self;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let (metrics_addr, metrics_task) = sentinela_core::metrics_server::start(
            &settings.api.metrics_bind,
            queue.clone(),
            dbs.clone(),
            settings.detector.daily_calls_per_city,
            stopped(stop_rx.clone()),
        )
        .await?;
        let mut workers = None;
        let mut scheduler = None;
        if mode.standalone {
            // Everything the search needs is checked before anything is printed as ready: the
            // detector (its model found and loaded), the data folders writable, the demo's
            // recordings written and decodable.
            let state = Arc::new(
                sentinela_worker::WorkerState::build(&settings, dbs.clone(), queue.clone()).await?,
            );
            demo::check_writable(&settings.storage.snapshot_dir)?;
            if mode.demo {
                demo::check_writable(&settings.storage.recordings_dir)?;
                let info = demo::prepare(dbs.control(), &settings.storage.recordings_dir).await?;
                print_demo(
                    &address,
                    info.city_id,
                    admin_key.as_deref().unwrap_or_default(),
                );
            }
            let worker_settings = settings.clone();
            let until = stopped(stop_rx.clone());
            workers = Some(tokio::spawn(async move {
                sentinela_worker::run_workers(state, &worker_settings, until).await
            }));
            scheduler = Some(sentinela_scheduler::start(
                &settings,
                dbs.clone(),
                queue.clone(),
                stopped(stop_rx.clone()),
            )?);
        }
        tracing::info!(
            address = %address,
            metrics = %metrics_addr,
            standalone = mode.standalone,
            "API listening; Swagger UI at /docs"
        );
        let body_limit = settings.api.body_limit_bytes;
        let state = AppState::new(&settings, dbs, queue);
        let until = stopped(stop_rx.clone());
        let shutdown = async move {
            tokio::select! {
                () = shutdown => {}
                () = until => {}
            }
        };
        serve(acceptor, app(state, body_limit), shutdown)
            .await
            .context("the HTTP server failed")?;
        let _ = stop_tx.send(true);
        metrics_task.abort();
        if let Some(workers) = workers {
            workers.await.context("worker task")??;
        }
        if let Some(scheduler) = scheduler {
            scheduler.await.context("scheduler task")??;
        }
        Ok(())
    }
}

fn print_demo(addr: &str, city_id: i64, key: &str) {
    let host = addr.replace("0.0.0.0", "127.0.0.1");
    println!();
    println!("Sentinela demo is ready.");
    println!("  Console (pt-BR): http://{host}/console  (sign in with the admin API key)");
    println!("  Swagger UI: http://{host}/docs");
    println!("  Admin API key: {key}");
    println!();
    println!("Find the red bus (ônibus vermelho) between 08:00 and 08:10 in São Paulo:");
    println!();
    println!(
        "  id=$(curl -s -X POST http://{host}/api/v1/searches -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n     -d '{{\"city_id\": {city_id}, \"vehicle_type\": \"ônibus\", \"color\": \"vermelho\", \"start_date\": \"2026-11-29T08:00:00-03:00\", \"end_date\": \"2026-11-29T08:10:00-03:00\"}}' \\\n     | sed -E 's/.*\"id\":([0-9]+).*/\\1/')"
    );
    println!(
        "  until curl -s http://{host}/api/v1/searches/$id -H 'Authorization: Bearer {key}' | grep -q '\"status\":\"completed'; do sleep 2; done"
    );
    println!(
        "  curl -s http://{host}/api/v1/searches/$id/trajectory -H 'Authorization: Bearer {key}'"
    );
    println!();
}
