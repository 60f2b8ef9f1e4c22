//! Interceptor order and short-circuits, header round trips, timeout precedence.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use nats_micro_runtime::interceptor::{ClientCall, ClientNext, ServerNext};
use nats_micro_runtime::{Client, Error, Request, RequestContext, ServiceBuilder, headers};

use super::support::*;

type Log = Arc<Mutex<Vec<String>>>;

fn logging_server(
    log: &Log,
    name: &'static str,
) -> impl Fn(RequestContext, Bytes, ServerNext) -> nats_micro_runtime::interceptor::BoxFuture<Result<Bytes, Error>>
+ Send
+ Sync
+ 'static {
    let log = log.clone();
    move |mut ctx: RequestContext, payload: Bytes, next: ServerNext| {
        let log = log.clone();
        Box::pin(async move {
            log.lock().unwrap().push(format!("{name}:before"));
            ctx.headers_mut().insert("X-Echo", name);
            ctx.set_response_header(&format!("X-Seen-By-{name}"), "yes");
            let result = next.run(ctx, payload).await;
            log.lock().unwrap().push(format!("{name}:after"));
            result
        })
    }
}

#[tokio::test]
async fn server_interceptors_run_in_registration_order_first_outermost() {
    let log: Log = Arc::default();
    let (a, b) = (logging_server(&log, "a"), logging_server(&log, "b"));
    let fx = Fixture::start_with(|builder| builder.interceptor_fn(a).interceptor_fn(b)).await;
    let response = fx.client.create_order(order_request("c")).await.expect("succeeds");
    assert_eq!(*log.lock().unwrap(), ["a:before", "b:before", "b:after", "a:after"]);
    // The inner interceptor's change to the request headers reached the handler.
    assert_eq!(response.headers().get("X-Echoed").map(|v| v.as_str()), Some("b"));
    assert_eq!(response.headers().get("X-Seen-By-a").map(|v| v.as_str()), Some("yes"));
    assert_eq!(response.headers().get("X-Seen-By-b").map(|v| v.as_str()), Some("yes"));
    fx.service.stop().await;
}

#[tokio::test]
async fn a_server_interceptor_short_circuits_with_a_typed_error() {
    let fx = Fixture::start_with(|builder| {
        builder.interceptor_fn(|ctx: RequestContext, payload: Bytes, next: ServerNext| async move {
            if ctx.header("Authorization") != Some("Bearer good") {
                ctx.set_response_header("WWW-Authenticate", "Bearer");
                return Err(Error::unauthenticated(format!("{} needs a token", ctx.method())));
            }
            next.run(ctx, payload).await
        })
    })
    .await;
    let err = fx.client.create_order(order_request("c")).await.expect_err("rejected");
    assert!(err.is_unauthenticated());
    assert_eq!(err.message(), "CreateOrder needs a token");
    assert_eq!(err.headers().and_then(|h| h.get("WWW-Authenticate")).map(|v| v.as_str()), Some("Bearer"), "headers set on error");
    let ok = fx.client.create_order(Request::new(order_request("c")).with_header("Authorization", "Bearer good")).await;
    assert!(ok.is_ok(), "{ok:?}");
    fx.service.stop().await;
}

#[tokio::test]
async fn client_interceptors_run_in_order_and_can_short_circuit() {
    let fx = Fixture::start().await;
    let log: Log = Arc::default();
    let logger = |name: &'static str, log: Log| {
        move |mut call: ClientCall, next: ClientNext| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(format!("{name}:{}", call.method));
                call.headers.insert("X-Echo", name);
                let reply = next.run(call).await;
                log.lock().unwrap().push(format!("{name}:after"));
                reply
            }
        }
    };
    let inner = Client::new(fx.server.connect().await, orders::SERVICE.subject_prefix)
        .interceptor_fn(logger("a", log.clone()))
        .interceptor_fn(logger("b", log.clone()));
    let client = OrderServiceClient::from_client(inner);
    let response = client.create_order(order_request("c")).await.expect("succeeds");
    assert_eq!(*log.lock().unwrap(), ["a:CreateOrder", "b:CreateOrder", "b:after", "a:after"]);
    assert_eq!(response.headers().get("X-Echoed").map(|v| v.as_str()), Some("b"));

    let blocked = OrderServiceClient::from_client(
        Client::new(fx.server.connect().await, orders::SERVICE.subject_prefix)
            .interceptor_fn(|_call: ClientCall, _next: ClientNext| async { Err(Error::permission_denied("read-only client")) }),
    );
    let err = blocked.create_order(order_request("c")).await.expect_err("short-circuited");
    assert!(err.is_permission_denied());
    assert_eq!(err.method(), Some("CreateOrder"));
    assert_eq!(fx.service.stats().endpoints[0].num_requests, 1, "nothing was sent");
    fx.service.stop().await;
}

