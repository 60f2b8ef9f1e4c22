//! Bad input and faults: each gives its typed error, and the service keeps serving.

use std::time::Duration;

use nats_micro_runtime::{ErrorKind, Request, headers};

use super::support::*;

async fn still_serves(client: &OrderServiceClient) {
    let response = client.create_order(order_request("after")).await.expect("the service keeps serving");
    assert_eq!(response.order.as_ref().map(|o| o.customer_id.as_str()), Some("after"));
}

#[tokio::test]
async fn malformed_payload_is_invalid_argument() {
    let fx = Fixture::start().await;
    let reply = fx.nats.request("api.v1.create_order", bytes::Bytes::from_static(b"\xff\xff\xff\xff")).await.expect("reply");
    let h = reply.headers.expect("error headers");
    assert_eq!(h.get(headers::ERROR_CODE).map(|v| v.as_str()), Some("400"));
    assert!(h.get(headers::ERROR_MESSAGE).is_some_and(|m| m.as_str().contains("malformed request")));
    still_serves(&fx.client).await;
    fx.service.stop().await;
}

#[tokio::test]
async fn handler_panic_is_internal_and_the_service_survives() {
    let fx = Fixture::start().await;
    for _ in 0..3 {
        let err = fx.client.create_order(order_request("panic")).await.expect_err("panics");
        assert!(err.is_internal());
        assert_eq!(err.message(), "internal error", "the panic message stays on the server");
    }
    still_serves(&fx.client).await;
    assert_eq!(fx.service.stats().endpoints[0].num_errors, 3);
    fx.service.stop().await;
}

#[tokio::test]
async fn slow_handler_times_out_and_the_server_stops_waiting() {
    let fx = Fixture::start().await;
    let err = fx
        .client
        .create_order(Request::new(order_request("slow")).with_timeout(Duration::from_millis(300)))
        .await
        .expect_err("times out");
    // The client's timer and the server's DEADLINE_EXCEEDED reply race; both
    // are the same typed error.
    assert!(err.is_deadline_exceeded(), "{err:?}");
    assert!(matches!(err.kind(), ErrorKind::Timeout | ErrorKind::Service), "{err:?}");
    // The server got the 300 ms budget in the request header and gives up on
    // the handler (which would sleep 30 s) at that deadline.
    let mut last_error = String::new();
    for _ in 0..100 {
        last_error = fx.service.stats().endpoints[0].last_error.clone();
        if !last_error.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(last_error.starts_with("DEADLINE_EXCEEDED"), "{last_error:?}");
    still_serves(&fx.client).await;
    fx.service.stop().await;
}

#[tokio::test]
async fn no_responders_is_recognisable() {
    let fx = Fixture::start().await;
    let nobody = fx.client.clone().with_subject_prefix("nobody.here");
    let err = nobody.create_order(order_request("c")).await.expect_err("nobody listens");
    assert!(err.is_no_responders());
    assert!(err.is_unavailable());
    fx.service.stop().await;
}

#[tokio::test]
async fn payload_over_max_payload_is_recognisable() {
    let server = NatsServer::start_with_config("max_payload: 4096\n");
    let nats = server.connect().await;
    let service = orders::serve(&nats, TestOrders::default()).await.expect("starts");
    let client = OrderServiceClient::new(server.connect().await);
    let err = client.create_order(order_request(&"x".repeat(10_000))).await.expect_err("too large");
    assert_eq!(err.kind(), ErrorKind::MaxPayloadExceeded);
    assert!(err.is_resource_exhausted());
    still_serves(&client).await;
    service.stop().await;
}

#[tokio::test]
async fn server_stopped_mid_call_is_a_transport_error() {
    let mut fx = Fixture::start().await;
    let client = fx.client.clone();
    let call = tokio::spawn(async move {
        client.create_order(Request::new(order_request("slow")).with_timeout(Duration::from_secs(3))).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    fx.server.stop();
    let err = call.await.expect("task").expect_err("the server is gone");
    assert!(err.is_transport(), "{err:?}");
    assert!(err.is_unavailable() || err.is_deadline_exceeded(), "{err:?}");
}

#[tokio::test]
async fn requests_on_one_endpoint_are_handled_concurrently() {
    let server = NatsServer::start();
    let nats = server.connect().await;
    // Each request waits until 8 are in flight at once: served one at a
    // time, none would ever finish.
    let orders_impl = TestOrders::with_barrier(8);
    let service = orders::serve(&nats, orders_impl).await.expect("starts");
    let client = OrderServiceClient::new(server.connect().await).with_timeout(Duration::from_secs(10));
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.create_order(order_request("barrier")).await })
        })
        .collect();
    for call in calls {
        call.await.expect("task").expect("all complete together");
    }
    service.stop().await;
}

#[tokio::test]
async fn graceful_stop_finishes_requests_in_flight() {
    let server = NatsServer::start();
    let nats = server.connect().await;
    let orders_impl = TestOrders::with_barrier(2);
    let (barrier, entered) = (orders_impl.barrier.clone(), orders_impl.entered.clone());
    let service = orders::serve(&nats, orders_impl).await.expect("starts");
    let client = OrderServiceClient::new(server.connect().await).with_timeout(Duration::from_secs(10));
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.create_order(order_request("barrier")).await }
    });
    entered.notified().await;
    let stopping = tokio::spawn(service.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!stopping.is_finished(), "stop waits for the request in flight");
    barrier.wait().await;
    in_flight.await.expect("task").expect("the request in flight completes");
    stopping.await.expect("stopped");
    let err = client.create_order(order_request("c")).await.expect_err("stopped services take no requests");
    assert!(err.is_no_responders(), "{err:?}");
}

#[tokio::test]
async fn a_responder_that_never_answers_is_a_transport_timeout() {
    let server = NatsServer::start();
    let nats = server.connect().await;
    // Someone listens (so no "no responders"), nobody replies.
    let _silent = nats.subscribe("api.v1.create_order").await.expect("subscribes");
    nats.flush().await.expect("flushed");
    let client = OrderServiceClient::new(server.connect().await);
    let err = client
        .create_order(Request::new(order_request("c")).with_timeout(Duration::from_millis(200)))
        .await
        .expect_err("nobody answers");
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.is_deadline_exceeded());
    assert_eq!(err.method(), Some("CreateOrder"));
}
