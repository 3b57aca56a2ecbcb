//! `sentinela-api`: see the crate documentation.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    sentinela_core::process::run(async_main())
}

async fn async_main() -> ExitCode {
    sentinela_core::telemetry::init("api");
    let cli = sentinela_api::Cli::parse();
    sentinela_core::cli::exit_code(sentinela_api::run(cli).await)
}
