//! Typed error details (PROTOCOL §4.1) on a real nats-server: details that
//! survive a handler re-raising them, and shed requests (§5) answered with
//! a RetryInfo and counted in STATS. The full cross-language scenario is
//! `details_interop.rs`.

use std::time::Duration;

use nats_micro_runtime::{Error, Request};
use nats_micro_tests::details::serve_both;
use nats_micro_tests::project::details::v1::explain_service_nats::{
    self as explain, ExplainService, ExplainServiceClient, ExplainServiceError,
};
use nats_micro_tests::project::details::v1::{ExplainRequest, ExplainResponse};
use serde_json::Value;

use super::support::{Fixture, order_request};
use nats_micro_runtime::RequestContext;

/// An ExplainService that asks the real one and re-raises its error as it came.
struct Relay(ExplainServiceClient);

impl ExplainService for Relay {
    async fn explain(&self, _ctx: RequestContext, request: ExplainRequest) -> Result<ExplainResponse, ExplainServiceError> {
        Ok(self.0.explain(request).await.map_err(ExplainServiceError::into_inner)?.into_inner())
    }
}

async fn failure(client: &ExplainServiceClient, case: &str) -> Error {
    client.explain(ExplainRequest { case: case.into() }).await.expect_err(case).into_inner()
}

#[tokio::test]
async fn a_re_raised_error_keeps_its_details_verbatim() {
    let server = super::support::NatsServer::start();
    let nats = server.connect().await;
    let _services = serve_both(&nats).await.expect("serves");
    let relay = explain::service_builder(Relay(ExplainServiceClient::new(nats.clone())))
        .subject_prefix("details.v1.relay")
        .start(&nats)
        .await
        .expect("relay serves");
    let direct = ExplainServiceClient::new(server.connect().await);
    let relayed = direct.clone().with_subject_prefix("details.v1.relay");
    for case in ["standard", "custom", "unknown", "debug", "plain"] {
        let (a, b) = (failure(&direct, case).await, failure(&relayed, case).await);
        assert_eq!((a.code(), a.message(), a.data()), (b.code(), b.message(), b.data()), "{case}");
        assert_eq!(a.details_any(), b.details_any(), "{case}");
    }
    // The unlisted type went through a runtime that does not know it, unchanged.
    let unknown = failure(&relayed, "unknown").await;
    assert_eq!(unknown.details_any()[0].value, [0x08, 0x01]);
    // Withheld once, the DebugInfo is not there to relay; the plain error stays unmarked.
    assert!(failure(&relayed, "debug").await.debug_info().is_none());
    let plain = failure(&relayed, "plain").await;
    assert!(plain.headers().is_some_and(|h| h.get("Nats-Micro-Error-Details").is_none()), "{plain:?}");
    relay.stop().await;
}

#[tokio::test]
async fn a_shed_request_carries_the_retry_hint_and_is_counted() {
    let fx = Fixture::start_with(|b| {
        b.max_concurrency(1)
            .pending_limit(Some(0))
            .retry_after_hint(Duration::from_millis(250))
            .drain_timeout(Duration::from_millis(100))
    })
    .await;
    // One request holds the only slot; the backlog takes none.
    let busy = fx.client.clone();
    let _slow =
        tokio::spawn(
            async move { busy.create_order(Request::new(order_request("slow")).with_timeout(Duration::from_secs(5))).await },
        );
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Sent once: a retrying client would honour the hint and come back.
    let once = fx.client.clone().with_retry_policy(nats_micro_runtime::retry::RetryPolicy::disabled());
    let err = once.create_order(order_request("c")).await.expect_err("shed");
    assert!(err.is_resource_exhausted(), "{err:?}");
    assert!(err.message().ends_with("is overloaded"), "{err:?}");
    assert_eq!(err.retry_info().and_then(|info| info.delay()), Some(Duration::from_millis(250)));

    let reply = fx.nats.request("$SRV.STATS.order_service", bytes::Bytes::new()).await.expect("STATS");
    let stats: Value = serde_json::from_slice(&reply.payload).expect("JSON");
    let entry = stats["endpoints"].as_array().expect("endpoints").iter().find(|e| e["name"] == "create_order").expect("entry");
    assert_eq!(entry["data"], serde_json::json!({"shed": 1}), "{entry}");
    assert!(entry["num_errors"].as_u64().is_some_and(|n| n >= 1), "{entry}");
    fx.service.stop().await;
}

/// A StreamService whose streams fail with details: after one number
/// (server stream), at the end of the requests (client stream).
struct FailingStreams;

mod failing {
    use std::time::Duration;

    use nats_micro_runtime::{RequestContext, ResponseSender, Streaming};
    use nats_micro_tests::project::streams::v1::stream_service_nats::{StreamService, StreamServiceError};
    use nats_micro_tests::project::streams::v1::{ChatMessage, CountUpRequest, Number, SumResponse};

    fn failure() -> StreamServiceError {
        StreamServiceError::too_many("too many").with_data(&b"7"[..]).with_retry_info(Duration::from_secs(3))
    }

    impl StreamService for super::FailingStreams {
        async fn count_up(
            &self,
            _ctx: RequestContext,
            _request: CountUpRequest,
            responses: ResponseSender<Number>,
        ) -> Result<(), StreamServiceError> {
            responses.send(Number { value: 1 }).await?;
            Err(failure())
        }

        async fn sum(
            &self,
            _ctx: RequestContext,
            mut requests: Streaming<Number, StreamServiceError>,
        ) -> Result<SumResponse, StreamServiceError> {
            while requests.message().await?.is_some() {}
            Err(failure())
        }

        async fn chat(
            &self,
            _ctx: RequestContext,
            _requests: Streaming<ChatMessage, StreamServiceError>,
            _responses: ResponseSender<ChatMessage>,
        ) -> Result<(), StreamServiceError> {
            Err(failure())
        }

        async fn ping(&self, _ctx: RequestContext, request: ChatMessage) -> Result<ChatMessage, StreamServiceError> {
            Ok(request)
        }
    }
}

#[tokio::test]
async fn a_stream_ending_with_an_error_carries_its_details() {
    use nats_micro_tests::project::streams::v1::stream_service_nats::{self as streams, StreamServiceClient};
    use nats_micro_tests::project::streams::v1::{CountUpRequest, Number};

    let server = super::support::NatsServer::start();
    let service = streams::serve(&server.connect().await, FailingStreams).await.expect("serves");
    let client = StreamServiceClient::new(server.connect().await);
    let check = |err: &nats_micro_runtime::Error, label: &str| {
        assert_eq!((err.code().as_str(), err.message(), &err.data()[..]), ("TOO_MANY", "too many", &b"7"[..]), "{label}");
        assert_eq!(err.retry_info().and_then(|info| info.delay()), Some(Duration::from_secs(3)), "{label}");
    };
    let mut numbers = client.count_up(CountUpRequest::default()).await.expect("opens");
    assert_eq!(numbers.message().await.expect("a number").map(|n| n.value), Some(1));
    check(&numbers.message().await.expect_err("the end is an error"), "server stream");
    let sum = client.sum(futures_util::stream::iter([Number { value: 1 }])).await.expect_err("fails");
    check(&sum, "client stream");
    service.stop().await;
}
