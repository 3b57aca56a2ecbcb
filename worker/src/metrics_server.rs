//! The `/metrics` endpoint of processes without the HTTP API (workers on `METRICS_BIND`, default
//! `0.0.0.0:9999`; the scheduler on `0.0.0.0:9998`), plus `/health/live` for container checks.

use std::future::Future;

use anyhow::Context;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Response, Route, Server, get, handler};
use sea_orm::DatabaseConnection;
use sentinela_core::metrics;
use sentinela_core::queue::JobQueue;

#[derive(Clone)]
struct Scrape {
    queue: JobQueue,
    db: DatabaseConnection,
}

#[handler]
async fn render(scrape: Data<&Scrape>) -> Response {
    metrics::refresh(&scrape.queue, &scrape.db).await;
    Response::builder()
        .content_type(metrics::CONTENT_TYPE)
        .body(metrics::global().encode())
}

#[handler]
fn live() -> &'static str {
    "ok"
}

/// Binds `bind` now (so a taken port is reported at start-up, naming `METRICS_BIND`) and serves
/// `/metrics` until `shutdown` resolves. Returns the bound address and the serving task.
///
/// # Errors
/// The address cannot be bound.
pub async fn start(
    bind: &str,
    queue: JobQueue,
    db: DatabaseConnection,
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
        .data(Scrape { queue, db });
    let task = tokio::spawn(async move {
        Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(app, shutdown, Some(std::time::Duration::from_secs(5)))
            .await
    });
    Ok((local, task))
}
