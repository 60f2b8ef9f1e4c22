//! A service under attack and under overload (docs/PROTOCOL.md, sections 3.2,
//! 5 and 6): malformed header blocks sent raw, reply subjects aimed at other
//! subjects, five times its capacity, and a stop while handlers hang.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use nats_micro_runtime::interceptor::ServerNext;
use nats_micro_runtime::{ReplyPolicy, Request, RequestContext};
use prost::Message as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::support::*;

/// Header blocks nats-server forwards unchanged and a client library may
/// choke on: every shape `docs/PROTOCOL.md` section 5 lists.
const MALFORMED_HEADERS: [(&str, &[u8]); 13] = [
    ("bare CR in a value", b"NATS/1.0\r\nX-Bad: a\rb\r\n\r\n"),
    ("bare LF in a value", b"NATS/1.0\r\nX-Bad: a\nb\r\n\r\n"),
    ("LF-only line endings", b"NATS/1.0\nX-Bad: b\n\n"),
    ("empty header name", b"NATS/1.0\r\n: v\r\n\r\n"),
    ("space in a name", b"NATS/1.0\r\nX Bad: v\r\n\r\n"),
    ("non-UTF-8 name", b"NATS/1.0\r\nX-\xff: v\r\n\r\n"),
    ("non-UTF-8 value", b"NATS/1.0\r\nX-Bad: \xff\xfe\r\n\r\n"),
    ("no version line", b"X-Bad: v\r\n\r\n"),
    ("status line 503", b"NATS/1.0 503\r\n\r\n"),
    ("idle heartbeat status", b"NATS/1.0 100 Idle Heartbeat\r\n\r\n"),
    ("truncated version line", b"NATS/"),
    ("line without a colon", b"NATS/1.0\r\nX-Bad\r\n\r\n"),
    ("header with a timeout and junk", b"NATS/1.0\r\nNats-Micro-Timeout: 1\r\n\x00\x01\r\n\r\n"),
];

/// Publishes one `HPUB` with `headers` as its raw header block, over a
/// connection of its own, and waits until the server has processed it.
async fn publish_raw(server: &NatsServer, subject: &str, reply: &str, headers: &[u8], payload: &[u8]) {
    let stream = TcpStream::connect(("127.0.0.1", server.port())).await.expect("connects");
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    stream.read_line(&mut line).await.expect("INFO");
    assert!(line.starts_with("INFO"), "{line}");
    let mut frame = Vec::new();
    frame.extend_from_slice(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\n");
    frame.extend_from_slice(format!("HPUB {subject} {reply} {} {}\r\n", headers.len(), headers.len() + payload.len()).as_bytes());
    frame.extend_from_slice(headers);
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\nPING\r\n");
    stream.get_mut().write_all(&frame).await.expect("writes");
    // PONG (or -ERR if the server refuses the frame; either way it was processed).
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_line(&mut answer)).await;
}

