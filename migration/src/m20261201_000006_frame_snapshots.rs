//! Content-addressed snapshots: a cached frame analysis remembers the SHA-256 of the snapshot
//! cut from that frame (`SNAPSHOT_DIR/objects/<aa>/<sha256>.jpg`), so a later search that matches
//! the same frame links that file instead of decoding the recording again.

use sea_orm_migration::{prelude::*, schema::*};

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000006_frame_snapshots"
    }
}

#[derive(DeriveIden)]
enum FrameAnalysis {
    Table,
    Snapshot,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(FrameAnalysis::Table)
                    .add_column(string_len_null(FrameAnalysis::Snapshot, 64))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(FrameAnalysis::Table)
                    .drop_column(FrameAnalysis::Snapshot)
                    .to_owned(),
            )
            .await
    }
}
