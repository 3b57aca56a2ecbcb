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
use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::metrics::{self, CityLabels, QueueLabels, StatusLabels};
use crate::queue::JobQueue;
use crate::tenancy::Databases;

#[derive(Clone)]
struct Scrape {
    queue: JobQueue,
    dbs: Arc<Databases>,
    daily_budget_default: Option<u64>,
}

#[handler]
async fn render(request: &Request, scrape: Data<&Scrape>) -> Response {
    refresh(&scrape.queue, &scrape.dbs, scrape.daily_budget_default).await;
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
    dbs: Arc<Databases>,
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
            dbs,
            daily_budget_default,
        });
    let task = tokio::spawn(async move {
        Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(app, shutdown, Some(std::time::Duration::from_secs(5)))
            .await
    });
    Ok((local, task))
}

/// Reads the gauges that describe shared state: queue depth by queue and state, searches by
/// status and the age of the oldest processing search (summed over every database holding city
/// data), each city's detector calls today and daily budget (`daily_budget_default` for cities
/// without their own), and whether each city's own database answers. A backend that does not
/// answer leaves the previous values and is logged; a city database that does not answer is
/// reported `vms_city_database_up 0` and does not hold back the others.
pub async fn refresh(queue: &JobQueue, dbs: &Databases, daily_budget_default: Option<u64>) {
    let m = metrics::global();
    match queue.depth().await {
        Ok(depths) => {
            for (queue, depth) in depths {
                for (state, value) in [
                    ("pending", depth.pending),
                    ("scheduled", depth.scheduled),
                    ("running", depth.running),
                    ("done", depth.done),
                    ("dead", depth.dead),
                ] {
                    m.queue_jobs
                        .get_or_create(&QueueLabels {
                            queue: queue.to_owned(),
                            state: state.to_owned(),
                        })
                        .set(i64::try_from(value).unwrap_or(i64::MAX));
                }
            }
        }
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "queue depth unavailable for /metrics"),
    }
    let databases = match dbs.all().await {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %e, "control database unavailable for /metrics");
            return;
        }
    };
    let default = daily_budget_default.and_then(|b| i64::try_from(b).ok());
    let mut by_status: Vec<(String, i64)> = Vec::new();
    let mut oldest = 0.0_f64;
    let mut complete = true;
    for database in &databases {
        let read = search_gauges(&database.conn).await;
        if !database.shared {
            for city in &database.cities {
                m.city_database_up
                    .get_or_create(&CityLabels {
                        city_id: city.id.to_string(),
                    })
                    .set(i64::from(read.is_ok()));
            }
        }
        match read {
            Ok((counts, age)) => {
                for (status, n) in counts {
                    match by_status.iter_mut().find(|(s, _)| *s == status) {
                        Some((_, total)) => *total += n,
                        None => by_status.push((status, n)),
                    }
                }
                oldest = oldest.max(age);
            }
            Err(e) => {
                complete = false;
                tracing::warn!(database = %database.label, error = %e, "search counts unavailable for /metrics");
                continue;
            }
        }
        match crate::repo::usage::all_on(
            &database.conn,
            &database.cities,
            chrono::Utc::now(),
            default,
        )
        .await
        {
            Ok(cities) => {
                for (city_id, calls, budget) in cities {
                    let labels = CityLabels {
                        city_id: city_id.to_string(),
                    };
                    m.city_calls_today.get_or_create(&labels).set(calls);
                    if let Some(budget) = budget {
                        m.city_budget.get_or_create(&labels).set(budget);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(database = %database.label, error = %e, "city usage unavailable for /metrics")
            }
        }
    }
    // Partial sums would look like searches vanishing: keep the previous values instead.
    if complete {
        for status in crate::SearchStatus::ALL.map(crate::SearchStatus::as_str) {
            let n = by_status
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            m.searches
                .get_or_create(&StatusLabels {
                    status: status.to_owned(),
                })
                .set(n);
        }
        m.oldest_processing.set(oldest);
    }
}

async fn search_gauges(
    db: &DatabaseConnection,
) -> Result<(Vec<(String, i64)>, f64), sea_orm::DbErr> {
    let by_status = crate::repo::searches::count_by_status(db).await?;
    let oldest = crate::repo::searches::oldest_processing_created_at(db).await?;
    let age = oldest.map_or(0.0, |t| {
        (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0
    });
    Ok((by_status, age))
}
