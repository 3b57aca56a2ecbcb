//! Where each city's data lives, and the connections to it.
//!
//! The **control database** (`DATABASE_URL`) holds the platform: cities and where their data
//! lives, API keys, and the camera and search id directories. A city's **data** — cameras,
//! recordings, searches, tasks, trajectory points, the frame-analysis cache and its detector usage
//! — lives either in the **shared database** (the control database itself: embedded mode and
//! small installs) or in the city's **own database**, whose URL an admin gives when creating the
//! city (`city.database_url`, a secret never returned by the API).
//!
//! [`Databases`] routes a city id to its connection. Pools to cities' own databases are opened
//! lazily on first use, bounded (`city_databases.max_connections`), and keep no connection while
//! idle (`city_databases.idle_timeout_secs`). A city database that is down makes queries on it
//! fail within `city_databases.acquire_timeout_secs` with an error [`crate::repo::is_unavailable`]
//! recognises; other cities are not affected.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use entity::city;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use secrecy::{ExposeSecret, SecretString};

use crate::db::{Backend, redact_url};
use crate::repo::cities;
use crate::settings::CityDatabaseSettings;

/// Routing failed before any query on the city's data.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// No city has this id.
    #[error("unknown city {0}")]
    UnknownCity(i64),
    /// The city's database URL cannot be used (not PostgreSQL, malformed).
    #[error("city {city}: its database URL {url} cannot be used: {reason}")]
    BadUrl {
        /// The city.
        city: i64,
        /// The redacted URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The control database failed.
    #[error(transparent)]
    Control(#[from] DbErr),
}

/// Where a city's data lives, as read from the control database.
#[derive(Clone)]
struct Route {
    /// `None` = the shared database.
    url: Option<SecretString>,
    read_at: Instant,
}

/// One database holding city data, with the cities whose data it holds (what the scheduler's
/// jobs and the metrics iterate over).
#[derive(Clone, Debug)]
pub struct CityDatabase {
    /// `shared`, or the slug-free label `city-<id>` of a city's own database (for logs and
    /// metrics; never the URL).
    pub label: String,
    /// The connection.
    pub conn: DatabaseConnection,
    /// The cities whose data it holds.
    pub cities: Vec<city::Model>,
    /// Whether this is the shared (control) database.
    pub shared: bool,
}

/// The control connection and the routes to every city's data.
pub struct Databases {
    control: DatabaseConnection,
    settings: CityDatabaseSettings,
    routes: Mutex<HashMap<i64, Route>>,
    /// Pools to cities' own databases, by URL.
    pools: Mutex<HashMap<String, DatabaseConnection>>,
    /// How those pools check a connection they hand out.
    liveness: crate::db::Liveness,
}

impl std::fmt::Debug for Databases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Databases")
            .field("open_city_pools", &self.pools.lock().map(|p| p.len()).ok())
            .finish_non_exhaustive()
    }
}

impl Databases {
    /// Routes over `control`; nothing is opened until a city with its own database is used.
    pub fn new(control: DatabaseConnection, settings: CityDatabaseSettings) -> Self {
        Self {
            control,
            settings,
            routes: Mutex::new(HashMap::new()),
            pools: Mutex::new(HashMap::new()),
            liveness: crate::db::Liveness::default(),
        }
    }

    /// The same, with cities' pools checking connections as `liveness` says (see
    /// [`crate::db::Liveness`]; the default pings before every statement).
    #[must_use]
    pub fn with_liveness(mut self, liveness: crate::db::Liveness) -> Self {
        self.liveness = liveness;
        self
    }

    /// The control database (cities, API keys, id directories; also the shared city data).
    pub fn control(&self) -> &DatabaseConnection {
        &self.control
    }

    /// The connection holding `city_id`'s data.
    ///
    /// # Errors
    /// [`RouteError`]: an unknown city, an unusable URL, or the control database failing.
    pub async fn city(&self, city_id: i64) -> Result<DatabaseConnection, RouteError> {
        Ok(self.city_routed(city_id).await?.0)
    }

