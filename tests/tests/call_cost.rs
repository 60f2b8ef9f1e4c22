//! What resilience costs a call that succeeds (PROTOCOL §10): with retries
//! on (the default) and with a circuit breaker, a unary call allocates no
//! more than with retries off, and spawns no task (the connection watcher
//! is one task per client, started at its first call).
//!
//! Allocations are counted by a global allocator on a current-thread
//! runtime, so the client, its NATS connection and the service all run on
//! the measuring thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nats_micro_runtime::breaker::CircuitBreaker;
use nats_micro_runtime::retry::RetryPolicy;
use nats_micro_tests::chaos::{self, Chaos};
use nats_micro_tests::harness::NatsServer;
use nats_micro_tests::project::chaos::v1::Ask;
use nats_micro_tests::project::chaos::v1::chaos_service_nats::ChaosServiceClient;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CALLS: u64 = 2000;

/// Allocations and time per call of `client.get`, after a warm-up; and the
/// tasks alive after the calls, less those before.
async fn per_call(client: &ChaosServiceClient) -> (f64, Duration, isize) {
    for id in 0..300 {
        client.get(Ask { id, text: "warm".into(), sleep_ms: 0 }).await.expect("warm-up call");
    }
    let tasks_before = tokio::runtime::Handle::current().metrics().num_alive_tasks() as isize;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let started = Instant::now();
    for id in 0..CALLS {
        client.get(Ask { id, text: String::new(), sleep_ms: 0 }).await.expect("call");
    }
    let elapsed = started.elapsed();
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks() as isize - tasks_before;
    (allocations as f64 / CALLS as f64, elapsed / CALLS as u32, tasks)
}

#[tokio::test(flavor = "current_thread")]
async fn retries_and_breaker_cost_a_successful_call_no_allocation_and_no_task() {
    let nats = NatsServer::start();
    let service = chaos::builder(Chaos::default()).start(&nats.connect().await).await.expect("starts");
    let connection = nats.connect().await;
    let plain = ChaosServiceClient::new(connection.clone()).with_retry_policy(RetryPolicy::disabled());
    let retrying = ChaosServiceClient::new(connection.clone());
    let guarded = ChaosServiceClient::new(connection).with_circuit_breaker(CircuitBreaker::new());

    // Alternate, so that drift in the connection's buffers touches all three alike.
    let mut figures = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..3 {
        for (index, client) in [&plain, &retrying, &guarded].into_iter().enumerate() {
            figures[index].push(per_call(client).await);
        }
    }
    let best = |runs: &Vec<(f64, Duration, isize)>| {
        let allocations = runs.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
        let time = runs.iter().map(|r| r.1).min().unwrap_or_default();
        let tasks = runs.iter().map(|r| r.2).max().unwrap_or_default();
        (allocations, time, tasks)
    };
    let [plain, retrying, guarded] = figures.each_ref().map(best);
    println!("allocations per call: retries off {:.2}, on {:.2}, with breaker {:.2}", plain.0, retrying.0, guarded.0);
    println!("time per call (debug build): retries off {:?}, on {:?}, with breaker {:?}", plain.1, retrying.1, guarded.1);
    // A fraction of an allocation is the connection's buffers growing now and then.
    assert!(retrying.0 <= plain.0 + 0.1, "retries allocate on the happy path: {retrying:?} vs {plain:?}");
    assert!(guarded.0 <= plain.0 + 0.1, "the breaker allocates on the happy path: {guarded:?} vs {plain:?}");
    for (label, figure) in [("retries off", plain), ("retries on", retrying), ("breaker", guarded)] {
        assert!(figure.2 <= 0, "{label}: calls left {} tasks behind", figure.2);
    }
    service.stop().await;
}
