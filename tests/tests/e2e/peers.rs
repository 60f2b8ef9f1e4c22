//! Independent ADR-32 implementations on the other side of the wire:
//! `async-nats`'s own `service` module, and nats-py's `nats.micro`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use async_nats::service::ServiceExt;
use futures_util::StreamExt;
use nats_micro_runtime::Request;
use nats_micro_tests::harness::python;

use super::support::*;

fn peer_script(name: &str) -> String {
    format!("{}/peers/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn generated_client_classifies_numeric_codes_from_an_async_nats_service() {
    let server = NatsServer::start();
    let nats = server.connect().await;
    let service = nats.service_builder().start("peer_orders", "1.0.0").await.expect("peer starts");
    let mut endpoint = service.group("api.v1").endpoint("create_order").await.expect("endpoint");
    tokio::spawn(async move {
        while let Some(request) = endpoint.next().await {
            let want = request.message.headers.as_ref().and_then(|h| h.get(WANT_CODE)).map(|v| v.as_str().to_owned());
            let response = match want.and_then(|w| w.parse::<usize>().ok()) {
                Some(code) => Err(async_nats::service::error::Error { code, status: format!("peer says {code}") }),
                None => Ok(bytes::Bytes::new()),
            };
            let _ = request.respond(response).await;
        }
    });
    let client = OrderServiceClient::new(server.connect().await);
    use OrderServiceErrorCode as C;
    for (number, expected) in [
        (400, C::InvalidArgument),
        (401, C::Unauthenticated),
        (403, C::PermissionDenied),
        (404, C::NotFound),
        (409, C::AlreadyExists),
        (500, C::Internal),
        (503, C::Unavailable),
        (418, C::Unrecognized("418".into())),
    ] {
        let request = Request::new(order_request("c")).with_header(WANT_CODE, &number.to_string());
        let err = client.create_order(request).await.expect_err("the peer fails as asked");
        assert_eq!(err.code(), expected, "{number}");
        assert_eq!(err.message(), format!("peer says {number}"));
    }
    client.create_order(order_request("c")).await.expect("success from the peer decodes");
}

/// A Python process, killed on drop.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn generated_client_classifies_string_codes_from_a_nats_py_micro_service() {
    let server = NatsServer::start();
    let mut child = Command::new(python())
        .arg(peer_script("micro_order_server.py"))
        .arg(server.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the Python peer (run scripts/setup)");
    let stdout = child.stdout.take().expect("stdout");
    let peer = Peer(child);
    let mut ready = String::new();
    BufReader::new(stdout).read_line(&mut ready).expect("reading the peer");
    assert_eq!(ready.trim(), "ready", "the Python peer did not start");

    let client = OrderServiceClient::new(server.connect().await);
    for name in ALL_CODES.iter().copied().chain(["SOMETHING_ELSE"]) {
        let err = client.create_order(Request::new(order_request("c")).with_header(WANT_CODE, name)).await.expect_err("fails");
        let expected = OrderServiceErrorCode::from_code(&nats_micro_runtime::Code::from_wire(name));
        assert_eq!(err.code(), expected, "{name}");
        assert_eq!(err.code().as_str(), name);
        assert_eq!(err.message(), format!("python says {name}"));
        assert_eq!(&err.data()[..], format!("py:{name}").as_bytes());
    }
    let err =
        client.create_order(Request::new(order_request("c")).with_header(WANT_CODE, "ORDER_EXPIRED")).await.expect_err("fails");
    assert!(err.is_order_expired(), "custom code from the peer");
    client.create_order(order_request("c")).await.expect("success from the peer decodes");
    drop(peer);
}

#[tokio::test]
async fn nats_py_client_reads_codes_and_messages_from_the_rust_server() {
    let fx = Fixture::start().await;
    let url = fx.server.url();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(peer_script("micro_client.py"))
            .arg(url)
            .args(["NOT_FOUND", "INTERNAL", "ORDER_EXPIRED", "DEADLINE_EXCEEDED"])
            .output()
            .expect("running the Python client (run scripts/setup)")
    })
    .await
    .expect("task");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let seen: Vec<(String, String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["code"].as_str().unwrap_or("").into(),
                l["message"].as_str().unwrap_or("").into(),
                l["data"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("404".into(), "wanted NOT_FOUND".into(), "data:NOT_FOUND".into()),
            ("500".into(), "wanted INTERNAL".into(), "data:INTERNAL".into()),
            ("ORDER_EXPIRED".into(), "wanted ORDER_EXPIRED".into(), "data:ORDER_EXPIRED".into()),
            ("DEADLINE_EXCEEDED".into(), "wanted DEADLINE_EXCEEDED".into(), "data:DEADLINE_EXCEEDED".into()),
        ]
    );
    fx.service.stop().await;
}
