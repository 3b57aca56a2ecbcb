//! Recordings: registration and the window-overlap query.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use entity::status::SearchStatus;
use entity::{recording, search_task, trajectory_point, vehicle_search};
use sea_orm::sea_query::OnConflict;
use sea_orm::sea_query::{Alias, Expr, Func};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};
use sea_orm::{Condition, JoinType, QuerySelect, RelationTrait};

use crate::domain::TimeRange;

/// What registering a recording needs.
#[derive(Debug, Clone)]
pub struct NewRecording {
    /// Camera that recorded it.
    pub camera_id: i64,
    /// The camera's city.
    pub city_id: i64,
    /// Path of the file.
    pub file_path: String,
    /// Wall-clock time of the first frame.
    pub started_at: DateTime<Utc>,
    /// Wall-clock time after the last frame.
    pub ended_at: DateTime<Utc>,
    /// File size.
    pub size_bytes: i64,
}

/// Registers a recording; registering the same (camera, start) again returns the existing row and
/// changes nothing.
///
/// # Errors
/// The database error.
pub async fn register(
    db: &impl ConnectionTrait,
    new: NewRecording,
) -> Result<(recording::Model, bool), DbErr> {
    let (camera_id, started_at) = (new.camera_id, new.started_at);
    let inserted = recording::Entity::insert(recording::ActiveModel {
        camera_id: Set(new.camera_id),
        city_id: Set(new.city_id),
        file_path: Set(new.file_path),
        started_at: Set(new.started_at),
        ended_at: Set(new.ended_at),
        size_bytes: Set(new.size_bytes),
        created_at: Set(Utc::now()),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([recording::Column::CameraId, recording::Column::StartedAt])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await
    .map(|rows| rows > 0)
    .or_else(|e| match e {
        DbErr::RecordNotInserted => Ok(false),
        e => Err(e),
    })?;
    let row = recording::Entity::find()
        .filter(recording::Column::CameraId.eq(camera_id))
        .filter(recording::Column::StartedAt.eq(started_at))
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("recording of camera {camera_id}")))?;
    Ok((row, inserted))
}

/// The recording stored with this (normalised, relative) file path.
///
/// # Errors
/// The database error.
pub async fn find_by_path(
    db: &impl ConnectionTrait,
    file_path: &str,
) -> Result<Option<recording::Model>, DbErr> {
    recording::Entity::find()
        .filter(recording::Column::FilePath.eq(file_path))
        .one(db)
        .await
}

/// The recording with this id.
///
/// # Errors
/// The database error.
pub async fn get(db: &impl ConnectionTrait, id: i64) -> Result<Option<recording::Model>, DbErr> {
    recording::Entity::find_by_id(id).one(db).await
}

/// The query of a city's recordings that overlap `window` (optionally only those of
/// `camera_ids`), in start order. A recording overlaps when it starts before the window ends and
/// ends after it starts.
fn overlapping_query(
    city_id: i64,
    window: &TimeRange,
    camera_ids: Option<&[i64]>,
) -> sea_orm::Select<recording::Entity> {
    let mut query = recording::Entity::find()
        .filter(recording::Column::CityId.eq(city_id))
        .filter(recording::Column::StartedAt.lt(window.end()))
        .filter(recording::Column::EndedAt.gt(window.start()));
    if let Some(ids) = camera_ids {
        query = query.filter(recording::Column::CameraId.is_in(ids.iter().copied()));
    }
    query
        .order_by_asc(recording::Column::StartedAt)
        .order_by_asc(recording::Column::Id)
}

/// A city's recordings that overlap `window` (optionally only those of `camera_ids`), in start
/// order.
///
/// # Errors
/// The database error.
pub async fn overlapping(
    db: &impl ConnectionTrait,
    city_id: i64,
    window: &TimeRange,
    camera_ids: Option<&[i64]>,
) -> Result<Vec<recording::Model>, DbErr> {
    overlapping_query(city_id, window, camera_ids).all(db).await
}

/// Restricts a recording query to enabled cameras: what a new search plans and estimates (a
/// disabled camera's recordings stay listed and stored, but are not searched).
fn of_enabled_cameras(
    query: sea_orm::Select<recording::Entity>,
) -> sea_orm::Select<recording::Entity> {
    query.filter(
        recording::Column::CameraId.in_subquery(
            sea_orm::sea_query::Query::select()
                .column(entity::camera::Column::Id)
                .from(entity::camera::Entity)
                .and_where(entity::camera::Column::Enabled.eq(true))
                .to_owned(),
        ),
    )
}

