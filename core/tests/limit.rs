//! The detector rate limit is shared through Redis: two limiters on one key (two worker
//! processes) together stay within the rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sentinela_core::detect::limit::{DetectorLimiter, RateLimit};

async fn limiter(key: &str, per_second: f64) -> DetectorLimiter {
    let client = redis::Client::open(sentinela_testkit::redis_url()).unwrap();
    let conn = redis::aio::ConnectionManager::new(client)
        .await
        .expect("Redis answers");
    DetectorLimiter::new(8, Some(RateLimit::redis(conn, key, per_second)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_sharing_a_rate_limit_stay_within_it_together() {
    let key = format!("sentinela:test:rate:{}", rand::random::<u64>());
    let a = Arc::new(limiter(&key, 10.0).await);
    let b = Arc::new(limiter(&key, 10.0).await);
    let taken = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_millis(2_000);
    let mut tasks = Vec::new();
    for limiter in [a, b] {
        for _ in 0..4 {
            let (limiter, taken) = (limiter.clone(), taken.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let _permit = limiter.acquire().await.unwrap();
                    if Instant::now() < deadline {
                        taken.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let taken = taken.load(Ordering::SeqCst);
    // 10 calls/s for 2 s, plus the one-call burst; without sharing it would be about twice that.
    assert!(
        (15..=22).contains(&taken),
        "{taken} calls in 2 s at 10/s across two limiters"
    );
}

#[tokio::test]
async fn the_in_flight_cap_bounds_concurrent_calls() {
    let limiter = Arc::new(DetectorLimiter::new(3, None));
    let now = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (limiter, now, peak) = (limiter.clone(), now.clone(), peak.clone());
            tokio::spawn(async move {
                let _permit = limiter.acquire().await.unwrap();
                let current = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(current, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                now.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_keeps_redis_time_not_a_workers_clock() {
    // A bucket last written by a worker whose clock ran an hour ahead, empty: refills are counted
    // from Redis' own clock, so the next call waits about one interval, not an hour.
    let key = format!("sentinela:test:rate:{}", rand::random::<u64>());
    let client = redis::Client::open(sentinela_testkit::redis_url()).unwrap();
    let mut conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let ahead = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 3_600_000;
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("tokens")
        .arg(0)
        .arg("ts")
        .arg(ahead)
        .query_async(&mut conn)
        .await
        .unwrap();
    let limiter = limiter(&key, 10.0).await;
    let started = Instant::now();
    for _ in 0..3 {
        let _permit = tokio::time::timeout(Duration::from_secs(5), limiter.acquire())
            .await
            .expect("a token within seconds, not after the skewed clock's hour")
            .unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "three calls at 10/s took {:?}",
        started.elapsed()
    );
}
