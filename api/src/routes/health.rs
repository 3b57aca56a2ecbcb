//! Liveness and readiness.

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use sea_orm::ConnectionTrait;

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
    /// `ok` or `unavailable`.
    pub status: String,
    /// The failing parts, when not ready.
    pub failing: Vec<String>,
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
    #[oai(path = "/health/live", method = "get")]
    async fn live(&self) -> Json<HealthBody> {
        Json(HealthBody {
            status: "ok".into(),
            failing: Vec::new(),
        })
    }

    /// The database and the queue answer.
    #[oai(path = "/health/ready", method = "get")]
    async fn ready(&self, state: Data<&AppState>) -> ReadyResponse {
        let mut failing = Vec::new();
        if let Err(e) = state.db.execute_unprepared("SELECT 1").await {
            tracing::warn!(error = %e, "database not ready");
            failing.push(format!("database: {e}"));
        }
        if let Err(e) = state.queue.ping().await {
            tracing::warn!(error = %format!("{e:#}"), "queue not ready");
            failing.push(format!("queue: {e:#}"));
        }
        if failing.is_empty() {
            ReadyResponse::Ready(Json(HealthBody {
                status: "ok".into(),
                failing,
            }))
        } else {
            ReadyResponse::NotReady(Json(HealthBody {
                status: "unavailable".into(),
                failing,
            }))
        }
    }
}
