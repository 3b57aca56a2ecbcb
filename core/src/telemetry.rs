//! Logging shared by every binary: `tracing` with JSON lines when stderr is not a terminal (or
//! `LOG_FORMAT=json`), human-readable lines otherwise; `RUST_LOG` filters. Every JSON line carries
//! `service` (`api`, `worker`, `scheduler`), so Loki can label streams by it; handlers add
//! `search_id` and `task_id`.

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
        let format = tracing_subscriber::fmt::format()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false);
        builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(WithService {
                service,
                inner: format,
            })
            .try_init()
    } else {
        builder.compact().try_init()
    };
    if result.is_ok() {
        tracing::debug!(service, "telemetry initialised");
    }
}

/// A JSON event format that starts every line with `"service":"<name>"`.
struct WithService<F> {
    service: &'static str,
    inner: F,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for WithService<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.inner.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut line),
            event,
        )?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"service\":\"{}\",{rest}", self.service),
            None => writer.write_str(&line),
        }
    }
}
