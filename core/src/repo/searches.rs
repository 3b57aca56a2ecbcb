//! Vehicle searches: creation, status transitions and the fan-in that finalises a search exactly
//! once.

use chrono::Utc;
use entity::search_task;
use entity::status::{SearchStatus, TaskStatus};
use entity::vehicle_search;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set,
};

use crate::domain::{Color, PlatePattern, TimeRange, VehicleType};

/// What creating a search needs; criteria are already parsed domain values.
#[derive(Debug, Clone)]
pub struct NewSearch {
    /// City whose recordings are searched.
    pub city_id: i64,
    /// Who asked.
    pub user_id: Option<String>,
    /// Plate pattern.
    pub plate: Option<PlatePattern>,
    /// Colour.
    pub color: Option<Color>,
    /// Vehicle type.
    pub vehicle_type: Option<VehicleType>,
    /// When.
    pub window: TimeRange,
    /// Restrict to these cameras.
    pub camera_ids: Option<Vec<i64>>,
    /// What it was estimated to cost (stored as given).
    pub estimate: Option<serde_json::Value>,
    /// Completion webhook: the URL and the signing secret.
    pub webhook: Option<(String, String)>,
}

/// Inserts a pending search into its city's database (`db`), with an id allocated in the
/// `control` database (the same connection for a city in the shared database); the id is
/// released again when the insert fails.
///
/// # Errors
/// The database error.
pub async fn create(
    control: &impl ConnectionTrait,
    db: &impl ConnectionTrait,
    new: NewSearch,
) -> Result<vehicle_search::Model, DbErr> {
    let id = super::directory::allocate_search(control, new.city_id).await?;
    let inserted = pending(id, new).insert(db).await;
    if inserted.is_err() {
        super::directory::release_search(control, id).await.ok();
    }
    inserted
}

/// [`create`] for a city whose data is in the shared (control) database `db`. On PostgreSQL the
/// id's allocation and the insert are one statement (a data-modifying `WITH`), so one round trip
/// and one commit, and a failed insert leaves no directory entry behind; on SQLite, which has no
/// such statement, it is [`create`].
///
/// # Errors
/// The database error.
pub async fn create_in_shared(
    db: &impl ConnectionTrait,
    new: NewSearch,
) -> Result<vehicle_search::Model, DbErr> {
    use sea_orm::sea_query::{Alias, CommonTableExpression, Query, WithClause};
    use sea_orm::{DbBackend, FromQueryResult, Iterable, StatementBuilder};
    use vehicle_search::Column as C;
    if db.get_database_backend() != DbBackend::Postgres {
        return create(db, db, new).await;
    }
    let city_id = new.city_id;
    let allocated = Alias::new("allocated");
    let allocate = Query::insert()
        .into_table(entity::search_directory::Entity)
        .columns([entity::search_directory::Column::CityId])
        .values_panic([city_id.into()])
        .returning_col(entity::search_directory::Column::Id)
        .to_owned();
    let cte = CommonTableExpression::new()
        .query(allocate)
        .table_name(allocated.clone())
        .to_owned();
    // The row as `create` inserts it, its id read from the allocation.
    let id = Expr::SubQuery(
        None,
        Box::new(
            Query::select()
                .column(entity::search_directory::Column::Id)
                .from(allocated.clone())
                .to_owned()
                .into(),
        ),
    );
    let insert = Query::insert()
        .into_table(vehicle_search::Entity)
        .columns(C::iter())
        .values_panic(pending_values(id, new))
        .returning_all()
        .to_owned()
        .with(WithClause::new().cte(cte).to_owned());
    let statement = StatementBuilder::build(&insert, &DbBackend::Postgres);
    vehicle_search::Model::find_by_statement(statement)
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotInserted)
}

