//! Serves the Rust StreamService of `proto/streams/v1` on `$NATS_URL` for
//! the cross-language stream tests: prints `ready` once serving, stops
//! cleanly on SIGTERM or Ctrl-C.

use nats_micro_tests::project::streams::v1::stream_service_nats as streams;
use nats_micro_tests::streams::Streams;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let nats = async_nats::connect(url).await?;
    let service = streams::serve(&nats, Streams::default()).await?;
    println!("ready");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    service.stop().await;
    Ok(())
}
