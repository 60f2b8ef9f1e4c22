//! Serves the Rust ProfileService of `proto/store/v1` (persistence and
//! chunked transfer, PROTOCOL §12) on `$NATS_URL`, which needs JetStream:
//! prints `ready` once serving, stops cleanly on SIGTERM or Ctrl-C.

use nats_micro_tests::project::store::v1::profile_service_nats as store;
use nats_micro_tests::store::Profiles;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let nats = async_nats::connect(url).await?;
    let service = store::serve(&nats, Profiles::default()).await?;
    println!("ready");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    service.stop().await;
    Ok(())
}
