//! Stream throughput: the generated server-streaming RPC (credit flow
//! control on, a window of 1,024 messages) against raw async-nats
//! publish/subscribe of the same payloads. Both run in this process, each
//! side on a connection of its own, against the run's nats-server. Then a
//! slow reader of 1,000,000 small messages, for memory. The TypeScript
//! equivalent (the generated server stream against raw nats.js, same sizes
//! and counts from [`plan`]) is `bench/ts/streams.ts`, run by
//! [`crate::external::Programs::measure_streams`].

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use nats_micro_runtime::{RequestContext, ResponseSender};

use crate::echo::nats::stream_bench_nats::{self as bench, StreamBench, StreamBenchClient, StreamBenchError};
use crate::echo::nats::{EchoResponse, FloodRequest};

/// Messages per size: (payload bytes, messages in a quick run, in a full run).
pub const SIZES: [(usize, usize, usize); 3] = [(16, 20_000, 200_000), (1024, 20_000, 100_000), (64 * 1024, 1_000, 5_000)];

/// (payload bytes, messages) of each cell; `full` picks the larger message counts.
pub fn plan(full: bool) -> Vec<(usize, usize)> {
    SIZES.iter().map(|&(size, quick, long)| (size, if full { long } else { quick })).collect()
}

/// One payload size, both contenders.
#[derive(Clone, Debug)]
pub struct StreamCell {
    pub size: usize,
    pub messages: usize,
    /// Raw publish/subscribe: messages per second (of those that arrived) and messages lost.
    pub raw: RawRate,
    /// The same, each message with a `Nats-Stream-Seq` header as a stream
    /// message carries: what the wire's per-message header costs by itself.
    pub raw_with_seq: RawRate,
    /// Messages per second of encoding and decoding the message alone (no
    /// NATS), as every generated stream must: the codec's share of the budget.
    pub codec: f64,
    /// Messages per second, the generated server stream.
    pub generated: f64,
}

/// The slow-reader run: messages, time, and the process's peak RSS before and after.
#[derive(Clone, Debug)]
pub struct SlowReader {
    pub messages: usize,
    pub elapsed: Duration,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

#[derive(Clone)]
struct Flood;

impl StreamBench for Flood {
    async fn flood(
        &self,
        _ctx: RequestContext,
        request: FloodRequest,
        responses: ResponseSender<EchoResponse>,
    ) -> Result<(), StreamBenchError> {
        let payload = Bytes::from(vec![0x5a; request.size as usize]);
        for _ in 0..request.count {
            responses.send(EchoResponse { payload: payload.clone() }).await?;
        }
        Ok(())
    }
}

/// Measures every size; `full` picks the larger message counts.
pub async fn measure(url: &str, full: bool) -> Result<(Vec<StreamCell>, Option<SlowReader>), Box<dyn std::error::Error>> {
    let service = bench::serve(&async_nats::connect(url).await?, Flood).await?;
    let client = StreamBenchClient::new(async_nats::connect(url).await?);
    let mut cells = Vec::new();
    for (size, messages) in plan(full) {
        eprintln!("streams: {messages} messages of {size} B");
        let raw = raw_rate(url, size, messages, false).await?;
        let raw_with_seq = raw_rate(url, size, messages, true).await?;
        let generated = generated_rate(&client, size, messages).await?;
        let codec = codec_rate(size, messages)?;
        cells.push(StreamCell { size, messages, raw, raw_with_seq, codec, generated });
    }
    let slow = if full { Some(slow_reader(&client).await?) } else { None };
    service.stop().await;
    Ok((cells, slow))
}

/// `messages` messages of `size` bytes through `kind` (`raw`, `seq` or
/// `generated`), in this process: the stream path for callgrind
/// (`bench stream-path`; two counts of different lengths, subtracted, give
/// one message's cost).
pub async fn stream_path(url: &str, kind: &str, size: usize, messages: usize) -> Result<(), Box<dyn std::error::Error>> {
    match kind {
        "raw" | "seq" => {
            let rate = raw_rate(url, size, messages, kind == "seq").await?;
            if rate.lost > 0 {
                return Err(format!("raw publish/subscribe lost {} messages", rate.lost).into());
            }
        }
        "generated" => {
            let service = bench::serve(&async_nats::connect(url).await?, Flood).await?;
            let client = StreamBenchClient::new(async_nats::connect(url).await?);
            generated_rate(&client, size, messages).await?;
            service.stop().await;
        }
        other => return Err(format!("unknown stream path {other:?}: raw, seq or generated").into()),
    }
    Ok(())
}

async fn generated_rate(client: &StreamBenchClient, size: usize, messages: usize) -> Result<f64, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut stream = client.flood(FloodRequest { count: messages as u32, size: size as u32 }).await?;
    let mut received = 0;
    while stream.message().await?.is_some() {
        received += 1;
    }
    if received != messages {
        return Err(format!("the generated stream delivered {received} of {messages}").into());
    }
    Ok(messages as f64 / started.elapsed().as_secs_f64())
}

