//! Observability (PROTOCOL §11) on a real nats-server: the fields of the
//! request and call spans, each §11.4 event driven for real, and the W3C
//! trace context through OpenTelemetry with an in-memory exporter.
//!
//! Each test runs on a current-thread runtime, so a subscriber set as the
//! thread's default sees the service's tasks as well as the client's.

#[path = "e2e/support.rs"]
#[allow(dead_code, reason = "the e2e support module has more than these tests use")]
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use nats_micro_runtime::headers::ATTEMPT;
use nats_micro_runtime::telemetry::{EVENT_TARGET, TRACEPARENT, TRACESTATE};
use nats_micro_runtime::{ReplyPolicy, Request};
use nats_micro_tests::harness::NatsServer;
use nats_micro_tests::project::streams::v1::stream_service_nats::{self as streams, StreamServiceClient};
use nats_micro_tests::project::streams::v1::{ChatMessage, CountUpRequest, Number};
use nats_micro_tests::streams::Streams;
use nats_micro_tests::trace::SpanRecorder;
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use support::{Fixture, GetOrderRequest, order_request};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Field values as text, by name.
type Fields = BTreeMap<String, String>;

#[derive(Clone, Debug)]
struct CapturedSpan {
    name: &'static str,
    id: u64,
    parent: Option<u64>,
    fields: Fields,
}

#[derive(Clone, Debug)]
struct CapturedEvent {
    level: Level,
    target: String,
    message: String,
    fields: Fields,
    /// The span the event was emitted in.
    span: Option<u64>,
}

/// A layer that keeps every span (with fields recorded later) and event.
#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<Vec<CapturedSpan>>>,
    events: Arc<Mutex<Vec<CapturedEvent>>>,
}

struct FieldText<'a>(&'a mut Fields);