/// The recordings a new search covers: those of [`overlapping`] whose camera is enabled.
///
/// # Errors
/// The database error.
pub async fn searchable(
    db: &impl ConnectionTrait,
    city_id: i64,
    window: &TimeRange,
    camera_ids: Option<&[i64]>,
) -> Result<Vec<recording::Model>, DbErr> {
    of_enabled_cameras(overlapping_query(city_id, window, camera_ids))
        .all(db)
        .await
}

/// `(id, started_at, ended_at)` of the [`searchable`] recordings: what estimating needs, without
/// the rows.
///
/// # Errors
/// The database error.
pub async fn overlapping_spans(
    db: &impl ConnectionTrait,
    city_id: i64,
    window: &TimeRange,
    camera_ids: Option<&[i64]>,
) -> Result<Vec<(i64, DateTime<Utc>, DateTime<Utc>)>, DbErr> {
    spans_query(city_id, window, camera_ids)
        .into_tuple()
        .all(db)
        .await
}

/// `(id, started_at, ended_at)` of the recordings a new search covers: the select behind
/// [`overlapping_spans`] and [`in_flight_and_overlapping_spans`].
fn spans_query(
    city_id: i64,
    window: &TimeRange,
    camera_ids: Option<&[i64]>,
) -> sea_orm::Select<recording::Entity> {
    of_enabled_cameras(overlapping_query(city_id, window, camera_ids))
        .select_only()
        .column(recording::Column::Id)
        .column(recording::Column::StartedAt)
        .column(recording::Column::EndedAt)
}

/// What a search start reads at once: the city's searches in flight (its quota; see
/// [`super::searches::in_flight`]) and the spans of [`overlapping_spans`], in one statement (one
/// row per recording, or one row without a recording when none overlaps).
///
/// # Errors
/// The database error.
pub async fn in_flight_and_overlapping_spans(
    db: &impl ConnectionTrait,
    city_id: i64,
    window: &TimeRange,
    camera_ids: Option<&[i64]>,
) -> Result<(u64, Vec<(i64, DateTime<Utc>, DateTime<Utc>)>), DbErr> {
    use entity::search_load;
    use sea_orm::QueryTrait;
    use sea_orm::sea_query::{ExprTrait, Order, Query};
    let (load, spans) = (Alias::new("load"), Alias::new("spans"));
    let in_flight = Alias::new("in_flight");
    let count = Query::select()
        .expr_as(
            Func::coalesce([
                Func::cast_as(
                    Func::sum(Expr::col(search_load::Column::InFlight)),
                    Alias::new("BIGINT"),
                )
                .into(),
                Expr::val(0i64),
            ]),
            in_flight.clone(),
        )
        .from(search_load::Entity)
        .and_where(Expr::col(search_load::Column::CityId).eq(city_id))
        .to_owned();
    let covered = spans_query(city_id, window, camera_ids).into_query();
    let query = Query::select()
        .column((load.clone(), in_flight))
        .column((spans.clone(), recording::Column::Id))
        .column((spans.clone(), recording::Column::StartedAt))
        .column((spans.clone(), recording::Column::EndedAt))
        .from_subquery(count, load)
        .join_subquery(
            JoinType::LeftJoin,
            covered,
            spans.clone(),
            Expr::cust("1 = 1"),
        )
        .order_by((spans.clone(), recording::Column::StartedAt), Order::Asc)
        .order_by((spans, recording::Column::Id), Order::Asc)
        .to_owned();
    let rows = db.query_all(&query).await?;
    let mut in_flight = 0;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        in_flight = row.try_get_by_index::<i64>(0)?;
        if let Some(id) = row.try_get_by_index::<Option<i64>>(1)? {
            let started_at = row.try_get_by_index::<DateTime<Utc>>(2)?;
            let ended_at = row.try_get_by_index::<DateTime<Utc>>(3)?;
            out.push((id, started_at, ended_at));
        }
    }
    Ok((u64::try_from(in_flight).unwrap_or(0), out))
}

/// Recordings of the city retention must keep: `(in use by a pending or processing search,
/// holding a sighting of a stored search)`.
///
/// # Errors
/// The database error.
pub async fn locked_for_retention(
    db: &impl ConnectionTrait,
    city_id: i64,
) -> Result<(HashSet<i64>, HashSet<i64>), DbErr> {
    let in_use: Vec<i64> = search_task::Entity::find()
        .select_only()
        .column(search_task::Column::RecordingId)
        .distinct()
        .join(
            JoinType::InnerJoin,
            search_task::Relation::VehicleSearch.def(),
        )
        .filter(vehicle_search::Column::CityId.eq(city_id))
        .filter(vehicle_search::Column::Status.is_in([
            SearchStatus::Pending.as_str(),
            SearchStatus::Processing.as_str(),
        ]))
        .into_tuple()
        .all(db)
        .await?;
    let evidence: Vec<i64> = trajectory_point::Entity::find()
        .select_only()
        .column(trajectory_point::Column::RecordingId)
        .distinct()
        .join(
            JoinType::InnerJoin,
            trajectory_point::Relation::VehicleSearch.def(),
        )
        .filter(vehicle_search::Column::CityId.eq(city_id))
        .into_tuple()
        .all(db)
        .await?;
    Ok((in_use.into_iter().collect(), evidence.into_iter().collect()))
}

