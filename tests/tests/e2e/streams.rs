//! Streams (PROTOCOL §9) between the generated Rust client and service, and
//! against raw peers that speak the Go plugin's stream wire.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use nats_micro_runtime::stream::wire::{REPLY_TO, STREAM_BATCH, STREAM_CREDIT, STREAM_END, STREAM_INBOX, STREAM_SEQ};
use nats_micro_runtime::{Request, StreamSettings};
use nats_micro_tests::harness::NatsServer;
use nats_micro_tests::project::streams::v1::stream_service_nats::{self as streams, StreamServiceClient};
use nats_micro_tests::project::streams::v1::{ChatMessage, CountUpRequest, Number, SumResponse};
use nats_micro_tests::streams::Streams;
use prost::Message as _;

struct StreamFixture {
    server: NatsServer,
    service: nats_micro_runtime::Service,
    streams: Streams,
    client: StreamServiceClient,
}

async fn start(settings: StreamSettings) -> StreamFixture {
    let server = NatsServer::start();
    let streams = Streams::default();
    let service = streams::service_builder(streams.clone())
        .stream_settings(settings)
        .start(&server.connect().await)
        .await
        .expect("the stream service starts");
    let client = StreamServiceClient::new(server.connect().await);
    StreamFixture { server, service, streams, client }
}

fn count(start: i64, count: i32) -> CountUpRequest {
    CountUpRequest { start, count, ..Default::default() }
}

async fn collect(mut numbers: nats_micro_runtime::Streaming<Number, streams::StreamServiceError>) -> Vec<i64> {
    let mut values = Vec::new();
    while let Some(number) = numbers.message().await.expect("a number") {
        values.push(number.value);
    }
    values
}

/// Waits (bounded) until `check` holds.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within 2 s");
}

#[tokio::test]
async fn server_streaming_sends_every_number_in_order_with_trailers() {
    let f = start(StreamSettings::default()).await;
    let mut numbers = f.client.count_up(count(1, 5)).await.expect("the stream opens");
    let mut values = Vec::new();
    while let Some(number) = numbers.message().await.expect("a number") {
        values.push(number.value);
    }
    assert_eq!(values, [1, 2, 3, 4, 5]);
    assert_eq!(numbers.trailers().and_then(|t| t.get("X-Counted")).map(|v| v.as_str()), Some("5"));
    // More than the window (16) arrive as the client reads.
    assert_eq!(collect(f.client.count_up(count(0, 100)).await.expect("opens")).await, (0..100).collect::<Vec<_>>());
    let stats = f.service.stats();
    let endpoint = stats.endpoints.iter().find(|e| e.name == "count_up").expect("count_up in STATS");
    assert_eq!((endpoint.num_requests, endpoint.num_errors), (2, 0));
}

#[tokio::test]
async fn typed_errors_end_a_stream_at_open_and_midway_with_their_data() {
    let f = start(StreamSettings::default()).await;
    let mut numbers = f.client.count_up(count(0, 20_000)).await.expect("the stream opens");
    let err = numbers.message().await.expect_err("TOO_MANY");
    assert!(err.is_too_many(), "{err:?}");
    assert_eq!(err.data().as_ref(), b"20000");
    assert!(numbers.message().await.expect("ended").is_none(), "nothing after the error");

    let mut numbers = f.client.count_up(CountUpRequest { count: 10, fail_after: 2, ..Default::default() }).await.expect("opens");
    assert_eq!(numbers.message().await.expect("first").map(|n| n.value), Some(0));
    assert_eq!(numbers.message().await.expect("second").map(|n| n.value), Some(1));
    let err = numbers.message().await.expect_err("FAILED_PRECONDITION");
    assert!(err.is_failed_precondition(), "{err:?}");
    assert!(err.message().contains("failing after 2"), "{err:?}");
}

