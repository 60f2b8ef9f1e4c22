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
    let err = fx.client.create_order(order_request("c")).await.expect_err("shed");
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
