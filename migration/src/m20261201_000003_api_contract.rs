//! The API contract's administration: an API key's expiry and when it was last used, and the
//! `Idempotency-Key`s of search requests (kept in the control database beside the keys, 24 h).

use sea_orm_migration::{prelude::*, schema::*};

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000003_api_contract"
    }
}

#[derive(DeriveIden)]
enum ApiKey {
    Table,
    Id,
    ExpiresAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum IdempotencyKey {
    Table,
    Id,
    ApiKeyId,
    Key,
    RequestHash,
    SearchId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER: SQLite adds a single column at a time.
        for column in [
            timestamp_with_time_zone_null(ApiKey::ExpiresAt),
            timestamp_with_time_zone_null(ApiKey::LastUsedAt),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiKey::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKey::Table)
                    .col(big_pk_auto(IdempotencyKey::Id))
                    .col(big_integer(IdempotencyKey::ApiKeyId))
                    .col(string_len(IdempotencyKey::Key, 200))
                    .col(string_len(IdempotencyKey::RequestHash, 64))
                    // NULL while the request that reserved the key is still being answered.
                    .col(big_integer_null(IdempotencyKey::SearchId))
                    .col(timestamp_with_time_zone(IdempotencyKey::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_idempotency_key_api_key")
                            .from(IdempotencyKey::Table, IdempotencyKey::ApiKeyId)
                            .to(ApiKey::Table, ApiKey::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_idempotency_key_api_key_key")
                    .table(IdempotencyKey::Table)
                    .col(IdempotencyKey::ApiKeyId)
                    .col(IdempotencyKey::Key)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(IdempotencyKey::Table).to_owned())
            .await?;
        for column in [ApiKey::ExpiresAt, ApiKey::LastUsedAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiKey::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
