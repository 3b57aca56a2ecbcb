//! Database connection and migrations, for PostgreSQL (production) and SQLite (embedded mode).

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use secrecy::{ExposeSecret, SecretString};

use crate::settings::SettingsError;

/// How a PostgreSQL pool makes sure of a connection before handing it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Liveness {
    /// Ping every connection first (sqlx's default): a round trip before every statement. After
    /// the server restarts, a dead connection is noticed and replaced, and while the server is
    /// down a statement waits for a new connection (up to the acquire timeout) instead of
    /// failing at once. For the processes that run jobs, where a failed statement costs one of
    /// the job's attempts.
    #[default]
    PingAlways,
    /// Ping a connection only when it has been idle for [`PING_IF_IDLE_FOR`]; one used more
    /// recently is trusted. Under load no connection is idle that long, so no statement pays
    /// the extra round trip. The cost: when the server goes away or restarts, a connection used
    /// in the last second fails its next statement once (and is closed, not returned to the
    /// pool). For the api, where that is one request answered 503, which its client retries.
    PingIfIdle,
}

/// See [`Liveness::PingIfIdle`].
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Which database server a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `postgres://` / `postgresql://`
    Postgres,
    /// `sqlite:`
    Sqlite,
}

impl Backend {
    /// Recognises the URL's scheme.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] on `DATABASE_URL` when the scheme is neither PostgreSQL nor SQLite.
    pub fn from_url(url: &str) -> Result<Self, SettingsError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else {
            Err(SettingsError::Invalid {
                var: "DATABASE_URL".into(),
                message: format!(
                    "{:?} is not a database URL (expected postgres://user@host/db or sqlite://file.db?mode=rwc)",
                    redact_url(url)
                ),
            })
        }
    }
}

/// The URL with its password replaced by `***`, fit for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The query (and fragment) start at the first `?` or `#`; everything before is authority and
    // path. The userinfo ends at the last `@` of that part, so a password holding `/` or `@`
    // is masked whole.
    let split = rest.find(['?', '#']).unwrap_or(rest.len());
    let (head, query) = rest.split_at(split);
    let head = match head.rsplit_once('@') {
        Some((userinfo, host)) => {
            let masked = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => userinfo.to_owned(),
            };
            format!("{masked}@{host}")
        }
        None => head.to_owned(),
    };
    format!("{scheme}://{head}{}", redact_query(query))
}

