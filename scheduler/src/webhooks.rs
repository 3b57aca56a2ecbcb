//! Completion webhooks: finished searches whose webhook is due are claimed one at a time (so
//! several scheduler replicas send each once), POSTed signed (see `sentinela_core::webhook`), and
//! marked delivered, retried later (the wait doubles from `webhook_retry_base_secs`, capped at an
//! hour) or given up after `webhook_max_attempts`. Each attempt is counted in
//! `vms_webhook_deliveries_total{outcome}`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::vehicle_search;
use sea_orm::DatabaseConnection;
use sentinela_core::jobs::PeriodicJob;
use sentinela_core::metrics::WebhookLabels;
use sentinela_core::repo::searches;
use sentinela_core::settings::SchedulerSettings;
use sentinela_core::webhook;

use crate::report::Report;

/// Webhooks handled per run and database.
const BATCH: u64 = 100;
/// How long one attempt may take (the claim's lease is longer).
const TIMEOUT: Duration = Duration::from_secs(10);

/// The JSON a receiver gets.
pub fn payload(search: &vehicle_search::Model) -> serde_json::Value {
    serde_json::json!({
        "event": "search.finished",
        "search_id": search.id,
        "city_id": search.city_id,
        "status": search.status.as_str(),
        "error": search.error_message,
        "tasks_total": search.tasks_total,
        "tasks_done": search.tasks_done,
        "tasks_failed": search.tasks_failed,
        "frames_analyzed": search.frames_analyzed,
        "detector_calls": search.detector_calls,
        "created_at": search.created_at.to_rfc3339(),
        "completed_at": search.completed_at.map(|t| t.to_rfc3339()),
        "trajectory_url": format!("/api/v1/searches/{}/trajectory", search.id),
    })
}

/// The wait before attempt `attempts + 1`.
fn backoff(settings: &SchedulerSettings, attempts: i32) -> chrono::Duration {
    let base = settings.webhook_retry_base_secs.max(1);
    let factor = 1u64 << attempts.clamp(0, 20);
    chrono::Duration::seconds(i64::try_from(base.saturating_mul(factor).min(3600)).unwrap_or(3600))
}

/// Delivers the due webhooks of the searches in `db`.
///
/// # Errors
/// Database errors (a failed delivery is recorded, not returned).
pub async fn run(
    db: &DatabaseConnection,
    client: &reqwest::Client,
    settings: &SchedulerSettings,
    now: DateTime<Utc>,
) -> anyhow::Result<Report> {
    let mut report = Report::new(PeriodicJob::Webhooks, &["delivered", "retried", "given_up"]);
    let metrics = sentinela_core::metrics::global();
    for search in searches::webhooks_due(db, now, BATCH).await? {
        let (Some(url), Some(secret)) = (&search.webhook_url, &search.webhook_secret) else {
            searches::record_webhook_attempt(db, search.id, Some("no URL or secret"), None).await?;
            continue;
        };
        let lease = now + chrono::Duration::seconds(60);
        if !searches::claim_webhook(db, &search, now, lease).await? {
            continue;
        }
        let body = payload(&search).to_string().into_bytes();
        let result = webhook::deliver(
            client,
            url,
            secret,
            &search.id.to_string(),
            body,
            settings.webhook_allow_internal,
            TIMEOUT,
        )
        .await;
        let attempts = search.webhook_attempts + 1;
        let outcome = match &result {
            Ok(()) => {
                searches::record_webhook_attempt(db, search.id, None, None).await?;
                "delivered"
            }
            Err(error) if attempts < settings.webhook_max_attempts => {
                let next = Utc::now() + backoff(settings, attempts - 1);
                searches::record_webhook_attempt(db, search.id, Some(error), Some(next)).await?;
                tracing::warn!(search_id = search.id, attempts, %error, next = %next, "webhook failed; will retry");
                "retried"
            }
            Err(error) => {
                searches::record_webhook_attempt(db, search.id, Some(error), None).await?;
                tracing::error!(search_id = search.id, attempts, %error, "webhook given up");
                "given_up"
            }
        };
        report.add(outcome, 1);
        metrics
            .webhook_deliveries
            .get_or_create(&WebhookLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }
    Ok(report)
}
