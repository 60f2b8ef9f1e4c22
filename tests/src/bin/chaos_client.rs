//! Calls the ChaosService of `proto/chaos/v1` under load for the resilience
//! scenarios (PROTOCOL §10.3), from `$NATS_URL` (comma-separated allowed):
//! prints `ready` once connected, runs `$CHAOS_CONCURRENCY` workers (32) for
//! `$CHAOS_SECONDS` (10), each calling `Put` every 10th call and `Get`
//! otherwise with a fresh id, then prints one line of JSON with what
//! happened. Exits 0 whatever the calls did: the harness judges.
//!
//! `$CHAOS_ATTEMPT_TIMEOUT_MS`, when set, bounds each attempt (used where a
//! request can be lost without the client's own connection dropping).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nats_micro_runtime::Error;
use nats_micro_runtime::interceptor::{ClientCall, ClientNext, Reply};
use nats_micro_runtime::retry::RetryPolicy;
use nats_micro_tests::project::chaos::v1::Ask;
use nats_micro_tests::project::chaos::v1::chaos_service_nats::{ChaosServiceClient, ENDPOINTS};

/// What the workers saw.
#[derive(Default)]
struct Tally {
    get_ok: AtomicU64,
    get_failed: AtomicU64,
    put_ok: AtomicU64,
    put_failed: AtomicU64,
    wrong: AtomicU64,
    retries: AtomicU64,
    put_ok_ids: Mutex<Vec<u64>>,
    recovery: Mutex<Recovery>,
}

/// The longest time from a failed attempt to the next successful reply.
#[derive(Default)]
struct Recovery {
    failing_since: Option<Instant>,
    longest: Duration,
}

impl Tally {
    fn attempt_failed(&self) {
        let mut recovery = self.recovery.lock().unwrap_or_else(PoisonError::into_inner);
        recovery.failing_since.get_or_insert_with(Instant::now);
    }

    fn attempt_succeeded(&self) {
        let mut recovery = self.recovery.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(since) = recovery.failing_since.take() {
            recovery.longest = recovery.longest.max(since.elapsed());
        }
    }
}

/// Marks an attempt failed unless it completed successfully: an attempt
/// abandoned when the connection is lost is dropped, not completed.
struct AttemptGuard {
    tally: Arc<Tally>,
    succeeded: bool,
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        if self.succeeded {
            self.tally.attempt_succeeded();
        } else {
            self.tally.attempt_failed();
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let urls = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let urls: Vec<&str> = urls.split(',').map(str::trim).filter(|url| !url.is_empty()).collect();
    let seconds = env_number("CHAOS_SECONDS", 10);
    let concurrency = env_number("CHAOS_CONCURRENCY", 32);
    let nats = async_nats::ConnectOptions::new().max_reconnects(None).connect(urls).await?;

    let tally = Arc::new(Tally::default());
    // snippet: rust-resilience
    let policy = RetryPolicy::default() // 3 attempts, 50 ms doubling to 1 s, full jitter
        .max_attempts(20)
        .max_delay(Duration::from_millis(500));
    let client = ChaosServiceClient::new(nats)
        .with_timeout(Duration::from_secs(10)) // the whole call's, retries included
        .with_retry_policy(policy.clone())
        .with_retry_budget(1000.0, 1.0); // default: 10 tokens, 0.1 back per success
    // end snippet
    let client = match std::env::var("CHAOS_ATTEMPT_TIMEOUT_MS").ok().and_then(|value| value.parse().ok()) {
        Some(each) => client.with_retry_policy(policy.attempt_timeout(Duration::from_millis(each))),
        None => client,
    };
    let watched = tally.clone();
    let client = client.with_interceptor(nats_micro_runtime::interceptor::ClientInterceptorFn(
        move |call: ClientCall, next: ClientNext| {
            if call.headers.get(nats_micro_runtime::headers::ATTEMPT).is_some() {
                watched.retries.fetch_add(1, Ordering::Relaxed);
            }
            let guard = AttemptGuard { tally: watched.clone(), succeeded: false };
            async move {
                let mut guard = guard;
                let reply: Result<Reply, Error> = next.run(call).await;
                guard.succeeded = reply.is_ok();
                reply
            }
        },
    ));
    // Every method follows the proto's idempotency: Get is safe to repeat, Put is not.
    debug_assert!(ENDPOINTS.iter().any(|e| e.method.method == "Get" && e.method.idempotent));
    println!("ready");

    let ids = Arc::new(AtomicU64::new(1));
    let until = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, tally, ids) = (client.clone(), tally.clone(), ids.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let id = ids.fetch_add(1, Ordering::Relaxed);
                    let ask = Ask { id, text: id.to_string(), sleep_ms: 0 };
                    let is_put = id % 10 == 0;
                    let outcome = if is_put { client.put(ask).await } else { client.get(ask).await };
                    match outcome {
                        Ok(answer) => {
                            if answer.id != id || answer.text != id.to_string() {
                                tally.wrong.fetch_add(1, Ordering::Relaxed);
                            } else if is_put {
                                tally.put_ok.fetch_add(1, Ordering::Relaxed);
                                tally.put_ok_ids.lock().unwrap_or_else(PoisonError::into_inner).push(id);
                            } else {
                                tally.get_ok.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) if is_put => {
                            tally.put_failed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            tally.get_failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }

    let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let put_ok_ids = tally.put_ok_ids.lock().unwrap_or_else(PoisonError::into_inner);
    let put_ok_ids: Vec<String> = put_ok_ids.iter().map(u64::to_string).collect();
    let recovery_ms = tally.recovery.lock().unwrap_or_else(PoisonError::into_inner).longest.as_millis();
    println!(
        "{{\"get_ok\":{},\"get_failed\":{},\"put_ok\":{},\"put_failed\":{},\"wrong\":{},\"put_ok_ids\":[{}],\"recovery_ms\":{},\"retries\":{}}}",
        count(&tally.get_ok),
        count(&tally.get_failed),
        count(&tally.put_ok),
        count(&tally.put_failed),
        count(&tally.wrong),
        put_ok_ids.join(","),
        recovery_ms,
        count(&tally.retries),
    );
    Ok(())
}