/// Masks the values of query parameters that carry secrets (`password`, `sslpassword`, `token`…).
fn redact_query(query: &str) -> String {
    const SECRET_KEYS: [&str; 8] = [
        "password",
        "pass",
        "passwd",
        "pwd",
        "sslpassword",
        "secret",
        "token",
        "auth",
    ];
    let Some(params) = query.strip_prefix('?') else {
        return query.to_owned();
    };
    let (params, fragment) = match params.split_once('#') {
        Some((p, f)) => (p, format!("#{f}")),
        None => (params, String::new()),
    };
    let masked: Vec<String> = params
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if SECRET_KEYS.contains(&key.to_ascii_lowercase().as_str()) => {
                format!("{key}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("?{}{fragment}", masked.join("&"))
}

/// The database could not be reached or prepared; the message names `DATABASE_URL`.
#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    /// The URL is not usable.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// Connecting failed.
    #[error("{setting}: cannot connect to {url}: {source}")]
    Connect {
        /// Which setting named the database (`DATABASE_URL`, a city's `database_url`).
        setting: &'static str,
        /// The redacted URL.
        url: String,
        /// The driver's reason.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Migrating failed.
    #[error("{setting}: cannot migrate {url}: {source}")]
    Migrate {
        /// Which setting named the database.
        setting: &'static str,
        /// The redacted URL.
        url: String,
        /// The migration's reason.
        source: DbErr,
    },
}

/// Connects to the database named by `url`. SQLite databases get WAL journaling and a busy timeout so
/// the embedded API, workers and scheduler can write from several connections.
///
/// # Errors
/// [`DbSetupError`] naming `DATABASE_URL` (redacted) and the driver's reason.
pub async fn connect(url: &SecretString) -> Result<DatabaseConnection, DbSetupError> {
    connect_as(url, "DATABASE_URL").await
}

/// [`connect`], naming `setting` in errors.
///
/// # Errors
/// See [`connect`].
pub async fn connect_as(
    url: &SecretString,
    setting: &'static str,
) -> Result<DatabaseConnection, DbSetupError> {
    connect_with(url, setting, Liveness::PingAlways).await
}

/// [`connect_as`], checking connections as `liveness` says (PostgreSQL only: a connection to a
/// SQLite file is never pinged).
///
/// # Errors
/// See [`connect`].
pub async fn connect_with(
    url: &SecretString,
    setting: &'static str,
    liveness: Liveness,
) -> Result<DatabaseConnection, DbSetupError> {
    let raw = url.expose_secret();
    let backend = Backend::from_url(raw)?;
    let mut options = ConnectOptions::new(raw.to_owned());
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(30));
    match backend {
        Backend::Postgres => {
            options.max_connections(20).min_connections(1);
            if liveness == Liveness::PingIfIdle {
                options.test_before_acquire_if_idle_for(PING_IF_IDLE_FOR);
            }
        }
        Backend::Sqlite => {
            // A connection to a file cannot go stale: no ping before handing it out.
            options.test_before_acquire(false);
            options.max_connections(8).map_sqlx_sqlite_opts(|opts| {
                opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(true)
            });
        }
    }
    let connect_error = |source: Box<dyn std::error::Error + Send + Sync>| DbSetupError::Connect {
        setting,
        url: redact_url(raw),
        source,
    };
    if backend == Backend::Postgres {
        // The pool retries until its timeout and then reports only "pool timed out"; one direct
        // connection first gives the operator the real reason (refused, auth, unknown database).
        use sea_orm::sqlx::Connection;
        let probe = tokio::time::timeout(
            Duration::from_secs(10),
            sea_orm::sqlx::PgConnection::connect(raw),
        )
        .await
        .map_err(|_| connect_error("no answer within 10 s".into()))?
        .map_err(|e| connect_error(e.into()))?;
        probe.close().await.ok();
    }
    let db = Database::connect(options)
        .await
        .map_err(|e| connect_error(e.into()))?;
    // Connecting can be lazy; a first statement proves the server answers.
    crate::repo::ping(&db)
        .await
        .map_err(|e| connect_error(e.into()))?;
    Ok(db)
}

/// Applies pending migrations. A database already migrated by a newer release (every migration
/// this binary knows applied, and later ones too: a rollout still replacing processes, or a
/// rollback) is left as it is, with a warning: migrations only add, so this binary runs against
/// it.
///
/// # Errors
/// [`DbSetupError::Migrate`] with the migration's reason, or when the database has migrations
/// this binary does not know while some it knows are not applied (not a newer release's schema).
pub async fn migrate(db: &DatabaseConnection, url: &SecretString) -> Result<(), DbSetupError> {
    migrate_as(db, url, "DATABASE_URL").await
}

/// [`migrate`], naming `setting` in errors.
///
/// # Errors
/// See [`migrate`].
pub async fn migrate_as(
    db: &DatabaseConnection,
    url: &SecretString,
    setting: &'static str,
) -> Result<(), DbSetupError> {
    let failed = |source| DbSetupError::Migrate {
        setting,
        url: redact_url(url.expose_secret()),
        source,
    };
    let applied: std::collections::HashSet<String> = Migrator::get_migration_models(db)
        .await
        .map_err(failed)?
        .into_iter()
        .map(|m| m.version)
        .collect();
    let known: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let mut unknown: Vec<&String> = applied.iter().filter(|v| !known.contains(v)).collect();
    if !unknown.is_empty() {
        unknown.sort();
        if known.iter().all(|k| applied.contains(k)) {
            tracing::warn!(
                setting,
                newer = ?unknown,
                "the database was migrated by a newer release; running against it as it is"
            );
            return Ok(());
        }
        return Err(failed(DbErr::Custom(format!(
            "the database has migrations this release does not know ({unknown:?}) but lacks some it does: it is not a newer release's schema"
        ))));
    }
    Migrator::up(db, None).await.map_err(failed)
}

/// Connects and migrates: what every binary does at start-up.
///
/// # Errors
/// See [`connect`] and [`migrate`].
pub async fn connect_and_migrate(url: &SecretString) -> Result<DatabaseConnection, DbSetupError> {
    connect_and_migrate_with(url, Liveness::PingAlways).await
}

/// [`connect_and_migrate`], checking connections as `liveness` says.
///
/// # Errors
/// See [`connect`] and [`migrate`].
pub async fn connect_and_migrate_with(
    url: &SecretString,
    liveness: Liveness,
) -> Result<DatabaseConnection, DbSetupError> {
    let db = connect_with(url, "DATABASE_URL", liveness).await?;
    migrate(&db, url).await?;
    Ok(db)
}