/// Messages per second of prost encoding and decoding an `EchoResponse` of `size` bytes.
fn codec_rate(size: usize, messages: usize) -> Result<f64, Box<dyn std::error::Error>> {
    use prost::Message as _;
    let payload = Bytes::from(vec![0x5a; size]);
    let started = Instant::now();
    for _ in 0..messages {
        let data = Bytes::from(EchoResponse { payload: payload.clone() }.encode_to_vec());
        if EchoResponse::decode(data)?.payload.len() != size {
            return Err("the codec lost bytes".into());
        }
    }
    Ok(messages as f64 / started.elapsed().as_secs_f64())
}

/// Raw publish/subscribe: one publisher, one subscriber (with a buffer
/// large enough not to drop), no flow control; `with_seq` adds the
/// sequence header a stream message carries.
async fn raw_rate(url: &str, size: usize, messages: usize, with_seq: bool) -> Result<RawRate, Box<dyn std::error::Error>> {
    let subscriber_connection = async_nats::ConnectOptions::new().subscription_capacity(messages * 2 + 1024).connect(url).await?;
    let publisher = async_nats::connect(url).await?;
    let subject = subscriber_connection.new_inbox();
    let mut subscription = subscriber_connection.subscribe(subject.clone()).await?;
    subscriber_connection.flush().await?;
    let payload = Bytes::from(vec![0x5a; size]);
    let started = Instant::now();
    let sending = tokio::spawn(async move {
        for seq in 1..=messages {
            if with_seq {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(SEQ, seq.to_string());
                publisher.publish_with_headers(subject.clone(), headers, payload.clone()).await?;
            } else {
                publisher.publish(subject.clone(), payload.clone()).await?;
            }
        }
        publisher.flush().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    });
    // Without flow control a fast publisher can overrun the subscriber and
    // the server drops messages (slow consumer): count what arrives until
    // all did or nothing came for a second, and rate what arrived.
    let (mut received, mut last) = (0, started.elapsed());
    while received < messages {
        match tokio::time::timeout(Duration::from_secs(1), subscription.next()).await {
            Ok(Some(_)) => {
                received += 1;
                last = started.elapsed();
            }
            _ => break,
        }
    }
    sending.await?.map_err(|err| err.to_string())?;
    Ok(RawRate { rate: received as f64 / last.as_secs_f64(), lost: messages - received })
}

const SEQ: async_nats::header::HeaderName =
    async_nats::header::HeaderName::from_static(nats_micro_runtime::stream::wire::STREAM_SEQ);

/// Raw publish/subscribe: the rate of what arrived, and what was lost.
#[derive(Clone, Copy, Debug)]
pub struct RawRate {
    pub rate: f64,
    pub lost: usize,
}

/// 1,000,000 small messages to a reader that pauses 1 ms every 1,000:
/// the server can only run a window ahead, so memory stays flat.
async fn slow_reader(client: &StreamBenchClient) -> Result<SlowReader, Box<dyn std::error::Error>> {
    const MESSAGES: usize = 1_000_000;
    eprintln!("streams: a slow reader of {MESSAGES} messages");
    let rss_before_kib = own_peak_rss_kib();
    let started = Instant::now();
    let mut stream = client.flood(FloodRequest { count: MESSAGES as u32, size: 16 }).await?;
    let mut received = 0;
    while stream.message().await?.is_some() {
        received += 1;
        if received % 1_000 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    if received != MESSAGES {
        return Err(format!("the slow reader got {received} of {MESSAGES}").into());
    }
    Ok(SlowReader { messages: MESSAGES, elapsed: started.elapsed(), rss_before_kib, rss_after_kib: own_peak_rss_kib() })
}

/// This process's peak RSS (`VmHWM`), in KiB.
fn own_peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()))
        })
        .unwrap_or(0)
}
