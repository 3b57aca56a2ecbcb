//! `/metrics` of the API in Prometheus text format (prometheus-client): HTTP requests by route and
//! status with latency, followed by the process metrics of [`sentinela_core::metrics`] (queue
//! depth and searches by status read when scraped; in `--standalone` mode also the workers' and
//! the scheduler's counters).
//!
//! Routes are labelled by their template (`/api/v1/searches/{id}`), never by raw paths, so ids do
//! not explode the label set.

use std::sync::Arc;
use std::time::Instant;

use poem::http::StatusCode;
use poem::web::Data;
use poem::{Endpoint, IntoResponse, Request, Response, handler};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Method.
    pub method: String,
    /// Route template.
    pub route: String,
    /// Status code.
    pub status: String,
}

/// Labels of a latency sample.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Method.
    pub method: String,
    /// Route template.
    pub route: String,
}

/// The API's metric families.
pub struct ApiMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        registry.register(
            "vms_http_requests",
            "HTTP requests answered, by method, route and status",
            requests.clone(),
        );
        registry.register(
            "vms_http_request_duration_seconds",
            "HTTP request latency, by method and route",
            latency.clone(),
        );
        Self {
            registry,
            requests,
            latency,
        }
    }
}

/// The route template of a path: numeric segments become `{id}`; snapshot file names `{file}`.
pub fn route_of(path: &str) -> String {
    let mut out = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        if !segment.is_empty() && segment.chars().all(|c| c.is_ascii_digit()) {
            out.push("{id}");
        } else if i.checked_sub(2).and_then(|j| segments.get(j)) == Some(&"snapshots") {
            out.push("{file}");
        } else {
            out.push(segment);
        }
    }
    let route = out.join("/");
    if route.starts_with("/docs") {
        "/docs".into()
    } else {
        route
    }
}

/// Middleware: counts every request and its latency.
pub async fn track<E: Endpoint>(
    endpoint: Arc<E>,
    request: Request,
    metrics: Arc<ApiMetrics>,
) -> poem::Result<Response> {
    let method = request.method().to_string();
    let route = route_of(request.uri().path());
    let started = Instant::now();
    let result = endpoint
        .call(request)
        .await
        .map(IntoResponse::into_response);
    let status = match &result {
        Ok(resp) => resp.status(),
        Err(err) => err.status(),
    };
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status: status.as_u16().to_string(),
        })
        .inc();
    metrics
        .latency
        .get_or_create(&RouteLabels { method, route })
        .observe(started.elapsed().as_secs_f64());
    result
}

/// `GET /metrics`.
#[handler]
pub(crate) async fn render(state: Data<&AppState>, metrics: Data<&Arc<ApiMetrics>>) -> Response {
    sentinela_core::metrics::refresh(&state.queue, &state.db).await;
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, &metrics.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    // Two registries, one exposition: only the last carries the `# EOF` terminator.
    let body = body.trim_end().trim_end_matches("# EOF").to_owned()
        + &sentinela_core::metrics::global().encode();
    Response::builder()
        .content_type(sentinela_core::metrics::CONTENT_TYPE)
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::route_of;

    #[test]
    fn routes_are_templates() {
        for (path, route) in [
            ("/", "/"),
            ("/metrics", "/metrics"),
            ("/api/v1/searches/42", "/api/v1/searches/{id}"),
            (
                "/api/v1/searches/42/trajectory",
                "/api/v1/searches/{id}/trajectory",
            ),
            (
                "/api/v1/snapshots/7/3-1000.jpg",
                "/api/v1/snapshots/{id}/{file}",
            ),
            ("/docs/index.css", "/docs"),
        ] {
            assert_eq!(route_of(path), route, "{path}");
        }
    }
}
