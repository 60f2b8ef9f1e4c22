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

use futures_util::StreamExt;
use nats_micro_runtime::StreamSettings;
use nats_micro_runtime::stream::wire::{REPLY_TO, STREAM_END, STREAM_INBOX, STREAM_SEQ};
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
