//! A search's recording-range tasks: creation, claiming and the counted transition to an end state.

use chrono::{DateTime, Utc};
use entity::search_task;
use entity::status::TaskStatus;
use entity::vehicle_search;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set, TransactionTrait,
};

use crate::domain::TimeRange;
use entity::status::SearchStatus;

/// One task to create: a recording and the part of it inside the search window.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// The recording.
    pub recording_id: i64,
    /// The search window clipped to the recording.
    pub window: TimeRange,
}

/// Creates a search's tasks. Re-running it (a retried plan) creates nothing twice: the unique
/// (search, recording) constraint drops the duplicates. Returns all the search's tasks.
///
/// # Errors
/// The database error.
pub async fn create_for_search(
    db: &impl ConnectionTrait,
    search_id: i64,
    tasks: &[NewTask],
) -> Result<Vec<search_task::Model>, DbErr> {
    let now = Utc::now();
    // Bounded batches keep each statement under SQLite's bound-parameter limit.
    for chunk in tasks.chunks(500) {
        let rows = chunk.iter().map(|t| search_task::ActiveModel {
            search_id: Set(search_id),
            recording_id: Set(t.recording_id),
            window_start: Set(t.window.start()),
            window_end: Set(t.window.end()),
            status: Set(TaskStatus::Pending),
            attempts: Set(0),
            error: Set(None),
            worker: Set(None),
            frames_analyzed: Set(0),
            detector_calls: Set(0),
            created_at: Set(now),
            started_at: Set(None),
            finished_at: Set(None),
            ..Default::default()
        });
        let result = search_task::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([
                    search_task::Column::SearchId,
                    search_task::Column::RecordingId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(db)
            .await;
        match result {
            Ok(_) | Err(DbErr::RecordNotInserted) => {}
            Err(e) => return Err(e),
        }
    }
    list_for_search(db, search_id).await
}

/// A search's tasks, by id.
///
/// # Errors
/// The database error.
pub async fn list_for_search(
    db: &impl ConnectionTrait,
    search_id: i64,
) -> Result<Vec<search_task::Model>, DbErr> {
    search_task::Entity::find()
        .filter(search_task::Column::SearchId.eq(search_id))
        .order_by_asc(search_task::Column::Id)
        .all(db)
        .await
}

/// The task with this id.
///
/// # Errors
/// The database error.
pub async fn get(db: &impl ConnectionTrait, id: i64) -> Result<Option<search_task::Model>, DbErr> {
    search_task::Entity::find_by_id(id).one(db).await
}

/// Claims a task for a run: status processing, one more attempt, the worker's name. Returns the
/// task, or `None` when it has already ended (a duplicate delivery of a finished job).
///
/// # Errors
/// The database error.
pub async fn start(
    db: &impl ConnectionTrait,
    id: i64,
    worker: &str,
) -> Result<Option<search_task::Model>, DbErr> {
    let result = search_task::Entity::update_many()
        .col_expr(
            search_task::Column::Status,
            Expr::value(TaskStatus::Processing.as_str()),
        )
        .col_expr(
            search_task::Column::Attempts,
            Expr::col(search_task::Column::Attempts).add(1),
        )
        .col_expr(search_task::Column::Worker, Expr::value(worker))
        .col_expr(search_task::Column::StartedAt, Expr::value(Utc::now()))
        .filter(search_task::Column::Id.eq(id))
        .filter(search_task::Column::Status.is_in([
            TaskStatus::Pending.as_str(),
            TaskStatus::Processing.as_str(),
        ]))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Ok(None);
    }
    get(db, id).await
}

/// How a task ended.
#[derive(Debug, Clone)]
pub enum TaskOutcome {
    /// Analysed.
    Done {
        /// Frames analysed (from the cache or the detector).
        frames_analyzed: i64,
        /// Calls made to the detector.
        detector_calls: i64,
    },
    /// Failed for good; the reason is reported on the search.
    Failed {
        /// Why.
        error: String,
    },
}

/// What [`finish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Whether this call moved the task to its end state (and counted it); `false` when it had
    /// already ended, so a re-delivered job never counts twice.
    pub counted: bool,
    /// `Some` when this call finalised the search, with its final status.
    pub finalized: Option<SearchStatus>,
}

