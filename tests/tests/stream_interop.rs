//! Streams across processes and languages (PROTOCOL §9): every client of
//! {Rust, TypeScript, Python} against every server, each running the same
//! scenario (`tests/src/bin/streams_client.rs` and its TypeScript and
//! Python twins) on a real nats-server; and a server process killed in the
//! middle of a stream.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nats_micro_runtime::StreamSettings;
use nats_micro_tests::harness::NatsServer;
use nats_micro_tests::project::streams::v1::CountUpRequest;
use nats_micro_tests::project::streams::v1::stream_service_nats::StreamServiceClient;

/// A server process, killed on drop.
struct Server(Child);

impl Server {
    /// Starts `command` and waits for its `ready` line.
    fn start(mut command: Command, url: &str) -> Server {
        let mut child = command
            .env("NATS_URL", url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("starting {command:?}: {err}"));
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("reading the server");
        let server = Server(child);
        assert_eq!(first.trim(), "ready", "the server did not start");
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rust_server() -> Command {
    Command::new(env!("CARGO_BIN_EXE_streams_server"))
}

fn rust_client() -> Command {
    Command::new(env!("CARGO_BIN_EXE_streams_client"))
}

/// Runs a scenario client against the server serving on `url`.
fn run_client(mut client: Command, url: &str, label: &str) {
    let output = client.env("NATS_URL", url).output().unwrap_or_else(|err| panic!("{label}: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{label}: the scenario failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.lines().filter(|line| line.starts_with("ok ")).count(), 6, "{label}: six checks:\n{stdout}");
}

#[test]
fn rust_client_against_rust_server() {
    let nats = NatsServer::start();
    let _server = Server::start(rust_server(), &nats.url());
    run_client(rust_client(), &nats.url(), "rust -> rust");
}

#[tokio::test]
async fn a_server_killed_mid_stream_is_unavailable_to_the_caller() {
    let nats = NatsServer::start();
    let mut server = Server::start(rust_server(), &nats.url());
    let settings = StreamSettings { keepalive: Duration::from_millis(100), peer_timeout: Duration::from_millis(600) };
    let client = StreamServiceClient::from_client(
        nats_micro_runtime::Client::new(nats.connect().await, "streams.v1").with_stream_settings(settings),
    );
    let mut numbers =
        client.count_up(CountUpRequest { count: 10_000, delay_ms: 20, ..Default::default() }).await.expect("the stream opens");
    numbers.message().await.expect("first").expect("a number");
    server.0.kill().expect("kills the server process");
    let started = std::time::Instant::now();
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(5), numbers.message()).await.expect("the stream ends in time") {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended as if it had finished"),
            Err(err) => break err,
        }
    };
    assert!(err.is_unavailable(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}
