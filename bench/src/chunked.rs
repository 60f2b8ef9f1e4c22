//! Chunked transfer (PROTOCOL §12.5): a 50 MiB download and upload through
//! the generated code (`Download` / `Upload` of `proto/store/v1`, 64 KiB
//! chunks, flow control, SHA-256 on both sides) against a raw async-nats
//! loop publishing the same 64 KiB chunks from one connection to a
//! subscriber on another (no flow control, no hashing). Everything runs in
//! this process, each side on a connection of its own, on a nats-server
//! with JetStream (the scenario's service creates its buckets).
//! `bash scripts/bench --chunked`; also part of `--full`.

use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use nats_micro_runtime::{RequestContext, ResponseSender, Streaming};

/// `proto/store/v1`, generated with prost (bytes as `Bytes`) and protoc-gen-nats-micro.
#[allow(clippy::all, dead_code, reason = "generated")]
pub mod store {
    include!(concat!(env!("OUT_DIR"), "/nats/store.v1.rs"));
}

use store::profile_service_nats::{self as profiles, ProfileService, ProfileServiceClient, ProfileServiceError};
use store::{Chunk, DownloadRequest, Note, Profile, Report, ReportRequest, Session, SessionRequest, UploadResult};

/// Bytes moved per transfer.
pub const PAYLOAD: u64 = 50 * 1024 * 1024;
/// Chunk size of both contenders (the proto's default).
const CHUNK: usize = 64 * 1024;

/// One direction: throughput of the generated code and of the raw loop.
#[derive(Clone, Debug)]
pub struct ChunkedCell {
    /// `download` or `upload`.
    pub direction: &'static str,
    /// MB/s (10^6 bytes per second) through the generated client and server.
    pub generated: f64,
    /// MB/s of the raw publish loop (of what arrived).
    pub raw: f64,
    /// Chunks the raw subscriber did not get (a slow consumer loses them).
    pub raw_lost: u64,
}

/// Download streams `size` bytes of one repeated chunk; upload reads and discards.
#[derive(Clone)]
struct Transfers;

fn unused() -> ProfileServiceError {
    ProfileServiceError::unimplemented("not part of the chunked benchmark")
}

impl ProfileService for Transfers {
    async fn save_profile(&self, _: RequestContext, _: Profile) -> Result<Profile, ProfileServiceError> {
        Err(unused())
    }
    async fn create_profile(&self, _: RequestContext, _: Profile) -> Result<Profile, ProfileServiceError> {
        Err(unused())
    }
    async fn update_profile(&self, _: RequestContext, _: Profile) -> Result<Profile, ProfileServiceError> {
        Err(unused())
    }
    async fn touch_profile(&self, _: RequestContext, _: Profile) -> Result<Profile, ProfileServiceError> {
        Err(unused())
    }
    async fn open_session(&self, _: RequestContext, _: SessionRequest) -> Result<Session, ProfileServiceError> {
        Err(unused())
    }
    async fn annotate(&self, _: RequestContext, _: Note) -> Result<Note, ProfileServiceError> {
        Err(unused())
    }
    async fn generate_report(&self, _: RequestContext, _: ReportRequest) -> Result<Report, ProfileServiceError> {
        Err(unused())
    }

    async fn upload(
        &self,
        _ctx: RequestContext,
        requests: Streaming<Chunk, ProfileServiceError>,
    ) -> Result<UploadResult, ProfileServiceError> {
        let mut upload = profiles::upload_chunks(requests);
        while upload.chunk().await?.is_some() {}
        let transfer = upload.transfer().cloned().ok_or_else(|| ProfileServiceError::internal("no transfer"))?;
        Ok(UploadResult { size: transfer.size, sha256: transfer.sha256_hex() })
    }

    async fn download(
        &self,
        ctx: RequestContext,
        request: DownloadRequest,
        responses: ResponseSender<Chunk>,
    ) -> Result<(), ProfileServiceError> {
        let chunk = Bytes::from(vec![0x5a; CHUNK]);
        let count = request.size.div_ceil(CHUNK as u64);
        let pieces = futures_util::stream::iter((0..count).map(move |_| Ok::<_, nats_micro_runtime::Error>(chunk.clone())));
        profiles::download_chunks(&ctx, responses).send_stream(pieces).await?;
        Ok(())
    }
}

