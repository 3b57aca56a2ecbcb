//! The initial schema: every table of the data model with its foreign keys, idempotency
//! constraints and the indexes of the hot queries.

use sea_orm_migration::{prelude::*, schema::*};

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261129_000001_create_schema"
    }
}

#[derive(DeriveIden)]
enum City {
    Table,
    Id,
    Name,
    Timezone,
    RecordingRetentionDays,
    MaxStorageBytes,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Camera {
    Table,
    Id,
    CityId,
    Name,
    Location,
    Latitude,
    Longitude,
    MediamtxPath,
    Enabled,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Recording {
    Table,
    Id,
    CameraId,
    CityId,
    FilePath,
    StartedAt,
    EndedAt,
    SizeBytes,
    CreatedAt,
}

#[derive(DeriveIden)]
enum VehicleSearch {
    Table,
    Id,
    CityId,
    UserId,
    Plate,
    Color,
    VehicleType,
    StartDate,
    EndDate,
    CameraIds,
    Status,
    ErrorMessage,
    TasksTotal,
    TasksDone,
    TasksFailed,
    FramesAnalyzed,
    DetectorCalls,
    CreatedAt,
    StartedAt,
    CompletedAt,
}

#[derive(DeriveIden)]
enum SearchTask {
    Table,
    Id,
    SearchId,
    RecordingId,
    WindowStart,
    WindowEnd,
    Status,
    Attempts,
    Error,
    Worker,
    FramesAnalyzed,
    DetectorCalls,
    CreatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum TrajectoryPoint {
    Table,
    Id,
    SearchId,
    CameraId,
    RecordingId,
    Timestamp,
    Confidence,
    Label,
    Color,
    PlateText,
    PlateScore,
    Bbox,
    ImagePath,
    CreatedAt,
}

#[derive(DeriveIden)]
enum FrameAnalysis {
    Table,
    Id,
    RecordingId,
    OffsetMs,
    Provider,
    Result,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiKey {
    Table,
    Id,
    KeyHash,
    Prefix,
    Name,
    CityId,
    IsAdmin,
    UserId,
    CreatedAt,
    RevokedAt,
}

fn fk(
    name: &str,
    from: (impl IntoIden + 'static, impl IntoIden + 'static),
    to: (impl IntoIden + 'static, impl IntoIden + 'static),
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(on_delete)
        .on_update(ForeignKeyAction::Cascade)
        .to_owned()
}

fn index(name: &str, table: impl IntoIden + 'static, unique: bool) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table);
    if unique {
        index.unique();
    }
    index
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(City::Table)
                    .col(big_pk_auto(City::Id))
                    .col(string_len_uniq(City::Name, 200))
                    .col(string_len(City::Timezone, 64))
                    .col(integer(City::RecordingRetentionDays))
                    .col(big_integer_null(City::MaxStorageBytes))
                    .col(timestamp_with_time_zone(City::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Camera::Table)
                    .col(big_pk_auto(Camera::Id))
                    .col(big_integer(Camera::CityId))
                    .col(string_len(Camera::Name, 200))
                    .col(string_len_null(Camera::Location, 500))
                    .col(double_null(Camera::Latitude))
                    .col(double_null(Camera::Longitude))
                    .col(string_len_null(Camera::MediamtxPath, 255).unique_key())
                    .col(boolean(Camera::Enabled).default(true))
                    .col(timestamp_with_time_zone(Camera::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_camera_city",
                        (Camera::Table, Camera::CityId),
                        (City::Table, City::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("uq_camera_city_name", Camera::Table, true)
                    .col(Camera::CityId)
                    .col(Camera::Name)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Recording::Table)
                    .col(big_pk_auto(Recording::Id))
                    .col(big_integer(Recording::CameraId))
                    .col(big_integer(Recording::CityId))
                    .col(string_len_uniq(Recording::FilePath, 1024))
                    .col(timestamp_with_time_zone(Recording::StartedAt))
                    .col(timestamp_with_time_zone(Recording::EndedAt))
                    .col(big_integer(Recording::SizeBytes))
                    .col(timestamp_with_time_zone(Recording::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_recording_camera",
                        (Recording::Table, Recording::CameraId),
                        (Camera::Table, Camera::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_recording_city",
                        (Recording::Table, Recording::CityId),
                        (City::Table, City::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        // Idempotent registration: index sync and manual registration may meet on one segment.
        manager
            .create_index(
                index("uq_recording_camera_started", Recording::Table, true)
                    .col(Recording::CameraId)
                    .col(Recording::StartedAt)
                    .to_owned(),
            )
            .await?;
        // Overlap queries: `city_id = ? AND started_at < :to AND ended_at > :from`. The camera
        // variant is served by the unique index above (camera_id, started_at).
        manager
            .create_index(
                index("ix_recording_city_window", Recording::Table, false)
                    .col(Recording::CityId)
                    .col(Recording::StartedAt)
                    .col(Recording::EndedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(VehicleSearch::Table)
                    .col(big_pk_auto(VehicleSearch::Id))
                    .col(big_integer(VehicleSearch::CityId))
                    .col(string_len_null(VehicleSearch::UserId, 200))
                    .col(string_len_null(VehicleSearch::Plate, 16))
                    .col(string_len_null(VehicleSearch::Color, 32))
                    .col(string_len_null(VehicleSearch::VehicleType, 32))
                    .col(timestamp_with_time_zone(VehicleSearch::StartDate))
                    .col(timestamp_with_time_zone(VehicleSearch::EndDate))
                    .col(json_binary_null(VehicleSearch::CameraIds))
                    .col(string_len(VehicleSearch::Status, 32))
                    .col(text_null(VehicleSearch::ErrorMessage))
                    .col(integer(VehicleSearch::TasksTotal).default(0))
                    .col(integer(VehicleSearch::TasksDone).default(0))
                    .col(integer(VehicleSearch::TasksFailed).default(0))
                    .col(big_integer(VehicleSearch::FramesAnalyzed).default(0))
                    .col(big_integer(VehicleSearch::DetectorCalls).default(0))
                    .col(timestamp_with_time_zone(VehicleSearch::CreatedAt))
                    .col(timestamp_with_time_zone_null(VehicleSearch::StartedAt))
                    .col(timestamp_with_time_zone_null(VehicleSearch::CompletedAt))
                    .foreign_key(&mut fk(
                        "fk_vehicle_search_city",
                        (VehicleSearch::Table, VehicleSearch::CityId),
                        (City::Table, City::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        // Listing a city's searches newest first, and the scheduler's age-based cleanup.
        manager
            .create_index(
                index(
                    "ix_vehicle_search_city_created",
                    VehicleSearch::Table,
                    false,
                )
                .col(VehicleSearch::CityId)
                .col(VehicleSearch::CreatedAt)
                .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ix_vehicle_search_status", VehicleSearch::Table, false)
                    .col(VehicleSearch::Status)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SearchTask::Table)
                    .col(big_pk_auto(SearchTask::Id))
                    .col(big_integer(SearchTask::SearchId))
                    .col(big_integer(SearchTask::RecordingId))
                    .col(timestamp_with_time_zone(SearchTask::WindowStart))
                    .col(timestamp_with_time_zone(SearchTask::WindowEnd))
                    .col(string_len(SearchTask::Status, 16))
                    .col(integer(SearchTask::Attempts).default(0))
                    .col(text_null(SearchTask::Error))
                    .col(string_len_null(SearchTask::Worker, 255))
                    .col(big_integer(SearchTask::FramesAnalyzed).default(0))
                    .col(big_integer(SearchTask::DetectorCalls).default(0))
                    .col(timestamp_with_time_zone(SearchTask::CreatedAt))
                    .col(timestamp_with_time_zone_null(SearchTask::StartedAt))
                    .col(timestamp_with_time_zone_null(SearchTask::FinishedAt))
                    .foreign_key(&mut fk(
                        "fk_search_task_search",
                        (SearchTask::Table, SearchTask::SearchId),
                        (VehicleSearch::Table, VehicleSearch::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_search_task_recording",
                        (SearchTask::Table, SearchTask::RecordingId),
                        (Recording::Table, Recording::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        // A re-run plan must not create a task twice.
        manager
            .create_index(
                index("uq_search_task_search_recording", SearchTask::Table, true)
                    .col(SearchTask::SearchId)
                    .col(SearchTask::RecordingId)
                    .to_owned(),
            )
            .await?;
        // Stuck-task recovery scans processing tasks by start time; retention asks whether a
        // recording is in use.
        manager
            .create_index(
                index("ix_search_task_status_started", SearchTask::Table, false)
                    .col(SearchTask::Status)
                    .col(SearchTask::StartedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index("ix_search_task_recording", SearchTask::Table, false)
                    .col(SearchTask::RecordingId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TrajectoryPoint::Table)
                    .col(big_pk_auto(TrajectoryPoint::Id))
                    .col(big_integer(TrajectoryPoint::SearchId))
                    .col(big_integer(TrajectoryPoint::CameraId))
                    .col(big_integer(TrajectoryPoint::RecordingId))
                    .col(timestamp_with_time_zone(TrajectoryPoint::Timestamp))
                    .col(double(TrajectoryPoint::Confidence))
                    .col(string_len(TrajectoryPoint::Label, 32))
                    .col(string_len_null(TrajectoryPoint::Color, 32))
                    .col(string_len_null(TrajectoryPoint::PlateText, 16))
                    .col(double_null(TrajectoryPoint::PlateScore))
                    .col(json_binary(TrajectoryPoint::Bbox))
                    .col(string_len_null(TrajectoryPoint::ImagePath, 1024))
                    .col(timestamp_with_time_zone(TrajectoryPoint::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_trajectory_point_search",
                        (TrajectoryPoint::Table, TrajectoryPoint::SearchId),
                        (VehicleSearch::Table, VehicleSearch::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_trajectory_point_camera",
                        (TrajectoryPoint::Table, TrajectoryPoint::CameraId),
                        (Camera::Table, Camera::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_trajectory_point_recording",
                        (TrajectoryPoint::Table, TrajectoryPoint::RecordingId),
                        (Recording::Table, Recording::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        // A re-run job cannot duplicate a sighting.
        manager
            .create_index(
                index(
                    "uq_trajectory_point_search_camera_ts",
                    TrajectoryPoint::Table,
                    true,
                )
                .col(TrajectoryPoint::SearchId)
                .col(TrajectoryPoint::CameraId)
                .col(TrajectoryPoint::Timestamp)
                .to_owned(),
            )
            .await?;
        // The trajectory: a search's points in time order.
        manager
            .create_index(
                index(
                    "ix_trajectory_point_search_ts",
                    TrajectoryPoint::Table,
                    false,
                )
                .col(TrajectoryPoint::SearchId)
                .col(TrajectoryPoint::Timestamp)
                .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(FrameAnalysis::Table)
                    .col(big_pk_auto(FrameAnalysis::Id))
                    .col(big_integer(FrameAnalysis::RecordingId))
                    .col(big_integer(FrameAnalysis::OffsetMs))
                    .col(string_len(FrameAnalysis::Provider, 32))
                    .col(json_binary(FrameAnalysis::Result))
                    .col(timestamp_with_time_zone(FrameAnalysis::CreatedAt))
                    .foreign_key(&mut fk(
                        "fk_frame_analysis_recording",
                        (FrameAnalysis::Table, FrameAnalysis::RecordingId),
                        (Recording::Table, Recording::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        // The cache key; also serves "all analyses of a recording" by its prefix.
        manager
            .create_index(
                index("uq_frame_analysis_key", FrameAnalysis::Table, true)
                    .col(FrameAnalysis::RecordingId)
                    .col(FrameAnalysis::OffsetMs)
                    .col(FrameAnalysis::Provider)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiKey::Table)
                    .col(big_pk_auto(ApiKey::Id))
                    .col(string_len_uniq(ApiKey::KeyHash, 64))
                    .col(string_len(ApiKey::Prefix, 16))
                    .col(string_len(ApiKey::Name, 200))
                    .col(big_integer_null(ApiKey::CityId))
                    .col(boolean(ApiKey::IsAdmin).default(false))
                    .col(string_len(ApiKey::UserId, 200))
                    .col(timestamp_with_time_zone(ApiKey::CreatedAt))
                    .col(timestamp_with_time_zone_null(ApiKey::RevokedAt))
                    .foreign_key(&mut fk(
                        "fk_api_key_city",
                        (ApiKey::Table, ApiKey::CityId),
                        (City::Table, City::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Children first; dropping a table drops its indexes on both backends.
        for table in [
            ApiKey::Table.into_iden(),
            FrameAnalysis::Table.into_iden(),
            TrajectoryPoint::Table.into_iden(),
            SearchTask::Table.into_iden(),
            VehicleSearch::Table.into_iden(),
            Recording::Table.into_iden(),
            Camera::Table.into_iden(),
            City::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
