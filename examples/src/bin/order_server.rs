//! Serves the OrderService on `$NATS_URL` (default `nats://127.0.0.1:4222`) until Ctrl-C.

use nats_micro_examples::{InMemoryOrders, order::v1::order_service_nats};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let nats = async_nats::connect(&url).await?;
    let service = order_service_nats::service_builder(InMemoryOrders::default())
        .add_metadata("instance", std::process::id().to_string())
        .start(&nats)
        .await?;
    println!("serving {} on {url}; Ctrl-C stops gracefully", service.name());
    tokio::signal::ctrl_c().await?;
    service.stop().await;
    Ok(())
}
