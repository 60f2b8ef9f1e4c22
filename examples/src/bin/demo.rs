//! The main job: starts a nats-server, serves the generated OrderService,
//! and runs the client against it.

use nats_micro_examples::{InMemoryOrders, order::v1::order_service_nats};
use nats_micro_test_support::harness::NatsServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = NatsServer::start();
    println!("nats-server on {}", server.url());
    let nats = async_nats::connect(server.url()).await?;
    let service = order_service_nats::serve(&nats, InMemoryOrders::default()).await?;
    println!("serving {} (id {})", service.name(), service.id());
    for endpoint in service.endpoints() {
        println!("  endpoint {} on {}", endpoint.name, endpoint.subject);
    }
    for line in nats_micro_examples::run_client(async_nats::connect(server.url()).await?).await {
        println!("client: {line}");
    }
    let stats = service.stats();
    for endpoint in &stats.endpoints {
        println!("stats: {} requests={} errors={}", endpoint.name, endpoint.num_requests, endpoint.num_errors);
    }
    service.stop().await;
    Ok(())
}
