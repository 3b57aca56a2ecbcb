//! The web console's server-side sessions (control database): a signed-in browser holds a random
//! token in an HttpOnly cookie; the database keeps its SHA-256, the API key it acts as, the CSRF
//! token of its forms and when it was last used (idle expiry).

use sea_orm_migration::{prelude::*, schema::*};

pub(crate) struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000004_console_sessions"
    }
}

#[derive(DeriveIden)]
enum ApiKey {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum ConsoleSession {
    Table,
    Id,
    TokenHash,
    ApiKeyId,
    Csrf,
    CreatedAt,
    LastSeenAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ConsoleSession::Table)
                    .col(big_pk_auto(ConsoleSession::Id))
                    .col(string_len(ConsoleSession::TokenHash, 64).unique_key())
                    .col(big_integer(ConsoleSession::ApiKeyId))
                    .col(string_len(ConsoleSession::Csrf, 64))
                    .col(timestamp_with_time_zone(ConsoleSession::CreatedAt))
                    .col(timestamp_with_time_zone(ConsoleSession::LastSeenAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_console_session_api_key")
                            .from(ConsoleSession::Table, ConsoleSession::ApiKeyId)
                            .to(ApiKey::Table, ApiKey::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ConsoleSession::Table).to_owned())
            .await
    }
}
