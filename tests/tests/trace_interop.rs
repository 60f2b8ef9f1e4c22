//! One trace across processes and languages (PROTOCOL §11): a Rust client
//! calls the TypeScript hop of `proto/trace/v1`, which calls the Python hop,
//! which calls the Rust hop (`trace_server` in each language:
//! `tests/src/bin/trace_server.rs`, `tests/ts/trace_server.ts`,
//! `tests/peers/trace_server.py`). Every process records its spans in
//! memory with OpenTelemetry; the servers print theirs at SIGTERM. All
//! spans must share one trace id, each one's parent being the span before
//! it: Rust client → TS server → TS client → Python server → Python client
//! → Rust server, each with the §11.2 name and attributes.
//!
//! The TypeScript is generated and compiled as in `stream_interop.rs`, the
//! Python generated in-process; `bash scripts/setup` installs what both need.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use nats_micro_tests::harness::NatsServer;
use nats_micro_tests::peers::Language;
use nats_micro_tests::project::trace::v1::HopRequest;
use nats_micro_tests::project::trace::v1::trace_service_nats::TraceServiceClient;
use nats_micro_tests::trace::{SpanRecorder, hop_prefix, span_json};
use serde_json::Value;

/// A hop server process, killed on drop unless stopped.
struct Hop {
    name: &'static str,
    child: Child,
    stdout: BufReader<ChildStdout>,
    _stdin: Option<ChildStdin>,
}

impl Hop {
    /// Starts a trace server answering to `name` and waits for its `ready` line.
    fn start(mut command: Command, name: &'static str, url: &str) -> Hop {
        let mut child = command
            .env("NATS_URL", url)
            .env("HOP_NAME", name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("starting the {name} trace server {command:?}: {err}"));
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("reading the server");
        let hop = Hop { name, child, stdout, _stdin: stdin };
        assert!(first.starts_with("ready"), "the {name} trace server did not start: {first:?}");
        hop
    }

    /// SIGTERM, then the spans of its `spans <json>` line.
    fn stop(mut self) -> Vec<Value> {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().expect("kill runs");
        assert!(status.success(), "signalling the {} server", self.name);
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).expect("reading the server");
        let line = rest
            .lines()
            .find_map(|line| line.strip_prefix("spans "))
            .unwrap_or_else(|| panic!("the {} server printed no spans line:\n{rest}", self.name));
        match serde_json::from_str(line) {
            Ok(Value::Array(spans)) => spans,
            other => panic!("the {} server's spans are not a JSON array: {other:?}", self.name),
        }
    }
}

