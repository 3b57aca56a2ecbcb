//! Liveness and readiness.

use poem::Request;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};

use crate::AppState;

#[derive(Tags)]
enum HealthTags {
    /// Probes for orchestrators.
    Health,
}

/// Probe answer.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct HealthBody {
    /// `ok`, `degraded` (ready, but some city's own database does not answer: only that city's
    /// requests fail) or `unavailable`.
    pub status: String,
    /// The dependencies that do not answer (`database`, `queue`), when not ready.
    pub failing: Vec<String>,
    /// Each dependency (`database`, `queue`) and whether it answers (`ok`, `unavailable`); with
    /// cities on their own databases also `city_databases` (`ok`, `degraded`).
    pub checks: Option<std::collections::BTreeMap<String, String>>,
    /// The errors behind `failing` and each city database that does not answer; only for
    /// callers with an admin API key, since they can name internal hosts and cities.
    pub details: Option<Vec<String>>,
}

/// Readiness answer.
#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// Database and queue answer.
    #[oai(status = 200)]
    Ready(Json<HealthBody>),
    /// Something is down; `failing` names it.
    #[oai(status = 503)]
    NotReady(Json<HealthBody>),
}

/// Health endpoints.
pub struct HealthApi;

#[OpenApi(tag = "HealthTags::Health")]
impl HealthApi {
    /// The process is up.
    #[oai(path = "/health/live", method = "get", operation_id = "health_live")]
    async fn live(&self) -> Json<HealthBody> {
        Json(HealthBody {
            status: "ok".into(),
            failing: Vec::new(),
            checks: None,
            details: None,
        })
    }

    /// The database and the queue answer. Anyone sees which dependency is down; the errors
    /// themselves only with an admin API key.
    #[oai(path = "/health/ready", method = "get", operation_id = "health_ready")]
    async fn ready(&self, state: Data<&AppState>, request: &Request) -> ReadyResponse {
        let mut failing = Vec::new();
        let mut details = Vec::new();
        let mut checks = std::collections::BTreeMap::new();
        let database = within(sentinela_core::repo::ping(state.control())).await;
        if let Err(e) = &database {
            tracing::warn!(error = %e, "database not ready");
            failing.push("database".to_owned());
            details.push(format!("database: {e}"));
        }
        let queue = within(state.queue.ping()).await;
        if let Err(e) = &queue {
            tracing::warn!(error = %e, "queue not ready");
            failing.push("queue".to_owned());
            details.push(format!("queue: {e}"));
        }
        for (name, ok) in [("database", database.is_ok()), ("queue", queue.is_ok())] {
            checks.insert(
                name.to_owned(),
                if ok { "ok" } else { "unavailable" }.to_owned(),
            );
        }
        // Cities' own databases: one that is down affects only that city, so the API stays
        // ready; `city_databases` says `degraded` and an admin sees which city.
        let mut degraded = false;
        if database.is_ok()
            && let Ok(all) = state.dbs.all().await
        {
            let own: Vec<_> = all.into_iter().filter(|d| !d.shared).collect();
            let pings = futures::future::join_all(
                own.iter()
                    .map(|d| within(sentinela_core::repo::ping(&d.conn))),
            )
            .await;
            for (d, ping) in own.iter().zip(pings) {
                if let Err(e) = ping {
                    degraded = true;
                    let names: Vec<String> = d
                        .cities
                        .iter()
                        .map(|c| format!("city {} ({})", c.id, c.name))
                        .collect();
                    tracing::warn!(database = %d.label, error = %e, "city database not ready");
                    details.push(format!("{}: unavailable: {e}", names.join(", ")));
                }
            }
            if !own.is_empty() {
                checks.insert(
                    "city_databases".to_owned(),
                    if degraded { "degraded" } else { "ok" }.to_owned(),
                );
            }
        }
        let admin = database.is_ok() && caller_is_admin(&state, request).await;
        let body = HealthBody {
            status: if failing.is_empty() {
                if degraded { "degraded" } else { "ok" }
            } else {
                "unavailable"
            }
            .into(),
            failing,
            checks: Some(checks),
            details: (admin && !details.is_empty()).then_some(details),
        };
        if body.failing.is_empty() {
            ReadyResponse::Ready(Json(body))
        } else {
            ReadyResponse::NotReady(Json(body))
        }
    }
}

/// Whether the request carries a valid, unrevoked admin key.
async fn caller_is_admin(state: &AppState, request: &Request) -> bool {
    let Some(token) = request
        .headers()
        .get(poem::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    matches!(
        crate::auth::find_key(state.control(), token.trim()).await,
        Ok(Some(key)) if key.is_admin && key.revoked_at.is_none()
    )
}

/// How long readiness waits for one dependency. A dependency that hangs instead of refusing (a
/// stopped database whose connections time out, a full pool) must not hold the probe past the
/// orchestrator's own probe timeout (Docker's and Kubernetes' are a few seconds): it is reported
/// as unavailable instead.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `check` within [`CHECK_TIMEOUT`]; its error, or the timeout, as text.
async fn within<T, E: std::fmt::Display>(
    check: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(result) => result.map_err(|e| format!("{e:#}")),
        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    }
}
