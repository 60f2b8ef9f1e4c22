//! Calls the OrderService on `$NATS_URL` (default `nats://127.0.0.1:4222`) and handles its typed errors.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    for line in nats_micro_examples::run_client(async_nats::connect(&url).await?).await {
        println!("{line}");
    }
    Ok(())
}