/// [`create_in_shared`] for several searches at once (searches an API replica starts together):
/// all are written or none, and the rows come back in the order given. On PostgreSQL their ids
/// are drawn in one statement, and the directory entries and rows written in one more (one
/// commit for the lot); on SQLite they are written in one transaction.
///
/// # Errors
/// The database error (nothing was written).
pub async fn create_many_in_shared<C>(
    db: &C,
    news: &[NewSearch],
) -> Result<Vec<vehicle_search::Model>, DbErr>
where
    C: ConnectionTrait + sea_orm::TransactionTrait,
{
    use sea_orm::sea_query::{CommonTableExpression, Query, WithClause};
    use sea_orm::{
        DbBackend, FromQueryResult, Iterable, Statement, StatementBuilder, TransactionSession,
    };
    use vehicle_search::Column as C;
    match news {
        [] => return Ok(Vec::new()),
        [one] => return Ok(vec![create_in_shared(db, one.clone()).await?]),
        _ => {}
    }
    if db.get_database_backend() != DbBackend::Postgres {
        let txn = db.begin().await?;
        let mut rows = Vec::with_capacity(news.len());
        for new in news {
            let id = super::directory::allocate_search(&txn, new.city_id).await?;
            rows.push(pending(id, new.clone()).insert(&txn).await?);
        }
        txn.commit().await?;
        return Ok(rows);
    }
    let ids: Vec<i64> = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT nextval(pg_get_serial_sequence('search_directory', 'id')) \
             FROM generate_series(1, $1)",
            [i64::try_from(news.len()).unwrap_or(i64::MAX).into()],
        ))
        .await?
        .iter()
        .map(|row| row.try_get_by_index(0))
        .collect::<Result<_, _>>()?;
    if ids.len() != news.len() {
        return Err(DbErr::RecordNotInserted);
    }
    let mut directory = Query::insert()
        .into_table(entity::search_directory::Entity)
        .columns([
            entity::search_directory::Column::Id,
            entity::search_directory::Column::CityId,
        ])
        .to_owned();
    let mut insert = Query::insert()
        .into_table(vehicle_search::Entity)
        .columns(C::iter())
        .returning_all()
        .to_owned();
    // Rows in (city, shard) order: each insert's trigger then takes its city's `search_load`
    // shard rows (`id % 8`, migration `m20261201_000008_search_load`) in ascending order, as
    // every other batch does, so two batches wait for each other but never deadlock.
    let mut rows: Vec<(i64, &NewSearch)> = ids.iter().copied().zip(news).collect();
    rows.sort_by_key(|(id, new)| (new.city_id, id.rem_euclid(SEARCH_LOAD_SHARDS), *id));
    for (id, new) in rows {
        directory.values_panic([id.into(), new.city_id.into()]);
        insert.values_panic(pending_values(Expr::val(id), new.clone()));
    }
    let cte = CommonTableExpression::new()
        .query(directory)
        .table_name(sea_orm::sea_query::Alias::new("allocated"))
        .to_owned();
    let statement = StatementBuilder::build(
        &insert.with(WithClause::new().cte(cte).to_owned()),
        &DbBackend::Postgres,
    );
    let mut rows = vehicle_search::Model::find_by_statement(statement)
        .all(db)
        .await?;
    // RETURNING's order is not promised: put the rows back in the order given.
    let order: std::collections::HashMap<i64, usize> =
        ids.iter().enumerate().map(|(at, &id)| (id, at)).collect();
    rows.sort_by_key(|row| order.get(&row.id).copied());
    if rows.len() != news.len() {
        return Err(DbErr::RecordNotInserted);
    }
    Ok(rows)
}

/// The shards of a city's count of searches in flight (`search_load`, by search id).
const SEARCH_LOAD_SHARDS: i64 = 8;

/// A new pending search's row as values for a statement built by hand (a `WITH` or a multi-row
/// insert), one per column in `vehicle_search::Column::iter()` order, its id being `id` (a value
/// or a sub-query).
fn pending_values(id: Expr, new: NewSearch) -> Vec<Expr> {
    use sea_orm::{ActiveValue, Iterable};
    use vehicle_search::Column as C;
    let mut row = pending(0, new);
    C::iter()
        .map(|column| match (column, row.take(column)) {
            (C::Id, _) => id.clone(),
            (_, ActiveValue::Set(value) | ActiveValue::Unchanged(value)) => {
                column.save_as(Expr::val(value))
            }
            (_, ActiveValue::NotSet) => Expr::cust("DEFAULT"),
        })
        .collect()
}

