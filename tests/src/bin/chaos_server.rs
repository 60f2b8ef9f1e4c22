//! Serves the Rust ChaosService of `proto/chaos/v1` on `$NATS_URL` (one URL
//! or several, comma-separated) for the resilience scenarios: reconnects
//! forever, prints `ready` once serving and, on SIGTERM, stops and prints
//! `put-ids <ids>` (every `Put` it executed, once per execution).

use nats_micro_tests::chaos::{self, Chaos};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let urls = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let urls: Vec<&str> = urls.split(',').map(str::trim).filter(|url| !url.is_empty()).collect();
    // No limit on reconnect attempts: the scenarios take the server away.
    let nats = async_nats::ConnectOptions::new().max_reconnects(None).connect(urls).await?;
    let service = Chaos::default();
    let recorded = service.recorded.clone();
    let running = chaos::builder(service).start(&nats).await?;
    println!("ready");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    running.stop().await;
    println!("{}", recorded.put_ids_line());
    Ok(())
}
