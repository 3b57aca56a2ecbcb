//! The internal `/metrics` listener every binary serves on `METRICS_BIND` (the api on
//! `127.0.0.1:9464` by default, workers on `0.0.0.0:9999`, the scheduler on `0.0.0.0:9998`), with
//! `/health/live` for container checks. It is kept off the API's public listener: metrics describe
//! every city and are meant for Prometheus on the internal network, not for callers of the API.
//!
//! Prometheus asks for OpenMetrics and gets it; any other client (curl, `promtool check
//! metrics`) gets the Prometheus text format 0.0.4.

use std::future::Future;

use anyhow::Context;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Request, Response, Route, Server, get, handler};
use sea_orm::DatabaseConnection;

use crate::metrics;
use crate::queue::JobQueue;

#[derive(Clone)]
struct Scrape {
    queue: JobQueue,
    db: DatabaseConnection,
    daily_budget_default: Option<u64>,
}

#[handler]
async fn render(request: &Request, scrape: Data<&Scrape>) -> Response {
    metrics::refresh(&scrape.queue, &scrape.db, scrape.daily_budget_default).await;
    let body = metrics::global().encode();
    let openmetrics = request
        .headers()
        .get(poem::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        Response::builder()
            .content_type(metrics::CONTENT_TYPE)
            .body(body)
    } else {
        Response::builder()
            .content_type(metrics::TEXT_CONTENT_TYPE)
            .body(metrics::to_prometheus_text(&body))
    }
}

#[handler]
fn live() -> &'static str {
    "ok"
}

/// Binds `bind` now (so a taken port is reported at start-up, naming `METRICS_BIND`) and serves
/// `/metrics` until `shutdown` resolves. Returns the bound address and the serving task.
/// `daily_budget_default` is `detector.daily_calls_per_city` (for the per-city budget gauges).
///
/// # Errors
/// The address cannot be bound.
pub async fn start(
    bind: &str,
    queue: JobQueue,
    db: DatabaseConnection,
    daily_budget_default: Option<u64>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(String, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let acceptor = TcpListener::bind(bind.to_owned())
        .into_acceptor()
        .await
        .with_context(|| format!("METRICS_BIND: cannot listen on {bind}"))?;
    let local = acceptor
        .local_addr()
        .first()
        .map(|a| a.to_string().trim_start_matches("socket://").to_owned())
        .unwrap_or_default();
    let app = Route::new()
        .at("/metrics", get(render))
        .at("/health/live", get(live))
        .data(Scrape {
            queue,
            db,
            daily_budget_default,
        });
    let task = tokio::spawn(async move {
        Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(app, shutdown, Some(std::time::Duration::from_secs(5)))
            .await
    });
    Ok((local, task))
}