/// A new pending search's row.
fn pending(id: i64, new: NewSearch) -> vehicle_search::ActiveModel {
    vehicle_search::ActiveModel {
        id: Set(id),
        city_id: Set(new.city_id),
        user_id: Set(new.user_id),
        plate: Set(new.plate.map(String::from)),
        color: Set(new.color.map(|c| c.as_str().to_owned())),
        vehicle_type: Set(new.vehicle_type.map(|v| v.as_str().to_owned())),
        start_date: Set(new.window.start()),
        end_date: Set(new.window.end()),
        camera_ids: Set(new.camera_ids.map(|ids| serde_json::json!(ids))),
        status: Set(SearchStatus::Pending),
        error_message: Set(None),
        tasks_total: Set(0),
        tasks_done: Set(0),
        tasks_failed: Set(0),
        frames_analyzed: Set(0),
        detector_calls: Set(0),
        created_at: Set(Utc::now()),
        started_at: Set(None),
        completed_at: Set(None),
        estimate: Set(new.estimate),
        snapshot_bytes: Set(0),
        snapshots_skipped: Set(0),
        snapshots_failed: Set(0),
        webhook_state: Set(new.webhook.as_ref().map(|_| WEBHOOK_PENDING.to_owned())),
        webhook_url: Set(new.webhook.as_ref().map(|w| w.0.clone())),
        webhook_secret: Set(new.webhook.map(|w| w.1)),
        webhook_attempts: Set(0),
        webhook_next_at: Set(None),
        webhook_error: Set(None),
    }
}

