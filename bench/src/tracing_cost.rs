//! The cost of the request and call spans (PROTOCOL §11): the generated
//! Rust client and server in one process, without any `tracing` subscriber
//! and then with one that records every span (a bare `Registry`, no
//! exporter), as a ratio from the same run. `bench --tracing`.
//!
//! `bench request-path <calls> [concurrency] [contender]` makes that many
//! calls on one thread with no subscriber, client and server in one process,
//! for counting instructions under callgrind (two counts of different
//! lengths, subtracted, give one call's cost: client, server and both
//! async-nats connections).

use std::time::Duration;

use bytes::Bytes;

use crate::contenders::{Caller, Contender, Echo};
use crate::echo::nats::echo_service_nats;
use crate::measure;

/// Requests per measured run.
const REQUESTS: usize = 5_000;
/// Rounds per side.
const ROUNDS: usize = 3;

/// Throughput at concurrency 1 and 16, and p50 at 1, per side.
#[derive(Debug, Default, Clone, Copy)]
struct Side {
    c1: f64,
    c16: f64,
    p50_us: f64,
}

/// One round on a fresh runtime whose threads (and the caller's) have a
/// `Registry` as their default subscriber when `on`, none otherwise; the
/// sides alternate so that the machine's drift hits both alike.
fn round(url: &str, on: bool) -> Result<Side, Box<dyn std::error::Error>> {
    let dispatch = if on { tracing::Dispatch::new(tracing_subscriber::registry()) } else { tracing::Dispatch::none() };
    let for_threads = dispatch.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || {
            // The runtime's threads live as long as it does: keep the default for their life.
            std::mem::forget(tracing::dispatcher::set_default(&for_threads));
        })
        .build()?;
    tracing::dispatcher::with_default(&dispatch, || {
        runtime.block_on(async {
            let (service, caller) = echo(url).await?;
            measure::run(&caller, 16, 1_000).await?;
            let one = measure::run(&caller, 1, REQUESTS).await?;
            let sixteen = measure::run(&caller, 16, REQUESTS).await?;
            service.stop().await;
            let p50_us = one.quantile(0.5).map_or(f64::NAN, |d| d.as_secs_f64() * 1e6);
            Ok(Side { c1: one.throughput, c16: sixteen.throughput, p50_us })
        })
    })
}

/// Serves the echo service and returns a generated caller of it.
async fn echo(url: &str) -> Result<(nats_micro_runtime::Service, Caller), Box<dyn std::error::Error>> {
    let nats = async_nats::connect(url).await?;
    let service = echo_service_nats::serve(&nats, Echo).await?;
    nats.flush().await?;
    let prefix = echo_service_nats::SERVICE.subject_prefix;
    let caller = Caller::connect(Contender::Generated, url, prefix, Bytes::from(vec![0x5a; 1024])).await?;
    Ok((service, caller))
}

/// Off (no subscriber) and on (a `Registry`), alternating: the table, printed.
pub fn measure(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (mut off, mut on) = (Side::default(), Side::default());
    for _ in 0..ROUNDS {
        for (side, enabled) in [(&mut off, false), (&mut on, true)] {
            let run = round(url, enabled)?;
            // The best round of each: the machine's noise only ever slows a run down.
            side.c1 = side.c1.max(run.c1);
            side.c16 = side.c16.max(run.c16);
            side.p50_us = if side.p50_us == 0.0 { run.p50_us } else { side.p50_us.min(run.p50_us) };
        }
    }
    println!(
        "| generated echo, 1 KiB, best of {ROUNDS} alternating rounds | tracing off | tracing on (Registry, no exporter) | on / off |"
    );
    println!("|---|---|---|---|");
    println!("| req/s, concurrency 1 | {:.0} | {:.0} | {:.2}x |", off.c1, on.c1, on.c1 / off.c1);
    println!("| req/s, concurrency 16 | {:.0} | {:.0} | {:.2}x |", off.c16, on.c16, on.c16 / off.c16);
    println!("| p50 µs, concurrency 1 | {:.1} | {:.1} | {:.2}x |", off.p50_us, on.p50_us, on.p50_us / off.p50_us);
    Ok(())
}

/// `calls` calls of 1 KiB from `concurrency` tasks of one thread, no
/// subscriber, to `contender`'s server in this same process: the request
/// path for callgrind.
pub async fn request_path(
    url: &str,
    contender: Contender,
    calls: usize,
    concurrency: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let address = crate::contenders::start(contender, url).await?;
    let caller = Caller::connect(contender, url, &address, Bytes::from(vec![0x5a; 1024])).await?;
    tokio::time::timeout(Duration::from_secs(60), measure::run(&caller, concurrency, calls)).await??;
    Ok(())
}