#[tokio::test]
async fn client_streaming_sums_and_reports_invalid_input() {
    let f = start(StreamSettings::default()).await;
    let numbers: Vec<Number> = (1..=10).map(|value| Number { value }).collect();
    let sum = f.client.sum(futures_util::stream::iter(numbers)).await.expect("a sum");
    assert_eq!(*sum, SumResponse { total: 55, count: 10 });
    // More messages than the server's window (64) wait for its credit.
    let many: Vec<Number> = (0..500).map(|value| Number { value }).collect();
    let sum = f.client.sum(Request::new(futures_util::stream::iter(many)).with_header("X-Batch", "1")).await.expect("a sum");
    assert_eq!(sum.count, 500);
    let err = f.client.sum(futures_util::stream::iter([Number { value: 1 }, Number { value: -3 }])).await.expect_err("negative");
    assert!(err.is_invalid_argument(), "{err:?}");
    assert!(err.message().contains("-3 is negative"), "{err:?}");
}

#[tokio::test]
async fn bidirectional_chat_echoes_then_says_bye() {
    let f = start(StreamSettings::default()).await;
    let said = ["hello", "world"].map(|text| ChatMessage { text: text.into() });
    let replies = f.client.chat(futures_util::stream::iter(said)).await.expect("the chat opens");
    let replies: Vec<String> = replies.map(|reply| reply.expect("a reply").text).collect().await;
    assert_eq!(replies, ["echo: hello", "echo: world", "bye"]);
    // The unary RPC beside the streams.
    assert_eq!(f.client.ping(ChatMessage { text: "p".into() }).await.expect("pong").text, "p");
}