/// A CreateOrder that must succeed within one second of `since`, retried
/// while the service moves to a new connection.
async fn answers_within_a_second(client: &OrderServiceClient, since: Instant, shape: &str) {
    loop {
        let call = Request::new(order_request("c")).with_timeout(Duration::from_millis(200));
        match client.create_order(call).await {
            Ok(response) => {
                assert_eq!(response.order.as_ref().map(|o| o.customer_id.as_str()), Some("c"));
                return;
            }
            Err(err) => {
                assert!(since.elapsed() < Duration::from_secs(1), "{shape}: no answer within 1 s: {err:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// xorshift: random header blocks, the same in every run.
fn random_blocks(count: usize) -> Vec<Vec<u8>> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let len = usize::try_from(next() % 48).unwrap_or(0) + 1;
            (0..len).map(|_| next().to_le_bytes()[0]).collect()
        })
        .collect()
}

#[tokio::test]
async fn every_malformed_header_block_leaves_the_service_answering_within_a_second() {
    let server = NatsServer::start();
    let url = server.url();
    let nats = server.connect().await;
    let service = orders::service_builder(TestOrders::default())
        .reconnect_with(move || async_nats::connect(url.clone()))
        .start(&nats)
        .await
        .expect("starts");
    let client = OrderServiceClient::new(server.connect().await);
    let payload = order_request("hostile").encode_to_vec();
    let random = random_blocks(8);
    let shapes = MALFORMED_HEADERS
        .iter()
        .map(|(name, block)| ((*name).to_owned(), block.to_vec()))
        .chain(random.into_iter().enumerate().map(|(i, block)| (format!("random block {i}"), block)));
    for (shape, block) in shapes {
        for _ in 0..2 {
            publish_raw(&server, "api.v1.create_order", "_INBOX.hostile", &block, &payload).await;
            answers_within_a_second(&client, Instant::now(), &shape).await;
        }
    }
    // The bare CR kills async-nats 0.51's connection task: the service moved.
    assert!(service.connection_restarts() >= 1, "the watchdog noticed the dead connection");
    answers_within_a_second(&client, Instant::now(), "after all shapes").await;
    service.stop().await;
}

#[tokio::test]
async fn a_dead_connection_without_a_connector_ends_run_until_promptly() {
    let server = NatsServer::start();
    let nats = server.connect().await;
    let service = orders::service_builder(TestOrders::default()).start(&nats).await.expect("starts");
    let running = tokio::spawn(service.run_until(std::future::pending()));
    publish_raw(&server, "api.v1.create_order", "_INBOX.hostile", MALFORMED_HEADERS[0].1, b"").await;
    let ended = tokio::time::timeout(Duration::from_secs(5), running).await.expect("run_until returns within 5 s");
    let err = ended.expect("no panic").expect_err("the connection is lost");
    assert_eq!(err.code(), &nats_micro_runtime::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("reconnect_with"), "{err:?}");
}

#[tokio::test]
async fn a_reply_subject_aimed_at_another_endpoint_or_a_denied_subject_runs_nothing() {
    let fx = Fixture::start_with(|b| b.reply_policy(ReplyPolicy::default().deny("admin.>"))).await;
    let watcher = fx.server.connect().await;
    let mut leaked = watcher.subscribe("admin.>").await.expect("subscribes");
    watcher.flush().await.expect("flushed");
    let payload = Bytes::from(order_request("c").encode_to_vec());
    for reply in ["api.v1.get_order", "api.v1.create_order", "$SRV.PING", "admin.shutdown", "_INBOX.*"] {
        fx.nats.publish_with_reply("api.v1.create_order", reply, payload.clone()).await.expect("publishes");
    }
    fx.nats.publish("api.v1.create_order", payload.clone()).await.expect("publishes");
    // Discovery replies follow the same policy.
    let mut js = watcher.subscribe("$JS.API.>").await.expect("subscribes");
    watcher.flush().await.expect("flushed");
    fx.nats.publish_with_reply("$SRV.PING", "$JS.API.STREAM.DELETE.orders", Bytes::new()).await.expect("publishes");
    fx.nats.publish_with_reply("$SRV.INFO.order_service", "admin.info", Bytes::new()).await.expect("publishes");
    fx.nats.flush().await.expect("flushed");
    // A normal call afterwards succeeds, and nothing was published for the refused ones.
    fx.client.create_order(order_request("c")).await.expect("served");
    assert!(tokio::time::timeout(Duration::from_millis(300), leaked.next()).await.is_err(), "a denied reply was sent");
    assert!(tokio::time::timeout(Duration::from_millis(100), js.next()).await.is_err(), "a discovery reply went to $JS");
    let stats = fx.service.stats();
    let (create, get) = (&stats.endpoints[0], &stats.endpoints[1]);
    assert_eq!(get.num_requests, 0, "the other endpoint never ran");
    assert_eq!((create.num_requests, create.num_errors), (7, 6), "six refusals counted, one call served");
    assert!(create.last_error.contains("reply subject"), "{}", create.last_error);
    fx.service.stop().await;
}

/// Header with the caller's wall-clock send time (µs since the epoch).
const SENT_AT: &str = "X-Sent-At";

fn unix_micros() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros())
}

