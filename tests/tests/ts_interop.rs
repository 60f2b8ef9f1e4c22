//! The TypeScript output on a real nats-server, both directions: generated
//! TypeScript clients against the Rust service, the generated Rust client
//! against a TypeScript service, and the TypeScript service's discovery
//! replies checked against the ADR-32 schemas. Also runs `examples/ts`.
//!
//! The TypeScript is generated (protoc-gen-es for the messages, this
//! plugin with `lang=ts` for the services), compiled with `tsc` under
//! `tsconfig.base.json` and run with node; `bash scripts/setup` installs the
//! node packages and protoc (grpcio-tools).

#[allow(dead_code)] // Shared with tests/e2e.rs, which uses all of it.
#[path = "e2e/support.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use nats_micro_runtime::{Request, headers};
use nats_micro_tests::project::jsondemo::v1::json_service_nats::JsonServiceClient;
use nats_micro_tests::project::jsondemo::v1::{EchoRequest, GetUserRequest};
use nats_micro_tests::typescript::Program;
use serde_json::Value;
use support::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The TypeScript of `sources` with the code generated for `protos`,
/// compiled into `CARGO_TARGET_TMPDIR/ts-LABEL`.
fn program(label: &str, sources: &Path, protos: &[&str]) -> Program {
    Program::build(&Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ts-{label}")), sources, protos)
}

/// The interop scripts of `tests/ts`, built once per test binary.
fn scripts() -> &'static Program {
    static PROGRAM: OnceLock<Program> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        program(
            "interop",
            &root().join("tests/ts"),
            &[
                "order/v1/order.proto",
                "jsondemo/v1/jsondemo.proto",
                "streams/v1/streams.proto",
                "details/v1/details.proto",
                "trace/v1/trace.proto",
            ],
        )
    })
}

/// A node process serving until dropped (stdin closed, then killed).
struct Node {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Node {
    /// Starts `command` and waits for its `ready ID` line; returns the ID too.
    fn serve(mut command: Command) -> (Node, String) {
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("starting node");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut ready = String::new();
        stdout.read_line(&mut ready).expect("reading node");
        let id = ready.trim().strip_prefix("ready ").unwrap_or_else(|| panic!("not ready: {ready:?}")).to_owned();
        (Node { child, stdin, stdout }, id)
    }

