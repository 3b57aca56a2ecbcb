//! Trajectory points, inserted idempotently.

use chrono::{DateTime, Utc};
use entity::trajectory_point;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};

/// A sighting to record.
#[derive(Debug, Clone)]
pub struct NewPoint {
    /// The search it answers.
    pub search_id: i64,
    /// The camera that saw the vehicle.
    pub camera_id: i64,
    /// The recording it was seen in.
    pub recording_id: i64,
    /// When.
    pub timestamp: DateTime<Utc>,
    /// Detector confidence, 0..1.
    pub confidence: f64,
    /// Canonical vehicle type.
    pub label: String,
    /// Canonical colour.
    pub color: Option<String>,
    /// Plate text read.
    pub plate_text: Option<String>,
    /// Plate match score.
    pub plate_score: Option<f64>,
    /// Bounding box JSON.
    pub bbox: serde_json::Value,
    /// Snapshot file name.
    pub image_path: Option<String>,
}

/// Inserts a point unless the same (search, camera, timestamp) is already there. Returns whether a
/// row was inserted; a re-run job gets `false` and the trajectory keeps one row.
///
/// # Errors
/// The database error.
pub async fn insert_idempotent(db: &impl ConnectionTrait, new: NewPoint) -> Result<bool, DbErr> {
    let result = trajectory_point::Entity::insert(trajectory_point::ActiveModel {
        search_id: Set(new.search_id),
        camera_id: Set(new.camera_id),
        recording_id: Set(new.recording_id),
        timestamp: Set(new.timestamp),
        confidence: Set(new.confidence),
        label: Set(new.label),
        color: Set(new.color),
        plate_text: Set(new.plate_text),
        plate_score: Set(new.plate_score),
        bbox: Set(new.bbox),
        image_path: Set(new.image_path),
        created_at: Set(Utc::now()),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([
            trajectory_point::Column::SearchId,
            trajectory_point::Column::CameraId,
            trajectory_point::Column::Timestamp,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(db)
    .await;
    match result {
        Ok(rows) => Ok(rows > 0),
        Err(DbErr::RecordNotInserted) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A page of every point's `(id, image_path)` by id after `after` (for checks over all rows).
///
/// # Errors
/// The database error.
pub async fn image_page(
    db: &impl ConnectionTrait,
    after: i64,
    page: u64,
) -> Result<Vec<(i64, Option<String>)>, DbErr> {
    use sea_orm::QuerySelect;
    trajectory_point::Entity::find()
        .select_only()
        .column(trajectory_point::Column::Id)
        .column(trajectory_point::Column::ImagePath)
        .filter(trajectory_point::Column::Id.gt(after))
        .order_by_asc(trajectory_point::Column::Id)
        .limit(page)
        .into_tuple()
        .all(db)
        .await
}

/// How many points a search has.
///
/// # Errors
/// The database error.
pub async fn count_for_search(db: &impl ConnectionTrait, search_id: i64) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    trajectory_point::Entity::find()
        .filter(trajectory_point::Column::SearchId.eq(search_id))
        .count(db)
        .await
}

/// The most confident point of a search on a camera with a timestamp in `[from, to)`.
///
/// # Errors
/// The database error.
pub async fn best_between(
    db: &impl ConnectionTrait,
    search_id: i64,
    camera_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Option<trajectory_point::Model>, DbErr> {
    use trajectory_point::Column as C;
    trajectory_point::Entity::find()
        .filter(C::SearchId.eq(search_id))
        .filter(C::CameraId.eq(camera_id))
        .filter(C::Timestamp.gte(from))
        .filter(C::Timestamp.lt(to))
        .order_by_desc(C::Confidence)
        .order_by_asc(C::Timestamp)
        .one(db)
        .await
}

/// Replaces point `id` with a better sighting of the same interval (every field but the search
/// and the camera).
///
/// # Errors
/// The database error.
pub async fn replace(db: &impl ConnectionTrait, id: i64, new: NewPoint) -> Result<(), DbErr> {
    use sea_orm::ActiveModelTrait;
    trajectory_point::ActiveModel {
        id: Set(id),
        recording_id: Set(new.recording_id),
        timestamp: Set(new.timestamp),
        confidence: Set(new.confidence),
        label: Set(new.label),
        color: Set(new.color),
        plate_text: Set(new.plate_text),
        plate_score: Set(new.plate_score),
        bbox: Set(new.bbox),
        image_path: Set(new.image_path),
        ..Default::default()
    }
    .update(db)
    .await
    .map(drop)
}

/// One page of a search's points in trajectory order (time, then camera), after the point
/// `after` = (timestamp, camera) when given: keyset pagination, so pages never repeat or skip a
/// point whatever is inserted meanwhile before the cursor.
///
/// # Errors
/// The database error.
pub async fn page_for_search(
    db: &impl ConnectionTrait,
    search_id: i64,
    after: Option<(DateTime<Utc>, i64)>,
    limit: u64,
) -> Result<Vec<trajectory_point::Model>, DbErr> {
    use sea_orm::{Condition, QuerySelect};
    use trajectory_point::Column as C;
    let mut query = trajectory_point::Entity::find().filter(C::SearchId.eq(search_id));
    if let Some((timestamp, camera_id)) = after {
        query = query.filter(
            Condition::any().add(C::Timestamp.gt(timestamp)).add(
                Condition::all()
                    .add(C::Timestamp.eq(timestamp))
                    .add(C::CameraId.gt(camera_id)),
            ),
        );
    }
    query
        .order_by_asc(C::Timestamp)
        .order_by_asc(C::CameraId)
        .limit(limit)
        .all(db)
        .await
}

/// Per camera that saw the vehicle in a search: (camera, first seen, last seen, sightings), in
/// first-seen order — one aggregate, whatever the number of points.
///
/// # Errors
/// The database error.
pub async fn cameras_for_search(
    db: &impl ConnectionTrait,
    search_id: i64,
) -> Result<Vec<(i64, DateTime<Utc>, DateTime<Utc>, i64)>, DbErr> {
    use sea_orm::QuerySelect;
    use trajectory_point::Column as C;
    let mut rows: Vec<(i64, DateTime<Utc>, DateTime<Utc>, i64)> = trajectory_point::Entity::find()
        .select_only()
        .column(C::CameraId)
        .column_as(C::Timestamp.min(), "first_seen")
        .column_as(C::Timestamp.max(), "last_seen")
        .column_as(C::Id.count(), "sightings")
        .filter(C::SearchId.eq(search_id))
        .group_by(C::CameraId)
        .into_tuple()
        .all(db)
        .await?;
    rows.sort_by_key(|r| (r.1, r.0));
    Ok(rows)
}

/// A search's points in time order.
///
/// # Errors
/// The database error.
pub async fn list_for_search(
    db: &impl ConnectionTrait,
    search_id: i64,
) -> Result<Vec<trajectory_point::Model>, DbErr> {
    trajectory_point::Entity::find()
        .filter(trajectory_point::Column::SearchId.eq(search_id))
        .order_by_asc(trajectory_point::Column::Timestamp)
        .order_by_asc(trajectory_point::Column::CameraId)
        .all(db)
        .await
}

/// Point `id` of search `search_id`.
///
/// # Errors
/// The database error.
pub async fn get_in_search(
    db: &impl ConnectionTrait,
    search_id: i64,
    id: i64,
) -> Result<Option<trajectory_point::Model>, DbErr> {
    trajectory_point::Entity::find_by_id(id)
        .filter(trajectory_point::Column::SearchId.eq(search_id))
        .one(db)
        .await
}
