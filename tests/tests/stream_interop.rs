//! Streams across processes and languages (PROTOCOL §9): every client of
//! {Rust, TypeScript, Python} against every server, each client running
//! the same scenario (`tests/src/bin/streams_client.rs` and its twins
//! `tests/ts/streams_client.ts` and `tests/peers/streams_client.py`) on a
//! real nats-server: all three kinds of stream, typed errors at the open
//! and midway with their data, and a cancel that stops the server's
//! handler. Each server's INFO is checked, and it is called the way the Go
//! plugin's client calls; then each server is killed in the middle of a
//! stream.
//!
//! The TypeScript is generated and compiled as in `ts_interop.rs`, the
//! Python generated in-process as in `py_interop.rs`; `bash scripts/setup`
//! installs what both need.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use nats_micro_runtime::StreamSettings;
use nats_micro_runtime::stream::wire::{REPLY_TO, STREAM_BATCH, STREAM_CREDIT, STREAM_END, STREAM_INBOX, STREAM_SEQ};
use nats_micro_tests::harness::NatsServer;
use nats_micro_tests::peers::{Language, Server};
use nats_micro_tests::project::streams::v1::stream_service_nats::StreamServiceClient;
use nats_micro_tests::project::streams::v1::{CountUpRequest, Number, SumResponse};
use prost::Message as _;
use serde_json::Value;

/// Checks each scenario client prints as `ok NAME`.
const SCENARIO_CHECKS: usize = 7;

