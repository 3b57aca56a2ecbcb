//! The sea-orm `migration` CLI: `migration up`, `migration down`, `migration status`, `migration fresh`…
//! It reads `DATABASE_URL` like every other Sentinela binary.

use sea_orm_migration::prelude::*;

#[tokio::main]
async fn main() {
    cli::run_cli(migration::Migrator).await;
}