/// The search with this id.
///
/// # Errors
/// The database error.
pub async fn get(
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<Option<vehicle_search::Model>, DbErr> {
    vehicle_search::Entity::find_by_id(id).one(db).await
}

/// The camera filter of a search, if it has one.
pub fn camera_filter(search: &vehicle_search::Model) -> Option<Vec<i64>> {
    search
        .camera_ids
        .as_ref()
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Moves a pending search to processing with its task count. Returns `false` when the search was
/// not pending (already planned by an earlier attempt, or cancelled), so a re-run plan does not
/// reset progress.
///
/// # Errors
/// The database error.
pub async fn start_processing(
    db: &impl ConnectionTrait,
    id: i64,
    tasks_total: i32,
) -> Result<bool, DbErr> {
    let result = vehicle_search::Entity::update_many()
        .col_expr(
            vehicle_search::Column::Status,
            Expr::value(SearchStatus::Processing.as_str()),
        )
        .col_expr(vehicle_search::Column::TasksTotal, Expr::value(tasks_total))
        .col_expr(vehicle_search::Column::StartedAt, Expr::value(Utc::now()))
        .filter(vehicle_search::Column::Id.eq(id))
        .filter(vehicle_search::Column::Status.eq(SearchStatus::Pending.as_str()))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Ends a search that had nothing to analyse: completed with an empty trajectory.
///
/// # Errors
/// The database error.
pub async fn complete_empty(db: &impl ConnectionTrait, id: i64) -> Result<bool, DbErr> {
    let now = Utc::now();
    let result = vehicle_search::Entity::update_many()
        .col_expr(
            vehicle_search::Column::Status,
            Expr::value(SearchStatus::Completed.as_str()),
        )
        .col_expr(vehicle_search::Column::TasksTotal, Expr::value(0))
        .col_expr(vehicle_search::Column::StartedAt, Expr::value(now))
        .col_expr(vehicle_search::Column::CompletedAt, Expr::value(now))
        .filter(vehicle_search::Column::Id.eq(id))
        .filter(vehicle_search::Column::Status.eq(SearchStatus::Pending.as_str()))
        .exec(db)
        .await?;
    if result.rows_affected == 1 {
        observe_final(db, id, SearchStatus::Completed).await?;
    }
    Ok(result.rows_affected == 1)
}

/// Marks a search failed with a reason, unless it already ended.
///
/// # Errors
/// The database error.
pub async fn fail(db: &impl ConnectionTrait, id: i64, reason: &str) -> Result<bool, DbErr> {
    let result = vehicle_search::Entity::update_many()
        .col_expr(
            vehicle_search::Column::Status,
            Expr::value(SearchStatus::Failed.as_str()),
        )
        .col_expr(vehicle_search::Column::ErrorMessage, Expr::value(reason))
        .col_expr(vehicle_search::Column::CompletedAt, Expr::value(Utc::now()))
        .filter(vehicle_search::Column::Id.eq(id))
        .filter(vehicle_search::Column::Status.is_in(active_statuses()))
        .exec(db)
        .await?;
    if result.rows_affected == 1 {
        observe_final(db, id, SearchStatus::Failed).await?;
    }
    Ok(result.rows_affected == 1)
}

/// Cancels a search that has not ended, and its unfinished tasks. Returns `false` when the search
/// had already ended.
///
/// # Errors
/// The database error.
pub async fn cancel(db: &impl ConnectionTrait, id: i64) -> Result<bool, DbErr> {
    end_with_open_tasks(db, id, SearchStatus::Cancelled, None).await
}

/// Ends a search that has not ended with `status` (and `message`), cancelling its open tasks.
/// Returns whether this call ended it.
async fn end_with_open_tasks(
    db: &impl ConnectionTrait,
    id: i64,
    status: SearchStatus,
    message: Option<String>,
) -> Result<bool, DbErr> {
    let now = Utc::now();
    let mut update = vehicle_search::Entity::update_many()
        .col_expr(vehicle_search::Column::Status, Expr::value(status.as_str()))
        .col_expr(vehicle_search::Column::CompletedAt, Expr::value(now));
    if let Some(message) = message {
        update = update.col_expr(vehicle_search::Column::ErrorMessage, Expr::value(message));
    }
    let result = update
        .filter(vehicle_search::Column::Id.eq(id))
        .filter(vehicle_search::Column::Status.is_in(active_statuses()))
        .exec(db)
        .await?;
    if result.rows_affected == 1 {
        search_task::Entity::update_many()
            .col_expr(
                search_task::Column::Status,
                Expr::value(TaskStatus::Cancelled.as_str()),
            )
            .col_expr(search_task::Column::FinishedAt, Expr::value(now))
            .filter(search_task::Column::SearchId.eq(id))
            .filter(search_task::Column::Status.is_in([
                TaskStatus::Pending.as_str(),
                TaskStatus::Processing.as_str(),
            ]))
            .exec(db)
            .await?;
        observe_final(db, id, status).await?;
    }
    Ok(result.rows_affected == 1)
}

/// The share of analysed frames that reached the detector in the city's last 50 completed
/// searches that analysed any, among its latest 200 (`None` without history).
///
/// # Errors
/// The database error.
pub async fn observed_detector_rate(
    db: &impl ConnectionTrait,
    city_id: i64,
) -> Result<Option<f64>, DbErr> {
    use sea_orm::sea_query::{Alias, Func, Order, Query};
    use vehicle_search::Column as C;
    // The city's latest 200 searches by the (city, created) index, the completed ones that
    // analysed frames kept, the newest 50 of those summed, all in the database: a bounded read
    // however many searches the city has made (a filter on status first would read every
    // completed search of the city to find the newest), and one row back.
    let latest = Query::select()
        .columns([C::Status, C::FramesAnalyzed, C::DetectorCalls, C::CreatedAt])
        .from(vehicle_search::Entity)
        .and_where(Expr::col(C::CityId).eq(city_id))
        .order_by(C::CreatedAt, Order::Desc)
        .limit(200)
        .to_owned();
    let rated = Query::select()
        .columns([C::FramesAnalyzed, C::DetectorCalls])
        .from_subquery(latest, Alias::new("latest"))
        .and_where(Expr::col(C::Status).is_in([
            SearchStatus::Completed.as_str(),
            SearchStatus::CompletedWithErrors.as_str(),
        ]))
        .and_where(Expr::col(C::FramesAnalyzed).gt(0))
        .order_by(C::CreatedAt, Order::Desc)
        .limit(50)
        .to_owned();
    let sum = |c: C| Func::cast_as(Func::sum(Expr::col(c)), Alias::new("BIGINT"));
    let totals = Query::select()
        .expr_as(sum(C::FramesAnalyzed), Alias::new("frames"))
        .expr_as(sum(C::DetectorCalls), Alias::new("calls"))
        .from_subquery(rated, Alias::new("rated"))
        .to_owned();
    let Some(row) = db.query_one(&totals).await? else {
        return Ok(None);
    };
    let frames: Option<i64> = row.try_get("", "frames")?;
    let calls: Option<i64> = row.try_get("", "calls")?;
    Ok(match (frames, calls) {
        (Some(frames), Some(calls)) if frames > 0 => Some(calls as f64 / frames as f64),
        _ => None,
    })
}

/// How many of the city's searches are pending or processing: the sum of a few rows, which
/// triggers on `vehicle_search` keep exact in the same transaction as every change of a search's status
/// (a count of the rows would walk every index entry the city's recently ended searches left
/// until vacuum removes them).
///
/// # Errors
/// The database error.
pub async fn in_flight(db: &impl ConnectionTrait, city_id: i64) -> Result<u64, DbErr> {
    let shards = entity::search_load::Entity::find()
        .filter(entity::search_load::Column::CityId.eq(city_id))
        .all(db)
        .await?;
    let total: i64 = shards.iter().map(|s| s.in_flight).sum();
    Ok(u64::try_from(total).unwrap_or(0))
}

/// Which searches a list shows.
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    /// Only this city's (a city key's scope).
    pub city: Option<i64>,
    /// Only in this status.
    pub status: Option<SearchStatus>,
    /// Created at or after.
    pub created_after: Option<chrono::DateTime<Utc>>,
    /// Created before.
    pub created_before: Option<chrono::DateTime<Utc>>,
    /// Whose plate pattern contains this text (upper case).
    pub plate: Option<String>,
    /// Only this user's.
    pub user_id: Option<String>,
}

/// Up to `limit` of the searches matching `filter`, newest first, starting after `before` (the
/// previous page's last `(created_at, id)`), and how many match in all.
///
/// # Errors
/// The database error.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &SearchFilter,
    limit: u64,
    before: Option<(chrono::DateTime<Utc>, i64)>,
) -> Result<(u64, Vec<vehicle_search::Model>), DbErr> {
    use sea_orm::{Condition, PaginatorTrait, QuerySelect};
    let mut query = vehicle_search::Entity::find();
    if let Some(city) = filter.city {
        query = query.filter(vehicle_search::Column::CityId.eq(city));
    }
    if let Some(status) = filter.status {
        query = query.filter(vehicle_search::Column::Status.eq(status.as_str()));
    }
    if let Some(after) = filter.created_after {
        query = query.filter(vehicle_search::Column::CreatedAt.gte(after));
    }
    if let Some(before) = filter.created_before {
        query = query.filter(vehicle_search::Column::CreatedAt.lt(before));
    }
    if let Some(plate) = &filter.plate {
        query = query.filter(vehicle_search::Column::Plate.contains(plate));
    }
    if let Some(user) = &filter.user_id {
        query = query.filter(vehicle_search::Column::UserId.eq(user.as_str()));
    }
    let total = query.clone().count(db).await?;
    if let Some((at, id)) = before {
        query = query.filter(
            Condition::any()
                .add(vehicle_search::Column::CreatedAt.lt(at))
                .add(
                    Condition::all()
                        .add(vehicle_search::Column::CreatedAt.eq(at))
                        .add(vehicle_search::Column::Id.lt(id)),
                ),
        );
    }
    let items = query
        .order_by_desc(vehicle_search::Column::CreatedAt)
        .order_by_desc(vehicle_search::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    Ok((total, items))
}

/// How many searches are in each status (statuses without any are absent).
///
/// # Errors
/// The database error.
pub async fn count_by_status(db: &impl ConnectionTrait) -> Result<Vec<(String, i64)>, DbErr> {
    use sea_orm::QuerySelect;
    vehicle_search::Entity::find()
        .select_only()
        .column(vehicle_search::Column::Status)
        .column_as(vehicle_search::Column::Id.count(), "n")
        .group_by(vehicle_search::Column::Status)
        .into_tuple()
        .all(db)
        .await
}

/// When the oldest search still processing was created.
///
/// # Errors
/// The database error.
pub async fn oldest_processing_created_at(
    db: &impl ConnectionTrait,
) -> Result<Option<chrono::DateTime<Utc>>, DbErr> {
    use sea_orm::QuerySelect;
    vehicle_search::Entity::find()
        .select_only()
        .column(vehicle_search::Column::CreatedAt)
        .filter(vehicle_search::Column::Status.eq(SearchStatus::Processing.as_str()))
        .order_by_asc(vehicle_search::Column::CreatedAt)
        .limit(1)
        .into_tuple()
        .one(db)
        .await
}

/// Every search still processing.
///
/// # Errors
/// The database error.
pub async fn processing(db: &impl ConnectionTrait) -> Result<Vec<vehicle_search::Model>, DbErr> {
    vehicle_search::Entity::find()
        .filter(vehicle_search::Column::Status.eq(SearchStatus::Processing.as_str()))
        .all(db)
        .await
}

/// Searches still pending (never planned) that were created before `cutoff`, by id.
///
/// # Errors
/// The database error.
pub async fn pending_before(
    db: &impl ConnectionTrait,
    cutoff: chrono::DateTime<Utc>,
) -> Result<Vec<vehicle_search::Model>, DbErr> {
    vehicle_search::Entity::find()
        .filter(vehicle_search::Column::Status.eq(SearchStatus::Pending.as_str()))
        .filter(vehicle_search::Column::CreatedAt.lt(cutoff))
        .order_by_asc(vehicle_search::Column::Id)
        .all(db)
        .await
}

/// A page of searches that ended (any final status) and were created before `cutoff`, by id
/// after `after`.
///
/// # Errors
/// The database error.
pub async fn ended_before(
    db: &impl ConnectionTrait,
    cutoff: chrono::DateTime<Utc>,
    after: i64,
    page: u64,
) -> Result<Vec<vehicle_search::Model>, DbErr> {
    use sea_orm::QuerySelect;
    let ended = [
        SearchStatus::Completed,
        SearchStatus::CompletedWithErrors,
        SearchStatus::Failed,
        SearchStatus::Cancelled,
        SearchStatus::BudgetExhausted,
    ]
    .map(SearchStatus::as_str);
    vehicle_search::Entity::find()
        .filter(vehicle_search::Column::CreatedAt.lt(cutoff))
        .filter(vehicle_search::Column::Status.is_in(ended))
        .filter(vehicle_search::Column::Id.gt(after))
        .order_by_asc(vehicle_search::Column::Id)
        .limit(page)
        .all(db)
        .await
}

/// Deletes a search; its tasks and points go with it (`ON DELETE CASCADE`). Returns whether it
/// existed.
///
/// # Errors
/// The database error.
pub async fn delete(db: &impl ConnectionTrait, id: i64) -> Result<bool, DbErr> {
    Ok(vehicle_search::Entity::delete_by_id(id)
        .exec(db)
        .await?
        .rows_affected
        == 1)
}

/// Bytes of snapshots held by the city's stored searches.
///
/// # Errors
/// The database error.
pub async fn city_snapshot_bytes(db: &impl ConnectionTrait, city_id: i64) -> Result<i64, DbErr> {
    use sea_orm::QuerySelect;
    let sum: Option<Option<i64>> = vehicle_search::Entity::find()
        .select_only()
        .column_as(vehicle_search::Column::SnapshotBytes.sum(), "bytes")
        .filter(vehicle_search::Column::CityId.eq(city_id))
        .into_tuple()
        .one(db)
        .await?;
    Ok(sum.flatten().unwrap_or(0))
}

/// What became of a sighting's snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// Written: this many new bytes.
    Written(i64),
    /// Not written: the city's snapshot budget was full.
    OverBudget,
    /// Not written: the snapshot storage refused it (full or read-only disk).
    StorageFailed,
}

/// Adds a written snapshot's bytes to its search, or counts a sighting stored without one.
///
/// # Errors
/// The database error.
pub async fn count_snapshot(
    db: &impl ConnectionTrait,
    id: i64,
    outcome: SnapshotOutcome,
) -> Result<(), DbErr> {
    let update = vehicle_search::Entity::update_many().filter(vehicle_search::Column::Id.eq(id));
    let update = match outcome {
        SnapshotOutcome::Written(bytes) => update.col_expr(
            vehicle_search::Column::SnapshotBytes,
            Expr::col(vehicle_search::Column::SnapshotBytes).add(bytes),
        ),
        SnapshotOutcome::OverBudget => update.col_expr(
            vehicle_search::Column::SnapshotsSkipped,
            Expr::col(vehicle_search::Column::SnapshotsSkipped).add(1),
        ),
        SnapshotOutcome::StorageFailed => update.col_expr(
            vehicle_search::Column::SnapshotsFailed,
            Expr::col(vehicle_search::Column::SnapshotsFailed).add(1),
        ),
    };
    update.exec(db).await?;
    Ok(())
}

/// Ends a search that has not ended as `budget_exhausted` (its city's daily detector budget ran
/// out): its open tasks are cancelled, what it found is kept. Returns whether this call ended it.
///
/// # Errors
/// The database error.
pub async fn exhaust_budget(
    db: &impl ConnectionTrait,
    id: i64,
    budget: i64,
) -> Result<bool, DbErr> {
    end_with_open_tasks(
        db,
        id,
        SearchStatus::BudgetExhausted,
        Some(format!(
            "the city's daily detector budget ({budget} calls) was reached; the sightings found so far are kept"
        )),
    )
    .await
}

/// Counts a search that just reached `status` in the process metrics, with its duration.
async fn observe_final(
    db: &impl ConnectionTrait,
    id: i64,
    status: SearchStatus,
) -> Result<(), DbErr> {
    if let Some(search) = get(db, id).await? {
        let seconds = (search.completed_at.unwrap_or_else(Utc::now) - search.created_at)
            .num_milliseconds() as f64
            / 1000.0;
        crate::metrics::global().search_finished(status.as_str(), seconds);
    }
    Ok(())
}

fn active_statuses() -> [&'static str; 2] {
    [
        SearchStatus::Pending.as_str(),
        SearchStatus::Processing.as_str(),
    ]
}

/// Finalises a processing search whose tasks have all ended: `completed`, or
/// `completed_with_errors` (with the failed recordings listed) when any task failed.
///
/// The conditional `UPDATE … WHERE status = 'processing' AND tasks_done + tasks_failed >=
/// tasks_total` is the fan-in: however many workers finish their last tasks at once, exactly one
/// of them sees a row affected, and only that caller gets `Some(status)`.
///
/// # Errors
/// The database error.
pub async fn finalize_if_complete(
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<Option<SearchStatus>, DbErr> {
    use vehicle_search::Column as C;
    // Every finished task calls this; only the last ones find the search complete. The counters
    // are read first (one row), so a search of n tasks costs O(n) reads in all, and the failure
    // summary — one bounded aggregate — is built only once the search is complete.
    //
    // The error message is written by the same UPDATE as the status, so no reader ever sees
    // `completed_with_errors` without it. The `tasks_failed = n` guard makes the UPDATE miss if a
    // failure landed between the summary and the UPDATE, and the summary is read again.
    for _ in 0..8 {
        let Some(search) = get(db, id).await? else {
            return Ok(None);
        };
        if search.status != SearchStatus::Processing
            || search.tasks_done + search.tasks_failed < search.tasks_total
        {
            return Ok(None);
        }
        let (failed, summary) = failure_summary(db, id).await?;
        let result = vehicle_search::Entity::update_many()
            .col_expr(
                C::Status,
                Expr::case(
                    Expr::col(C::TasksFailed).gt(0),
                    SearchStatus::CompletedWithErrors.as_str(),
                )
                .finally(SearchStatus::Completed.as_str())
                .into(),
            )
            .col_expr(C::CompletedAt, Expr::value(Utc::now()))
            .col_expr(
                C::ErrorMessage,
                match summary {
                    Some(summary) => Expr::value(summary),
                    None => Expr::col(C::ErrorMessage),
                },
            )
            .filter(C::Id.eq(id))
            .filter(C::Status.eq(SearchStatus::Processing.as_str()))
            .filter(
                Expr::col(C::TasksDone)
                    .add(Expr::col(C::TasksFailed))
                    .gte(Expr::col(C::TasksTotal)),
            )
            .filter(C::TasksFailed.eq(failed))
            .exec(db)
            .await?;
        if result.rows_affected == 1 {
            let status = if failed > 0 {
                SearchStatus::CompletedWithErrors
            } else {
                SearchStatus::Completed
            };
            observe_final(db, id, status).await?;
            return Ok(Some(status));
        }
        // Finalised by another caller, or the failure count moved under us: look again.
    }
    Err(DbErr::Custom(format!(
        "search {id}: failed tasks kept changing while finalising"
    )))
}

/// Distinct failure causes a search's error message lists (the most frequent first).
pub const SUMMARY_CAUSES: u64 = 5;

/// The number of failed tasks and, when there are any, a bounded summary: "1000 recording(s)
/// failed: 600 × <error>; 400 × <error>" — at most [`SUMMARY_CAUSES`] distinct causes with their
/// counts (and how many other causes there were), whatever the number of failures.
async fn failure_summary(
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<(i32, Option<String>), DbErr> {
    use sea_orm::QuerySelect;
    use sea_orm::sea_query::{Alias, Order};
    let failed = || {
        search_task::Entity::find()
            .filter(search_task::Column::SearchId.eq(id))
            .filter(search_task::Column::Status.eq(TaskStatus::Failed.as_str()))
    };
    let count = {
        use sea_orm::PaginatorTrait;
        failed().count(db).await?
    };
    if count == 0 {
        return Ok((0, None));
    }
    let causes: Vec<(Option<String>, i64)> = failed()
        .select_only()
        .column(search_task::Column::Error)
        .column_as(search_task::Column::Id.count(), "n")
        .group_by(search_task::Column::Error)
        .order_by(Expr::col(Alias::new("n")), Order::Desc)
        .order_by_asc(search_task::Column::Error)
        .into_tuple()
        .all(db)
        .await?;
    let shown: Vec<String> = causes
        .iter()
        .take(SUMMARY_CAUSES as usize)
        .map(|(error, n)| format!("{n} × {}", error.as_deref().unwrap_or("unknown error")))
        .collect();
    let others = causes.len().saturating_sub(SUMMARY_CAUSES as usize);
    let mut message = format!("{count} recording(s) failed: {}", shown.join("; "));
    if others > 0 {
        message.push_str(&format!("; and {others} other cause(s)"));
    }
    Ok((i32::try_from(count).unwrap_or(i32::MAX), Some(message)))
}

/// A webhook waiting to be delivered.
pub const WEBHOOK_PENDING: &str = "pending";
/// A webhook the receiver accepted.
pub const WEBHOOK_DELIVERED: &str = "delivered";
/// A webhook given up after its attempts.
pub const WEBHOOK_GIVEN_UP: &str = "given_up";

/// Finished searches whose webhook is due at `now` (pending, not leased), oldest first.
///
/// # Errors
/// The database error.
pub async fn webhooks_due(
    db: &impl ConnectionTrait,
    now: chrono::DateTime<Utc>,
    limit: u64,
) -> Result<Vec<vehicle_search::Model>, DbErr> {
    use sea_orm::{Condition, QuerySelect};
    use vehicle_search::Column as C;
    let ended = SearchStatus::ALL
        .into_iter()
        .filter(|s| s.is_final())
        .map(SearchStatus::as_str);
    vehicle_search::Entity::find()
        .filter(C::WebhookState.eq(WEBHOOK_PENDING))
        .filter(C::Status.is_in(ended))
        .filter(
            Condition::any()
                .add(C::WebhookNextAt.is_null())
                .add(C::WebhookNextAt.lte(now)),
        )
        .order_by_asc(C::Id)
        .limit(limit)
        .all(db)
        .await
}

/// Claims a due webhook for one attempt until `lease_until`: only if it is still as read
/// (pending, the same attempts, due), so of several scheduler replicas one sends it.
///
/// # Errors
/// The database error.
pub async fn claim_webhook(
    db: &impl ConnectionTrait,
    search: &vehicle_search::Model,
    now: chrono::DateTime<Utc>,
    lease_until: chrono::DateTime<Utc>,
) -> Result<bool, DbErr> {
    use sea_orm::Condition;
    use vehicle_search::Column as C;
    Ok(vehicle_search::Entity::update_many()
        .col_expr(C::WebhookNextAt, Expr::value(lease_until))
        .filter(C::Id.eq(search.id))
        .filter(C::WebhookState.eq(WEBHOOK_PENDING))
        .filter(C::WebhookAttempts.eq(search.webhook_attempts))
        .filter(
            Condition::any()
                .add(C::WebhookNextAt.is_null())
                .add(C::WebhookNextAt.lte(now)),
        )
        .exec(db)
        .await?
        .rows_affected
        == 1)
}

/// Records an attempt: delivered (`error` `None`), retried at `next_at`, or given up (`next_at`
/// `None` with an error).
///
/// # Errors
/// The database error.
pub async fn record_webhook_attempt(
    db: &impl ConnectionTrait,
    id: i64,
    error: Option<&str>,
    next_at: Option<chrono::DateTime<Utc>>,
) -> Result<(), DbErr> {
    use vehicle_search::Column as C;
    let state = match (error, next_at) {
        (None, _) => WEBHOOK_DELIVERED,
        (Some(_), Some(_)) => WEBHOOK_PENDING,
        (Some(_), None) => WEBHOOK_GIVEN_UP,
    };
    vehicle_search::Entity::update_many()
        .col_expr(C::WebhookState, Expr::value(state))
        .col_expr(C::WebhookAttempts, Expr::col(C::WebhookAttempts).add(1))
        .col_expr(C::WebhookNextAt, Expr::value(next_at))
        .col_expr(C::WebhookError, Expr::value(error.map(str::to_owned)))
        .filter(C::Id.eq(id))
        .exec(db)
        .await
        .map(drop)
}