fn mb_per_s(bytes: u64, elapsed: std::time::Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

/// The raw contender: `PAYLOAD` bytes in 64 KiB messages published on one
/// connection and counted by a subscriber on another; MB/s of what
/// arrived, and the chunks lost.
async fn raw(url: &str) -> Result<(f64, u64), Box<dyn std::error::Error>> {
    let (publisher, subscriber) = (async_nats::connect(url).await?, async_nats::connect(url).await?);
    let subject = subscriber.new_inbox();
    let mut messages = subscriber.subscribe(subject.clone()).await?;
    // A round trip: the server has the subscription once this comes back.
    subscriber.request(subscriber.new_inbox(), Bytes::new()).await.ok();
    let count = PAYLOAD.div_ceil(CHUNK as u64);
    let chunk = Bytes::from(vec![0x5a; CHUNK]);
    let started = Instant::now();
    let sending = async {
        for _ in 0..count {
            publisher.publish(subject.clone(), chunk.clone()).await?;
        }
        publisher.flush().await?;
        Ok::<(), Box<dyn std::error::Error>>(())
    };
    let receiving = async {
        let mut received = 0u64;
        while received < PAYLOAD {
            match tokio::time::timeout(std::time::Duration::from_secs(2), messages.next()).await {
                Ok(Some(message)) => received += message.payload.len() as u64,
                _ => break,
            }
        }
        (received, started.elapsed())
    };
    let (sent, (received, elapsed)) = tokio::join!(sending, receiving);
    sent?;
    let lost = (PAYLOAD - received.min(PAYLOAD)) / CHUNK as u64;
    Ok((mb_per_s(received, elapsed), lost))
}

/// Measures both directions on a JetStream server of its own.
pub async fn measure() -> Result<Vec<ChunkedCell>, Box<dyn std::error::Error>> {
    let server = nats_micro_test_support::harness::NatsServer::start_jetstream();
    let url = server.url();
    let service = profiles::serve(&async_nats::connect(&url).await?, Transfers).await?;
    let client = ProfileServiceClient::new(async_nats::connect(&url).await?);

    eprintln!("chunked: download of {} MiB", PAYLOAD >> 20);
    let started = Instant::now();
    let request = DownloadRequest { size: PAYLOAD, seed: 0, fail_after: 0 };
    let transfer = client.download_chunked(request).receive_writer(&mut tokio::io::sink()).await?;
    let download = mb_per_s(transfer.size, started.elapsed());
    let (raw_download, raw_download_lost) = raw(&url).await?;

    eprintln!("chunked: upload of {} MiB", PAYLOAD >> 20);
    let chunk = Bytes::from(vec![0x5a; CHUNK]);
    let pieces = futures_util::stream::iter(
        (0..PAYLOAD.div_ceil(CHUNK as u64)).map(move |_| Ok::<_, nats_micro_runtime::Error>(chunk.clone())),
    );
    let started = Instant::now();
    let uploaded = client.upload_chunked().send_stream(pieces).await?;
    let upload = mb_per_s(uploaded.size, started.elapsed());
    let (raw_upload, raw_upload_lost) = raw(&url).await?;
    service.stop().await;
    Ok(vec![
        ChunkedCell { direction: "download", generated: download, raw: raw_download, raw_lost: raw_download_lost },
        ChunkedCell { direction: "upload", generated: upload, raw: raw_upload, raw_lost: raw_upload_lost },
    ])
}

/// The "Chunked transfer" section.
pub fn table(cells: &[ChunkedCell]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## Chunked transfer\n\nA {} MiB payload through the generated `chunked_io` helpers (`proto/store/v1` `Download` into \
         `receive_writer`, `Upload` from `send_stream`: 64 KiB chunks, credit flow control, SHA-256 on both sides) against a raw \
         async-nats loop publishing the same 64 KiB chunks from one connection to a subscriber on another (no flow control, no \
         hashing). MB/s is 10^6 bytes per second.\n",
        PAYLOAD >> 20
    );
    let _ = writeln!(out, "| transfer | generated (MB/s) | raw publish loop (MB/s) | generated / raw |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for cell in cells {
        let lost = if cell.raw_lost > 0 { format!(" ({} chunks lost)", cell.raw_lost) } else { String::new() };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0}{lost} | {:.2}x |",
            cell.direction,
            cell.generated,
            cell.raw,
            cell.generated / cell.raw
        );
    }
    out
}