/// What each request carried in `Nats-Micro-Timeout`, and the time its handler had left.
type SeenBudgets = Arc<Mutex<Vec<(Option<String>, Option<Duration>)>>>;

/// Records the budget each request carries and the deadline the handler sees.
fn budget_recorder(
    seen: &SeenBudgets,
) -> impl Fn(RequestContext, Bytes, ServerNext) -> nats_micro_runtime::interceptor::BoxFuture<Result<Bytes, Error>>
+ Send
+ Sync
+ 'static {
    let seen = seen.clone();
    move |ctx: RequestContext, payload: Bytes, next: ServerNext| {
        seen.lock().unwrap().push((ctx.header(headers::TIMEOUT).map(str::to_owned), ctx.remaining()));
        next.run(ctx, payload)
    }
}

#[tokio::test]
async fn client_timeout_precedence_call_then_client_then_endpoint_then_service() {
    let seen = Arc::default();
    let fx = Fixture::start_with(|b| b.interceptor_fn(budget_recorder(&seen))).await;
    let micros = |d: Duration| Some(d.as_micros().to_string());

    // Proto: CreateOrder inherits the service's 5 s, GetOrder has its own 750 ms.
    fx.client.create_order(order_request("c")).await.expect("ok");
    fx.client.get_order(GetOrderRequest { id: "1".into() }).await.expect("ok");
    // Client override beats both.
    let overridden = fx.client.clone().with_timeout(Duration::from_millis(2500));
    overridden.get_order(GetOrderRequest { id: "1".into() }).await.expect("ok");
    // The call's own timeout beats everything.
    overridden
        .get_order(Request::new(GetOrderRequest { id: "1".into() }).with_timeout(Duration::from_millis(1234)))
        .await
        .expect("ok");

    let budgets: Vec<Option<String>> = seen.lock().unwrap().iter().map(|(b, _)| b.clone()).collect();
    assert_eq!(
        budgets,
        [
            micros(Duration::from_secs(5)),
            micros(Duration::from_millis(750)),
            micros(Duration::from_millis(2500)),
            micros(Duration::from_millis(1234)),
        ]
    );
    assert_eq!(fx.client.inner().effective_timeout(&orders::ENDPOINTS[1].method), Duration::from_millis(750));
    fx.service.stop().await;
}

/// The time left that CreateOrder and GetOrder handlers see, for a caller
/// with a generous budget, so the server's own timeouts decide.
async fn server_deadlines(configure: impl FnOnce(ServiceBuilder) -> ServiceBuilder) -> Vec<Duration> {
    let seen = Arc::default();
    let fx = Fixture::start_with(|b| configure(b.interceptor_fn(budget_recorder(&seen)))).await;
    let client = fx.client.clone().with_timeout(Duration::from_secs(60));
    client.create_order(order_request("c")).await.expect("ok");
    client.get_order(GetOrderRequest { id: "1".into() }).await.expect("ok");
    fx.service.stop().await;
    let seen = seen.lock().unwrap();
    seen.iter().map(|(_, r)| r.expect("a deadline")).collect()
}

#[tokio::test]
async fn server_timeout_precedence_endpoint_override_then_service_override_then_proto() {
    let within = |d: Duration, low: Duration, high: Duration| low < d && d <= high;
    let overridden =
        server_deadlines(|b| b.timeout(Duration::from_secs(3)).endpoint_timeout("get_order", Duration::from_secs(2))).await;
    assert!(within(overridden[0], Duration::from_secs(2), Duration::from_secs(3)), "service override: {overridden:?}");
    assert!(within(overridden[1], Duration::from_secs(1), Duration::from_secs(2)), "endpoint override: {overridden:?}");
    // Without overrides the proto decides: 5 s for CreateOrder, 750 ms for GetOrder.
    let proto = server_deadlines(|b| b).await;
    assert!(within(proto[0], Duration::from_secs(4), Duration::from_secs(5)), "{proto:?}");
    assert!(within(proto[1], Duration::from_millis(250), Duration::from_millis(750)), "{proto:?}");
}