impl Visit for FieldText<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut FieldText(&mut fields));
        let parent = if attrs.is_root() {
            None
        } else {
            attrs.parent().cloned().or_else(|| ctx.current_span().id().cloned()).map(|id| id.into_u64())
        };
        let span = CapturedSpan { name: attrs.metadata().name(), id: id.into_u64(), parent, fields };
        self.spans.lock().unwrap_or_else(PoisonError::into_inner).push(span);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(span) = spans.iter_mut().rev().find(|span| span.id == id.into_u64()) {
            values.record(&mut FieldText(&mut span.fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        event.record(&mut FieldText(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        let span = ctx.event_span(event).map(|span| span.id().into_u64());
        let metadata = event.metadata();
        let captured = CapturedEvent { level: *metadata.level(), target: metadata.target().to_owned(), message, fields, span };
        self.events.lock().unwrap_or_else(PoisonError::into_inner).push(captured);
    }
}

impl Capture {
    /// Installs the capture as this thread's subscriber until the guard drops.
    fn install() -> (Capture, tracing::subscriber::DefaultGuard) {
        let capture = Capture::default();
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
        (capture, guard)
    }

    fn spans(&self, name: &str) -> Vec<CapturedSpan> {
        self.spans.lock().unwrap_or_else(PoisonError::into_inner).iter().filter(|span| span.name == name).cloned().collect()
    }

    fn span(&self, id: u64) -> Option<CapturedSpan> {
        self.spans.lock().unwrap_or_else(PoisonError::into_inner).iter().find(|span| span.id == id).cloned()
    }

    fn events(&self, message: &str) -> Vec<CapturedEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|event| event.message == message)
            .cloned()
            .collect()
    }

    /// Waits (briefly) for the first event named `message`.
    async fn event(&self, message: &str) -> CapturedEvent {
        for _ in 0..100 {
            if let Some(event) = self.events(message).into_iter().next() {
                return event;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no {message} event; events: {:?}", self.events.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

fn field<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields.get(name).map(String::as_str).unwrap_or_else(|| panic!("no field {name} in {fields:?}"))
}

/// Checks an event's level, target and the three fields every event carries.
fn assert_event(event: &CapturedEvent, level: Level, endpoint: &str, subject: &str) {
    assert_eq!(event.level, level, "{event:?}");
    assert_eq!(event.target, EVENT_TARGET, "{event:?}");
    assert_eq!(field(&event.fields, "service"), "order_service", "{event:?}");
    assert_eq!(field(&event.fields, "endpoint"), endpoint, "{event:?}");
    assert_eq!(field(&event.fields, "subject"), subject, "{event:?}");
}

#[tokio::test]
async fn a_request_has_a_server_span_with_every_field_and_a_call_a_client_span() {
    let (capture, _guard) = Capture::install();
    let fx = Fixture::start().await;
    let request =
        Request::new(GetOrderRequest { id: String::new() }).with_header(ATTEMPT, "2").with_timeout(Duration::from_millis(1500));
    let err = fx.client.get_order(request).await.expect_err("an empty id is NOT_FOUND");
    assert_eq!(err.code(), support::OrderServiceErrorCode::NotFound);

    let servers = capture.spans("nats_micro.server");
    assert_eq!(servers.len(), 1, "{servers:?}");
    let server = &servers[0].fields;
    assert_eq!(field(server, "otel.name"), "order.v1.OrderService/GetOrder");
    assert_eq!(field(server, "otel.kind"), "server");
    assert_eq!(field(server, "rpc.system"), "nats_micro");
    assert_eq!(field(server, "rpc.service"), "order.v1.OrderService");
    assert_eq!(field(server, "rpc.method"), "GetOrder");
    assert_eq!(field(server, "messaging.system"), "nats");
    assert_eq!(field(server, "messaging.destination.name"), "api.v1.get_order");
    assert_eq!(field(server, "nats_micro.endpoint"), "get_order");
    assert_eq!(field(server, "nats_micro.attempt"), "2");
    assert_eq!(field(server, "nats_micro.error_code"), "NOT_FOUND", "the name, though 404 is sent (§11.2)");
    assert_eq!(field(server, "nats_micro.request_id").len(), 22, "a NUID");
    // The earlier of the caller's budget (1500 ms) and the proto's timeout of GetOrder (750 ms).
    assert_eq!(field(server, "nats_micro.deadline_ms"), "750");
    let duration: f64 = field(server, "nats_micro.duration_ms").parse().expect("a number");
    assert!((0.0..1500.0).contains(&duration), "{duration}");
    assert!(!server.contains_key("otel.status_code"), "NOT_FOUND is the caller's fault: status unset");
    assert_eq!(servers[0].parent, None, "a request's span is a root in `tracing` (its parent comes from the headers)");

    let clients = capture.spans("nats_micro.client");
    assert_eq!(clients.len(), 1, "{clients:?}");
    let client = &clients[0].fields;
    assert_eq!(field(client, "otel.name"), "order.v1.OrderService/GetOrder");
    assert_eq!(field(client, "otel.kind"), "client");
    assert_eq!(field(client, "messaging.destination.name"), "api.v1.get_order");
    assert_eq!(field(client, "nats_micro.endpoint"), "get_order");
    assert_eq!(field(client, "nats_micro.error_code"), "NOT_FOUND");
    assert_eq!(field(client, "otel.status_code"), "error", "every error fails a client span");
    let attempts: Vec<_> = capture.events("attempt").into_iter().filter(|event| event.span == Some(clients[0].id)).collect();
    assert_eq!(attempts.len(), 1, "one event per attempt, in the call's span");
    assert_eq!(field(&attempts[0].fields, "nats_micro.attempt"), "2", "the attempt the request said");
}

#[tokio::test]
async fn a_service_fault_sets_the_server_span_status_and_a_plain_error_is_handler_failed() {
    let (capture, _guard) = Capture::install();
    let fx = Fixture::start().await;
    let err = fx.client.create_order(order_request("uncoded")).await.expect_err("INTERNAL");
    assert_eq!(err.code(), support::OrderServiceErrorCode::Internal);
    let event = capture.event("handler_failed").await;
    assert_event(&event, Level::ERROR, "create_order", "api.v1.create_order");
    assert!(field(&event.fields, "error").contains("refused the connection"), "{event:?}");
    let server = &capture.spans("nats_micro.server")[0];
    assert_eq!(event.span, Some(server.id), "the event is inside the request's span");
    assert_eq!(field(&server.fields, "otel.status_code"), "error");
    assert_eq!(field(&server.fields, "nats_micro.error_code"), "INTERNAL");
    assert!(capture.events("handler_panicked").is_empty());
}

#[tokio::test]
async fn a_panic_is_handler_panicked_and_not_handler_failed() {
    let (capture, _guard) = Capture::install();
    let fx = Fixture::start().await;
    fx.client.create_order(order_request("panic")).await.expect_err("INTERNAL");
    let event = capture.event("handler_panicked").await;
    assert_event(&event, Level::ERROR, "create_order", "api.v1.create_order");
    assert_eq!(field(&event.fields, "panic"), "the handler blew up");
    assert!(capture.events("handler_failed").is_empty(), "{:?}", capture.events("handler_failed"));
}

#[tokio::test]
async fn a_body_that_does_not_decode_is_request_malformed() {
    let (capture, _guard) = Capture::install();
    let fx = Fixture::start().await;
    let reply = fx.nats.request("api.v1.create_order", Bytes::from_static(&[0xff, 0xff, 0xff])).await.expect("answered");
    let code = reply.headers.as_ref().and_then(|headers| headers.get("Nats-Service-Error-Code")).map(|v| v.to_string());
    assert_eq!(code.as_deref(), Some("400"));
    let event = capture.event("request_malformed").await;
    assert_event(&event, Level::WARN, "create_order", "api.v1.create_order");
    assert!(!field(&event.fields, "error").is_empty());
}

#[tokio::test]
async fn a_handler_past_its_deadline_is_deadline_dropped() {
    let (capture, _guard) = Capture::install();
    let fx = Fixture::start().await;
    let request = Request::new(order_request("slow")).with_timeout(Duration::from_millis(150));
    fx.client.create_order(request).await.expect_err("DEADLINE_EXCEEDED");
    let event = capture.event("deadline_dropped").await;
    assert_event(&event, Level::WARN, "create_order", "api.v1.create_order");
    let waited: u64 = field(&event.fields, "waited_ms").parse().expect("a number");
    assert!((150..5000).contains(&waited), "{waited}");
    let server = &capture.spans("nats_micro.server")[0];
    assert_eq!(field(&server.fields, "otel.status_code"), "error", "DEADLINE_EXCEEDED is a server fault");
}

#[tokio::test]
async fn a_request_beyond_the_backlog_is_request_shed() {
    let (capture, _guard) = Capture::install();
    let fx = Fixture::start_with(|b| b.max_concurrency(1).pending_limit(Some(1))).await;
    let slow = || fx.client.create_order(Request::new(order_request("slow")).with_timeout(Duration::from_millis(400)));
    // One runs, one waits, the third is shed at once.
    let (first, second, third) = tokio::join!(slow(), slow(), slow());
    let shed =
        [first, second, third].into_iter().filter(|r| r.as_ref().is_err_and(|e| e.code().as_str() == "RESOURCE_EXHAUSTED"));
    assert_eq!(shed.count(), 1);
    let event = capture.event("request_shed").await;
    assert_event(&event, Level::WARN, "create_order", "api.v1.create_order");
    assert_eq!(field(&event.fields, "queued"), "1");
}

#[tokio::test]
async fn a_refused_reply_subject_is_reply_refused() {
    let (capture, _guard) = Capture::install();
    let fx = Fixture::start_with(|b| b.reply_policy(ReplyPolicy::default().deny("admin.>"))).await;
    let payload = Bytes::from(prost::Message::encode_to_vec(&order_request("c")));
    fx.nats.publish_with_reply("api.v1.create_order", "admin.shutdown", payload).await.expect("publishes");
    fx.nats.flush().await.expect("flushed");
    let event = capture.event("reply_refused").await;
    assert_event(&event, Level::WARN, "create_order", "api.v1.create_order");
    assert_eq!(field(&event.fields, "reply"), "admin.shutdown");
}

/// With OpenTelemetry: a client call and the request it makes share one
/// trace, the server span's parent being the client span, itself a child
/// of the span current at the call.
#[tokio::test]
async fn a_call_and_its_request_share_one_trace_with_the_right_parents() {
    let recorder = SpanRecorder::default();
    let _guard = tracing::subscriber::set_default(recorder.subscriber());
    let fx = Fixture::start().await;
    let outer = tracing::info_span!("outer");
    {
        use tracing::Instrument;
        fx.client.get_order(GetOrderRequest { id: "o-7".into() }).instrument(outer.clone()).await.expect("served");
    }
    drop(outer);
    let spans = recorder.spans();
    let find = |kind: SpanKind| spans.iter().find(|span| span.span_kind == kind).unwrap_or_else(|| panic!("{kind:?}: {spans:?}"));
    let (client, server) = (find(SpanKind::Client), find(SpanKind::Server));
    let outer = spans.iter().find(|span| span.name == "outer").expect("outer span");
    assert_eq!(client.name, "order.v1.OrderService/GetOrder");
    assert_eq!(server.name, "order.v1.OrderService/GetOrder");
    let trace = outer.span_context.trace_id();
    assert_ne!(trace, TraceId::INVALID);
    assert_eq!(client.span_context.trace_id(), trace);
    assert_eq!(server.span_context.trace_id(), trace);
    assert_eq!(client.parent_span_id, outer.span_context.span_id());
    assert_eq!(server.parent_span_id, client.span_context.span_id());
    assert!(server.parent_span_is_remote, "the parent came over NATS");
    let attribute = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
    };
    for span in [client, server] {
        assert_eq!(attribute(span, "rpc.system").as_deref(), Some("nats_micro"));
        assert_eq!(attribute(span, "rpc.service").as_deref(), Some("order.v1.OrderService"));
        assert_eq!(attribute(span, "rpc.method").as_deref(), Some("GetOrder"));
        assert_eq!(attribute(span, "messaging.system").as_deref(), Some("nats"));
        assert_eq!(attribute(span, "messaging.destination.name").as_deref(), Some("api.v1.get_order"));
        assert_eq!(attribute(span, "nats_micro.endpoint").as_deref(), Some("get_order"));
        assert_eq!(span.status, opentelemetry::trace::Status::Unset);
    }
}

/// A request's own `traceparent` is the server span's parent when valid; an
/// invalid one starts a new trace, and its `tracestate` is dropped.
#[tokio::test]
async fn the_server_extracts_a_valid_traceparent_and_ignores_an_invalid_one() {
    let recorder = SpanRecorder::default();
    let _guard = tracing::subscriber::set_default(recorder.subscriber());
    let fx = Fixture::start().await;
    let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(TRACEPARENT, valid);
    headers.insert(TRACESTATE, "vendor=opaque");
    let body = Bytes::from(prost::Message::encode_to_vec(&GetOrderRequest { id: "o-1".into() }));
    fx.nats.request_with_headers("api.v1.get_order", headers, body.clone()).await.expect("answered");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(TRACEPARENT, "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01");
    headers.insert(TRACESTATE, "vendor=dropped");
    fx.nats.request_with_headers("api.v1.get_order", headers, body).await.expect("answered");

    let spans = recorder.spans();
    let servers: Vec<_> = spans.iter().filter(|span| span.span_kind == SpanKind::Server).collect();
    assert_eq!(servers.len(), 2, "{spans:?}");
    let (joined, fresh) = (servers[0], servers[1]);
    assert_eq!(joined.span_context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(joined.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert_eq!(joined.span_context.trace_state().header(), "vendor=opaque");
    assert_ne!(fresh.span_context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736", "a new trace");
    assert_eq!(fresh.parent_span_id, SpanId::INVALID, "a root");
    assert_eq!(fresh.span_context.trace_state().header(), "", "tracestate only beside a valid traceparent");
}

/// A user's explicit `traceparent` on a call wins over the injected one.
#[tokio::test]
async fn a_users_traceparent_on_a_call_wins() {
    let recorder = SpanRecorder::default();
    let _guard = tracing::subscriber::set_default(recorder.subscriber());
    let fx = Fixture::start().await;
    let mine = "00-11111111111111111111111111111111-2222222222222222-01";
    let request = Request::new(GetOrderRequest { id: "o-1".into() }).with_header(TRACEPARENT, mine);
    fx.client.get_order(request).await.expect("served");
    let spans = recorder.spans();
    let server = spans.iter().find(|span| span.span_kind == SpanKind::Server).expect("server span");
    assert_eq!(server.span_context.trace_id().to_string(), "11111111111111111111111111111111");
    assert_eq!(server.parent_span_id.to_string(), "2222222222222222");
}

/// The stream service of `proto/streams/v1` and a client of it.
struct StreamFixture {
    _server: NatsServer,
    _service: nats_micro_runtime::Service,
    client: StreamServiceClient,
}

async fn start_streams() -> StreamFixture {
    let server = NatsServer::start();
    let service =
        streams::service_builder(Streams::default()).start(&server.connect().await).await.expect("the stream service starts");
    let client = StreamServiceClient::new(server.connect().await);
    StreamFixture { _server: server, _service: service, client }
}

fn finished(recorder: &SpanRecorder, kind: SpanKind) -> Vec<opentelemetry_sdk::trace::SpanData> {
    recorder.spans().into_iter().filter(|span| span.span_kind == kind).collect()
}

/// A server stream is one client span from its open to its end: the open
/// carries its trace context (the server span is its child), and it ends
/// with the stream's end, after the last message.
#[tokio::test]
async fn a_server_stream_has_one_client_span_from_its_open_to_its_end() {
    let recorder = SpanRecorder::default();
    let _guard = tracing::subscriber::set_default(recorder.subscriber());
    let f = start_streams().await;
    let request = CountUpRequest { start: 1, count: 3, delay_ms: 40, ..Default::default() };
    let mut numbers = f.client.count_up(request).await.expect("the stream opens");
    let mut values = Vec::new();
    for _ in 0..3 {
        values.push(numbers.message().await.expect("a number").expect("not the end yet").value);
    }
    let last_message = std::time::SystemTime::now();
    assert_eq!(values, [1, 2, 3]);
    assert!(finished(&recorder, SpanKind::Client).is_empty(), "the client span outlives the messages");
    assert!(numbers.message().await.expect("the end").is_none());
    assert!(numbers.trailers().is_some());

    let clients = finished(&recorder, SpanKind::Client);
    assert_eq!(clients.len(), 1, "one client span per stream: {clients:?}");
    let client = &clients[0];
    assert_eq!(client.name, "streams.v1.StreamService/CountUp");
    assert_eq!(client.status, opentelemetry::trace::Status::Unset);
    assert!(client.end_time >= last_message, "the span ends with the stream, after its last message");
    let lasted = client.end_time.duration_since(client.start_time).expect("ends after it starts");
    assert!(lasted >= Duration::from_millis(80), "from the open to the end (two 40 ms waits): {lasted:?}");
    let servers = finished(&recorder, SpanKind::Server);
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(servers[0].span_context.trace_id(), client.span_context.trace_id());
    assert_eq!(servers[0].parent_span_id, client.span_context.span_id(), "the open carried the client span's context");
    assert!(servers[0].start_time >= client.start_time);
    let served = servers[0].end_time.duration_since(servers[0].start_time).expect("ends after it starts");
    assert!(served >= Duration::from_millis(80), "the server span lasts from the open to the end too: {served:?}");
}

/// Client- and bidi-streaming calls have their client span too, parent of
/// the server's.
#[tokio::test]
async fn client_and_bidi_streams_have_a_client_span_parent_of_the_server_span() {
    let recorder = SpanRecorder::default();
    let _guard = tracing::subscriber::set_default(recorder.subscriber());
    let f = start_streams().await;
    let sum = f.client.sum(futures_util::stream::iter((1..=3).map(|value| Number { value }))).await.expect("a sum");
    assert_eq!(sum.total, 6);
    let said = ["hello"].map(|text| ChatMessage { text: text.into() });
    let mut replies = f.client.chat(futures_util::stream::iter(said)).await.expect("the chat opens");
    while replies.message().await.expect("a reply").is_some() {}

    let clients = finished(&recorder, SpanKind::Client);
    let servers = finished(&recorder, SpanKind::Server);
    for method in ["Sum", "Chat"] {
        let name = format!("streams.v1.StreamService/{method}");
        let client =
            clients.iter().find(|span| span.name == name).unwrap_or_else(|| panic!("no client span {name}: {clients:?}"));
        let server = servers.iter().find(|span| span.name == name).unwrap_or_else(|| panic!("no server span {name}"));
        assert_eq!(server.parent_span_id, client.span_context.span_id(), "{name}");
        assert_eq!(client.status, opentelemetry::trace::Status::Unset, "{name}");
    }
    assert_eq!(clients.len(), 2, "{clients:?}");
}

/// A stream's error end is its client span's outcome, named as on a unary
/// call; a caller dropping the stream ends the span as CANCELLED.
#[tokio::test]
async fn a_streams_error_end_or_drop_is_its_client_spans_outcome() {
    let (capture, _guard) = Capture::install();
    let f = start_streams().await;
    let request = CountUpRequest { count: 10, fail_after: 2, ..Default::default() };
    let mut numbers = f.client.count_up(request).await.expect("the stream opens");
    assert!(numbers.message().await.expect("first").is_some());
    let clients = capture.spans("nats_micro.client");
    assert_eq!(clients.len(), 1, "{clients:?}");
    assert!(!clients[0].fields.contains_key("nats_micro.duration_ms"), "not finished while the stream runs");
    assert!(numbers.message().await.expect("second").is_some());
    let err = numbers.message().await.expect_err("FAILED_PRECONDITION");
    assert!(err.is_failed_precondition(), "{err:?}");
    let client = &capture.spans("nats_micro.client")[0].fields;
    assert_eq!(field(client, "otel.name"), "streams.v1.StreamService/CountUp");
    assert_eq!(field(client, "nats_micro.error_code"), "FAILED_PRECONDITION");
    assert_eq!(field(client, "otel.status_code"), "error");
    assert!(field(client, "nats_micro.duration_ms").parse::<f64>().is_ok());
    let server = &capture.spans("nats_micro.server")[0].fields;
    assert_eq!(field(server, "nats_micro.error_code"), "FAILED_PRECONDITION");
    assert!(!server.contains_key("otel.status_code"), "the caller's fault on the server side");

    let mut numbers = f.client.count_up(CountUpRequest { count: 1_000, ..Default::default() }).await.expect("opens");
    assert!(numbers.message().await.expect("first").is_some());
    drop(numbers);
    let dropped = &capture.spans("nats_micro.client")[1].fields;
    assert_eq!(field(dropped, "nats_micro.error_code"), "CANCELLED");
    assert_eq!(field(dropped, "otel.status_code"), "error");
}

#[test]
fn capture_sees_parents() {
    // The capture layer itself: a child span records its parent (so the tests above can fail).
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    tracing::subscriber::with_default(subscriber, || {
        let parent = tracing::info_span!("parent");
        let _entered = parent.enter();
        let _child = tracing::info_span!("child");
    });
    let child = &capture.spans("child")[0];
    let parent = capture.span(child.parent.expect("a parent")).expect("recorded");
    assert_eq!(parent.name, "parent");
}

/// The README's example: OpenTelemetry with an exporter, one call, the trace printed.
#[tokio::test]
async fn readme_example_prints_one_trace() -> Result<(), Box<dyn std::error::Error>> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

    let fx = Fixture::start().await;
    let client = fx.client.clone();
    // snippet: rust-observability
    // Any OpenTelemetry exporter works the same; this one keeps the spans in memory.
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber = tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("orders")));
    let _guard = tracing::subscriber::set_default(subscriber); // `set_global_default` in a binary

    client.get_order(GetOrderRequest { id: "o-7".into() }).await?;
    for span in exporter.get_finished_spans()? {
        let (trace, id, parent) = (span.span_context.trace_id(), span.span_context.span_id(), span.parent_span_id);
        println!("{:?} {} trace={trace} span={id} parent={parent}", span.span_kind, span.name);
    }
    // Server order.v1.OrderService/GetOrder trace=6f0c… span=9a41… parent=3be2…
    // Client order.v1.OrderService/GetOrder trace=6f0c… span=3be2… parent=0000000000000000
    // end snippet
    let spans = exporter.get_finished_spans()?;
    assert_eq!(spans.len(), 2, "{spans:?}");
    assert_eq!(spans[0].span_context.trace_id(), spans[1].span_context.trace_id());
    Ok(())
}
