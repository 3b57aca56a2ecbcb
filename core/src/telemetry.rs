//! Logging shared by every binary: `tracing` with JSON lines when stderr is not a terminal (or
//! `LOG_FORMAT=json`), human-readable lines otherwise; `RUST_LOG` filters.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// The default filter: our crates at info, chatty dependencies at warn.
const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,apalis=warn,hyper=warn,aws=warn";

/// Installs the global subscriber. Calling it twice is harmless (the second call does nothing), so
/// tests may call it freely.
pub fn init(service: &'static str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let json = match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("pretty" | "text") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
    if result.is_ok() {
        tracing::debug!(service, "telemetry initialised");
    }
}