impl Drop for Hop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The one span of `kind` in `spans`.
fn one<'a>(spans: &'a [Value], kind: &str, hop: &str) -> &'a Value {
    let found: Vec<&Value> = spans.iter().filter(|span| span["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "{hop}: expected one {kind} span in {spans:#?}");
    found[0]
}

/// The §11.2 name and attributes of a span of the call to `hop`.
fn assert_conventions(span: &Value, hop: &str, label: &str) {
    assert_eq!(span["name"], "trace.v1.TraceService/Hop", "{label}: {span:#}");
    let attributes = &span["attributes"];
    assert_eq!(attributes["rpc.system"], "nats_micro", "{label}: {span:#}");
    assert_eq!(attributes["rpc.service"], "trace.v1.TraceService", "{label}: {span:#}");
    assert_eq!(attributes["rpc.method"], "Hop", "{label}: {span:#}");
    assert_eq!(attributes["messaging.system"], "nats", "{label}: {span:#}");
    assert_eq!(attributes["messaging.destination.name"], format!("{}.hop", hop_prefix(hop)), "{label}: {span:#}");
    assert_eq!(attributes["nats_micro.endpoint"], "hop", "{label}: {span:#}");
}

/// One trace id throughout, the first span a root, each span's parent the one before it.
fn assert_chain(chain: &[(&str, &Value, &str)]) {
    let trace_id = &chain[0].1["trace_id"];
    assert_eq!(trace_id.as_str().map(str::len), Some(32), "{trace_id}");
    assert_eq!(chain[0].1["parent_span_id"], "", "the Rust client span is the root");
    for &(label, span, hop) in chain {
        assert_eq!(&span["trace_id"], trace_id, "{label} is in another trace: {span:#}");
        assert_conventions(span, hop, label);
    }
    for pair in chain.windows(2) {
        let ((parent_label, parent, _), (child_label, child, _)) = (pair[0], pair[1]);
        assert_eq!(child["parent_span_id"], parent["span_id"], "{child_label}'s parent is not {parent_label}: {child:#}");
    }
}

#[tokio::test]
async fn one_trace_crosses_rust_typescript_and_python() {
    let nats = NatsServer::start();
    let url = nats.url();
    let ts = Hop::start(Language::TypeScript.program("trace_server"), "ts", &url);
    let py = Hop::start(Language::Python.program("trace_server"), "py", &url);
    let rs = Hop::start(Command::new(env!("CARGO_BIN_EXE_trace_server")), "rs", &url);

    let recorder = SpanRecorder::default();
    let visited = {
        let _guard = tracing::subscriber::set_default(recorder.subscriber());
        let client = TraceServiceClient::new(nats.connect().await).with_subject_prefix(&hop_prefix("ts"));
        let answer = client.hop(HopRequest { route: vec!["py".into(), "rs".into()] }).await.expect("the route answers");
        answer.into_inner().visited
    };
    assert_eq!(visited, ["ts", "py", "rs"]);

    let rust_client: Vec<Value> = recorder.spans().iter().map(span_json).collect();
    let (ts_spans, py_spans, rs_spans) = (ts.stop(), py.stop(), rs.stop());
    let chain = [
        ("Rust client", one(&rust_client, "client", "rust client"), "ts"),
        ("TS server", one(&ts_spans, "server", "ts"), "ts"),
        ("TS client", one(&ts_spans, "client", "ts"), "py"),
        ("Python server", one(&py_spans, "server", "py"), "py"),
        ("Python client", one(&py_spans, "client", "py"), "rs"),
        ("Rust server", one(&rs_spans, "server", "rs"), "rs"),
    ];
    assert_chain(&chain);
    // The Rust server is the last hop: it calls nobody.
    assert!(rs_spans.iter().all(|span| span["kind"] != "client"), "{rs_spans:#?}");
}

/// The Rust half alone, in separate processes: a Rust client → Rust hop
/// `a` (server, then client) → Rust hop `b`, one trace with the same links.
#[tokio::test]
async fn one_trace_crosses_rust_processes() {
    let nats = NatsServer::start();
    let url = nats.url();
    let a = Hop::start(Command::new(env!("CARGO_BIN_EXE_trace_server")), "a", &url);
    let b = Hop::start(Command::new(env!("CARGO_BIN_EXE_trace_server")), "b", &url);
    let recorder = SpanRecorder::default();
    let visited = {
        let _guard = tracing::subscriber::set_default(recorder.subscriber());
        let client = TraceServiceClient::new(nats.connect().await).with_subject_prefix(&hop_prefix("a"));
        client.hop(HopRequest { route: vec!["b".into()] }).await.expect("the route answers").into_inner().visited
    };
    assert_eq!(visited, ["a", "b"]);
    let rust_client: Vec<Value> = recorder.spans().iter().map(span_json).collect();
    let (a_spans, b_spans) = (a.stop(), b.stop());
    let chain = [
        ("client", one(&rust_client, "client", "client"), "a"),
        ("a server", one(&a_spans, "server", "a"), "a"),
        ("a client", one(&a_spans, "client", "a"), "b"),
        ("b server", one(&b_spans, "server", "b"), "b"),
    ];
    assert_chain(&chain);
}
