//! The frame-analysis cache: one analysis per (recording, offset, provider), reused by every later
//! search whatever its criteria.

use std::collections::HashMap;

use chrono::Utc;
use entity::frame_analysis;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set};

/// The cached analysis of one frame.
///
/// # Errors
/// The database error.
pub async fn get(
    db: &impl ConnectionTrait,
    recording_id: i64,
    offset_ms: i64,
    provider: &str,
) -> Result<Option<serde_json::Value>, DbErr> {
    Ok(frame_analysis::Entity::find()
        .filter(frame_analysis::Column::RecordingId.eq(recording_id))
        .filter(frame_analysis::Column::OffsetMs.eq(offset_ms))
        .filter(frame_analysis::Column::Provider.eq(provider))
        .one(db)
        .await?
        .map(|row| row.result))
}

/// A cached analysis and the content-addressed snapshot cut from its frame, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    /// The analysis as stored.
    pub result: serde_json::Value,
    /// SHA-256 (hex) of the frame's snapshot under `SNAPSHOT_DIR/objects/`.
    pub snapshot: Option<String>,
}

/// Every cached analysis of a recording by a provider, by offset: one query per task instead of
/// one per frame.
///
/// # Errors
/// The database error.
pub async fn all_for_recording(
    db: &impl ConnectionTrait,
    recording_id: i64,
    provider: &str,
) -> Result<HashMap<i64, Cached>, DbErr> {
    Ok(frame_analysis::Entity::find()
        .filter(frame_analysis::Column::RecordingId.eq(recording_id))
        .filter(frame_analysis::Column::Provider.eq(provider))
        .all(db)
        .await?
        .into_iter()
        .map(|row| {
            (
                row.offset_ms,
                Cached {
                    result: row.result,
                    snapshot: row.snapshot,
                },
            )
        })
        .collect())
}

/// Records the content-addressed snapshot of a cached frame (no-op when the frame has no cached
/// analysis).
///
/// # Errors
/// The database error.
pub async fn set_snapshot(
    db: &impl ConnectionTrait,
    recording_id: i64,
    offset_ms: i64,
    provider: &str,
    sha256: &str,
) -> Result<(), DbErr> {
    use sea_orm::sea_query::Expr;
    frame_analysis::Entity::update_many()
        .col_expr(frame_analysis::Column::Snapshot, Expr::value(sha256))
        .filter(frame_analysis::Column::RecordingId.eq(recording_id))
        .filter(frame_analysis::Column::OffsetMs.eq(offset_ms))
        .filter(frame_analysis::Column::Provider.eq(provider))
        .exec(db)
        .await?;
    Ok(())
}

/// The cached offsets of each of `recording_ids` by a provider (batched queries).
///
/// # Errors
/// The database error.
pub async fn cached_offsets(
    db: &impl ConnectionTrait,
    recording_ids: &[i64],
    provider: &str,
) -> Result<HashMap<i64, std::collections::HashSet<i64>>, DbErr> {
    use sea_orm::QuerySelect;
    let mut out: HashMap<i64, std::collections::HashSet<i64>> = HashMap::new();
    for chunk in recording_ids.chunks(500) {
        let rows: Vec<(i64, i64)> = frame_analysis::Entity::find()
            .select_only()
            .column(frame_analysis::Column::RecordingId)
            .column(frame_analysis::Column::OffsetMs)
            .filter(frame_analysis::Column::RecordingId.is_in(chunk.iter().copied()))
            .filter(frame_analysis::Column::Provider.eq(provider))
            .into_tuple()
            .all(db)
            .await?;
        for (recording, offset) in rows {
            out.entry(recording).or_default().insert(offset);
        }
    }
    Ok(out)
}

/// Stores an analysis. If one is already stored for the key it is replaced: a later analysis of
/// the same frame is at least as complete (it may add the text an earlier one did not read).
///
/// # Errors
/// The database error.
pub async fn put(
    db: &impl ConnectionTrait,
    recording_id: i64,
    offset_ms: i64,
    provider: &str,
    result: serde_json::Value,
) -> Result<(), DbErr> {
    let insert = frame_analysis::Entity::insert(frame_analysis::ActiveModel {
        recording_id: Set(recording_id),
        offset_ms: Set(offset_ms),
        provider: Set(provider.to_owned()),
        result: Set(result),
        created_at: Set(Utc::now()),
        ..Default::default()
    })
    .on_conflict(
        OnConflict::columns([
            frame_analysis::Column::RecordingId,
            frame_analysis::Column::OffsetMs,
            frame_analysis::Column::Provider,
        ])
        .update_column(frame_analysis::Column::Result)
        .to_owned(),
    )
    .exec_without_returning(db)
    .await;
    match insert {
        Ok(_) | Err(DbErr::RecordNotInserted) => Ok(()),
        Err(e) => Err(e),
    }
}
