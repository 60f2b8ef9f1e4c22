//! `json: true` services speak the proto3 JSON mapping on the wire
//! (`proto/jsondemo/v1/jsondemo.proto`).

use nats_micro_runtime::{RequestContext, headers};
use nats_micro_tests::project::jsondemo::v1::json_service_nats::{
    self as json, JsonService, JsonServiceClient, JsonServiceError,
};
use nats_micro_tests::project::jsondemo::v1::{EchoRequest, EchoResponse, GetUserRequest, GetUserResponse, User};

use super::support::NatsServer;

struct Echo;

impl JsonService for Echo {
    async fn echo(&self, _ctx: RequestContext, request: EchoRequest) -> Result<EchoResponse, JsonServiceError> {
        Ok(EchoResponse { message: request.message, timestamp: request.timestamp, encoding: "json".into() })
    }

    async fn get_user(&self, _ctx: RequestContext, request: GetUserRequest) -> Result<GetUserResponse, JsonServiceError> {
        if request.id.is_empty() {
            return Err(JsonServiceError::invalid_argument("id is required"));
        }
        let user = User { id: request.id, name: "Ada".into(), roles: vec!["admin".into()], ..Default::default() };
        Ok(GetUserResponse { user: Some(user) })
    }
}

#[tokio::test]
async fn json_service_round_trips_and_speaks_proto3_json_on_the_wire() {
    let server = NatsServer::start();
    let nats = server.connect().await;
    let service = json::serve(&nats, Echo).await.expect("starts");
    let client = JsonServiceClient::new(server.connect().await);

    let reply = client.echo(EchoRequest { message: "hi \"there\"".into(), timestamp: 1_700_000_000_123 }).await.expect("echo");
    assert_eq!((reply.message.as_str(), reply.timestamp, reply.encoding.as_str()), ("hi \"there\"", 1_700_000_000_123, "json"));
    let user = client.get_user(GetUserRequest { id: "u1".into() }).await.expect("user").into_inner().user.expect("a user");
    assert_eq!((user.name.as_str(), user.roles.as_slice()), ("Ada", ["admin".to_string()].as_slice()));

    // Raw bytes: a JSON body in, a JSON body out (64-bit integers as strings, lowerCamelCase names).
    let raw = nats.request("demo.json.echo", r#"{"message":"raw","timestamp":"42"}"#.into()).await.expect("reply");
    let body: serde_json::Value = serde_json::from_slice(&raw.payload).expect("the reply body is JSON");
    assert_eq!(body["message"], "raw");
    assert_eq!(body["timestamp"], "42");
    assert_eq!(body["encoding"], "json");

    let bad = nats.request("demo.json.echo", "{not json".into()).await.expect("reply");
    assert_eq!(bad.headers.expect("error headers").get(headers::ERROR_CODE).map(|v| v.as_str()), Some("400"));
    let err = client.get_user(GetUserRequest::default()).await.expect_err("invalid");
    assert!(err.is_invalid_argument());
    service.stop().await;
}