/// Ends a task and counts it on its search in one transaction, then runs the fan-in
/// ([`super::searches::finalize_if_complete`]).
///
/// Both the task's transition and the search's counters are conditional or relative updates, so
/// concurrent finishers neither lose an increment nor count a task twice.
///
/// # Errors
/// The database error.
pub async fn finish(
    db: &DatabaseConnection,
    task_id: i64,
    outcome: TaskOutcome,
) -> Result<Finished, DbErr> {
    let now = Utc::now();
    let txn = db.begin().await?;
    // Write first, read after: on SQLite a transaction that reads before it writes can fail to
    // upgrade its lock when another writer got in between.
    let mut update = search_task::Entity::update_many()
        .col_expr(search_task::Column::FinishedAt, Expr::value(now))
        .filter(search_task::Column::Id.eq(task_id))
        .filter(search_task::Column::Status.is_in([
            TaskStatus::Pending.as_str(),
            TaskStatus::Processing.as_str(),
        ]));
    let mut counters = vehicle_search::Entity::update_many();
    match &outcome {
        TaskOutcome::Done {
            frames_analyzed,
            detector_calls,
        } => {
            update = update
                .col_expr(
                    search_task::Column::Status,
                    Expr::value(TaskStatus::Done.as_str()),
                )
                .col_expr(
                    search_task::Column::FramesAnalyzed,
                    Expr::value(*frames_analyzed),
                )
                .col_expr(
                    search_task::Column::DetectorCalls,
                    Expr::value(*detector_calls),
                )
                .col_expr(
                    search_task::Column::Error,
                    Expr::value(Option::<String>::None),
                );
            counters = counters
                .col_expr(
                    vehicle_search::Column::TasksDone,
                    Expr::col(vehicle_search::Column::TasksDone).add(1),
                )
                .col_expr(
                    vehicle_search::Column::FramesAnalyzed,
                    Expr::col(vehicle_search::Column::FramesAnalyzed).add(*frames_analyzed),
                )
                .col_expr(
                    vehicle_search::Column::DetectorCalls,
                    Expr::col(vehicle_search::Column::DetectorCalls).add(*detector_calls),
                );
        }
        TaskOutcome::Failed { error } => {
            update = update
                .col_expr(
                    search_task::Column::Status,
                    Expr::value(TaskStatus::Failed.as_str()),
                )
                .col_expr(search_task::Column::Error, Expr::value(error.clone()));
            counters = counters.col_expr(
                vehicle_search::Column::TasksFailed,
                Expr::col(vehicle_search::Column::TasksFailed).add(1),
            );
        }
    }
    let counted = update.exec(&txn).await?.rows_affected == 1;
    let Some(task) = get(&txn, task_id).await? else {
        return Err(DbErr::RecordNotFound(format!("task {task_id}")));
    };
    if counted {
        counters
            .filter(vehicle_search::Column::Id.eq(task.search_id))
            .exec(&txn)
            .await?;
        // The calls count against the city's daily budget, once, with the task.
        if let TaskOutcome::Done { detector_calls, .. } = &outcome
            && *detector_calls > 0
            && let Some(search) = vehicle_search::Entity::find_by_id(task.search_id)
                .one(&txn)
                .await?
        {
            super::usage::add_calls(&txn, search.city_id, *detector_calls, now).await?;
        }
    }
    txn.commit().await?;
    let finalized = super::searches::finalize_if_complete(db, task.search_id).await?;
    Ok(Finished { counted, finalized })
}

/// Tops up a search's queue window: marks as queued (oldest first) as many of its not-yet-queued
/// pending tasks as it takes to have `window` queued tasks that have not ended, and returns them
/// for the caller to push. Concurrent callers never both claim a task (the mark is conditional);
/// together they may overshoot the window by a task or two, which only shortens the wait.
///
/// # Errors
/// The database error.
pub async fn refill(
    db: &impl ConnectionTrait,
    search_id: i64,
    window: u32,
) -> Result<Vec<search_task::Model>, DbErr> {
    use sea_orm::PaginatorTrait;
    use sea_orm::sea_query::Query;
    let open = [
        TaskStatus::Pending.as_str(),
        TaskStatus::Processing.as_str(),
    ];
    let queued = search_task::Entity::find()
        .filter(search_task::Column::SearchId.eq(search_id))
        .filter(search_task::Column::Status.is_in(open))
        .filter(search_task::Column::EnqueuedAt.is_not_null())
        .count(db)
        .await?;
    let wanted = u64::from(window).saturating_sub(queued);
    if wanted == 0 {
        return Ok(Vec::new());
    }
    let next = Query::select()
        .column(search_task::Column::Id)
        .from(search_task::Entity)
        .and_where(search_task::Column::SearchId.eq(search_id))
        .and_where(search_task::Column::Status.eq(TaskStatus::Pending.as_str()))
        .and_where(search_task::Column::EnqueuedAt.is_null())
        .order_by(search_task::Column::Id, sea_orm::Order::Asc)
        .limit(wanted)
        .to_owned();
    let mut claimed = search_task::Entity::update_many()
        .col_expr(search_task::Column::EnqueuedAt, Expr::value(Utc::now()))
        .filter(search_task::Column::Id.in_subquery(next))
        .filter(search_task::Column::EnqueuedAt.is_null())
        .exec_with_returning(db)
        .await?;
    claimed.sort_by_key(|t| t.id);
    Ok(claimed)
}

