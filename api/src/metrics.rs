//! HTTP request metrics of the API: `vms_http_requests_total{method,route,status}` and
//! `vms_http_request_duration_seconds{method,route}` in the process registry of
//! [`sentinela_core::metrics`], served on the internal `METRICS_BIND` listener (never on the public
//! one).
//!
//! Every label value comes from a fixed set, so no caller can grow the series: the route is the
//! template of the OpenAPI path the request matched (`/api/v1/searches/{id}`), `/docs` for Swagger
//! UI, `/console` for the web console, or `unmatched`; the method is a standard one or `OTHER`.

use std::sync::Arc;
use std::time::Instant;

use poem::{Endpoint, IntoResponse, Request, Response};

/// The route templates requests are labelled with.
#[derive(Debug, Clone)]
pub struct Routes {
    /// Each template split into segments; `None` is a `{param}` segment.
    templates: Vec<(String, Vec<Option<String>>)>,
}

/// The label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

impl Routes {
    /// Templates from the OpenAPI document's paths plus the fixed routes (`/openapi.json`).
    pub fn from_spec(spec_json: &str) -> Self {
        let spec: serde_json::Value = serde_json::from_str(spec_json).unwrap_or_default();
        let mut paths: Vec<String> = spec
            .get("paths")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        paths.push("/openapi.json".into());
        let templates = paths
            .into_iter()
            .map(|path| {
                let segments = path
                    .split('/')
                    .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_owned()))
                    .collect();
                (path, segments)
            })
            .collect();
        Self { templates }
    }

    /// The names of the path parameters of the template `path` matches, in order.
    pub fn path_params(&self, path: &str) -> Vec<String> {
        let template = self.label(path);
        template
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect()
    }

    /// The template `path` matches, `/docs` for Swagger UI, or [`UNMATCHED`].
    pub fn label(&self, path: &str) -> &str {
        if path == "/docs" || path.starts_with("/docs/") {
            return "/docs";
        }
        if path == "/console" || path.starts_with("/console/") {
            return "/console";
        }
        let segments: Vec<&str> = path.split('/').collect();
        // A literal match wins over a parameter (`/searches/estimate` over `/searches/{id}`).
        let mut best: Option<(&str, usize)> = None;
        for (template, parts) in &self.templates {
            if parts.len() != segments.len() {
                continue;
            }
            let mut literals = 0;
            let matched = parts.iter().zip(&segments).all(|(part, seg)| match part {
                Some(lit) => {
                    literals += 1;
                    lit == seg
                }
                None => !seg.is_empty(),
            });
            if matched && best.is_none_or(|(_, n)| literals > n) {
                best = Some((template, literals));
            }
        }
        best.map_or(UNMATCHED, |(template, _)| template)
    }
}

/// Middleware: counts every request and its latency under bounded labels.
pub async fn track<E: Endpoint>(
    endpoint: Arc<E>,
    request: Request,
    routes: Arc<Routes>,
) -> poem::Result<Response> {
    let method = sentinela_core::metrics::http_method(request.method().as_str());
    let started = Instant::now();
    let path = request.uri().path().to_owned();
    let result = endpoint
        .call(request)
        .await
        .map(IntoResponse::into_response);
    let status = match &result {
        Ok(resp) => resp.status(),
        Err(err) => err.status(),
    };
    // A path no route serves is unmatched, whatever it looks like.
    let route = match &result {
        Err(err) if err.is::<poem::error::NotFoundError>() => UNMATCHED,
        _ => routes.label(&path),
    };
    sentinela_core::metrics::global().http_request(
        method,
        route,
        status.as_u16(),
        started.elapsed().as_secs_f64(),
    );
    result
}

#[cfg(test)]
mod tests {
    use super::{Routes, UNMATCHED};

    #[test]
    fn routes_are_templates_or_unmatched() {
        let routes = Routes::from_spec(
            r#"{"paths": {"/api/v1/searches": {}, "/api/v1/searches/{id}": {},
                "/api/v1/searches/{id}/trajectory": {}, "/api/v1/searches/estimate": {},
                "/api/v1/snapshots/{search_id}/{file}": {}, "/health/live": {}}}"#,
        );
        for (path, route) in [
            ("/api/v1/searches", "/api/v1/searches"),
            ("/api/v1/searches/42", "/api/v1/searches/{id}"),
            ("/api/v1/searches/abc", "/api/v1/searches/{id}"),
            ("/api/v1/searches/estimate", "/api/v1/searches/estimate"),
            (
                "/api/v1/searches/42/trajectory",
                "/api/v1/searches/{id}/trajectory",
            ),
            (
                "/api/v1/snapshots/7/3-1000.jpg",
                "/api/v1/snapshots/{search_id}/{file}",
            ),
            ("/docs/index.css", "/docs"),
            ("/openapi.json", "/openapi.json"),
            ("/metrics", UNMATCHED),
            ("/", UNMATCHED),
            ("/wp-admin/x1y2", UNMATCHED),
            ("/api/v1/searches/", UNMATCHED),
        ] {
            assert_eq!(routes.label(path), route, "{path}");
        }
    }
}
