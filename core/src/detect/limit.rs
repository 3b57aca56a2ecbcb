//! Bounded detector concurrency: a per-process cap on calls in flight, and an optional rate limit
//! shared by every worker process through Redis (a token bucket updated atomically by a Lua
//! script), because the provider's quota is per account, not per worker.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

/// A token bucket in Redis: `KEYS[1]` holds `tokens` and `ts` (ms); refills at `ARGV[1]` tokens
/// per second up to `ARGV[2]`. Time is Redis' own (`TIME`), never a worker's clock, so workers
/// whose clocks disagree share one bucket fairly; a `ts` from the future (a clock that was ahead)
/// is taken as now. Returns 0 when a token was taken, else the milliseconds to wait.
const TOKEN_BUCKET: &str = r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
if ts > now then
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
  ts = now
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', ts)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
";

/// Where the rate limit's bucket lives.
enum Bucket {
    /// Shared by every process on the Redis server.
    Redis {
        conn: redis::aio::ConnectionManager,
        script: redis::Script,
        key: String,
    },
    /// One process (embedded mode): tokens and the last refill.
    Local(Mutex<(f64, std::time::Instant)>),
}

/// A rate limit of `per_second` calls.
pub struct RateLimit {
    per_second: f64,
    bucket: Bucket,
}

impl RateLimit {
    /// A limit shared through Redis under `key`.
    pub fn redis(
        conn: redis::aio::ConnectionManager,
        key: impl Into<String>,
        per_second: f64,
    ) -> Self {
        Self {
            per_second,
            bucket: Bucket::Redis {
                conn,
                script: redis::Script::new(TOKEN_BUCKET),
                key: key.into(),
            },
        }
    }

    /// A limit for this process only.
    pub fn local(per_second: f64) -> Self {
        Self {
            per_second,
            bucket: Bucket::Local(Mutex::new((1.0, std::time::Instant::now()))),
        }
    }

    /// Waits until a call is allowed.
    ///
    /// # Errors
    /// A Redis error (the caller treats it as transient).
    pub async fn acquire(&self) -> Result<(), redis::RedisError> {
        // A burst of one call: calls are spread evenly, never bunched.
        let burst = 1.0_f64;
        loop {
            let wait_ms: u64 = match &self.bucket {
                Bucket::Redis { conn, script, key } => {
                    let mut conn = conn.clone();
                    script
                        .key(key)
                        .arg(self.per_second)
                        .arg(burst)
                        .invoke_async(&mut conn)
                        .await?
                }
                Bucket::Local(state) => {
                    let mut state = state.lock().await;
                    let now = std::time::Instant::now();
                    let elapsed = now.duration_since(state.1).as_secs_f64();
                    state.0 = (state.0 + elapsed * self.per_second).min(burst);
                    state.1 = now;
                    if state.0 >= 1.0 {
                        state.0 -= 1.0;
                        0
                    } else {
                        ((1.0 - state.0) * 1000.0 / self.per_second).ceil() as u64
                    }
                }
            };
            if wait_ms == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        }
    }
}

/// The gate every detector call goes through.
pub struct DetectorLimiter {
    in_flight: Arc<Semaphore>,
    rate: Option<RateLimit>,
}

impl DetectorLimiter {
    /// At most `max_in_flight` calls at once in this process, and `rate` calls per second overall.
    pub fn new(max_in_flight: usize, rate: Option<RateLimit>) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            rate,
        }
    }

    /// Waits for a slot (and a token); the call may proceed while the permit lives.
    ///
    /// # Errors
    /// A Redis error from the shared rate limit.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, redis::RedisError> {
        let permit = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        if let Some(rate) = &self.rate {
            rate.acquire().await?;
        }
        Ok(permit)
    }
}
