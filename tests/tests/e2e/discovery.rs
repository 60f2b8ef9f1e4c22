//! ADR-32 discovery: PING, INFO and STATS on all three subject levels, valid
//! against the schemas in `../shared/schemas/micro/v1/`.

use serde_json::Value;

use super::support::*;

fn schema(dir: &std::path::Path, name: &str) -> jsonschema::Validator {
    let path = dir.join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::options().should_validate_formats(true).build(&schema).expect("schema compiles")
}

async fn ask(nats: &async_nats::Client, subject: String) -> Value {
    let reply = nats.request(subject.clone(), bytes::Bytes::new()).await.unwrap_or_else(|err| panic!("{subject}: {err}"));
    serde_json::from_slice(&reply.payload).unwrap_or_else(|err| panic!("{subject}: reply is not JSON: {err}"))
}

#[tokio::test]
async fn discovery_documents_validate_on_every_subject_level() {
    let Some(schemas) = nats_micro_tests::shared::schemas() else {
        return nats_micro_tests::shared::skip("discovery_documents_validate_on_every_subject_level", "schemas");
    };
    let fx = Fixture::start_with(|b| b.add_metadata("region", "eu")).await;
    // Two errors and one success, so STATS has something to count.
    for want in ["NOT_FOUND", "ORDER_EXPIRED"] {
        let request = nats_micro_runtime::Request::new(order_request("c")).with_header(WANT_CODE, want);
        fx.client.create_order(request).await.expect_err("fails");
    }
    fx.client.create_order(order_request("c")).await.expect("succeeds");

    let id = fx.service.id().to_owned();
    for (verb, schema_name, kind) in [
        ("PING", "ping_response", "io.nats.micro.v1.ping_response"),
        ("INFO", "info_response", "io.nats.micro.v1.info_response"),
        ("STATS", "stats_response", "io.nats.micro.v1.stats_response"),
    ] {
        let validator = schema(&schemas, schema_name);
        for subject in [format!("$SRV.{verb}"), format!("$SRV.{verb}.order_service"), format!("$SRV.{verb}.order_service.{id}")] {
            let doc = ask(&fx.nats, subject.clone()).await;
            let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{subject}: {errors:?}\n{doc:#}");
            assert_eq!(doc["type"], kind);
            assert_eq!(doc["name"], "order_service");
            assert_eq!(doc["id"], id.as_str());
            assert_eq!(doc["version"], "1.0.0");
            assert_eq!(doc["metadata"]["team"], "orders", "{subject}: top-level metadata from the proto");
            assert_eq!(doc["metadata"]["region"], "eu", "{subject}: merged at run time");
        }
    }

    let info = ask(&fx.nats, "$SRV.INFO.order_service".into()).await;
    assert_eq!(info["description"], "Order management");
    let endpoints = info["endpoints"].as_array().expect("endpoints");
    let names: Vec<&str> = endpoints.iter().map(|e| e["name"].as_str().unwrap_or_default()).collect();
    assert_eq!(names, ["create_order", "get_order"], "proto order");
    assert_eq!(endpoints[0]["subject"], "api.v1.create_order");
    assert_eq!(endpoints[0]["queue_group"], "q");
    assert_eq!(endpoints[0]["metadata"]["operation"], "write");

    let stats = ask(&fx.nats, "$SRV.STATS.order_service".into()).await;
    let create = &stats["endpoints"][0];
    assert_eq!(create["name"], "create_order");
    assert_eq!(create["num_requests"], 3);
    assert_eq!(create["num_errors"], 2);
    assert!(create["last_error"].as_str().unwrap_or_default().contains("ORDER_EXPIRED"), "{create}");
    assert!(create["processing_time"].as_u64().unwrap_or(0) > 0);
    assert!(stats["started"].as_str().unwrap_or_default().ends_with('Z'), "UTC");
    assert_eq!(fx.service.stats().endpoints[0].num_errors, 2, "in-process stats agree");
    fx.service.stop().await;
}

#[tokio::test]
async fn disabled_queue_group_is_reported_and_each_instance_gets_every_request() {
    let server = NatsServer::start();
    let nats = server.connect().await;
    let a = orders::service_builder(TestOrders::default()).queue_group(None::<String>).start(&nats).await.expect("starts");
    let b = orders::service_builder(TestOrders::default()).queue_group(None::<String>).start(&nats).await.expect("starts");
    let info = ask(&nats, format!("$SRV.INFO.order_service.{}", a.id())).await;
    assert!(info["endpoints"][0].get("queue_group").is_none(), "{info}");
    let client = OrderServiceClient::new(server.connect().await);
    client.create_order(order_request("c")).await.expect("succeeds");
    // Without a queue group both instances received (and counted) the request.
    let count = |s: &nats_micro_runtime::Service| s.stats().endpoints[0].num_requests;
    for _ in 0..100 {
        if count(&a) == 1 && count(&b) == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!((count(&a), count(&b)), (1, 1));
    a.stop().await;
    b.stop().await;
}