/// Runs `language`'s scenario client against the server on `url`.
fn run_client(language: Language, url: &str, label: &str) {
    let output = language.program("streams_client").env("NATS_URL", url).output().unwrap_or_else(|err| panic!("{label}: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{label}: the scenario failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let passed = stdout.lines().filter(|line| line.starts_with("ok ")).count();
    assert_eq!(passed, SCENARIO_CHECKS, "{label}: {SCENARIO_CHECKS} checks:\n{stdout}");
}

/// Every client language against `server`'s StreamService, then its INFO
/// and a Go-plugin-style client-streaming call.
fn serves_every_client(server: Language) {
    let nats = NatsServer::start();
    let url = nats.url();
    let _service = Server::start(server.program("streams_server"), &url, &format!("the {server:?} streams server"));
    for client in Language::ALL {
        run_client(client, &url, &format!("{client:?} client -> {server:?} server"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let nats = nats.connect().await;
        assert_stream_endpoints_in_info(&nats, server).await;
        assert_eq!(go_style_sum(&nats).await, 6, "a Go-plugin client-streaming call against the {server:?} service");
    });
}

#[test]
fn the_rust_server_serves_every_client() {
    serves_every_client(Language::Rust);
}

#[test]
fn the_typescript_server_serves_every_client() {
    serves_every_client(Language::TypeScript);
}

#[test]
fn the_python_server_serves_every_client() {
    serves_every_client(Language::Python);
}

/// The StreamService's INFO lists its RPCs in proto order, each stream with its kind.
async fn assert_stream_endpoints_in_info(nats: &async_nats::Client, server: Language) {
    let reply = nats.request("$SRV.INFO.StreamService", bytes::Bytes::new()).await.expect("INFO");
    let info: Value = serde_json::from_slice(&reply.payload).expect("JSON");
    let endpoints: Vec<(String, Option<String>)> = info["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| {
            let kind = e["metadata"].get("nats_micro.stream").and_then(Value::as_str).map(str::to_owned);
            (e["name"].as_str().expect("name").to_owned(), kind)
        })
        .collect();
    let expected = [("count_up", Some("server")), ("sum", Some("client")), ("chat", Some("bidirectional")), ("ping", None)]
        .map(|(name, kind)| (name.to_owned(), kind.map(str::to_owned)));
    assert_eq!(endpoints, expected, "the {server:?} service's INFO");
}

/// A client-streaming `Sum` of 1, 2, 3 exactly as the Go plugin's client
/// does it: the open is a request whose reply subject (for the ack) differs
/// from its `Reply-To` (for the result), no credit, and the result is read
/// from `Reply-To`.
async fn go_style_sum(nats: &async_nats::Client) -> i64 {
    let results = nats.new_inbox();
    let mut result = nats.subscribe(results.clone()).await.expect("subscribes");
    let mut open = async_nats::HeaderMap::new();
    open.insert(REPLY_TO, results.as_str());
    let ack = nats
        .send_request("streams.v1.sum", async_nats::Request::new().headers(open).timeout(Some(Duration::from_secs(5))))
        .await
        .expect("an ack");
    let server_inbox = ack.headers.as_ref().and_then(|h| h.get(STREAM_INBOX)).expect("the server's inbox").as_str().to_owned();
    for (seq, value) in [(1, 1), (2, 2), (3, 3)] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(STREAM_SEQ, seq.to_string().as_str());
        nats.publish_with_headers(server_inbox.clone(), headers, Number { value }.encode_to_vec().into()).await.expect("sends");
    }
    let mut end = async_nats::HeaderMap::new();
    end.insert(STREAM_END, "true");
    nats.publish_with_headers(server_inbox, end, bytes::Bytes::new()).await.expect("ends");
    let message = tokio::time::timeout(Duration::from_secs(5), result.next()).await.expect("in time").expect("a result");
    SumResponse::decode(message.payload).expect("a SumResponse").total
}

/// Each language's server process killed while it streams: the Rust
/// caller's stream fails with UNAVAILABLE within its peer timeout instead
/// of waiting forever or ending as if complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_stream_is_unavailable_to_the_caller() {
    for language in Language::ALL {
        let nats = NatsServer::start();
        let mut server = tokio::task::block_in_place(|| {
            Server::start(language.program("streams_server"), &nats.url(), &format!("the {language:?} streams server"))
        });
        let settings = StreamSettings { keepalive: Duration::from_millis(100), peer_timeout: Duration::from_millis(600) };
        let client = StreamServiceClient::from_client(
            nats_micro_runtime::Client::new(nats.connect().await, "streams.v1").with_stream_settings(settings),
        );
        let mut numbers = client
            .count_up(CountUpRequest { count: 10_000, delay_ms: 20, ..Default::default() })
            .await
            .expect("the stream opens");
        numbers.message().await.expect("first").expect("a number");
        server.child().kill().expect("kills the server process");
        let started = std::time::Instant::now();
        let err = loop {
            match tokio::time::timeout(Duration::from_secs(5), numbers.message()).await.expect("the stream ends in time") {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{language:?}: the stream ended as if it had finished"),
                Err(err) => break err,
            }
        };
        assert!(err.is_unavailable(), "{language:?}: {err:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "{language:?}: took {:?}", started.elapsed());
    }
}

/// Batches on the wire (PROTOCOL §9.9) against each language's server,
/// read and written with a raw client that frames them itself.
fn batches_on_the_wire(server: Language) {
    let nats = NatsServer::start();
    let _service = Server::start(server.program("streams_server"), &nats.url(), &format!("the {server:?} streams server"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let nats = nats.connect().await;
        let batched = raw_count_up(&nats, true).await;
        assert!(batched > 0, "{server:?}: a caller that announced batches got none");
        assert_eq!(raw_count_up(&nats, false).await, 0, "{server:?}: batches to a caller that did not announce them");

        let mut sum = RawClientStream::open(&nats, "streams.v1.sum").await;
        assert!(sum.server_batches, "{server:?}: the ack announces batches");
        assert_eq!(sum.server_window, 64, "{server:?}: the default window, which the credit case below overruns");
        sum.send_batch(1, 3, &batch_body(&[1, 2, 3])).await;
        sum.send(4, Number { value: 4 }.encode_to_vec().into()).await;
        let (headers, body) = sum.end().await;
        assert_eq!(headers.get("Nats-Service-Error-Code"), None, "{server:?}: {headers:?}");
        assert_eq!(SumResponse::decode(body).expect("a SumResponse"), SumResponse { total: 10, count: 4 }, "{server:?}");

        let whole = batch_body(&[1, 2, 3]);
        let cases: [(&str, u32, &str, Bytes, &str); 6] = [
            ("a count of 0", 1, "0", whole.clone(), "400"),
            ("fewer messages than the count", 1, "4", whole.clone(), "400"),
            ("bytes after the last message", 1, "3", [whole.as_ref(), &[0]].concat().into(), "400"),
            ("a body cut inside a length", 1, "1", Bytes::from_static(&[0x80]), "400"),
            ("more messages than the credit", 1, "65", batch_body(&[1; 65]), "RESOURCE_EXHAUSTED"),
            ("a first sequence number past the next", 2, "3", whole, "DATA_LOSS"),
        ];
        for (case, seq, count, body, code) in cases {
            let mut sum = RawClientStream::open(&nats, "streams.v1.sum").await;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(STREAM_SEQ, seq.to_string().as_str());
            headers.insert(STREAM_BATCH, count);
            nats.publish_with_headers(sum.server_inbox.clone(), headers, body).await.expect("sends");
            let (headers, _) = sum.next_end().await;
            assert_eq!(headers.get("Nats-Service-Error-Code").map(|v| v.as_str()), Some(code), "{server:?}: {case}: {headers:?}");
        }
    });
}

#[test]
fn the_rust_server_reads_and_writes_batches() {
    batches_on_the_wire(Language::Rust);
}

#[test]
fn the_typescript_server_reads_and_writes_batches() {
    batches_on_the_wire(Language::TypeScript);
}

#[test]
fn the_python_server_reads_and_writes_batches() {
    batches_on_the_wire(Language::Python);
}

/// `Number`s framed as a batch body: each preceded by its length as a varint.
fn batch_body(values: &[i64]) -> Bytes {
    let mut body = Vec::new();
    for value in values {
        Number { value: *value }.encode_length_delimited(&mut body).expect("encodes");
    }
    body.into()
}

/// Reads a `count_up` of 3000 numbers with a window of 100, granting
/// credit as it reads, optionally announcing batches; checks that every
/// number arrives once and in order, that the server never runs past the
/// credit and that no batch is over 64 KiB, and returns how many batches
/// (NATS messages holding two or more numbers) came.
async fn raw_count_up(nats: &async_nats::Client, batches: bool) -> usize {
    const WINDOW: u64 = 100;
    const COUNT: i64 = 3000;
    let inbox = nats.new_inbox();
    let mut replies = nats.subscribe(inbox.clone()).await.expect("subscribes");
    let mut open = async_nats::HeaderMap::new();
    open.insert(REPLY_TO, inbox.as_str());
    open.insert(STREAM_CREDIT, WINDOW.to_string().as_str());
    if batches {
        open.insert(STREAM_BATCH, "true");
    }
    let request = CountUpRequest { start: 0, count: COUNT as i32, ..Default::default() };
    nats.publish_with_reply_and_headers("streams.v1.count_up", inbox.clone(), open, request.encode_to_vec().into())
        .await
        .expect("opens");
    let ack = next_message(&mut replies).await;
    let server_inbox = ack.headers.as_ref().and_then(|h| h.get(STREAM_INBOX)).expect("the server's inbox").as_str().to_owned();
    let (mut values, mut batch_count, mut granted) = (Vec::new(), 0, WINDOW);
    loop {
        let message = next_message(&mut replies).await;
        let headers = message.headers.clone().unwrap_or_default();
        if headers.get(STREAM_END).is_some() {
            assert_eq!(headers.get("Nats-Service-Error-Code"), None, "{headers:?}");
            break;
        }
        let seq: usize = headers.get(STREAM_SEQ).expect("a sequence number").as_str().parse().expect("a number");
        assert_eq!(seq, values.len() + 1, "the next sequence number");
        match headers.get(STREAM_BATCH) {
            None => values.push(Number::decode(message.payload).expect("a Number").value),
            Some(count) => {
                let count: usize = count.as_str().parse().expect("a count");
                assert!(message.payload.len() <= 64 * 1024, "a batch of {} bytes", message.payload.len());
                let mut body = message.payload;
                for _ in 0..count {
                    values.push(Number::decode_length_delimited(&mut body).expect("a delimited Number").value);
                }
                assert!(body.is_empty(), "nothing after the batch's last message");
                batch_count += usize::from(count > 1);
            }
        }
        assert!(values.len() as u64 <= granted, "{} numbers with {granted} credit", values.len());
        // Grant what was read, half a window at a time (PROTOCOL §9.4).
        if granted - values.len() as u64 <= WINDOW / 2 {
            let mut credit = async_nats::HeaderMap::new();
            credit.insert(STREAM_CREDIT, (WINDOW / 2).to_string().as_str());
            nats.publish_with_headers(server_inbox.clone(), credit, Bytes::new()).await.expect("grants");
            granted += WINDOW / 2;
        }
    }
    assert_eq!(values, (0..COUNT).collect::<Vec<_>>(), "every number once, in order");
    batch_count
}

async fn next_message(subscriber: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(Duration::from_secs(10), subscriber.next()).await.expect("in time").expect("a message")
}

/// A raw caller of a client-streaming RPC that announced credit 16 and batches.
struct RawClientStream {
    nats: async_nats::Client,
    replies: async_nats::Subscriber,
    server_inbox: String,
    server_batches: bool,
    server_window: u32,
}

impl RawClientStream {
    async fn open(nats: &async_nats::Client, subject: &'static str) -> RawClientStream {
        let inbox = nats.new_inbox();
        let mut replies = nats.subscribe(inbox.clone()).await.expect("subscribes");
        let mut open = async_nats::HeaderMap::new();
        open.insert(REPLY_TO, inbox.as_str());
        open.insert(STREAM_CREDIT, "16");
        open.insert(STREAM_BATCH, "true");
        nats.publish_with_reply_and_headers(subject, inbox, open, Bytes::new()).await.expect("opens");
        let ack = next_message(&mut replies).await;
        let headers = ack.headers.unwrap_or_default();
        let server_inbox = headers.get(STREAM_INBOX).expect("the server's inbox").as_str().to_owned();
        let server_batches = headers.get(STREAM_BATCH).is_some_and(|v| v.as_str() == "true");
        let server_window = headers.get(STREAM_CREDIT).expect("the server's window").as_str().parse().expect("a number");
        RawClientStream { nats: nats.clone(), replies, server_inbox, server_batches, server_window }
    }

    async fn send(&self, seq: u32, payload: Bytes) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(STREAM_SEQ, seq.to_string().as_str());
        self.nats.publish_with_headers(self.server_inbox.clone(), headers, payload).await.expect("sends");
    }

    async fn send_batch(&self, seq: u32, count: u32, body: &Bytes) {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(STREAM_SEQ, seq.to_string().as_str());
        headers.insert(STREAM_BATCH, count.to_string().as_str());
        self.nats.publish_with_headers(self.server_inbox.clone(), headers, body.clone()).await.expect("sends");
    }

    /// Half-closes and returns the server's end.
    async fn end(&mut self) -> (async_nats::HeaderMap, Bytes) {
        let mut end = async_nats::HeaderMap::new();
        end.insert(STREAM_END, "true");
        self.nats.publish_with_headers(self.server_inbox.clone(), end, Bytes::new()).await.expect("ends");
        self.next_end().await
    }

    /// The server's next message that ends the stream (credit grants skipped).
    async fn next_end(&mut self) -> (async_nats::HeaderMap, Bytes) {
        loop {
            let message = next_message(&mut self.replies).await;
            let headers = message.headers.unwrap_or_default();
            if headers.get(STREAM_END).is_some() || headers.get("Nats-Service-Error-Code").is_some() {
                return (headers, message.payload);
            }
        }
    }
}