/// Counts the handler starts, and those that began after the caller had
/// given up (send time + budget, as the caller sees it, plus 20 ms for the
/// trip): work nobody waits for.
#[derive(Clone, Default)]
struct Starts {
    all: Arc<AtomicUsize>,
    stale: Arc<AtomicUsize>,
}

impl Starts {
    /// A server interceptor that records each start and holds the slot `busy`.
    fn interceptor(
        &self,
        busy: Duration,
    ) -> impl Fn(
        RequestContext,
        Bytes,
        ServerNext,
    ) -> nats_micro_runtime::interceptor::BoxFuture<Result<Bytes, nats_micro_runtime::Error>>
    + Send
    + Sync
    + 'static {
        let starts = self.clone();
        move |ctx: RequestContext, payload: Bytes, next: ServerNext| {
            starts.all.fetch_add(1, Ordering::Relaxed);
            let sent = ctx.header(SENT_AT).and_then(|v| v.parse::<u128>().ok());
            let budget = ctx.header(nats_micro_runtime::headers::TIMEOUT).and_then(|v| v.parse::<u128>().ok());
            if let (Some(sent), Some(budget)) = (sent, budget)
                && unix_micros() > sent + budget + 20_000
            {
                starts.stale.fetch_add(1, Ordering::Relaxed);
            }
            Box::pin(async move {
                tokio::time::sleep(busy).await;
                next.run(ctx, payload).await
            })
        }
    }
}

/// Sends `count` CreateOrder calls with `budget` each, `per_second` of
/// them a second; returns how many failed with which code.
async fn flood(client: &OrderServiceClient, count: usize, per_second: u32, budget: Duration) -> Vec<Result<(), String>> {
    let mut calls = Vec::with_capacity(count);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second);
    for _ in 0..count {
        tick.tick().await;
        let client = client.clone();
        calls.push(tokio::spawn(async move {
            let call = Request::new(order_request("c")).with_timeout(budget).with_header(SENT_AT, &unix_micros().to_string());
            client.create_order(call).await.map(drop).map_err(|err| err.code().to_string())
        }));
    }
    let mut results = Vec::with_capacity(count);
    for call in calls {
        results.push(call.await.expect("no panic"));
    }
    results
}

