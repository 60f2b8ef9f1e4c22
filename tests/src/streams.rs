//! The StreamService of `proto/streams/v1/streams.proto`, behaving exactly
//! as the proto's comments say, plus counters the tests read: how many
//! numbers `CountUp` sent and how many of its handlers ended early.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nats_micro_runtime::{RequestContext, ResponseSender};

use crate::project::streams::v1::stream_service_nats::{StreamService, StreamServiceError};
use crate::project::streams::v1::{ChatMessage, CountUpRequest, Number, SumResponse};

/// The `Ping` text answered with [`Observed::stopped_early`] (see the proto).
pub const STOPPED_EARLY: &str = "stopped early?";

/// What the tests observe of the service.
#[derive(Debug, Default)]
pub struct Observed {
    /// Numbers `CountUp` has sent so far, over all calls.
    pub sent: AtomicU64,
    /// `CountUp` handlers stopped before they finished (cancelled, deadline, caller gone).
    pub stopped_early: AtomicU64,
}

/// The service; clones share [`Observed`].
#[derive(Clone, Debug, Default)]
pub struct Streams {
    pub observed: Arc<Observed>,
}

/// Counts a `CountUp` handler that is dropped before it finished.
struct EarlyStop<'a>(&'a Observed, bool);

impl Drop for EarlyStop<'_> {
    fn drop(&mut self) {
        if !self.1 {
            self.0.stopped_early.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl StreamService for Streams {
    async fn count_up(
        &self,
        ctx: RequestContext,
        request: CountUpRequest,
        responses: ResponseSender<Number>,
    ) -> Result<(), StreamServiceError> {
        // Test-only: the Rust tests provoke a handler panic with this header.
        if ctx.header("X-Panic").is_some() {
            panic!("asked to panic");
        }
        if request.count > 10_000 {
            return Err(StreamServiceError::too_many(format!("{} numbers is over 10000", request.count))
                .with_data(request.count.to_string()));
        }
        let mut guard = EarlyStop(&self.observed, false);
        for i in 0..i64::from(request.count) {
            if request.fail_after > 0 && i == i64::from(request.fail_after) {
                guard.1 = true;
                return Err(StreamServiceError::failed_precondition(format!("failing after {} numbers", request.fail_after)));
            }
            if request.delay_ms > 0 && i > 0 {
                tokio::time::sleep(Duration::from_millis(u64::try_from(request.delay_ms).unwrap_or(0))).await;
            }
            responses.send(Number { value: request.start + i }).await?;
            self.observed.sent.fetch_add(1, Ordering::SeqCst);
        }
        ctx.set_response_header("X-Counted", &request.count.to_string());
        guard.1 = true;
        Ok(())
    }

    // snippet: rust-stream-server
    async fn sum(
        &self,
        _ctx: RequestContext,
        mut requests: nats_micro_runtime::Streaming<Number, StreamServiceError>,
    ) -> Result<SumResponse, StreamServiceError> {
        let (mut total, mut count) = (0i64, 0i32);
        while let Some(number) = requests.message().await? {
            if number.value < 0 {
                return Err(StreamServiceError::invalid_argument(format!("{} is negative", number.value)));
            }
            total += number.value;
            count += 1;
        }
        Ok(SumResponse { total, count })
    }

    async fn chat(
        &self,
        _ctx: RequestContext,
        mut requests: nats_micro_runtime::Streaming<ChatMessage, StreamServiceError>,
        responses: ResponseSender<ChatMessage>,
    ) -> Result<(), StreamServiceError> {
        while let Some(message) = requests.message().await? {
            responses.send(ChatMessage { text: format!("echo: {}", message.text) }).await?;
        }
        responses.send(ChatMessage { text: "bye".into() }).await?;
        Ok(())
    }
    // end snippet

    async fn ping(&self, _ctx: RequestContext, request: ChatMessage) -> Result<ChatMessage, StreamServiceError> {
        if request.text == STOPPED_EARLY {
            return Ok(ChatMessage { text: self.observed.stopped_early.load(Ordering::SeqCst).to_string() });
        }
        Ok(request)
    }
}