#[tokio::test]
async fn a_slow_reader_holds_the_server_to_its_window() {
    let f = start(StreamSettings::default()).await;
    let mut numbers = f.client.count_up(count(0, 1_000)).await.expect("opens");
    assert!(numbers.message().await.expect("first").is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Window 16 (the proto's max_inflight); credit comes back in halves as the reader reads.
    let sent = f.streams.observed.sent.load(Ordering::SeqCst);
    assert!(sent <= 16, "the server ran {sent} numbers ahead of a reader that took one");
    let rest = collect(numbers).await;
    assert_eq!(rest.len(), 999);
}

#[tokio::test]
async fn the_deadline_ends_the_stream_on_both_sides() {
    let f = start(StreamSettings::default()).await;
    let slow = CountUpRequest { count: 100, delay_ms: 100, ..Default::default() };
    let mut numbers = f.client.count_up(Request::new(slow).with_timeout(Duration::from_millis(350))).await.expect("opens");
    let mut got = 0;
    let err = loop {
        match numbers.message().await {
            Ok(Some(_)) => got += 1,
            Ok(None) => panic!("the stream ended without its deadline"),
            Err(err) => break err,
        }
    };
    assert!(err.is_deadline_exceeded(), "{err:?}");
    assert!((2..=5).contains(&got), "{got} numbers before a 350 ms deadline at 100 ms each");
    eventually("the server handler stopping", || f.streams.observed.stopped_early.load(Ordering::SeqCst) == 1).await;
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_handler() {
    let f = start(StreamSettings::default()).await;
    let mut numbers =
        f.client.count_up(CountUpRequest { count: 1_000, delay_ms: 20, ..Default::default() }).await.expect("opens");
    numbers.message().await.expect("first").expect("a number");
    drop(numbers);
    eventually("the handler stopping", || f.streams.observed.stopped_early.load(Ordering::SeqCst) == 1).await;
    let stats = f.service.stats();
    let endpoint = stats.endpoints.iter().find(|e| e.name == "count_up").expect("count_up");
    assert_eq!(endpoint.num_errors, 1, "a cancelled stream counts as an error");
    assert!(endpoint.last_error.contains("cancelled"), "{}", endpoint.last_error);
}

#[tokio::test]
async fn a_silent_caller_is_given_up_after_the_peer_timeout() {
    let settings = StreamSettings { keepalive: Duration::from_millis(50), peer_timeout: Duration::from_millis(300) };
    let f = start(settings).await;
    // A raw caller that opens with credit and then never speaks again (no keepalives).
    let nats = f.server.connect().await;
    let inbox = nats.new_inbox();
    let mut replies = nats.subscribe(inbox.clone()).await.expect("subscribes");
    let mut headers = HeaderMap::new();
    headers.insert(REPLY_TO, inbox.as_str());
    headers.insert(STREAM_CREDIT, "1000");
    let open = CountUpRequest { count: 1_000, delay_ms: 20, ..Default::default() }.encode_to_vec();
    nats.publish_with_reply_and_headers("streams.v1.count_up", inbox.clone(), headers, open.into()).await.expect("opens");
    let ack = replies.next().await.expect("an ack");
    assert!(ack.headers.as_ref().and_then(|h| h.get(STREAM_INBOX)).is_some(), "the ack names the server's inbox");
    eventually("the server giving up on a silent caller", || f.streams.observed.stopped_early.load(Ordering::SeqCst) == 1).await;
}

#[tokio::test]
async fn a_go_plugin_style_caller_without_reply_subject_or_credit_is_served() {
    let f = start(StreamSettings::default()).await;
    let nats = f.server.connect().await;
    let inbox = nats.new_inbox();
    let mut messages = nats.subscribe(inbox.clone()).await.expect("subscribes");
    let mut headers = HeaderMap::new();
    headers.insert(REPLY_TO, inbox.as_str());
    nats.publish_with_headers("streams.v1.count_up", headers, count(7, 40).encode_to_vec().into()).await.expect("opens");
    let mut values = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next()).await.expect("in time").expect("a message");
        let headers = message.headers.clone().unwrap_or_default();
        assert!(headers.get(STREAM_INBOX).is_none(), "no ack without a reply subject");
        if headers.get(STREAM_END).is_some() {
            break;
        }
        assert_eq!(headers.get(STREAM_SEQ).map(|v| v.as_str().to_owned()), Some((values.len() + 1).to_string()));
        values.push(Number::decode(message.payload).expect("a Number").value);
    }
    assert_eq!(values, (7..47).collect::<Vec<_>>(), "all 40, past any window, without credit");
}

/// A raw `count_up` server in the Go plugin's manner (no ack, no credit):
/// answers the first open with `(sequence number, value)` data messages,
/// then an end if `end`.
async fn raw_count_up_server(
    nats: async_nats::Client,
    frames: impl Fn(CountUpRequest) -> Vec<(usize, i64)> + Send + 'static,
    end: bool,
) {
    let mut opens = nats.subscribe("streams.v1.count_up").await.expect("subscribes");
    nats.flush().await.expect("the subscription reaches the server");
    tokio::spawn(async move {
        let open = opens.next().await.expect("an open");
        let reply_to = open.headers.as_ref().and_then(|h| h.get(REPLY_TO)).expect("Reply-To").as_str().to_owned();
        let request = CountUpRequest::decode(open.payload).expect("a CountUpRequest");
        for (seq, value) in frames(request) {
            let mut headers = HeaderMap::new();
            headers.insert(STREAM_SEQ, seq.to_string().as_str());
            nats.publish_with_headers(reply_to.clone(), headers, Number { value }.encode_to_vec().into()).await.expect("sends");
        }
        if end {
            let mut headers = HeaderMap::new();
            headers.insert(STREAM_END, "true");
            nats.publish_with_headers(reply_to, headers, Bytes::new()).await.expect("ends");
        }
        // The last handle closes the connection: send what is buffered first.
        nats.flush().await.expect("flushes");
    });
}

#[tokio::test]
async fn our_caller_reads_a_go_plugin_style_server_that_sends_no_ack() {
    let server = NatsServer::start();
    let every = |r: CountUpRequest| (r.start..r.start + i64::from(r.count)).enumerate().map(|(i, v)| (i + 1, v)).collect();
    raw_count_up_server(server.connect().await, every, true).await;
    let client = StreamServiceClient::new(server.connect().await);
    assert_eq!(collect(client.count_up(count(3, 4)).await.expect("opens")).await, [3, 4, 5, 6]);
}

#[tokio::test]
async fn a_gap_in_sequence_numbers_is_data_loss() {
    let server = NatsServer::start();
    raw_count_up_server(server.connect().await, |_| vec![(1, 1), (3, 3)], false).await;
    let client = StreamServiceClient::new(server.connect().await);
    let mut numbers = client.count_up(count(0, 3)).await.expect("opens");
    assert_eq!(numbers.message().await.expect("first").map(|n| n.value), Some(1));
    let err = numbers.message().await.expect_err("a gap");
    assert!(err.is_data_loss(), "{err:?}");
}

#[tokio::test]
async fn malformed_stream_headers_are_invalid_argument() {
    let f = start(StreamSettings::default()).await;
    let nats = f.server.connect().await;
    // A credit that does not parse, in the open.
    let inbox = nats.new_inbox();
    let mut replies = nats.subscribe(inbox.clone()).await.expect("subscribes");
    let mut headers = HeaderMap::new();
    headers.insert(REPLY_TO, inbox.as_str());
    headers.insert(STREAM_CREDIT, "-5");
    nats.publish_with_reply_and_headers("streams.v1.count_up", inbox.clone(), headers, count(0, 3).encode_to_vec().into())
        .await
        .expect("opens");
    let reply = tokio::time::timeout(Duration::from_secs(5), replies.next()).await.expect("in time").expect("a reply");
    let headers = reply.headers.unwrap_or_default();
    assert_eq!(headers.get("Nats-Service-Error-Code").map(|v| v.as_str()), Some("400"));
    assert_eq!(headers.get(STREAM_END).map(|v| v.as_str()), Some("true"));

    // A sequence number that does not parse, in a client stream.
    let inbox = nats.new_inbox();
    let mut replies = nats.subscribe(inbox.clone()).await.expect("subscribes");
    let mut headers = HeaderMap::new();
    headers.insert(REPLY_TO, inbox.as_str());
    headers.insert(STREAM_CREDIT, "8");
    nats.publish_with_reply_and_headers("streams.v1.sum", inbox.clone(), headers, Bytes::new()).await.expect("opens");
    let ack = replies.next().await.expect("an ack");
    let server_inbox = ack.headers.as_ref().and_then(|h| h.get(STREAM_INBOX)).expect("the server's inbox").as_str().to_owned();
    let mut data = HeaderMap::new();
    data.insert(STREAM_SEQ, "one");
    nats.publish_with_headers(server_inbox, data, Number { value: 1 }.encode_to_vec().into()).await.expect("sends");
    let end = tokio::time::timeout(Duration::from_secs(5), replies.next()).await.expect("in time").expect("an end");
    let headers = end.headers.unwrap_or_default();
    assert_eq!(headers.get("Nats-Service-Error-Code").map(|v| v.as_str()), Some("400"), "{headers:?}");
}

#[tokio::test]
async fn a_reply_to_into_a_reserved_subject_is_refused() {
    let f = start(StreamSettings::default()).await;
    let nats = f.server.connect().await;
    let mut sink = nats.subscribe("$JS.API.>").await.expect("subscribes");
    let mut headers = HeaderMap::new();
    headers.insert(REPLY_TO, "$JS.API.STREAM.DELETE.orders");
    nats.publish_with_headers("streams.v1.count_up", headers, count(0, 3).encode_to_vec().into()).await.expect("opens");
    nats.flush().await.expect("flushes");
    assert!(tokio::time::timeout(Duration::from_millis(300), sink.next()).await.is_err(), "nothing published there");
    eventually("the refusal counted", || f.service.stats().endpoints.iter().any(|e| e.name == "count_up" && e.num_errors == 1))
        .await;
}

#[tokio::test]
async fn interceptors_see_stream_opens_and_outcomes_on_both_sides() {
    use std::sync::{Arc, Mutex};
    let server = NatsServer::start();
    let outcomes: Arc<Mutex<Vec<bool>>> = Arc::default();
    let seen = outcomes.clone();
    let service = streams::service_builder(Streams::default())
        .interceptor_fn(
            move |ctx: nats_micro_runtime::RequestContext, payload, next: nats_micro_runtime::interceptor::ServerNext| {
                let seen = seen.clone();
                async move {
                    if ctx.header("X-Tenant") != Some("acme") {
                        return Err(nats_micro_runtime::Error::unauthenticated("no tenant"));
                    }
                    let outcome = next.run(ctx, payload).await;
                    seen.lock().expect("outcomes").push(outcome.is_ok());
                    outcome
                }
            },
        )
        .start(&server.connect().await)
        .await
        .expect("starts");
    let tenant = nats_micro_runtime::Client::new(server.connect().await, "streams.v1").interceptor_fn(
        |mut call: nats_micro_runtime::interceptor::ClientCall, next: nats_micro_runtime::interceptor::ClientNext| async move {
            call.headers.insert("X-Tenant", "acme");
            next.run(call).await
        },
    );
    let client = StreamServiceClient::from_client(tenant);
    assert_eq!(collect(client.count_up(count(1, 3)).await.expect("opens")).await, [1, 2, 3]);
    let sum = client.sum(futures_util::stream::iter([Number { value: 2 }, Number { value: 3 }])).await.expect("a sum");
    assert_eq!(sum.total, 5);
    eventually("both outcomes seen", || outcomes.lock().expect("outcomes").len() == 2).await;
    assert_eq!(*outcomes.lock().expect("outcomes"), [true, true]);

    let anonymous = StreamServiceClient::new(server.connect().await);
    let err = anonymous.count_up(count(1, 3)).await.expect_err("refused at open");
    assert!(err.is_unauthenticated(), "{err:?}");

    // §9.2: a refused open is ended on its reply subject (where the caller
    // awaits the ack), not on a different Reply-To.
    let raw = server.connect().await;
    let (ack_inbox, stream_inbox) = (raw.new_inbox(), raw.new_inbox());
    let mut acks = raw.subscribe(ack_inbox.clone()).await.expect("subscribes");
    let mut stream = raw.subscribe(stream_inbox.clone()).await.expect("subscribes");
    let mut open = HeaderMap::new();
    open.insert(REPLY_TO, stream_inbox.as_str());
    open.insert(STREAM_CREDIT, "8");
    raw.publish_with_reply_and_headers("streams.v1.count_up", ack_inbox, open, count(1, 3).encode_to_vec().into())
        .await
        .expect("opens");
    let refusal = tokio::time::timeout(Duration::from_secs(2), acks.next()).await.expect("in time").expect("the refusal");
    let headers = refusal.headers.expect("error headers");
    assert_eq!(headers.get(STREAM_END).map(|v| v.as_str()), Some("true"));
    assert_eq!(headers.get(nats_micro_runtime::headers::ERROR_CODE).map(|v| v.as_str()), Some("401"));
    assert!(tokio::time::timeout(Duration::from_millis(200), stream.next()).await.is_err(), "nothing goes to Reply-To");
    service.stop().await;
}

#[tokio::test]
async fn a_stopping_service_ends_its_open_streams_with_unavailable() {
    let server = NatsServer::start();
    let streams = Streams::default();
    let service = streams::service_builder(streams.clone())
        .drain_timeout(Duration::from_millis(200))
        .start(&server.connect().await)
        .await
        .expect("starts");
    let client = StreamServiceClient::new(server.connect().await);
    let mut numbers = client.count_up(CountUpRequest { count: 1_000, delay_ms: 50, ..Default::default() }).await.expect("opens");
    numbers.message().await.expect("first").expect("a number");
    let stopping = tokio::spawn(service.stop());
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(3), numbers.message()).await.expect("the stream ends in time") {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without an error"),
            Err(err) => break err,
        }
    };
    assert!(err.is_unavailable(), "{err:?}");
    stopping.await.expect("the stop returns");
    assert_eq!(streams.observed.stopped_early.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn stream_endpoints_say_their_kind_in_info() {
    let f = start(StreamSettings::default()).await;
    let kinds: Vec<(String, Option<String>)> =
        f.service.endpoints().iter().map(|e| (e.name.clone(), e.metadata.get("nats_micro.stream").cloned())).collect();
    let expected = [("count_up", Some("server")), ("sum", Some("client")), ("chat", Some("bidirectional")), ("ping", None)];
    let expected: Vec<(String, Option<String>)> =
        expected.iter().map(|(name, kind)| ((*name).to_owned(), kind.map(str::to_owned))).collect();
    assert_eq!(kinds, expected);
    let client_side: Vec<Option<String>> =
        f.client.endpoints().iter().map(|e| e.metadata.get("nats_micro.stream").cloned()).collect();
    assert_eq!(client_side, expected.iter().map(|(_, kind)| kind.clone()).collect::<Vec<_>>());
}

#[tokio::test]
async fn opening_a_stream_nobody_serves_is_unavailable_at_once() {
    let server = NatsServer::start();
    let client = StreamServiceClient::new(server.connect().await);
    let started = std::time::Instant::now();
    let err = client.count_up(count(0, 3)).await.expect_err("no responders");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    let err = client.sum(futures_util::stream::iter([Number { value: 1 }])).await.expect_err("no responders");
    assert!(err.is_unavailable(), "{err:?}");
}

#[tokio::test]
async fn a_panicking_stream_handler_ends_with_internal_and_the_service_keeps_serving() {
    let f = start(StreamSettings::default()).await;
    let mut numbers = f.client.count_up(Request::new(count(0, 3)).with_header("X-Panic", "1")).await.expect("opens");
    let err = numbers.message().await.expect_err("INTERNAL");
    assert!(err.is_internal(), "{err:?}");
    assert!(!err.message().contains("asked to panic"), "internal text stays on the server: {err:?}");
    assert_eq!(collect(f.client.count_up(count(0, 3)).await.expect("opens")).await, [0, 1, 2]);
}

#[tokio::test]
async fn a_server_that_goes_silent_is_given_up_by_the_caller() {
    let server = NatsServer::start();
    let nats = server.connect().await;
    // Acks with credit (so it promised keepalives), sends one number, then nothing.
    raw_acking_server(&nats, Number { value: 9 }.encode_to_vec().into(), |_inbox| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
    })
    .await;
    let settings = StreamSettings { keepalive: Duration::from_millis(50), peer_timeout: Duration::from_millis(300) };
    let client = StreamServiceClient::from_client(
        nats_micro_runtime::Client::new(server.connect().await, "streams.v1").with_stream_settings(settings),
    );
    let mut numbers = client.count_up(count(0, 3)).await.expect("opens");
    assert_eq!(numbers.message().await.expect("first").map(|n| n.value), Some(9));
    let started = std::time::Instant::now();
    let err = numbers.message().await.expect_err("the server went silent");
    assert!(err.is_unavailable(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    drop(nats);
}

#[tokio::test]
async fn a_message_that_does_not_decode_fails_the_stream_and_cancels_it() {
    let server = NatsServer::start();
    let nats = server.connect().await;
    let (cancelled_tx, cancelled) = tokio::sync::oneshot::channel();
    raw_acking_server(&nats, Bytes::from_static(&[0xff, 0xff, 0xff]), |mut inbox| async move {
        while let Some(message) = inbox.next().await {
            if message.headers.as_ref().and_then(|h| h.get("Nats-Stream-Cancel")).is_some() {
                let _ = cancelled_tx.send(());
                return;
            }
        }
    })
    .await;
    let client = StreamServiceClient::new(server.connect().await);
    let mut numbers = client.count_up(count(0, 3)).await.expect("opens");
    let err = numbers.message().await.expect_err("garbage");
    assert!(err.is_invalid_argument(), "{err:?}");
    drop(numbers);
    tokio::time::timeout(Duration::from_secs(2), cancelled).await.expect("the server hears the cancel").expect("sent");
}

/// A raw `count_up` server that acks the first open with credit (so it
/// speaks flow control and owes keepalives), sends `first` as message 1,
/// then hands its own inbox to `then`.
async fn raw_acking_server<F, Fut>(nats: &async_nats::Client, first: Bytes, then: F)
where
    F: FnOnce(async_nats::Subscriber) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let mut opens = nats.subscribe("streams.v1.count_up").await.expect("subscribes");
    nats.flush().await.expect("flushes");
    let peer = nats.clone();
    tokio::spawn(async move {
        let open = opens.next().await.expect("an open");
        let reply = open.reply.expect("a reply subject");
        let server_inbox = peer.new_inbox();
        let inbox = peer.subscribe(server_inbox.clone()).await.expect("subscribes");
        let mut ack = HeaderMap::new();
        ack.insert(STREAM_INBOX, server_inbox.as_str());
        ack.insert(STREAM_CREDIT, "8");
        peer.publish_with_headers(reply.clone(), ack, Bytes::new()).await.expect("acks");
        let mut data = HeaderMap::new();
        data.insert(STREAM_SEQ, "1");
        peer.publish_with_headers(reply, data, first).await.expect("sends");
        peer.flush().await.expect("flushes");
        then(inbox).await;
    });
}

/// Client interceptors wrap a stream like a call (PROTOCOL §9.7): `next`
/// settles with the stream's outcome (trailers, the error, CANCELLED when
/// the caller drops it), and what the chain settles with is what the caller
/// sees at the end; refusing before `next` opens nothing.
#[tokio::test]
async fn client_interceptors_see_a_streams_outcome_and_may_change_it() {
    use nats_micro_runtime::interceptor::{ClientCall, ClientNext};
    use std::sync::{Arc, Mutex};
    let f = start(StreamSettings::default()).await;
    let outcomes: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = outcomes.clone();
    let client = nats_micro_runtime::Client::new(f.server.connect().await, "streams.v1").interceptor_fn(
        move |call: ClientCall, next: ClientNext| {
            let seen = seen.clone();
            async move {
                if call.headers.get("X-Refuse").is_some() {
                    return Err(nats_micro_runtime::Error::permission_denied("refused here"));
                }
                let outcome = next.run(call).await;
                let summary = match &outcome {
                    Ok(reply) => format!("ok {}", reply.headers.get("X-Counted").map_or("-", |v| v.as_str())),
                    Err(err) => format!("{:?}", err.code()),
                };
                seen.lock().expect("outcomes").push(summary);
                // Relabel: a failed precondition reaches the caller as UNAVAILABLE.
                outcome.map_err(|err| match err.code() {
                    nats_micro_runtime::Code::FailedPrecondition => nats_micro_runtime::Error::unavailable("relabelled"),
                    _ => err,
                })
            }
        },
    );
    let client = StreamServiceClient::from_client(client);
    let mut numbers = client.count_up(count(1, 3)).await.expect("opens");
    assert!(outcomes.lock().expect("outcomes").is_empty(), "the outcome is not known at the open");
    assert_eq!(collect(numbers).await, [1, 2, 3]);
    let failing = CountUpRequest { count: 5, fail_after: 1, ..Default::default() };
    numbers = client.count_up(failing).await.expect("opens");
    assert!(numbers.message().await.expect("the first").is_some());
    let err = numbers.message().await.expect_err("fails after one");
    assert!(err.is_unavailable() && err.message() == "relabelled", "{err:?}");
    let sum = client.sum(futures_util::stream::iter([Number { value: 2 }, Number { value: 5 }])).await.expect("a sum");
    assert_eq!(sum.total, 7);
    let opens = || f.service.stats().endpoints.iter().find(|e| e.name == "count_up").map_or(0, |e| e.num_requests);
    eventually("both count_up calls counted", || opens() == 2).await;
    let refused = Request::new(count(1, 1)).with_header("X-Refuse", "yes");
    let err = client.count_up(refused).await.expect_err("refused");
    assert!(err.is_permission_denied(), "{err:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(opens(), 2, "a refused call opens nothing");
    let mut long = client.count_up(CountUpRequest { count: 1000, delay_ms: 5, ..Default::default() }).await.expect("opens");
    long.message().await.expect("a number");
    drop(long);
    eventually("the dropped stream's outcome", || outcomes.lock().expect("outcomes").len() == 4).await;
    assert_eq!(*outcomes.lock().expect("outcomes"), ["ok 3", "FailedPrecondition", "ok -", "Cancelled"]);
    eventually("the server's handler stopped", || f.streams.observed.stopped_early.load(Ordering::SeqCst) == 1).await;
}

/// Our caller packs the numbers it has ready into batches (PROTOCOL §9.9)
/// for a server that announced them, within the credit the server gives,
/// and sends one number per NATS message to a server that did not.
#[tokio::test]
async fn a_caller_batches_only_for_a_server_that_announced_batches() {
    const WINDOW: u64 = 64;
    let server = NatsServer::start();
    // Only exactly `true` announces batches.
    for announce in [Some("true"), Some("TRUE"), None] {
        let nats = server.connect().await;
        let mut opens = nats.subscribe("streams.v1.sum").await.expect("subscribes");
        nats.flush().await.expect("flushes");
        let peer = nats.clone();
        let served = tokio::spawn(async move {
            let open = opens.next().await.expect("an open");
            let caller = open.headers.as_ref().and_then(|h| h.get(REPLY_TO)).expect("Reply-To").as_str().to_owned();
            assert_eq!(open.headers.as_ref().and_then(|h| h.get(STREAM_BATCH)).map(|v| v.as_str()), Some("true"));
            let server_inbox = peer.new_inbox();
            let mut inbox = peer.subscribe(server_inbox.clone()).await.expect("subscribes");
            let mut ack = HeaderMap::new();
            ack.insert(STREAM_INBOX, server_inbox.as_str());
            ack.insert(STREAM_CREDIT, WINDOW.to_string().as_str());
            if let Some(announce) = announce {
                ack.insert(STREAM_BATCH, announce);
            }
            peer.publish_with_headers(open.reply.expect("a reply subject"), ack, Bytes::new()).await.expect("acks");
            let (mut values, mut batches, mut granted) = (Vec::new(), 0, WINDOW);
            loop {
                let message = inbox.next().await.expect("a message");
                let headers = message.headers.unwrap_or_default();
                if headers.get(STREAM_END).is_some() {
                    break;
                }
                let seq: usize = headers.get(STREAM_SEQ).expect("a sequence number").as_str().parse().expect("a number");
                assert_eq!(seq, values.len() + 1);
                let mut body = message.payload;
                match headers.get(STREAM_BATCH) {
                    None => values.push(Number::decode(body).expect("a Number").value),
                    Some(count) => {
                        batches += 1;
                        for _ in 0..count.as_str().parse::<usize>().expect("a count") {
                            values.push(Number::decode_length_delimited(&mut body).expect("a Number").value);
                        }
                        assert!(body.is_empty(), "nothing after the batch's last message");
                    }
                }
                assert!(values.len() as u64 <= granted, "{} numbers sent with {granted} credit", values.len());
                if granted - values.len() as u64 <= WINDOW / 2 {
                    let mut credit = HeaderMap::new();
                    credit.insert(STREAM_CREDIT, (WINDOW / 2).to_string().as_str());
                    peer.publish_with_headers(caller.clone(), credit, Bytes::new()).await.expect("grants");
                    granted += WINDOW / 2;
                }
            }
            let mut end = HeaderMap::new();
            end.insert(STREAM_END, "true");
            let total = SumResponse { total: values.iter().sum(), count: values.len() as i32 };
            peer.publish_with_headers(caller, end, total.encode_to_vec().into()).await.expect("ends");
            peer.flush().await.expect("flushes");
            assert_eq!(values, (0..1000).collect::<Vec<_>>(), "every number once, in order");
            batches
        });
        let client = StreamServiceClient::new(server.connect().await);
        let sum = client.sum(futures_util::stream::iter((0..1000).map(|value| Number { value }))).await.expect("a sum");
        assert_eq!(*sum, SumResponse { total: 499_500, count: 1000 });
        let batches = served.await.expect("the raw server checked the wire");
        assert_eq!(batches > 0, announce == Some("true"), "{batches} batches with the ack announcing {announce:?}");
    }
}