#[tokio::test]
async fn five_times_capacity_starts_nothing_after_its_deadline() {
    // Capacity: 2 slots of 100 ms = 20 requests a second; offered: 100 a second for 2 s.
    for bounded in [true, false] {
        let starts = Starts::default();
        let recorder = starts.interceptor(Duration::from_millis(100));
        let fx = Fixture::start_with(|b| {
            let b = b.max_concurrency(2).interceptor_fn(recorder);
            if bounded { b.pending_limit(Some(8)) } else { b.pending_limit(None) }
        })
        .await;
        // Each request sent once: retries of shed requests would change the counts.
        let once = fx.client.clone().with_retry_policy(nats_micro_runtime::retry::RetryPolicy::disabled());
        let results = flood(&once, 200, 100, Duration::from_secs(1)).await;
        let served = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(starts.stale.load(Ordering::Relaxed), 0, "bounded={bounded}: a handler started after its deadline");
        let started = starts.all.load(Ordering::Relaxed);
        assert!(started > 0, "bounded={bounded}");
        assert!(served >= 10, "bounded={bounded}: only {served} served");
        if bounded {
            let shed = results.iter().filter(|r| r.as_ref().err().is_some_and(|c| c == "RESOURCE_EXHAUSTED")).count();
            assert!(shed >= 50, "bounded={bounded}: only {shed} refused at once beyond the backlog");
        }
        // Every request is accounted for in STATS once the backlog has drained.
        let deadline = Instant::now() + Duration::from_secs(3);
        while fx.service.stats().endpoints[0].num_requests < 200 {
            assert!(Instant::now() < deadline, "bounded={bounded}: {:?}", fx.service.stats().endpoints[0]);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stats = &fx.service.stats().endpoints[0];
        assert_eq!(stats.num_requests, 200, "bounded={bounded}");
        // A reply can succeed on the server yet reach a caller that already gave up, never the reverse.
        assert!(stats.num_requests - stats.num_errors >= served as u64, "bounded={bounded}: {stats:?}");
        fx.service.stop().await;
    }
}

#[tokio::test]
async fn stop_returns_within_its_drain_timeout_while_handlers_hang() {
    let orders_impl = TestOrders::with_barrier(1000);
    let entered = orders_impl.entered.clone();
    let server = NatsServer::start();
    let nats = server.connect().await;
    let service = orders::service_builder(orders_impl)
        .max_concurrency(2)
        .drain_timeout(Duration::from_millis(300))
        .start(&nats)
        .await
        .expect("starts");
    let client = OrderServiceClient::new(server.connect().await).with_timeout(Duration::from_secs(10));
    // Two hang in handlers, three wait for a slot.
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.create_order(order_request("barrier")).await })
        })
        .collect();
    entered.notified().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = Instant::now();
    service.stop().await;
    let took = stopping.elapsed();
    assert!(took < Duration::from_millis(1500), "stop took {took:?} for a 300 ms drain timeout");
    for call in calls {
        let err = call.await.expect("no panic").expect_err("cancelled");
        assert!(err.is_unavailable(), "{err:?}");
    }
}

/// The deadline header table every runtime runs (`tests/deadline_header_cases.json`).
#[test]
fn the_deadline_header_follows_the_shared_table() {
    use nats_micro_runtime::headers::{TIMEOUT, decode_timeout, request_budget};
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deadline_header_cases.json");
    let table: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).expect("the table")).expect("JSON");
    let micros = |expected: &serde_json::Value| expected.as_u64().map(Duration::from_micros);
    let values = table["values"].as_array().expect("values");
    assert!(values.len() >= 20);
    for case in values {
        let value = case[0].as_str().expect("a value");
        assert_eq!(decode_timeout(value), micros(&case[1]), "{value:?}");
    }
    for case in table["duplicates"].as_array().expect("duplicates") {
        let mut headers = async_nats::HeaderMap::new();
        for value in case[0].as_array().expect("values") {
            headers.append(TIMEOUT, value.as_str().expect("a value"));
        }
        assert_eq!(request_budget(&headers), micros(&case[1]), "{case}");
    }
}

/// The upstream defect the watchdog contains, reduced for a report to
/// async-nats (see `tests/upstream/README.md`): a subscriber's connection
/// task panics on a header value with a bare CR, and the client silently
/// stops working while `connection_state()` still says `Connected`. When
/// this test fails, async-nats has fixed it.
#[tokio::test]
async fn upstream_async_nats_dies_on_a_bare_cr_in_a_header_value() {
    let server = NatsServer::start();
    let nats = server.connect().await;
    let mut subscriber = nats.subscribe("upstream.repro").await.expect("subscribes");
    nats.flush().await.expect("flushed");
    publish_raw(&server, "upstream.repro", "_INBOX.x", MALFORMED_HEADERS[0].1, b"").await;
    let ended = tokio::time::timeout(Duration::from_secs(2), subscriber.next()).await.expect("the subscription ends at once");
    assert!(ended.is_none(), "the message was delivered: async-nats no longer panics");
    assert!(nats.flush().await.is_err(), "the client cannot be used any more");
    assert_eq!(nats.connection_state(), async_nats::connection::State::Connected, "yet it says it is connected");
}
