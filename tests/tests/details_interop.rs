//! Typed error details across processes and languages (PROTOCOL §4.1):
//! every client of {Rust, TypeScript, Python} against every server, each
//! client running the same scenario of `proto/details/v1/details.proto`
//! (`tests/src/bin/details_client.rs` and its twins
//! `tests/ts/details_client.ts` and `tests/peers/details_client.py`)
//! against each server (`details_server` likewise) on a real nats-server.
//! Each server is also read raw, with no runtime in between: an error
//! without details is exactly as before, one with details is a marked
//! `google.rpc.Status`.
//!
//! The TypeScript is generated and compiled as in `stream_interop.rs`, the
//! Python generated in-process; `bash scripts/setup` installs what both need.

use nats_micro_runtime::rpc::{self, Status};
use nats_micro_tests::details::PLAIN_DATA;
use nats_micro_tests::harness::NatsServer;
use nats_micro_tests::peers::{Language, Server};
use nats_micro_tests::project::details::v1::ExplainRequest;
use prost::Message as _;

/// The cases every client checks, each printed as `ok <case>` (a client
/// may print more after the name, e.g. `ok debug (open)`).
const CASES: [&str; 7] = ["plain", "standard", "custom", "debug", "unknown", "oversized", "malformed"];

/// The cases a client's output lacks an `ok <case>` line for.
fn missing_cases(stdout: &str) -> Vec<&'static str> {
    let passed = |case: &str| {
        stdout
            .lines()
            .any(|line| line.strip_prefix("ok ").is_some_and(|rest| rest == case || rest.starts_with(&format!("{case} "))))
    };
    CASES.into_iter().filter(|case| !passed(case)).collect()
}

/// `client`'s scenario against `server`'s two services.
fn cell(server: Language, client: Language) {
    let nats = NatsServer::start();
    let url = nats.url();
    let _service = Server::start(server.program("details_server"), &url, &format!("the {server:?} details server"));
    let label = format!("{client:?} client -> {server:?} server");
    let output = client.program("details_client").env("NATS_URL", &url).output().unwrap_or_else(|err| panic!("{label}: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{label}: the scenario failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(!stdout.lines().any(|line| line.starts_with("FAIL")), "{label}:\n{stdout}");
    let missing = missing_cases(&stdout);
    assert!(missing.is_empty(), "{label}: no `ok` line for {missing:?}:\n{stdout}");
}

macro_rules! cells {
    ($($test:ident: $server:ident <- $client:ident;)*) => {
        $( #[test]
        fn $test() {
            cell(Language::$server, Language::$client);
        } )*
    };
}

cells! {
    rust_server_rust_client: Rust <- Rust;
    rust_server_typescript_client: Rust <- TypeScript;
    rust_server_python_client: Rust <- Python;
    typescript_server_rust_client: TypeScript <- Rust;
    typescript_server_typescript_client: TypeScript <- TypeScript;
    typescript_server_python_client: TypeScript <- Python;
    python_server_rust_client: Python <- Rust;
    python_server_typescript_client: Python <- TypeScript;
    python_server_python_client: Python <- Python;
}

/// `case` sent to `server`'s ExplainService with async-nats alone.
async fn raw_explain(nats: &async_nats::Client, case: &str) -> async_nats::Message {
    let request = ExplainRequest { case: case.into() }.encode_to_vec();
    nats.request("details.v1.explain.explain", request.into()).await.unwrap_or_else(|err| panic!("{case}: {err}"))
}

/// What `server` sends, read without any runtime: `plain` exactly as an
/// error without details always was; `standard` a marked `google.rpc.Status`
/// with the gRPC code, the message, and the nine details in order beside
/// the data.
fn raw_replies(server: Language) {
    let nats = NatsServer::start();
    let _service = Server::start(server.program("details_server"), &nats.url(), &format!("the {server:?} details server"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let nats = nats.connect().await;
        let header = |message: &async_nats::Message, name: &str| {
            message.headers.as_ref().and_then(|h| h.get(name)).map(|value| value.as_str().to_owned())
        };

        let plain = raw_explain(&nats, "plain").await;
        assert_eq!(header(&plain, "Nats-Service-Error-Code").as_deref(), Some("404"), "{server:?} plain");
        assert_eq!(header(&plain, "Nats-Service-Error").as_deref(), Some("plain"), "{server:?} plain");
        assert_eq!(header(&plain, "Nats-Micro-Error-Details"), None, "{server:?} plain");
        assert_eq!(&plain.payload[..], PLAIN_DATA, "{server:?} plain");

        let standard = raw_explain(&nats, "standard").await;
        assert_eq!(header(&standard, "Nats-Service-Error-Code").as_deref(), Some("FAILED_PRECONDITION"), "{server:?} standard");
        assert_eq!(header(&standard, "Nats-Service-Error").as_deref(), Some("standard"), "{server:?} standard");
        assert_eq!(header(&standard, "Nats-Micro-Error-Details").as_deref(), Some("google.rpc.Status"), "{server:?} standard");
        let status = Status::decode(standard.payload.clone()).unwrap_or_else(|err| panic!("{server:?} standard: {err}"));
        assert_eq!((status.code, status.message.as_str()), (9, "standard"), "{server:?} standard");
        let (data, details): (Vec<_>, Vec<_>) =
            status.details.iter().partition(|any| any.type_url == "type.googleapis.com/natsmicro.ErrorData");
        let types: Vec<&str> = details.iter().map(|any| any.type_url.as_str()).collect();
        let expected = [
            "ErrorInfo",
            "RetryInfo",
            "QuotaFailure",
            "PreconditionFailure",
            "BadRequest",
            "RequestInfo",
            "ResourceInfo",
            "Help",
            "LocalizedMessage",
        ]
        .map(|name| format!("type.googleapis.com/google.rpc.{name}"));
        assert_eq!(types, expected, "{server:?} standard");
        // natsmicro.ErrorData{data = 1: bytes}: field 1, length 1, `d`.
        assert_eq!(data.len(), 1, "{server:?} standard: one ErrorData");
        assert_eq!(data[0].value, [0x0a, 0x01, b'd'], "{server:?} standard");
        let info = rpc::unpack::<rpc::ErrorInfo>(details[0]).expect("an ErrorInfo");
        assert_eq!(info, rpc::ErrorInfo::new("STOCK_LOW", "shop.example", [("sku", "A-1")]), "{server:?} standard");
    });
}

#[test]
fn the_rust_server_replies_raw() {
    raw_replies(Language::Rust);
}

#[test]
fn the_typescript_server_replies_raw() {
    raw_replies(Language::TypeScript);
}

#[test]
fn the_python_server_replies_raw() {
    raw_replies(Language::Python);
}

#[test]
fn a_client_missing_a_case_is_noticed() {
    let all = CASES.map(|case| format!("ok {case}")).join("\n");
    assert!(missing_cases(&all).is_empty());
    assert_eq!(missing_cases(&all.replace("ok custom\n", "ok customs\n")), ["custom"]);
    assert_eq!(missing_cases("ok plain raw\nok debug (open)"), ["standard", "custom", "unknown", "oversized", "malformed"]);
}