/// Gives back tasks claimed by [`refill`] whose jobs could not be pushed, so a later refill
/// queues them.
///
/// # Errors
/// The database error.
pub async fn unclaim(db: &impl ConnectionTrait, task_ids: &[i64]) -> Result<(), DbErr> {
    if task_ids.is_empty() {
        return Ok(());
    }
    search_task::Entity::update_many()
        .col_expr(
            search_task::Column::EnqueuedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(search_task::Column::Id.is_in(task_ids.iter().copied()))
        .filter(search_task::Column::Status.eq(TaskStatus::Pending.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// Pending tasks whose job was lost before any worker took it: queued before `cutoff` and not
/// started since (tasks still waiting for their search's queue window are not queued yet).
///
/// # Errors
/// The database error.
pub async fn lost_pending(
    db: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
) -> Result<Vec<search_task::Model>, DbErr> {
    search_task::Entity::find()
        .filter(search_task::Column::Status.eq(TaskStatus::Pending.as_str()))
        .filter(search_task::Column::EnqueuedAt.lt(cutoff))
        .filter(
            search_task::Column::StartedAt
                .is_null()
                .or(search_task::Column::StartedAt.lt(cutoff)),
        )
        .all(db)
        .await
}

/// Claims a stuck task for re-enqueueing: moves its start time to `now` only if it is still as
/// read (status and start time), so of several scheduler replicas one gets `true`.
///
/// # Errors
/// The database error.
pub async fn claim_for_requeue(
    db: &impl ConnectionTrait,
    task: &search_task::Model,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let claim = search_task::Entity::update_many()
        .col_expr(search_task::Column::StartedAt, Expr::value(now))
        .filter(search_task::Column::Id.eq(task.id))
        .filter(search_task::Column::Status.eq(task.status.as_str()));
    let claim = match task.started_at {
        Some(at) => claim.filter(search_task::Column::StartedAt.eq(at)),
        None => claim.filter(search_task::Column::StartedAt.is_null()),
    };
    Ok(claim.exec(db).await?.rows_affected == 1)
}

/// Tasks still `processing` whose run started before `started_before` (their worker may have died).
///
/// # Errors
/// The database error.
pub async fn stale_processing(
    db: &impl ConnectionTrait,
    started_before: DateTime<Utc>,
) -> Result<Vec<search_task::Model>, DbErr> {
    search_task::Entity::find()
        .filter(search_task::Column::Status.eq(TaskStatus::Processing.as_str()))
        .filter(search_task::Column::StartedAt.lt(started_before))
        .order_by_asc(search_task::Column::Id)
        .all(db)
        .await
}

/// One page of a search's tasks by id, after task `after` when given.
///
/// # Errors
/// The database error.
pub async fn page_for_search(
    db: &impl ConnectionTrait,
    search_id: i64,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<search_task::Model>, DbErr> {
    use sea_orm::QuerySelect;
    let mut query = search_task::Entity::find().filter(search_task::Column::SearchId.eq(search_id));
    if let Some(after) = after {
        query = query.filter(search_task::Column::Id.gt(after));
    }
    query
        .order_by_asc(search_task::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// Puts a finished search's failed tasks back to pending to be run again, in one transaction:
/// the tasks lose their error, attempts and times; the search loses them from `tasks_failed`
/// (its other counters only ever counted done tasks) and goes back to `processing`. Returns how
/// many tasks were reset — 0 when the search is not `completed_with_errors` or `failed` or has no
/// failed task, so a repeated retry does nothing.
///
/// # Errors
/// The database error.
pub async fn retry_failed(db: &DatabaseConnection, search_id: i64) -> Result<u64, DbErr> {
    use vehicle_search::Column as S;
    let txn = db.begin().await?;
    // The search first (write before read, for SQLite): only a finished search with failures.
    let reopened = vehicle_search::Entity::update_many()
        .col_expr(S::Status, Expr::value(SearchStatus::Processing.as_str()))
        .col_expr(S::CompletedAt, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(S::ErrorMessage, Expr::value(Option::<String>::None))
        .filter(S::Id.eq(search_id))
        .filter(S::TasksFailed.gt(0))
        .filter(S::Status.is_in([
            SearchStatus::CompletedWithErrors.as_str(),
            SearchStatus::Failed.as_str(),
        ]))
        .exec(&txn)
        .await?
        .rows_affected;
    if reopened == 0 {
        txn.rollback().await?;
        return Ok(0);
    }
    let reset = search_task::Entity::update_many()
        .col_expr(
            search_task::Column::Status,
            Expr::value(TaskStatus::Pending.as_str()),
        )
        .col_expr(search_task::Column::Attempts, Expr::value(0))
        .col_expr(
            search_task::Column::Error,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            search_task::Column::Worker,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            search_task::Column::StartedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            search_task::Column::FinishedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            search_task::Column::EnqueuedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(search_task::Column::SearchId.eq(search_id))
        .filter(search_task::Column::Status.eq(TaskStatus::Failed.as_str()))
        .exec(&txn)
        .await?
        .rows_affected;
    let n = i32::try_from(reset).unwrap_or(i32::MAX);
    vehicle_search::Entity::update_many()
        .col_expr(S::TasksFailed, Expr::col(S::TasksFailed).sub(n))
        .filter(S::Id.eq(search_id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(reset)
}

/// One city's unfinished tasks in one status: how many, and since when the oldest waits (its
/// `enqueued_at`, or its creation when it was never queued).
#[derive(Debug, Clone, PartialEq)]
pub struct CityBacklog {
    /// The city.
    pub city_id: i64,
    /// `pending` or `processing`.
    pub status: TaskStatus,
    /// How many.
    pub tasks: i64,
    /// When the oldest of them was queued (or created).
    pub oldest: Option<DateTime<Utc>>,
}

/// The unfinished tasks (pending, processing) per city and status in `db`: the job queue's
/// backlog as the database knows it (each task is one analysis job).
///
/// # Errors
/// The database error.
pub async fn backlog_by_city(db: &impl ConnectionTrait) -> Result<Vec<CityBacklog>, DbErr> {
    use sea_orm::{JoinType, QuerySelect, RelationTrait};
    // (city, status, tasks, oldest enqueued_at, oldest created_at)
    type Row = (
        i64,
        TaskStatus,
        i64,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    let rows: Vec<Row> = search_task::Entity::find()
        .select_only()
        .column(vehicle_search::Column::CityId)
        .column(search_task::Column::Status)
        .column_as(search_task::Column::Id.count(), "tasks")
        .column_as(search_task::Column::EnqueuedAt.min(), "oldest_enqueued")
        .column_as(search_task::Column::CreatedAt.min(), "oldest_created")
        .join(
            JoinType::InnerJoin,
            search_task::Relation::VehicleSearch.def(),
        )
        .filter(search_task::Column::Status.is_in([TaskStatus::Pending, TaskStatus::Processing]))
        .group_by(vehicle_search::Column::CityId)
        .group_by(search_task::Column::Status)
        .order_by_asc(vehicle_search::Column::CityId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(city_id, status, tasks, enqueued, created)| CityBacklog {
            city_id,
            status,
            tasks,
            oldest: enqueued.or(created),
        })
        .collect())
}

/// Up to `limit` tasks in `status` (newest first) with their search's city: what the console's
/// jobs page lists (running tasks, failed ones with their errors).
///
/// # Errors
/// The database error.
pub async fn recent_in_status(
    db: &impl ConnectionTrait,
    status: TaskStatus,
    limit: u64,
) -> Result<Vec<(search_task::Model, i64)>, DbErr> {
    use sea_orm::QuerySelect;
    let rows = search_task::Entity::find()
        .find_also_related(vehicle_search::Entity)
        .filter(search_task::Column::Status.eq(status))
        .order_by_desc(search_task::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(task, search)| search.map(|s| (task, s.city_id)))
        .collect())
}