/// `query` in (start, id) order, from after `after` (a previous page's last start and id).
fn in_start_order(
    query: sea_orm::Select<recording::Entity>,
    after: Option<(DateTime<Utc>, i64)>,
) -> sea_orm::Select<recording::Entity> {
    let query = match after {
        Some((started, id)) => query.filter(
            Condition::any()
                .add(recording::Column::StartedAt.gt(started))
                .add(
                    Condition::all()
                        .add(recording::Column::StartedAt.eq(started))
                        .add(recording::Column::Id.gt(id)),
                ),
        ),
        None => query,
    };
    query
        .order_by_asc(recording::Column::StartedAt)
        .order_by_asc(recording::Column::Id)
}

/// A page of the city's recordings in (start, id) order after `after`, optionally only those that
/// ended before `ended_before`.
///
/// # Errors
/// The database error.
pub async fn oldest_page(
    db: &impl ConnectionTrait,
    city_id: i64,
    ended_before: Option<DateTime<Utc>>,
    after: Option<(DateTime<Utc>, i64)>,
    page: u64,
) -> Result<Vec<recording::Model>, DbErr> {
    let mut query = recording::Entity::find().filter(recording::Column::CityId.eq(city_id));
    if let Some(cutoff) = ended_before {
        query = query.filter(recording::Column::EndedAt.lt(cutoff));
    }
    in_start_order(query, after).limit(page).all(db).await
}

/// Bytes of the city's registered recordings.
///
/// # Errors
/// The database error.
pub async fn stored_bytes(db: &impl ConnectionTrait, city_id: i64) -> Result<i64, DbErr> {
    let sum: Option<Option<i64>> = recording::Entity::find()
        .select_only()
        .expr(Func::cast_as(
            Func::sum(Expr::col(recording::Column::SizeBytes)),
            Alias::new("BIGINT"),
        ))
        .filter(recording::Column::CityId.eq(city_id))
        .into_tuple()
        .one(db)
        .await?;
    Ok(sum.flatten().unwrap_or(0))
}

/// What [`delete_unheld`] did.
#[derive(Debug)]
pub enum Deletion<T, E> {
    /// The row is gone, and `then` (removing its file) gave this.
    Deleted(T),
    /// `then` failed with this: the row was kept.
    Kept(E),
    /// A task of a search in flight or a stored sighting holds it: nothing was done.
    Held,
    /// There was no such row: nothing was done.
    Missing,
}

/// Deletes a recording's row unless something holds it, and runs `then` (removing its file)
/// before the deletion commits, so a file that cannot be removed keeps its row and a row is never
/// deleted from under a new task. In one transaction: the tasks of ended searches that point at
/// the recording are removed (as the old `CASCADE` did), then the row — a task of a search in
/// flight or a trajectory point pointing at it, even one inserted a moment ago by a search being
/// planned, makes the foreign key (`ON DELETE NO ACTION`) refuse ([`Deletion::Held`]); while the row
/// is deleted but not committed, no new task can reference it (PostgreSQL's row lock, SQLite's
/// write lock), and `then` runs; its error rolls the deletion back ([`Deletion::Kept`]).
///
/// # Errors
/// The database error (other than the refusal).
pub async fn delete_unheld<T, E, F, Fut>(
    db: &sea_orm::DatabaseConnection,
    id: i64,
    then: F,
) -> Result<Deletion<T, E>, DbErr>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let txn = sea_orm::TransactionTrait::begin(db).await?;
    let ended: Vec<&str> = SearchStatus::ALL
        .iter()
        .filter(|s| s.is_final())
        .map(|s| s.as_str())
        .collect();
    search_task::Entity::delete_many()
        .filter(search_task::Column::RecordingId.eq(id))
        .filter(
            search_task::Column::SearchId.in_subquery(
                sea_orm::sea_query::Query::select()
                    .column(vehicle_search::Column::Id)
                    .from(vehicle_search::Entity)
                    .and_where(vehicle_search::Column::Status.is_in(ended))
                    .to_owned(),
            ),
        )
        .exec(&txn)
        .await?;
    let deleted = match recording::Entity::delete_by_id(id).exec(&txn).await {
        Ok(done) => done.rows_affected,
        Err(e) if super::is_foreign_key_violation(&e) => {
            txn.rollback().await?;
            return Ok(Deletion::Held);
        }
        Err(e) => return Err(e),
    };
    if deleted == 0 {
        txn.rollback().await?;
        return Ok(Deletion::Missing);
    }
    match then().await {
        Ok(done) => {
            txn.commit().await?;
            Ok(Deletion::Deleted(done))
        }
        Err(e) => {
            txn.rollback().await?;
            Ok(Deletion::Kept(e))
        }
    }
}

