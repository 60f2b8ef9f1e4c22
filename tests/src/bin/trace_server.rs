//! Serves the Rust TraceService of `proto/trace/v1` for the cross-language
//! trace test: reads `NATS_URL` and `HOP_NAME`, records its spans in memory
//! through OpenTelemetry, serves under `trace.v1.<HOP_NAME>`, prints `ready`,
//! and at SIGTERM (or Ctrl-C) stops and prints `spans <json>`.

use nats_micro_tests::project::trace::v1::trace_service_nats as trace;
use nats_micro_tests::trace::{Hop, SpanRecorder, hop_prefix};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let name = std::env::var("HOP_NAME").map_err(|_| "HOP_NAME is not set")?;
    let recorder = SpanRecorder::default();
    tracing::subscriber::set_global_default(recorder.subscriber())?;
    let nats = async_nats::connect(url).await?;
    let hop = Hop { name: name.clone(), nats: nats.clone() };
    let service = trace::service_builder(hop).subject_prefix(hop_prefix(&name)).start(&nats).await?;
    println!("ready");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    service.stop().await;
    println!("spans {}", recorder.spans_json());
    Ok(())
}
