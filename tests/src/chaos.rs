//! The ChaosService of `proto/chaos/v1/chaos.proto`, behaving exactly as the
//! proto's comments say: the service the resilience scenarios (PROTOCOL §10)
//! run under faults.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nats_micro_runtime::RequestContext;

use crate::project::chaos::v1::chaos_service_nats::{self as chaos, ChaosService, ChaosServiceError};
use crate::project::chaos::v1::{Answer, Ask, Calls, Down};

/// Handlers that may run at once, per endpoint: with `Slow`'s
/// `pending_msg_limit: 16` from the proto, load beyond 20 is shed.
pub const MAX_CONCURRENCY: usize = 4;

/// What the service records; clones of [`Chaos`] share it.
#[derive(Debug, Default)]
pub struct Recorded {
    /// The id of every `Put` executed, once per execution.
    pub put_ids: Mutex<Vec<u64>>,
    /// `Flaky` calls received, in either state.
    pub flaky_calls: AtomicU64,
    /// While set, `Flaky` fails with UNAVAILABLE.
    pub down: AtomicBool,
}

impl Recorded {
    /// The `put-ids …` line a chaos server prints at SIGTERM.
    pub fn put_ids_line(&self) -> String {
        let ids = self.put_ids.lock().unwrap_or_else(PoisonError::into_inner);
        let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
        format!("put-ids {}", ids.join(","))
    }
}

/// The service.
#[derive(Clone, Debug, Default)]
pub struct Chaos {
    pub recorded: Arc<Recorded>,
}

fn answer(request: Ask) -> Answer {
    Answer { id: request.id, text: request.text }
}

impl ChaosService for Chaos {
    async fn get(&self, _ctx: RequestContext, request: Ask) -> Result<Answer, ChaosServiceError> {
        Ok(answer(request))
    }

    async fn put(&self, _ctx: RequestContext, request: Ask) -> Result<Answer, ChaosServiceError> {
        self.recorded.put_ids.lock().unwrap_or_else(PoisonError::into_inner).push(request.id);
        Ok(answer(request))
    }

    async fn flaky(&self, _ctx: RequestContext, request: Ask) -> Result<Answer, ChaosServiceError> {
        self.recorded.flaky_calls.fetch_add(1, Ordering::SeqCst);
        if self.recorded.down.load(Ordering::SeqCst) {
            return Err(ChaosServiceError::unavailable("dependency down"));
        }
        Ok(answer(request))
    }

    async fn set_down(&self, _ctx: RequestContext, request: Down) -> Result<Calls, ChaosServiceError> {
        let flaky_calls = self.recorded.flaky_calls.load(Ordering::SeqCst);
        self.recorded.down.store(request.down, Ordering::SeqCst);
        Ok(Calls { flaky_calls })
    }

    async fn slow(&self, _ctx: RequestContext, request: Ask) -> Result<Answer, ChaosServiceError> {
        tokio::time::sleep(Duration::from_millis(u64::from(request.sleep_ms))).await;
        Ok(answer(request))
    }
}

/// The service builder the chaos servers start: the proto's options and
/// [`MAX_CONCURRENCY`].
pub fn builder(service: Chaos) -> nats_micro_runtime::ServiceBuilder {
    chaos::service_builder(service).max_concurrency(MAX_CONCURRENCY)
}
