//! Every code over the wire: the generated client recognises each one, and
//! the raw headers are what PROTOCOL §3–4 prescribe.

use nats_micro_runtime::{Code, CodeFormat, Request, headers};

use super::support::*;

type Checker = fn(&OrderServiceError) -> bool;

/// Each code with the generated checker that must recognise it.
fn checkers() -> Vec<(&'static str, OrderServiceErrorCode, Checker)> {
    use OrderServiceErrorCode as C;
    vec![
        ("INVALID_ARGUMENT", C::InvalidArgument, OrderServiceError::is_invalid_argument),
        ("UNAUTHENTICATED", C::Unauthenticated, OrderServiceError::is_unauthenticated),
        ("PERMISSION_DENIED", C::PermissionDenied, OrderServiceError::is_permission_denied),
        ("NOT_FOUND", C::NotFound, OrderServiceError::is_not_found),
        ("ALREADY_EXISTS", C::AlreadyExists, OrderServiceError::is_already_exists),
        ("INTERNAL", C::Internal, OrderServiceError::is_internal),
        ("UNAVAILABLE", C::Unavailable, OrderServiceError::is_unavailable),
        ("CANCELLED", C::Cancelled, OrderServiceError::is_cancelled),
        ("UNKNOWN", C::Unknown, OrderServiceError::is_unknown),
        ("DEADLINE_EXCEEDED", C::DeadlineExceeded, OrderServiceError::is_deadline_exceeded),
        ("RESOURCE_EXHAUSTED", C::ResourceExhausted, OrderServiceError::is_resource_exhausted),
        ("FAILED_PRECONDITION", C::FailedPrecondition, OrderServiceError::is_failed_precondition),
        ("ABORTED", C::Aborted, OrderServiceError::is_aborted),
        ("OUT_OF_RANGE", C::OutOfRange, OrderServiceError::is_out_of_range),
        ("UNIMPLEMENTED", C::Unimplemented, OrderServiceError::is_unimplemented),
        ("DATA_LOSS", C::DataLoss, OrderServiceError::is_data_loss),
        ("ORDER_EXPIRED", C::OrderExpired, OrderServiceError::is_order_expired),
        ("PAYMENT_FAILED", C::PaymentFailed, OrderServiceError::is_payment_failed),
        ("STOCK_UNAVAILABLE", C::StockUnavailable, OrderServiceError::is_stock_unavailable),
    ]
}

#[tokio::test]
async fn every_code_reaches_the_generated_client_intact() {
    let fx = Fixture::start().await;
    let all = checkers();
    assert_eq!(all.len(), ALL_CODES.len());
    for (name, code, checker) in &all {
        let err = fx
            .client
            .create_order(Request::new(order_request("c-1")).with_header(WANT_CODE, name))
            .await
            .expect_err("the service fails as asked");
        assert_eq!(&err.code(), code, "{name}");
        assert!(checker(&err), "{name}: its own checker recognises it");
        for (other, _, other_checker) in &all {
            if other != name {
                assert!(!other_checker(&err), "{name} is not {other}");
            }
        }
        assert_eq!(err.message(), format!("wanted {name}"));
        assert_eq!(&err.data()[..], format!("data:{name}").as_bytes());
        assert_eq!(err.method(), Some("CreateOrder"));
        assert!(!err.is_transport(), "{name} is a service error");
        assert_eq!(err.code().as_str(), *name);
    }
    fx.service.stop().await;
}

#[tokio::test]
async fn wire_carries_numbers_for_builtins_and_names_for_the_rest() {
    let fx = Fixture::start().await;
    for name in ALL_CODES {
        let mut request_headers = async_nats::HeaderMap::new();
        request_headers.insert(WANT_CODE, name);
        let reply =
            fx.nats.request_with_headers("api.v1.create_order", request_headers, bytes::Bytes::new()).await.expect("a reply");
        let reply_headers = reply.headers.expect("error replies carry headers");
        let wire_code = reply_headers.get(headers::ERROR_CODE).expect("code header").as_str().to_owned();
        let expected = match Code::from_wire(name).number() {
            Some(number) => number.to_string(),
            None => name.to_owned(),
        };
        assert_eq!(wire_code, expected, "{name}");
        assert_eq!(reply_headers.get(headers::ERROR_MESSAGE).map(|v| v.as_str()), Some(format!("wanted {name}").as_str()));
        assert_eq!(&reply.payload[..], format!("data:{name}").as_bytes(), "the body is the error data");
    }
    fx.service.stop().await;
}

