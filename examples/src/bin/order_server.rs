//! Serves the OrderService on `$NATS_URL` (default `nats://127.0.0.1:4222`)
//! until Ctrl-C or SIGTERM, then stops gracefully (in-flight requests finish).

use nats_micro_examples::{InMemoryOrders, order::v1::order_service_nats};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // snippet: serve
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let nats = async_nats::connect(&url).await?;
    let service = order_service_nats::service_builder(InMemoryOrders::default())
        .add_metadata("instance", std::process::id().to_string())
        // Should the connection die (async-nats fails on some crafted messages), serve on a new one.
        .reconnect_with({
            let url = url.clone();
            move || async_nats::connect(url.clone())
        })
        .start(&nats)
        .await?;
    println!("serving {} on {url}; Ctrl-C or SIGTERM stops gracefully", service.name());
    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    // Stops gracefully on the signal: requests in flight get up to 10 s (`drain_timeout`).
    service.run_until(shutdown).await?;
    // end snippet
    Ok(())
}