/// When the camera's newest registered recording starts.
///
/// # Errors
/// The database error.
pub async fn newest_start(
    db: &impl ConnectionTrait,
    camera_id: i64,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    recording::Entity::find()
        .select_only()
        .column(recording::Column::StartedAt)
        .filter(recording::Column::CameraId.eq(camera_id))
        .order_by_desc(recording::Column::StartedAt)
        .limit(1)
        .into_tuple()
        .one(db)
        .await
}

/// The file paths of the camera's recordings starting at or after `since`.
///
/// # Errors
/// The database error.
pub async fn paths_since(
    db: &impl ConnectionTrait,
    camera_id: i64,
    since: DateTime<Utc>,
) -> Result<HashSet<String>, DbErr> {
    Ok(recording::Entity::find()
        .select_only()
        .column(recording::Column::FilePath)
        .filter(recording::Column::CameraId.eq(camera_id))
        .filter(recording::Column::StartedAt.gte(since))
        .into_tuple::<String>()
        .all(db)
        .await?
        .into_iter()
        .collect())
}

/// A page of every recording's `(id, file_path)` by id after `after` (for checks over all rows).
///
/// # Errors
/// The database error.
pub async fn path_page(
    db: &impl ConnectionTrait,
    after: i64,
    page: u64,
) -> Result<Vec<(i64, String)>, DbErr> {
    recording::Entity::find()
        .select_only()
        .column(recording::Column::Id)
        .column(recording::Column::FilePath)
        .filter(recording::Column::Id.gt(after))
        .order_by_asc(recording::Column::Id)
        .limit(page)
        .into_tuple()
        .all(db)
        .await
}

/// The recordings with these ids.
///
/// # Errors
/// The database error.
pub async fn by_ids(
    db: &impl ConnectionTrait,
    ids: &[i64],
) -> Result<Vec<recording::Model>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    recording::Entity::find()
        .filter(recording::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await
}

/// What holds a recording against deletion or change: tasks of searches still pending or
/// processing, and stored sightings (evidence) of any search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holders {
    /// Searches in flight with a task on it.
    pub searches_in_flight: u64,
    /// Sightings stored on it.
    pub sightings: u64,
}

/// What holds recording `id`.
///
/// # Errors
/// The database error.
pub async fn holders(db: &impl ConnectionTrait, id: i64) -> Result<Holders, DbErr> {
    use sea_orm::PaginatorTrait;
    let searches_in_flight = search_task::Entity::find()
        .join(
            JoinType::InnerJoin,
            search_task::Relation::VehicleSearch.def(),
        )
        .filter(search_task::Column::RecordingId.eq(id))
        .filter(vehicle_search::Column::Status.is_in([
            SearchStatus::Pending.as_str(),
            SearchStatus::Processing.as_str(),
        ]))
        .count(db)
        .await?;
    let sightings = trajectory_point::Entity::find()
        .filter(trajectory_point::Column::RecordingId.eq(id))
        .count(db)
        .await?;
    Ok(Holders {
        searches_in_flight,
        sightings,
    })
}

/// Corrects a recording's wall-clock span.
///
/// # Errors
/// The database error; a start another recording of the camera has is a unique violation.
pub async fn set_span(
    db: &impl ConnectionTrait,
    recording: recording::Model,
    span: &TimeRange,
) -> Result<recording::Model, DbErr> {
    use sea_orm::ActiveModelTrait;
    let mut row: recording::ActiveModel = recording.into();
    row.started_at = Set(span.start());
    row.ended_at = Set(span.end());
    row.update(db).await
}

/// Up to `limit` of a camera's recordings in (start, id) order after `after`, optionally only
/// those overlapping `window`.
///
/// # Errors
/// The database error.
pub async fn camera_page(
    db: &impl ConnectionTrait,
    camera_id: i64,
    window: Option<&TimeRange>,
    after: Option<(DateTime<Utc>, i64)>,
    limit: u64,
) -> Result<Vec<recording::Model>, DbErr> {
    let mut query = recording::Entity::find().filter(recording::Column::CameraId.eq(camera_id));
    if let Some(window) = window {
        query = query
            .filter(recording::Column::StartedAt.lt(window.end()))
            .filter(recording::Column::EndedAt.gt(window.start()));
    }
    in_start_order(query, after).limit(limit).all(db).await
}