#[tokio::test]
async fn names_format_sends_builtin_names_for_go_clients() {
    let fx = Fixture::start_with(|b| b.code_format(CodeFormat::Names)).await;
    let mut request_headers = async_nats::HeaderMap::new();
    request_headers.insert(WANT_CODE, "NOT_FOUND");
    let reply = fx.nats.request_with_headers("api.v1.create_order", request_headers, bytes::Bytes::new()).await.expect("reply");
    assert_eq!(reply.headers.expect("headers").get(headers::ERROR_CODE).map(|v| v.as_str()), Some("NOT_FOUND"));
    // And the generated client reads the name form as the same code.
    let err =
        fx.client.create_order(Request::new(order_request("c")).with_header(WANT_CODE, "NOT_FOUND")).await.expect_err("fails");
    assert!(err.is_not_found());
    fx.service.stop().await;
}

#[tokio::test]
async fn uncoded_errors_become_internal_without_leaking_their_text() {
    let fx = Fixture::start().await;
    let err = fx.client.create_order(order_request("uncoded")).await.expect_err("fails");
    assert!(err.is_internal());
    assert_eq!(err.message(), "internal error");
    assert!(!err.message().contains("hunter2"));
    fx.service.stop().await;

    let fx = Fixture::start_with(|b| b.expose_internal_errors(true)).await;
    let err = fx.client.create_order(order_request("uncoded")).await.expect_err("fails");
    assert!(err.is_internal());
    assert!(err.message().contains("refused the connection"), "opted in: {}", err.message());
    fx.service.stop().await;
}

#[tokio::test]
async fn success_and_headers_round_trip() {
    let fx = Fixture::start().await;
    let response =
        fx.client.create_order(Request::new(order_request("c-42")).with_header("X-Echo", "ping")).await.expect("succeeds");
    assert_eq!(response.order.as_ref().map(|o| o.customer_id.as_str()), Some("c-42"));
    assert_eq!(response.headers().get("X-Echoed").map(|v| v.as_str()), Some("ping"));
    let order = fx.client.get_order(GetOrderRequest { id: "o-9".into() }).await.expect("found").into_inner();
    assert_eq!(order.id, "o-9");
    let missing = fx.client.get_order(GetOrderRequest::default()).await.expect_err("not found");
    assert!(missing.is_not_found());
    assert_eq!(missing.method(), Some("GetOrder"));
    fx.service.stop().await;
}

#[tokio::test]
async fn an_unrecognised_code_from_a_peer_is_kept_verbatim() {
    let fx = Fixture::start().await;
    let err =
        fx.client.create_order(Request::new(order_request("c")).with_header(WANT_CODE, "TEAPOT_418")).await.expect_err("fails");
    assert_eq!(err.code(), OrderServiceErrorCode::Unrecognized("TEAPOT_418".into()));
    let err = fx.client.create_order(Request::new(order_request("c")).with_header(WANT_CODE, "418")).await.expect_err("fails");
    assert_eq!(err.code(), OrderServiceErrorCode::Unrecognized("418".into()));
    fx.service.stop().await;
}

#[test]
fn common_errors_convert_with_the_question_mark_as_internal() {
    fn parse(text: &str) -> Result<u32, OrderServiceError> {
        Ok(text.parse::<u32>()?)
    }
    fn read() -> Result<Vec<u8>, OrderServiceError> {
        Ok(std::fs::read("/nonexistent/nats-micro")?)
    }
    fn decode() -> Result<Order, OrderServiceError> {
        Ok(<Order as prost::Message>::decode(&b"\xff\xff"[..])?)
    }
    for err in [parse("x").expect_err("not a number"), read().expect_err("no file"), decode().expect_err("not protobuf")] {
        assert!(err.is_internal(), "{err:?}");
        assert_eq!(err.message(), "internal error", "the text is withheld");
    }
}
