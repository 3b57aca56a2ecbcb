//! Repository functions over sea-orm: what the API, the workers and the scheduler read and write.
//!
//! Functions take any [`sea_orm::ConnectionTrait`] where they are single statements (so callers can
//! run them inside a transaction) and a [`sea_orm::DatabaseConnection`] where they open their own.
//! Writes that a retried job may repeat are idempotent: they lean on the unique constraints of the
//! schema (`ON CONFLICT DO NOTHING`) instead of read-then-write.
//!
//! # Layout
//! - [`cities`], [`cameras`], [`api_keys`]: administration.
//! - [`directory`]: camera and search ids, allocated in the control database with their city.
//! - [`recordings`]: registration and the window-overlap query the planner needs.
//! - [`searches`]: create, read, status transitions and the fan-in that finalises a search once.
//! - [`tasks`]: a search's recording-range tasks.
//! - [`points`]: trajectory points, inserted idempotently.
//! - [`frames`]: the frame-analysis cache.
//! - [`usage`]: detector calls per city and day (the daily budget).
//! - [`idempotency`]: the `Idempotency-Key`s of search requests.
//! - [`sessions`]: the web console's sign-ins.

pub mod api_keys;
pub mod cameras;
pub mod cities;
pub mod directory;
pub mod frames;
pub mod idempotency;
pub mod points;
pub mod recordings;
pub mod searches;
pub mod sessions;
pub mod tasks;
pub mod usage;

/// Whether the database answers (a trivial statement).
///
/// # Errors
/// The database error.
pub async fn ping(db: &impl sea_orm::ConnectionTrait) -> Result<(), sea_orm::DbErr> {
    db.execute_unprepared("SELECT 1").await.map(drop)
}

/// Whether a database error is a unique-constraint violation (callers map it to 409 or treat it
/// as "already there").
pub fn is_unique_violation(err: &sea_orm::DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// Whether a database error is a foreign-key violation (a row still referenced, or a reference to
/// a row that is gone).
pub fn is_foreign_key_violation(err: &sea_orm::DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::ForeignKeyConstraintViolation(_))
    )
}

/// Whether a database error means the database cannot be reached (down, refusing connections,
/// no connection free within the acquire timeout, a connection lost mid-query), as opposed to a
/// problem with the statement. Callers report the city as unavailable and retry later.
pub fn is_unavailable(err: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            use sea_orm::sqlx::Error;
            match e.as_ref() {
                Error::Io(_)
                | Error::Tls(_)
                | Error::PoolTimedOut
                | Error::PoolClosed
                | Error::WorkerCrashed => true,
                // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now,
                // 3D000 the database does not exist (dropped or not created yet).
                Error::Database(db) => matches!(
                    db.code().as_deref(),
                    Some("57P01" | "57P02" | "57P03" | "3D000")
                ),
                _ => false,
            }
        }
        _ => false,
    }
}
