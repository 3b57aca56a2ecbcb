//! Requests per API key: a fixed one-minute window counted in Redis when the queue is Redis (so
//! every API replica shares it) and in this process otherwise (the embedded mode runs one API).
//! Over the limit a request answers 429 with `Retry-After` and the `RateLimit-*` headers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sentinela_core::queue::JobQueue;

/// Where the counts live.
#[derive(Clone)]
enum Counter {
    Redis(redis::aio::ConnectionManager),
    Local(Arc<Mutex<HashMap<(i64, i64), u32>>>),
}

/// The per-key request quota.
#[derive(Clone)]
pub struct RequestQuota {
    /// Requests per key per minute.
    pub per_minute: u32,
    counter: Counter,
}

/// A request over the quota: when the window resets.
#[derive(Debug, Clone, Copy)]
pub struct OverQuota {
    /// Requests per minute allowed.
    pub limit: u32,
    /// Seconds until the window resets.
    pub reset_secs: u64,
}

impl RequestQuota {
    /// The quota, shared through the queue's Redis when there is one.
    pub fn new(per_minute: u32, queue: &JobQueue) -> Self {
        let counter = match queue {
            JobQueue::Redis { conn, .. } => Counter::Redis(conn.clone()),
            JobQueue::Sqlite { .. } => Counter::Local(Arc::default()),
        };
        Self {
            per_minute,
            counter,
        }
    }

    /// Counts one request of `key_id`. A Redis that does not answer lets the request through
    /// (the quota protects the service; it must not take it down).
    ///
    /// # Errors
    /// [`OverQuota`] when the key has used its minute.
    pub async fn hit(&self, key_id: i64) -> Result<(), OverQuota> {
        let now = chrono::Utc::now().timestamp();
        let minute = now.div_euclid(60);
        let reset_secs = u64::try_from(60 - now.rem_euclid(60)).unwrap_or(60);
        let count = match &self.counter {
            Counter::Local(map) => {
                let mut map = map
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                map.retain(|(_, m), _| *m >= minute);
                let n = map.entry((key_id, minute)).or_default();
                *n = n.saturating_add(1);
                *n
            }
            Counter::Redis(conn) => {
                let key = format!("sentinela:quota:requests:{key_id}:{minute}");
                let mut conn = conn.clone();
                let counted: redis::RedisResult<(u32, i32)> = redis::pipe()
                    .atomic()
                    .incr(&key, 1)
                    .expire(&key, 120)
                    .query_async(&mut conn)
                    .await;
                match counted {
                    Ok((n, _)) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "request quota unavailable; letting the request through");
                        return Ok(());
                    }
                }
            }
        };
        if count > self.per_minute {
            Err(OverQuota {
                limit: self.per_minute,
                reset_secs,
            })
        } else {
            Ok(())
        }
    }
}
