//! The load generator: `concurrency` callers share the work of `total`
//! requests; at concurrency 1 every latency is kept.

use std::time::{Duration, Instant};

use crate::contenders::Caller;
use crate::{CONCURRENCY, Cell, Plan};

/// One measured run.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Requests per second.
    pub throughput: f64,
    /// Sorted per-request latencies (concurrency 1 only).
    pub latencies: Vec<Duration>,
}

impl Run {
    /// The latency at quantile `q` (0..=1).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let last = self.latencies.len().checked_sub(1)?;
        Some(self.latencies[((last as f64) * q).round() as usize])
    }
}

/// Sends `total` requests from `concurrency` tasks and times them.
pub async fn run(caller: &Caller, concurrency: usize, total: usize) -> Result<Run, String> {
    let per_task = total.div_ceil(concurrency);
    let record = concurrency == 1;
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let mut caller = caller.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(if record { per_task } else { 0 });
                for _ in 0..per_task {
                    let sent = Instant::now();
                    caller.call().await?;
                    if record {
                        latencies.push(sent.elapsed());
                    }
                }
                Ok::<_, String>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Ok(Run { throughput: (per_task * concurrency) as f64 / elapsed.as_secs_f64(), latencies })
}

/// The figures of one caller: a warm-up at concurrency 16, then
/// `plan.requests` requests at each of [`CONCURRENCY`].
pub async fn cell(caller: &Caller, plan: Plan) -> Result<Cell, String> {
    run(caller, 16, plan.warmup).await?;
    let mut cell = Cell::default();
    for (c, &concurrency) in CONCURRENCY.iter().enumerate() {
        let run = run(caller, concurrency, plan.requests).await?;
        cell.throughput[c] = run.throughput;
        if concurrency == 1 {
            let micros = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e6);
            cell.p50_us = micros(run.quantile(0.50));
            cell.p99_us = micros(run.quantile(0.99));
        }
    }
    Ok(cell)
}
