//! `sentinela-scheduler`: see the crate documentation.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    sentinela_core::telemetry::init("scheduler");
    let cli = sentinela_scheduler::Cli::parse();
    sentinela_core::cli::exit_code(sentinela_scheduler::run(cli).await)
}