    /// The connection holding `city_id`'s data, and whether it is the shared (control) database.
    ///
    /// # Errors
    /// See [`Databases::city`].
    pub async fn city_routed(
        &self,
        city_id: i64,
    ) -> Result<(DatabaseConnection, bool), RouteError> {
        match self.route(city_id).await? {
            None => Ok((self.control.clone(), true)),
            Some(url) => Ok((self.pool(city_id, &url).await?, false)),
        }
    }

    /// The connection for a job that names `city_id`; jobs queued before cities had their own
    /// databases name none, and their data is in the shared database.
    ///
    /// # Errors
    /// See [`Databases::city`].
    pub async fn for_job(&self, city_id: Option<i64>) -> Result<DatabaseConnection, RouteError> {
        match city_id {
            Some(id) => self.city(id).await,
            None => Ok(self.control.clone()),
        }
    }

    /// Forgets what this process read about `city_id` (after an admin changed it).
    pub fn forget(&self, city_id: i64) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.remove(&city_id);
        }
    }

    /// Every database that holds city data: the shared one (with the cities that live there,
    /// even when there are none) and each city's own.
    ///
    /// # Errors
    /// The control database's error; a city whose URL is unusable is logged and left out.
    pub async fn all(&self) -> Result<Vec<CityDatabase>, DbErr> {
        let mut all = vec![CityDatabase {
            label: "shared".into(),
            conn: self.control.clone(),
            cities: cities::in_shared_database(&self.control).await?,
            shared: true,
        }];
        for city in cities::with_own_database(&self.control).await? {
            let Some(url) = city.database_url.clone() else {
                continue;
            };
            let url = SecretString::from(url);
            self.remember(city.id, Some(url.clone()));
            match self.pool(city.id, &url).await {
                Ok(conn) => all.push(CityDatabase {
                    label: format!("city-{}", city.id),
                    conn,
                    cities: vec![city],
                    shared: false,
                }),
                Err(e) => tracing::error!(city_id = city.id, error = %e, "city database skipped"),
            }
        }
        Ok(all)
    }

    async fn route(&self, city_id: i64) -> Result<Option<SecretString>, RouteError> {
        let ttl = Duration::from_secs(self.settings.route_ttl_secs);
        if let Some(route) = self
            .routes
            .lock()
            .ok()
            .and_then(|routes| routes.get(&city_id).cloned())
            .filter(|r| r.read_at.elapsed() < ttl)
        {
            return Ok(route.url);
        }
        let city = cities::get(&self.control, city_id)
            .await?
            .ok_or(RouteError::UnknownCity(city_id))?;
        let url = city.database_url.map(SecretString::from);
        self.remember(city_id, url.clone());
        Ok(url)
    }

    fn remember(&self, city_id: i64, url: Option<SecretString>) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(
                city_id,
                Route {
                    url,
                    read_at: Instant::now(),
                },
            );
        }
    }

    async fn pool(
        &self,
        city_id: i64,
        url: &SecretString,
    ) -> Result<DatabaseConnection, RouteError> {
        let raw = url.expose_secret();
        if let Some(conn) = self.pools.lock().ok().and_then(|p| p.get(raw).cloned()) {
            return Ok(conn);
        }
        let conn = open_lazy(raw, &self.settings, self.liveness)
            .await
            .map_err(|reason| RouteError::BadUrl {
                city: city_id,
                url: redact_url(raw),
                reason,
            })?;
        let mut pools = self
            .pools
            .lock()
            .map_err(|_| DbErr::Custom("city pool map poisoned".into()))?;
        // Another task may have opened the same pool meanwhile: keep the first.
        Ok(pools.entry(raw.to_owned()).or_insert(conn).clone())
    }
}