    /// Closes stdin (the service stops gracefully) and returns what it printed then.
    fn stop(mut self) -> String {
        drop(self.stdin.take());
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.stdout, &mut rest);
        rest
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves the TypeScript `kind` service (`orders` or `json`) with `modes`.
fn typescript_service(server: &NatsServer, kind: &str, modes: &[&str]) -> (Node, String) {
    let url = server.url();
    let args: Vec<&str> = [url.as_str(), kind].into_iter().chain(modes.iter().copied()).collect();
    Node::serve(scripts().node("serve", &args))
}

/// A nats-server, the TypeScript `orders` service (with `modes`), a
/// connection and the generated Rust client.
struct TsOrders {
    /// Runs as long as the fixture lives.
    _server: NatsServer,
    nats: async_nats::Client,
    service: Node,
    id: String,
    client: OrderServiceClient,
}

async fn ts_orders(modes: &[&str]) -> TsOrders {
    let server = NatsServer::start();
    let nats = server.connect().await;
    let (service, id) = typescript_service(&server, "orders", modes);
    let client = OrderServiceClient::new(server.connect().await);
    TsOrders { _server: server, nats, service, id, client }
}

/// Asks `$SRV.STATS` of service instance `id` until `done` holds for its first endpoint (or 5 s passed).
async fn first_endpoint_stats(nats: &async_nats::Client, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut endpoint = Value::Null;
    for _ in 0..100 {
        endpoint = ask(nats, &format!("$SRV.STATS.order_service.{id}")).await["endpoints"][0].clone();
        if done(&endpoint) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    endpoint
}

/// Runs a TypeScript check script (see tests/ts/checks.ts) with `args`; every check must pass.
async fn run_checks(script: &'static str, args: Vec<String>) -> String {
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        scripts().node(script, &args).output().expect("node")
    })
    .await
    .expect("task");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    stdout
}

/// Runs the TypeScript client checks for `target` against `url`.
async fn client_checks(url: String, target: &str) -> String {
    run_checks("client_checks", vec![url, target.to_owned()]).await
}

fn want(code: &str) -> Request<CreateOrderRequest> {
    Request::new(order_request("c")).with_header(WANT_CODE, code)
}

async fn ask(nats: &async_nats::Client, subject: &str) -> Value {
    let reply = nats.request(subject.to_owned(), bytes::Bytes::new()).await.unwrap_or_else(|err| panic!("{subject}: {err}"));
    serde_json::from_slice(&reply.payload).unwrap_or_else(|err| panic!("{subject}: not JSON: {err}"))
}

// --- TypeScript clients ----------------------------------------------------

#[tokio::test]
async fn typescript_client_against_the_rust_service() {
    let fx = Fixture::start().await;
    let report = client_checks(fx.server.url(), "orders-rust").await;
    assert!(report.contains("ok every code reaches the client intact"), "{report}");
    fx.service.stop().await;
}

#[tokio::test]
async fn typescript_client_against_the_typescript_service() {
    let server = NatsServer::start();
    let (_service, _) = typescript_service(&server, "orders", &["budget"]);
    let report = client_checks(server.url(), "orders-ts").await;
    assert!(report.contains("ok timeout precedence"), "{report}");
}

/// The error-details scenario (PROTOCOL §4.1, proto/details/v1) between
/// the TypeScript client and server: every case on both services.
#[tokio::test]
async fn typescript_details_client_against_the_typescript_details_server() {
    let server = NatsServer::start();
    let url = server.url();
    let (service, _) = Node::serve({
        let mut command = scripts().node("details_server", &[]);
        command.env("NATS_URL", &url);
        command
    });
    let output =
        tokio::task::spawn_blocking(move || scripts().node("details_client", &[]).env("NATS_URL", url).output().expect("node"))
            .await
            .expect("task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    for case in ["plain", "standard", "custom", "debug", "unknown", "oversized", "malformed"] {
        assert!(stdout.lines().any(|line| line == format!("ok {case}")), "no `ok {case}`:\n{stdout}");
    }
    assert!(service.stop().contains("stopped"));
}

#[tokio::test]
async fn json_services_interoperate_in_the_proto3_json_mapping() {
    let server = NatsServer::start();
    let (_service, _) = typescript_service(&server, "json", &[]);
    client_checks(server.url(), "json").await;
    // The generated Rust client (pbjson) against the TypeScript service (protobuf-es JSON).
    let client = JsonServiceClient::new(server.connect().await);
    let echo = client.echo(EchoRequest { message: "hi \"there\"".into(), timestamp: 1_700_000_000_123 }).await.expect("echo");
    assert_eq!((echo.message.as_str(), echo.timestamp, echo.encoding.as_str()), ("hi \"there\"", 1_700_000_000_123, "json"));
    let user = client.get_user(GetUserRequest { id: "u1".into() }).await.expect("user").into_inner().user.expect("a user");
    assert_eq!((user.name.as_str(), user.roles.as_slice()), ("Ada", ["admin".to_string()].as_slice()));
    assert!(client.get_user(GetUserRequest::default()).await.expect_err("invalid").is_invalid_argument());
}

#[tokio::test]
async fn nats_io_services_peer_interoperates_with_the_typescript_output() {
    let server = NatsServer::start();
    let report = run_checks("services_peer", vec![server.url()]).await;
    assert!(report.contains("3 passed, 0 failed"), "{report}");
}

// --- The Rust client against a TypeScript service --------------------------

#[tokio::test]
async fn every_code_error_data_and_method_reach_the_rust_client() {
    let fx = ts_orders(&[]).await;
    for name in ALL_CODES {
        let err = fx.client.create_order(want(name)).await.expect_err("fails as asked");
        assert_eq!(err.code(), OrderServiceErrorCode::from_code(&nats_micro_runtime::Code::from_wire(name)), "{name}");
        assert_eq!(err.code().as_str(), name);
        assert_eq!(err.message(), format!("wanted {name}"));
        assert_eq!(&err.data()[..], format!("data:{name}").as_bytes());
        assert_eq!(err.method(), Some("CreateOrder"));
        assert!(!err.is_transport());
    }
    assert!(fx.client.create_order(want("ORDER_EXPIRED")).await.expect_err("fails").is_order_expired());
    for raw in ["TEAPOT_418", "418"] {
        let err = fx.client.create_order(want(raw)).await.expect_err("fails");
        assert_eq!(err.code(), OrderServiceErrorCode::Unrecognized(raw.into()), "kept verbatim");
    }
    let declined = fx.client.create_order(order_request("declined")).await.expect_err("declined");
    assert!(declined.is_payment_failed());
    assert_eq!((declined.message(), &declined.data()[..]), ("card declined", &b"card:4242"[..]));
}

/// The code header of an error reply to a raw request asking for `code`.
async fn wire_code(nats: &async_nats::Client, code: &str) -> String {
    let mut request_headers = async_nats::HeaderMap::new();
    request_headers.insert(WANT_CODE, code);
    let reply = nats.request_with_headers("api.v1.create_order", request_headers, bytes::Bytes::new()).await.expect("reply");
    let reply_headers = reply.headers.expect("error replies carry headers");
    assert_eq!(reply_headers.get(headers::ERROR_MESSAGE).map(|v| v.as_str()), Some(format!("wanted {code}").as_str()));
    assert_eq!(&reply.payload[..], format!("data:{code}").as_bytes(), "the body is the error data");
    reply_headers.get(headers::ERROR_CODE).expect("code header").as_str().to_owned()
}

#[tokio::test]
async fn builtin_codes_travel_as_numbers_or_names_and_the_rest_by_name() {
    let server = NatsServer::start();
    let nats = server.connect().await;
    let (service, _) = typescript_service(&server, "orders", &[]);
    for name in ALL_CODES {
        let expected = nats_micro_runtime::Code::from_wire(name).number().map_or(name.to_owned(), |n| n.to_string());
        assert_eq!(wire_code(&nats, name).await, expected, "{name}");
    }
    drop(service);
    let (_service, _) = typescript_service(&server, "orders", &["names"]);
    assert_eq!(wire_code(&nats, "NOT_FOUND").await, "NOT_FOUND");
    assert_eq!(wire_code(&nats, "ORDER_EXPIRED").await, "ORDER_EXPIRED");
}

#[tokio::test]
async fn uncoded_errors_become_internal_and_their_text_is_withheld_unless_exposed() {
    let server = NatsServer::start();
    let client = OrderServiceClient::new(server.connect().await);
    let (service, _) = typescript_service(&server, "orders", &[]);
    let err = client.create_order(order_request("uncoded")).await.expect_err("fails");
    assert!(err.is_internal());
    assert_eq!(err.message(), "internal error");
    drop(service);
    let (_service, _) = typescript_service(&server, "orders", &["expose"]);
    let err = client.create_order(order_request("uncoded")).await.expect_err("fails");
    assert!(err.is_internal());
    assert!(err.message().contains("refused the connection"), "opted in: {}", err.message());
}

#[tokio::test]
async fn headers_round_trip_and_malformed_requests_are_invalid_argument() {
    let fx = ts_orders(&[]).await;
    let response =
        fx.client.create_order(Request::new(order_request("c-42")).with_header("X-Echo", "ping")).await.expect("succeeds");
    assert_eq!(response.order.as_ref().map(|o| o.customer_id.as_str()), Some("c-42"));
    assert_eq!(response.headers().get("X-Echoed").map(|v| v.as_str()), Some("ping"));
    assert_eq!(fx.client.get_order(GetOrderRequest { id: "o-9".into() }).await.expect("found").id, "o-9");
    let missing = fx.client.get_order(GetOrderRequest::default()).await.expect_err("not found");
    assert!(missing.is_not_found());
    assert_eq!(missing.method(), Some("GetOrder"));

    let reply = fx.nats.request("api.v1.create_order", bytes::Bytes::from_static(b"\xff\xff\xff\xff")).await.expect("reply");
    let h = reply.headers.expect("error headers");
    assert_eq!(h.get(headers::ERROR_CODE).map(|v| v.as_str()), Some("400"));
    assert!(h.get(headers::ERROR_MESSAGE).is_some_and(|m| m.as_str().contains("malformed request")), "{h:?}");
    fx.client.create_order(order_request("after")).await.expect("the service keeps serving");
}

#[tokio::test]
async fn the_callers_deadline_stops_the_typescript_handler() {
    let fx = ts_orders(&[]).await;
    let err = fx
        .client
        .create_order(Request::new(order_request("slow")).with_timeout(Duration::from_millis(300)))
        .await
        .expect_err("times out");
    // The caller's timer or the service's reply at the same deadline, whichever came first.
    assert!(err.is_deadline_exceeded(), "{err:?}");
    // The service got the 300 ms budget and replied DEADLINE_EXCEEDED at that deadline.
    let stats = first_endpoint_stats(&fx.nats, &fx.id, |e| e["last_error"].as_str().is_some_and(|l| !l.is_empty())).await;
    assert!(stats["last_error"].as_str().unwrap_or_default().starts_with("DEADLINE_EXCEEDED:"), "{stats}");
    fx.client.create_order(order_request("after")).await.expect("the service keeps serving");
}

#[tokio::test]
async fn discovery_replies_validate_against_the_schemas_on_every_subject_level() {
    let Some(schemas) = nats_micro_tests::shared::schemas() else {
        return nats_micro_tests::shared::skip(
            "discovery_replies_validate_against_the_schemas_on_every_subject_level",
            "schemas",
        );
    };
    let fx = ts_orders(&["metadata"]).await;
    for code in ["NOT_FOUND", "ORDER_EXPIRED"] {
        fx.client.create_order(want(code)).await.expect_err("fails");
    }
    fx.client.create_order(order_request("c")).await.expect("succeeds");

    for (verb, kind) in [("PING", "ping_response"), ("INFO", "info_response"), ("STATS", "stats_response")] {
        let text = std::fs::read_to_string(schemas.join(format!("{kind}.json"))).expect("schema");
        let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
        let validator = jsonschema::options().should_validate_formats(true).build(&schema).expect("schema compiles");
        for subject in
            [format!("$SRV.{verb}"), format!("$SRV.{verb}.order_service"), format!("$SRV.{verb}.order_service.{}", fx.id)]
        {
            let doc = ask(&fx.nats, &subject).await;
            let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{subject}: {errors:?}\n{doc:#}");
            assert_eq!(doc["type"], format!("io.nats.micro.v1.{kind}"));
            assert_eq!(
                (doc["name"].as_str(), doc["id"].as_str(), doc["version"].as_str()),
                (Some("order_service"), Some(fx.id.as_str()), Some("1.0.0"))
            );
            assert_eq!(doc["metadata"]["team"], "orders", "{subject}: top-level metadata from the proto");
            assert_eq!(doc["metadata"]["region"], "eu", "{subject}: merged at run time");
        }
    }
    let info = ask(&fx.nats, "$SRV.INFO.order_service").await;
    assert_eq!(info["description"], "Order management");
    let names: Vec<&str> = info["endpoints"].as_array().expect("endpoints").iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(names, ["create_order", "get_order"], "proto order");
    assert_eq!(info["endpoints"][0]["subject"], "api.v1.create_order");
    assert_eq!(info["endpoints"][0]["queue_group"], "q");
    assert_eq!(info["endpoints"][1]["metadata"]["operation"], "read");

    let stats = ask(&fx.nats, "$SRV.STATS.order_service").await;
    let create = &stats["endpoints"][0];
    assert_eq!((create["num_requests"].as_u64(), create["num_errors"].as_u64()), (Some(3), Some(2)), "{create}");
    assert!(create["last_error"].as_str().unwrap_or_default().starts_with("ORDER_EXPIRED:"), "{create}");
    assert!(create["processing_time"].as_u64().unwrap_or(0) > 0, "{create}");
    assert!(stats["started"].as_str().unwrap_or_default().ends_with('Z'), "UTC");
}

#[tokio::test]
async fn a_disabled_queue_group_gives_every_instance_every_request() {
    let server = NatsServer::start();
    let nats = server.connect().await;
    let (_a, a) = typescript_service(&server, "orders", &["no-queue"]);
    let (_b, b) = typescript_service(&server, "orders", &["no-queue"]);
    let info = ask(&nats, &format!("$SRV.INFO.order_service.{a}")).await;
    assert!(info["endpoints"][0].get("queue_group").is_none(), "{info}");
    OrderServiceClient::new(server.connect().await).create_order(order_request("c")).await.expect("succeeds");
    for id in [a, b] {
        let stats = first_endpoint_stats(&nats, &id, |e| e["num_requests"] == 1).await;
        assert_eq!(stats["num_requests"], 1, "instance {id}: {stats}");
    }
}

#[tokio::test]
async fn server_interceptors_chain_first_outermost_and_short_circuit_with_headers() {
    let server = NatsServer::start();
    let client = OrderServiceClient::new(server.connect().await);
    let (service, _) = typescript_service(&server, "orders", &["chain"]);
    let response = client.create_order(order_request("c")).await.expect("succeeds");
    let chain: Vec<&str> = response.headers().get_all("X-Chain").map(|v| v.as_str()).collect();
    assert_eq!(chain, ["a:before", "b:before", "b:after", "a:after"]);
    assert_eq!(
        response.headers().get("X-Echoed").map(|v| v.as_str()),
        Some("b"),
        "the inner interceptor's header reached the handler"
    );
    drop(service);

    let (_service, _) = typescript_service(&server, "orders", &["auth"]);
    let err = client.create_order(order_request("c")).await.expect_err("rejected");
    assert!(err.is_unauthenticated());
    assert_eq!(err.message(), "CreateOrder needs a token");
    assert_eq!(err.headers().and_then(|h| h.get("WWW-Authenticate")).map(|v| v.as_str()), Some("Bearer"), "headers set on error");
    client.create_order(Request::new(order_request("c")).with_header("Authorization", "Bearer good")).await.expect("authorised");
}

/// The milliseconds left that the TypeScript handlers of CreateOrder and
/// GetOrder see for a caller with a 60 s budget, with `modes`.
async fn server_deadlines(modes: &[&str]) -> [f64; 2] {
    let fx = ts_orders(modes).await;
    let client = fx.client.clone().with_timeout(Duration::from_secs(60));
    let remaining = |headers: &async_nats::HeaderMap| -> f64 {
        headers.get("X-Remaining").and_then(|v| v.as_str().parse().ok()).expect("X-Remaining")
    };
    let create = client.create_order(order_request("c")).await.expect("ok");
    let get = client.get_order(GetOrderRequest { id: "1".into() }).await.expect("ok");
    assert_eq!(create.headers().get("X-Budget").map(|v| v.as_str()), Some("60000000"), "the caller's budget in microseconds");
    [remaining(create.headers()), remaining(get.headers())]
}

#[tokio::test]
async fn server_timeout_precedence_endpoint_override_then_service_override_then_proto() {
    let within = |ms: f64, low: f64, high: f64| low < ms && ms <= high;
    let [create, get] = server_deadlines(&["budget", "overrides"]).await;
    assert!(within(create, 2000.0, 3000.0), "service override: {create}");
    assert!(within(get, 1000.0, 2000.0), "endpoint override: {get}");
    let [create, get] = server_deadlines(&["budget"]).await;
    assert!(within(create, 4000.0, 5000.0), "proto service timeout: {create}");
    assert!(within(get, 250.0, 750.0), "proto endpoint timeout: {get}");
}

#[tokio::test]
async fn the_typescript_service_stops_gracefully() {
    let fx = ts_orders(&[]).await;
    fx.client.create_order(order_request("c")).await.expect("serves");
    assert_eq!(fx.service.stop().trim(), "stopped");
    let err = fx.client.create_order(order_request("c")).await.expect_err("stopped services take no requests");
    assert!(err.is_no_responders(), "{err:?}");
}

// --- examples/ts ---------------------------------------------------------

#[tokio::test]
async fn the_typescript_example_serves_and_calls_the_order_service() {
    let example = program("example", &root().join("examples/ts"), &["order/v1/order.proto"]);
    let server = NatsServer::start();
    let (_service, _) = Node::serve({
        let mut command = example.node("server", &[]);
        command.env("NATS_URL", server.url());
        command
    });
    let output =
        tokio::task::spawn_blocking(move || example.node("client", &[]).env("NATS_URL", server.url()).output().expect("node"))
            .await
            .expect("task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    for line in ["created order", "order expired", "payment failed", "not found", "no responders"] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
}

// --- The runtime as a package, outside the repository ----------------------

/// Runs `command` and returns its stdout; panics with its output unless it succeeds.
fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|err| panic!("{command:?}: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{command:?} failed:\n{stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// `npm install ARGS` in `dir` (from the registry, or npm's cache).
fn npm_install(dir: &Path, args: &[&str]) {
    run(Command::new("npm")
        .current_dir(dir)
        .args(["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"])
        .args(args));
}

/// Generates the TypeScript (protoc-gen-es messages, our services) for `protos` into `out`.
fn generate_ts(out: &Path, protos: &[&str]) {
    let es = root().join("node_modules/.bin/protoc-gen-es");
    let es_args = [
        format!("--plugin=protoc-gen-es={}", es.display()),
        format!("--es_out={}", out.display()),
        "--es_opt=target=ts,import_extension=js".to_owned(),
    ];
    nats_micro_tests::codegen::generate(out, protos, "ts", &es_args);
}

#[tokio::test]
async fn the_packed_runtime_serves_two_output_folders_outside_the_repository() {
    let root = root().canonicalize().expect("repository root");
    nats_micro_tests::typescript::assert_runtime_built(&root);
    let project = std::env::temp_dir().join(format!("nats-micro-ts-package-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&project);
    std::fs::create_dir_all(project.join("other")).expect("project directory");
    assert!(!project.starts_with(&root), "outside the repository");

    // The tarball, as `npm publish` would upload it.
    let packed = run(Command::new("npm")
        .current_dir(root.join("runtime-ts"))
        .args(["pack", "--silent", "--pack-destination"])
        .arg(&project));
    let tarball = project.join(packed.trim().lines().last().expect("npm pack names the tarball"));
    let tarball = tarball.to_string_lossy().into_owned();

    std::fs::write(project.join("package.json"), r#"{"name": "app", "private": true, "type": "module"}"#).expect("package.json");
    npm_install(
        &project,
        &[
            &tarball,
            "@nats-io/nats-core@3.3.0",
            "@nats-io/transport-node@3.3.0",
            "@bufbuild/protobuf@2.13.0",
            "@types/node@20.19.43",
        ],
    );
    // A second copy of the runtime, for the folder below `other/` (its peers resolve from the project's).
    std::fs::write(project.join("other/package.json"), r#"{"name": "other", "private": true, "type": "module"}"#)
        .expect("package.json");
    npm_install(&project.join("other"), &["--legacy-peer-deps", &tarball]);

    generate_ts(&project.join("gen-a"), &["order/v1/order.proto"]);
    generate_ts(&project.join("gen-b"), &["jsondemo/v1/jsondemo.proto"]);
    generate_ts(&project.join("other/gen-c"), &["order/v1/order.proto"]);
    for script in ["app.ts", "mismatch.ts"] {
        std::fs::copy(root.join("tests/ts/packaged").join(script), project.join(script)).expect("copying a script");
    }
    let base = std::fs::read_to_string(root.join("tsconfig.base.json")).expect("tsconfig.base.json");
    std::fs::write(project.join("tsconfig.base.json"), base).expect("tsconfig.base.json");
    std::fs::write(
        project.join("tsconfig.json"),
        r#"{"extends": "./tsconfig.base.json", "compilerOptions": {"rootDir": "."}, "include": ["*.ts", "gen-a/**/*.ts", "gen-b/**/*.ts", "other/gen-c/**/*.ts"]}"#,
    )
    .expect("tsconfig.json");
    // Compiled in place: the JavaScript below `other/` must resolve `other/`'s runtime copy.
    run(Command::new(root.join("node_modules/.bin/tsc")).arg("-p").arg(&project));

    let server = NatsServer::start();
    let report = run(Command::new("node").current_dir(&project).arg("app.js").arg(server.url()));
    assert!(report.contains(" passed, 0 failed"), "{report}");
    assert!(report.contains("ok a re-thrown downstream error keeps its code and message"), "{report}");

    // The generated module refuses a runtime copy of another minor version, naming both versions.
    let installed = project.join("other/node_modules/nats-micro-runtime/dist/index.js");
    let source = std::fs::read_to_string(&installed).expect("the installed runtime");
    let version = format!("RUNTIME_VERSION = \"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(source.contains(&version), "the runtime states its version");
    std::fs::write(&installed, source.replace(&version, "RUNTIME_VERSION = \"0.99.0\"")).expect("patching the copy");
    let refused = run(Command::new("node").current_dir(&project).arg("mismatch.js"));
    assert!(refused.starts_with("refused: "), "{refused}");
    assert!(refused.contains(&format!("protoc-gen-nats-micro {}", env!("CARGO_PKG_VERSION"))), "{refused}");
    assert!(refused.contains("nats-micro-runtime 0.99.0"), "{refused}");
    let _ = std::fs::remove_dir_all(&project);
}

/// `runtime-ts/src/google-rpc-{status,error_details}_pb.ts` are what
/// protoc-gen-es makes of `proto/google/rpc/*.proto` (checked in under flat
/// names, as the runtime's sources are one folder). To regenerate, run the
/// protoc below and copy `google/rpc/NAME_pb.ts` to `google-rpc-NAME_pb.ts`.
#[test]
fn runtime_error_detail_types_are_what_protoc_gen_es_generates() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ts-google-rpc");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("output directory");
    let es = root().join("node_modules/.bin/protoc-gen-es");
    let protoc = Command::new(nats_micro_tests::harness::python())
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", root().join("proto").display()))
        .arg(format!("--plugin=protoc-gen-es={}", es.display()))
        .arg(format!("--es_out={}", out.display()))
        .arg("--es_opt=target=ts,import_extension=js")
        .args(["google/rpc/status.proto", "google/rpc/error_details.proto"])
        .output()
        .expect("running grpc_tools.protoc (run scripts/setup)");
    assert!(protoc.status.success(), "protoc: {}", String::from_utf8_lossy(&protoc.stderr));
    for name in ["status", "error_details"] {
        let fresh = std::fs::read_to_string(out.join(format!("google/rpc/{name}_pb.ts"))).expect("generated file");
        let checked_in =
            std::fs::read_to_string(root().join(format!("runtime-ts/src/google-rpc-{name}_pb.ts"))).expect("checked-in file");
        assert!(fresh == checked_in, "runtime-ts/src/google-rpc-{name}_pb.ts is stale: regenerate it (see this test)");
    }
}
