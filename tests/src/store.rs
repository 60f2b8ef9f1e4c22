//! The ProfileService of `proto/store/v1/store.proto` (PROTOCOL §12), as the
//! cross-language persistence scenario wants it served: the store tests and
//! `store_server` run it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use nats_micro_runtime::{Error, RequestContext, ResponseSender, Streaming};

use crate::project::store::v1::profile_service_nats::{self as store, ProfileService, ProfileServiceError};
use crate::project::store::v1::{
    Chunk, DownloadRequest, Note, Profile, Report, ReportRequest, Session, SessionRequest, UploadResult,
};

/// Byte `i` of pattern(seed): `(i * 31 + seed) mod 251`.
pub fn pattern_byte(i: u64, seed: u32) -> u8 {
    ((i.wrapping_mul(31) + u64::from(seed)) % 251) as u8
}

/// Bytes `start..start + len` of pattern(seed).
pub fn pattern(start: u64, len: usize, seed: u32) -> Vec<u8> {
    (0..len as u64).map(|i| pattern_byte(start + i, seed)).collect()
}

/// pattern(seed) of `size` bytes as a stream of pieces of at most `piece`
/// bytes, generated as it is read (never all in memory).
pub fn pattern_stream(size: u64, seed: u32, piece: usize) -> impl futures_util::Stream<Item = Bytes> + Send + 'static {
    futures_util::stream::unfold(0u64, move |at| async move {
        (at < size).then(|| {
            let len = (size - at).min(piece as u64) as usize;
            (Bytes::from(pattern(at, len, seed)), at + len as u64)
        })
    })
}

/// An async reader of pattern(seed), `size` bytes, generated as it is read.
pub struct PatternReader {
    at: u64,
    size: u64,
    seed: u32,
}

impl PatternReader {
    /// `size` bytes of pattern(seed).
    pub fn new(size: u64, seed: u32) -> PatternReader {
        PatternReader { at: 0, size, seed }
    }
}

impl tokio::io::AsyncRead for PatternReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let len = (self.size - self.at).min(buf.remaining() as u64) as usize;
        let bytes = pattern(self.at, len, self.seed);
        buf.put_slice(&bytes);
        self.at += len as u64;
        std::task::Poll::Ready(Ok(()))
    }
}

/// The scenario's ProfileService. Clones share the per-id counter.
#[derive(Clone, Debug, Default)]
pub struct Profiles {
    /// Calls seen per profile id, over Save, Create, Update and Touch.
    seen: Arc<Mutex<HashMap<String, i64>>>,
}

impl Profiles {
    /// The request profile with `version` = how many calls with its id this
    /// process has seen; name `reject` fails with PROFILE_REJECTED.
    fn profile(&self, request: Profile) -> Result<Profile, ProfileServiceError> {
        if request.name == "reject" {
            return Err(ProfileServiceError::profile_rejected(format!("profile {:?} rejected", request.id)));
        }
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let count = seen.entry(request.id.clone()).or_default();
        *count += 1;
        Ok(Profile { version: *count, ..request })
    }
}

impl ProfileService for Profiles {
    async fn save_profile(&self, _ctx: RequestContext, request: Profile) -> Result<Profile, ProfileServiceError> {
        self.profile(request)
    }

    async fn create_profile(&self, _ctx: RequestContext, request: Profile) -> Result<Profile, ProfileServiceError> {
        self.profile(request)
    }

    async fn update_profile(&self, _ctx: RequestContext, request: Profile) -> Result<Profile, ProfileServiceError> {
        self.profile(request)
    }

    async fn touch_profile(&self, _ctx: RequestContext, request: Profile) -> Result<Profile, ProfileServiceError> {
        self.profile(request)
    }

    async fn open_session(&self, _ctx: RequestContext, request: SessionRequest) -> Result<Session, ProfileServiceError> {
        Ok(Session { key: store::open_session_key(&request)?, lifetime: Some(pbjson_types::Duration { seconds: 1, nanos: 0 }) })
    }

    async fn annotate(&self, _ctx: RequestContext, request: Note) -> Result<Note, ProfileServiceError> {
        Ok(request)
    }

    async fn generate_report(&self, _ctx: RequestContext, request: ReportRequest) -> Result<Report, ProfileServiceError> {
        Ok(Report { body: pattern(0, request.size as usize, 0), id: request.id })
    }

    // snippet: rust-chunked-server
    async fn upload(
        &self,
        _ctx: RequestContext,
        requests: Streaming<Chunk, ProfileServiceError>,
    ) -> Result<UploadResult, ProfileServiceError> {
        // The receiver hashes as the chunks arrive and checks the sender's size and digest.
        let mut upload = store::upload_chunks(requests);
        while upload.chunk().await?.is_some() {}
        let transfer = upload.transfer().ok_or_else(|| Error::internal("an upload without its summary"))?;
        Ok(UploadResult { size: transfer.size, sha256: transfer.sha256_hex() })
    }

    async fn download(
        &self,
        ctx: RequestContext,
        request: DownloadRequest,
        responses: ResponseSender<Chunk>,
    ) -> Result<(), ProfileServiceError> {
        let (size, seed, fail_after) = (request.size, request.seed, request.fail_after);
        let mut sent = 0u64;
        let pieces = futures_util::StreamExt::map(pattern_stream(size, seed, 64 * 1024), move |piece| {
            if fail_after > 0 && sent >= fail_after {
                return Err(Error::unavailable("cut"));
            }
            sent += piece.len() as u64;
            Ok(piece)
        });
        store::download_chunks(&ctx, responses).send_stream(pieces).await?;
        Ok(())
    }
    // end snippet
}
