//! Sentinela's HTTP API binary, as a library so tests can drive it.
//!
//! # Layout
//! - [`Cli`]: the command line (`sentinela-api [serve|seed] [--standalone] [--demo]`).
//! - [`run`]: dispatches a parsed command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use sentinela_core::{db, seed, settings::Settings};

/// Command line of `sentinela-api`.
#[derive(Debug, Parser)]
#[command(
    name = "sentinela-api",
    version,
    about = "Sentinela HTTP API: vehicle searches over a city's camera recordings",
    long_about = "Sentinela HTTP API: vehicle searches over a city's camera recordings.\n\n\
        Settings come from the environment (DATABASE_URL, REDIS_URL, API_BIND, DETECTOR, \
        SAMPLE_FPS, …; see .env.example) and an optional sentinela.toml."
)]
pub struct Cli {
    /// Run api + worker + scheduler in one process (embedded mode).
    #[arg(long)]
    pub standalone: bool,
    /// With --standalone: also load a demo city, cameras and sample recordings.
    #[arg(long)]
    pub demo: bool,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Idempotently create the demo city and its cameras.
    Seed,
}

/// Runs a parsed command line.
///
/// # Errors
/// Settings, database and server errors, each naming what failed.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            db::connect_and_migrate(&settings.database_url).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Seed => {
            let db = db::connect_and_migrate(&settings.database_url).await?;
            let (city, cameras) = seed::seed_demo(&db)
                .await
                .context("failed to seed the demo city")?;
            println!(
                "demo city {:?} (id {}) with {} cameras: {}",
                city.name,
                city.id,
                cameras.len(),
                cameras
                    .iter()
                    .map(|c| format!("{} (id {})", c.name, c.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        Command::Serve => {
            db::connect_and_migrate(&settings.database_url).await?;
            anyhow::bail!(
                "serving the HTTP API is not implemented yet (issue #4); `seed` and `migrate` work"
            )
        }
    }
}
