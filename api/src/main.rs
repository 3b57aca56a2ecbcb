//! `sentinela-api`: see the crate documentation.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    sentinela_core::telemetry::init("api");
    let cli = sentinela_api::Cli::parse();
    sentinela_core::cli::exit_code(sentinela_api::run(cli).await)
}
