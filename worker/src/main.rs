//! `sentinela-worker`: see the crate documentation.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    sentinela_core::process::run(async_main())
}

async fn async_main() -> ExitCode {
    sentinela_core::telemetry::init("worker");
    let cli = sentinela_worker::Cli::parse();
    sentinela_core::cli::exit_code(sentinela_worker::run(cli).await)
}