/// A pool to a city's own database that connects on first use and closes idle connections.
async fn open_lazy(
    url: &str,
    settings: &CityDatabaseSettings,
    liveness: crate::db::Liveness,
) -> Result<DatabaseConnection, String> {
    check_city_url(url)?;
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .sqlx_logging(false)
        .connect_lazy(true)
        .min_connections(0)
        .max_connections(settings.max_connections)
        .idle_timeout(Duration::from_secs(settings.idle_timeout_secs))
        .connect_timeout(Duration::from_secs(settings.acquire_timeout_secs))
        .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs));
    if liveness == crate::db::Liveness::PingIfIdle {
        options.test_before_acquire_if_idle_for(crate::db::PING_IF_IDLE_FOR);
    }
    Database::connect(options).await.map_err(|e| e.to_string())
}

/// A city's own database must be PostgreSQL (SQLite is for the embedded, single-database mode).
///
/// # Errors
/// Why the URL cannot be used, without the URL.
pub fn check_city_url(url: &str) -> Result<(), String> {
    match Backend::from_url(url) {
        Ok(Backend::Postgres) => Ok(()),
        Ok(Backend::Sqlite) => {
            Err("a city's own database must be PostgreSQL (postgres://…)".to_owned())
        }
        Err(_) => Err("not a postgres:// URL".to_owned()),
    }
}

/// Brings a city's own database up to date: connects (the real reason when it cannot), applies
/// the migrations and writes the city's row there. Idempotent.
///
/// # Errors
/// The connection, migration or write error, naming `database_url` and the redacted URL.
pub async fn prepare_city_database(city: &city::Model) -> Result<(), crate::db::DbSetupError> {
    let Some(url) = city.database_url.clone() else {
        return Ok(());
    };
    let url = SecretString::from(url);
    let conn = crate::db::connect_as(&url, "database_url").await?;
    let prepared = async {
        crate::db::migrate_as(&conn, &url, "database_url").await?;
        let write_error = |source| crate::db::DbSetupError::Migrate {
            setting: "database_url",
            url: redact_url(url.expose_secret()),
            source,
        };
        // A city's database holds that city only: the control database, the shared one or
        // another city's (a copy-paste slip) would mix cities' data. The control database is
        // recognised by its city rows that carry a database URL (a city's copy never does;
        // the caller has committed this city's row, URL included, to the control database).
        let foreign = cities::list(&conn)
            .await
            .map_err(write_error)?
            .into_iter()
            .any(|c| c.id != city.id || c.database_url.is_some());
        if foreign {
            return Err(write_error(DbErr::Custom(
                "it holds other cities' data or is the control database; a city's own database must be empty or already its own".into(),
            )));
        }
        cities::mirror(&conn, city).await.map_err(write_error)
    }
    .await;
    conn.close().await.ok();
    prepared
}

/// What migrating one database did.
#[derive(Debug)]
pub struct MigrationOutcome {
    /// `control`, or `city <id> (<name>)`.
    pub database: String,
    /// Whether it is current now, or why not.
    pub result: Result<(), crate::db::DbSetupError>,
}

/// Migrates the control database (already connected as `control`) and every city's own database,
/// one after another; a city database that fails does not stop the others.
///
/// # Errors
/// The control database's error (nothing else can be listed without it).
pub async fn migrate_all(
    control: &DatabaseConnection,
    control_url: &SecretString,
) -> Result<Vec<MigrationOutcome>, crate::db::DbSetupError> {
    crate::db::migrate(control, control_url).await?;
    let mut outcomes = vec![MigrationOutcome {
        database: "control".into(),
        result: Ok(()),
    }];
    let own = cities::with_own_database(control).await.map_err(|source| {
        crate::db::DbSetupError::Migrate {
            setting: "DATABASE_URL",
            url: redact_url(control_url.expose_secret()),
            source,
        }
    })?;
    for city in own {
        outcomes.push(MigrationOutcome {
            database: format!("city {} ({})", city.id, city.name),
            result: prepare_city_database(&city).await,
        });
    }
    Ok(outcomes)
}
