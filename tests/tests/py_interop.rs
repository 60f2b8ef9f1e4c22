//! The Python output against the Rust one on a real nats-server, both
//! directions: the generated Rust client against a service served by the
//! generated Python code (`tests/python/interop/serve.py`), and the
//! generated Python client (`tests/python/interop/call.py`) against the Rust
//! `TestOrders` service. Every built-in, canonical and custom code, error
//! data, headers, and proto3 JSON.
//!
//! The Python side is generated here, in-process, by the plugin library
//! (protoc's `_pb2` modules by `grpc_tools.protoc`, which `scripts/setup`
//! installs), so it always matches the code under test.

#[allow(dead_code)] // Shared with tests/e2e.rs, which uses all of it.
#[path = "e2e/support.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use nats_micro_runtime::{Code, Request};
use nats_micro_tests::harness::python;
use nats_micro_tests::project::jsondemo::v1::json_service_nats::JsonServiceClient;
use nats_micro_tests::project::jsondemo::v1::{EchoRequest, GetUserRequest};
use serde_json::Value;
use support::*;

/// The protos both sides serve and call.
const PROTOS: [&str; 2] = ["order/v1/order.proto", "jsondemo/v1/jsondemo.proto"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The generated Python (messages and services) for [`PROTOS`], once per run.
fn generated() -> &'static Path {
    static TREE: OnceLock<PathBuf> = OnceLock::new();
    TREE.get_or_init(|| {
        let tree = Path::new(env!("CARGO_TARGET_TMPDIR")).join("py-interop");
        let _ = std::fs::remove_dir_all(&tree);
        std::fs::create_dir_all(&tree).expect("output directory");
        let python_out = format!("--python_out={}", tree.display());
        nats_micro_tests::codegen::generate(&tree, &PROTOS, "python", &[python_out]);
        tree
    })
}

/// A Python script of `tests/python/interop` with the generated code and
/// the test support module importable.
fn script(name: &str, url: &str) -> Command {
    let tests = repo().join("tests/python");
    // This checkout's runtime first, whatever the environment's editable install points at.
    let runtime = repo().join("runtime-py/src");
    let path = std::env::join_paths([runtime, generated().to_path_buf(), tests.clone()]).expect("PYTHONPATH");
    let mut command = Command::new(python());
    command.arg(tests.join("interop").join(name)).arg(url).env("PYTHONPATH", path);
    command
}

/// The Python server, stopped (stdin closed, then killed) on drop.
struct PythonServer(Child);

impl PythonServer {
    fn start(url: &str) -> PythonServer {
        let mut child = script("serve.py", url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the Python server (run scripts/setup)");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("reading the Python server");
        let server = PythonServer(child);
        assert_eq!(first.trim(), "ready", "the Python server did not start");
        server
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn rust_client_gets_every_code_data_and_headers_from_a_python_server() {
    let server = NatsServer::start();
    let _python = PythonServer::start(&server.url());
    let client = OrderServiceClient::new(server.connect().await);

    for name in ALL_CODES.iter().copied().chain(["SOMETHING_ELSE", "418"]) {
        let request = Request::new(order_request("c")).with_header(WANT_CODE, name).with_header("X-Echo", name);
        let err = client.create_order(request).await.expect_err("the Python server fails as asked");
        assert_eq!(err.code(), OrderServiceErrorCode::from_code(&Code::from_wire(name)), "{name}");
        assert_eq!(err.code().as_str(), name);
        assert_eq!(err.message(), format!("wanted {name}"));
        assert_eq!(&err.data()[..], format!("data:{name}").as_bytes());
        let echoed = err.headers().and_then(|h| h.get("X-Echoed")).map(|v| v.as_str().to_owned());
        assert_eq!(echoed.as_deref(), Some(name), "response headers travel with errors");
    }
    let err =
        client.create_order(Request::new(order_request("c")).with_header(WANT_CODE, "ORDER_EXPIRED")).await.expect_err("fails");
    assert!(err.is_order_expired() && !err.is_transport());

    let err = client.create_order(order_request("uncoded")).await.expect_err("an exception without a code");
    assert!(err.is_internal(), "{err}");
    assert_eq!(err.message(), "internal error", "its text stays on the Python server");

    let response = client.create_order(Request::new(order_request("ada")).with_header("X-Echo", "hi")).await.expect("succeeds");
    assert_eq!(response.headers().get("X-Echoed").map(|v| v.as_str()), Some("hi"));
    assert_eq!(response.into_inner().order.expect("an order").customer_id, "ada");
    let err = client.get_order(GetOrderRequest::default()).await.expect_err("empty id");
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn rust_json_client_talks_proto3_json_to_a_python_service() {
    let server = NatsServer::start();
    let _python = PythonServer::start(&server.url());
    let client = JsonServiceClient::new(server.connect().await);
    let reply = client.echo(EchoRequest { message: "hi \"there\"".into(), timestamp: 1_700_000_000_123 }).await.expect("echo");
    assert_eq!((reply.message.as_str(), reply.timestamp, reply.encoding.as_str()), ("hi \"there\"", 1_700_000_000_123, "json"));
    let user = client.get_user(GetUserRequest { id: "u1".into() }).await.expect("user").into_inner().user.expect("a user");
    assert_eq!((user.name.as_str(), user.roles.as_slice()), ("Ada", ["admin".to_owned()].as_slice()));
    let err = client.get_user(GetUserRequest::default()).await.expect_err("id required");
    assert!(err.is_invalid_argument(), "{err}");
}

/// `OrderService<Pascal>Error`, as the Python output names the class of a code.
fn python_class(code: &str) -> String {
    let pascal: String = code
        .split('_')
        .map(|part| {
            let lower = part.to_ascii_lowercase();
            lower[..1].to_ascii_uppercase() + &lower[1..]
        })
        .collect();
    format!("OrderService{pascal}Error")
}

#[tokio::test]
async fn python_client_gets_every_code_data_and_headers_from_the_rust_server() {
    let fx = Fixture::start().await;
    let mut command = script("call.py", &fx.server.url());
    command.args(ALL_CODES).arg("SOMETHING_ELSE");
    let output = tokio::task::spawn_blocking(move || command.output().expect("running the Python client (run scripts/setup)"))
        .await
        .expect("task");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&output.stdout).lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect();
    assert_eq!(lines.len(), ALL_CODES.len() + 1 + 4, "{lines:#?}");

    for (line, want) in lines.iter().zip(ALL_CODES.iter().copied().chain(["SOMETHING_ELSE"])) {
        let class = if want == "SOMETHING_ELSE" { "OrderServiceError".to_owned() } else { python_class(want) };
        assert_eq!(line["want"], want);
        assert_eq!(line["exception"], class.as_str(), "{line}");
        assert_eq!((&line["code"], &line["method"]), (&Value::from(want), &Value::from("CreateOrder")));
        assert_eq!(line["message"], format!("wanted {want}"));
        assert_eq!(line["data"], format!("data:{want}"));
    }
    let rest = &lines[ALL_CODES.len() + 1..];
    assert_eq!(rest[0], serde_json::json!({"case": "success", "customer": "ada", "echoed": "hello"}));
    for (line, case) in rest[1..3].iter().zip(["uncoded", "panic"]) {
        let expected = serde_json::json!({"case": case, "exception": "OrderServiceInternalError", "code": "INTERNAL", "message": "internal error"});
        assert_eq!(line, &expected);
    }
    assert_eq!(
        rest[3],
        serde_json::json!({"case": "not_found", "exception": "OrderServiceNotFoundError", "message": "no order with an empty id"})
    );
    fx.service.stop().await;
}
