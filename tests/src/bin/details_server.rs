//! Serves the Rust ExplainService and ExplainOpenService of
//! `proto/details/v1` on `$NATS_URL` for the cross-language error-details
//! tests: prints `ready` once serving, stops cleanly on SIGTERM or Ctrl-C.

use nats_micro_tests::details::serve_both;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let nats = async_nats::connect(url).await?;
    let (withheld, open) = serve_both(&nats).await?;
    println!("ready");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    withheld.stop().await;
    open.stop().await;
    Ok(())
}
