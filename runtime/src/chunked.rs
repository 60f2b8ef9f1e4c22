//! Chunked transfer (PROTOCOL §12.5): one payload larger than `max_payload`
//! carried by a client-streaming RPC (an upload) or a server-streaming RPC
//! (a download) whose message is a single `bytes` field.
//!
//! Chunks are ordinary stream messages (§9), so order, loss and flow control
//! are the stream's. The sender's end carries the payload's size
//! ([`CHUNKED_SIZE`]) and SHA-256 ([`CHUNKED_DIGEST`]); the receiver checks
//! both and fails with `DATA_LOSS` on a mismatch. A peer that sends neither
//! (the Go plugin) is accepted, and the [`Transfer`] says the digest was not
//! verified.
//!
//! - Callers: [`ChunkedUpload`] (send bytes, an async reader or a file) and
//!   [`ChunkedDownload`] (receive into bytes, an async writer or a file:
//!   written to a temporary file beside the target and renamed only once
//!   the checks pass), made by the generated client
//!   (`client.upload_chunked()`, `client.download_chunked(request)`).
//! - Handlers: [`ChunkReceiver`] over an upload's request stream (chunks or
//!   an [`AsyncRead`]) and [`ChunkSender`] onto a download's response stream
//!   (bytes, an async reader, a stream of bytes or a file), made by the
//!   generated `…_chunks` functions.
//!
//! The reader, writer and file paths never hold more than the flow-control
//! window of chunks: memory stays bounded whatever the payload's size.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::client::stream::Source;
use crate::client::{Client, Request, Response};
use crate::codec::Codec;
use crate::context::RequestContext;
use crate::error::Error;
use crate::spec::EndpointSpec;
use crate::stream::{ResponseSender, Streaming};

/// The sender's end: the payload's total size in bytes (decimal).
pub const CHUNKED_SIZE: &str = "Nats-Micro-Chunked-Size";
/// The sender's end: `sha-256=<base64 of the payload's SHA-256>` (standard alphabet, padded).
pub const CHUNKED_DIGEST: &str = "Nats-Micro-Chunked-Digest";
/// The prefix of a [`CHUNKED_DIGEST`] value.
const DIGEST_PREFIX: &str = "sha-256=";
/// Room left for a chunk message's headers (`Nats-Stream-Seq`) below `max_payload`.
const HEADER_ROOM: usize = 128;

/// The chunk message of one chunked RPC: how a chunk becomes the message
/// (its one `bytes` field) and back, and the proto's default chunk size.
/// Generated as a constant per chunked RPC (`UPLOAD_CHUNKS`).
///
/// ```
/// use nats_micro_runtime::chunked::ChunkField;
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Chunk { #[prost(bytes = "vec", tag = "1")] data: Vec<u8> }
/// const CHUNKS: ChunkField<Chunk> = ChunkField { wrap: |data| Chunk { data: data.into() }, unwrap: |chunk| chunk.data.into(), chunk_size: 65536 };
/// assert_eq!((CHUNKS.unwrap)((CHUNKS.wrap)(bytes::Bytes::from_static(b"abc"))), &b"abc"[..]);
/// ```
#[derive(Debug)]
pub struct ChunkField<M> {
    /// A chunk as the message.
    pub wrap: fn(Bytes) -> M,
    /// The message's chunk.
    pub unwrap: fn(M) -> Bytes,
    /// `default_chunk_size` of the proto (64 KiB when unset).
    pub chunk_size: u32,
}

/// A finished transfer: the payload's size and SHA-256, and whether the
/// sender's digest was there to check (a Go-plugin peer sends none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Bytes transferred.
    pub size: u64,
    /// SHA-256 of the payload.
    pub sha256: [u8; 32],
    /// The sender's size and digest were present and matched; `false`: the
    /// sender sent none (only sequence and end were checked).
    pub digest_verified: bool,
}

impl Transfer {
    /// The SHA-256 in lower-case hex.
    ///
    /// ```
    /// use nats_micro_runtime::chunked::Transfer;
    /// let t = Transfer { size: 0, sha256: [0xab; 32], digest_verified: true };
    /// assert!(t.sha256_hex().starts_with("abab") && t.sha256_hex().len() == 64);
    /// ```
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The size and running SHA-256 of what went through so far.
#[derive(Clone, Default)]
struct Tally {
    hasher: Sha256,
    size: u64,
}

impl Tally {
    fn add(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
    }

    fn finish(&self) -> (u64, [u8; 32]) {
        (self.size, self.hasher.clone().finalize().into())
    }

    /// The sender's end headers.
    fn trailers(&self) -> HeaderMap {
        let (size, digest) = self.finish();
        let mut headers = HeaderMap::new();
        headers.insert(CHUNKED_SIZE, size.to_string().as_str());
        headers.insert(CHUNKED_DIGEST, digest_header(&digest).as_str());
        headers
    }

    /// Checks the sender's end headers against what was received.
    fn verify(&self, trailers: Option<&HeaderMap>) -> Result<Transfer, Error> {
        let (size, sha256) = self.finish();
        let header = |name: &str| trailers.and_then(|headers| headers.get(name)).map(|value| value.as_str().to_owned());
        let (sent_size, sent_digest) = (header(CHUNKED_SIZE), header(CHUNKED_DIGEST));
        if let Some(sent) = &sent_size {
            match sent.parse::<u64>() {
                Ok(sent) if sent == size => {}
                Ok(sent) => {
                    return Err(Error::data_loss(format!("chunked transfer: received {size} bytes, the sender sent {sent}")));
                }
                Err(_) => return Err(Error::data_loss(format!("chunked transfer: malformed {CHUNKED_SIZE} {sent:?}"))),
            }
        }
        let digest_verified = match &sent_digest {
            None => false,
            Some(sent) => {
                let encoded = sent
                    .get(..DIGEST_PREFIX.len())
                    .filter(|prefix| prefix.eq_ignore_ascii_case(DIGEST_PREFIX))
                    .map(|_| &sent[DIGEST_PREFIX.len()..]);
                let decoded = encoded.and_then(|encoded| STANDARD.decode(encoded).ok());
                match decoded {
                    Some(digest) if digest == sha256 => true,
                    Some(_) => {
                        return Err(Error::data_loss(format!(
                            "chunked transfer: the SHA-256 of the {size} bytes received does not match the sender's {sent:?}"
                        )));
                    }
                    None => return Err(Error::data_loss(format!("chunked transfer: malformed {CHUNKED_DIGEST} {sent:?}"))),
                }
            }
        };
        Ok(Transfer { size, sha256, digest_verified: digest_verified && sent_size.is_some() })
    }
}

/// `sha-256=<base64>` of a digest.
fn digest_header(digest: &[u8; 32]) -> String {
    format!("{DIGEST_PREFIX}{}", STANDARD.encode(digest))
}

/// Fails before anything is sent when a chunk's message cannot fit
/// `max_payload` (`INVALID_ARGUMENT` naming it).
fn check_chunk_size(
    chunk_size: u32,
    max_payload: usize,
    encoded_len: impl FnOnce(Bytes) -> Result<usize, Error>,
) -> Result<(), Error> {
    if chunk_size == 0 {
        return Err(Error::invalid_argument("chunked transfer: the chunk size must be at least 1 byte"));
    }
    if max_payload == 0 {
        return Ok(());
    }
    let len = encoded_len(Bytes::from(vec![0u8; chunk_size as usize]))?;
    if len + HEADER_ROOM > max_payload {
        return Err(Error::invalid_argument(format!(
            "chunked transfer: a chunk of {chunk_size} bytes is a message of {len} bytes, over the connection's max_payload of {max_payload} (with {HEADER_ROOM} bytes for headers); use a smaller chunk size"
        ))
        .with_field_violation("chunk_size", format!("must give messages that fit max_payload ({max_payload} bytes)")));
    }
    Ok(())
}

/// A local I/O failure of a transfer (the caller's reader or writer, a file).
fn io_error(what: &str, err: &std::io::Error) -> Error {
    Error::internal(format!("chunked transfer: {what}: {err}"))
}

/// Reads `reader` in chunks of exactly `chunk_size` bytes (the last one shorter).
fn reader_chunks<R: AsyncRead + Send + Unpin + 'static>(
    reader: R,
    chunk_size: u32,
) -> impl Stream<Item = Result<Bytes, Error>> + Send {
    futures_util::stream::unfold(Some(reader), move |reader| async move {
        let mut reader = reader?;
        let mut chunk = vec![0u8; chunk_size as usize];
        let mut filled = 0;
        while filled < chunk.len() {
            match reader.read(&mut chunk[filled..]).await {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) => return Some((Err(io_error("reading the payload", &err)), None)),
            }
        }
        if filled == 0 {
            return None;
        }
        chunk.truncate(filled);
        Some((Ok(Bytes::from(chunk)), (filled == chunk_size as usize).then_some(reader)))
    })
}

/// Regroups pieces of any size into chunks of exactly `chunk_size` bytes
/// (the last one shorter), never holding more than one chunk.
fn rechunk<S, E>(pieces: S, chunk_size: u32) -> impl Stream<Item = Result<Bytes, Error>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<Error>,
{
    let size = chunk_size as usize;
    let state = (Box::pin(pieces), BytesMut::new(), false);
    futures_util::stream::unfold(state, move |(mut pieces, mut buffer, done)| async move {
        loop {
            if buffer.len() >= size {
                let chunk = buffer.split_to(size).freeze();
                return Some((Ok(chunk), (pieces, buffer, done)));
            }
            if done {
                return (!buffer.is_empty()).then(|| (Ok(buffer.split().freeze()), (pieces, buffer, true)));
            }
            match pieces.next().await {
                Some(Ok(piece)) if buffer.is_empty() && piece.len() == size => return Some((Ok(piece), (pieces, buffer, false))),
                Some(Ok(piece)) => buffer.extend_from_slice(&piece),
                Some(Err(err)) => return Some((Err(err.into()), (pieces, BytesMut::new(), true))),
                None => return (!buffer.is_empty()).then(|| (Ok(buffer.split().freeze()), (pieces, buffer, true))),
            }
        }
    })
}

/// Splits `data` into chunks without copying.
fn bytes_chunks(data: Bytes, chunk_size: u32) -> impl Stream<Item = Result<Bytes, Error>> + Send {
    let size = chunk_size as usize;
    let count = data.len().div_ceil(size);
    futures_util::stream::iter((0..count).map(move |i| Ok(data.slice(i * size..((i + 1) * size).min(data.len())))))
}

/// A file opened for a transfer.
async fn open_file(path: &Path) -> Result<tokio::fs::File, Error> {
    tokio::fs::File::open(path).await.map_err(|err| io_error(&format!("opening {}", path.display()), &err))
}

/// The caller's side of a chunked upload (a client-streaming RPC): the
/// payload from bytes, an async reader or a file, in chunks of the proto's
/// size (or [`ChunkedUpload::chunk_size`]), with its size and digest on the
/// half-close. Returns the server's response.
///
/// ```no_run
/// # async fn demo(upload: nats_micro_runtime::chunked::ChunkedUpload<nats_micro_runtime::Protobuf, (), (), nats_micro_runtime::Error>) -> Result<(), nats_micro_runtime::Error> {
/// // Generated: `client.upload_chunked()`.
/// let response = upload.chunk_size(256 * 1024).send_file("/var/backups/db.dump").await?;
/// # let _ = response; Ok(()) }
/// ```
pub struct ChunkedUpload<C, M, Resp, E = Error> {
    client: Client,
    endpoint: &'static EndpointSpec,
    wrap: fn(Bytes) -> M,
    chunk_size: u32,
    headers: HeaderMap,
    timeout: Option<Duration>,
    _types: std::marker::PhantomData<fn(C, E) -> Resp>,
}

impl<C, M, Resp, E> std::fmt::Debug for ChunkedUpload<C, M, Resp, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkedUpload")
            .field("method", &self.endpoint.method.method)
            .field("chunk_size", &self.chunk_size)
            .finish()
    }
}

impl<C, M, Resp, E> ChunkedUpload<C, M, Resp, E>
where
    C: Codec<M> + Codec<Resp>,
    M: Send + 'static,
    E: From<Error>,
{
    /// An upload to `endpoint` through `client` (generated code calls it).
    pub fn new(client: &Client, endpoint: &'static EndpointSpec, field: &ChunkField<M>) -> Self {
        ChunkedUpload {
            client: client.clone(),
            endpoint,
            wrap: field.wrap,
            chunk_size: field.chunk_size,
            headers: HeaderMap::new(),
            timeout: None,
            _types: std::marker::PhantomData,
        }
    }

    /// Sets this transfer's chunk size (bytes per message).
    pub fn chunk_size(mut self, bytes: u32) -> Self {
        self.chunk_size = bytes;
        self
    }

    /// Adds a header to the stream's open.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sets a deadline for the whole transfer.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends `data`, split into chunks without copying.
    pub async fn send_bytes(self, data: impl Into<Bytes>) -> Result<Response<Resp>, E> {
        let chunk_size = self.chunk_size.max(1);
        self.send(bytes_chunks(data.into(), chunk_size)).await
    }

    /// Sends what `reader` yields until its end, one chunk at a time.
    pub async fn send_reader<R: AsyncRead + Send + Unpin + 'static>(self, reader: R) -> Result<Response<Resp>, E> {
        let chunk_size = self.chunk_size.max(1);
        self.send(reader_chunks(reader, chunk_size)).await
    }

    /// Sends the file at `path`.
    pub async fn send_file(self, path: impl AsRef<Path>) -> Result<Response<Resp>, E> {
        let file = open_file(path.as_ref()).await?;
        self.send_reader(file).await
    }

    /// Sends the pieces `stream` yields (of any size; regrouped into
    /// chunks). An error from it cancels the upload and is returned.
    pub async fn send_stream<S, SE>(self, stream: S) -> Result<Response<Resp>, E>
    where
        S: Stream<Item = Result<Bytes, SE>> + Send + 'static,
        SE: Into<Error> + 'static,
    {
        let chunk_size = self.chunk_size.max(1);
        self.send(rechunk(stream, chunk_size)).await
    }

    async fn send<S>(self, chunks: S) -> Result<Response<Resp>, E>
    where
        S: Stream<Item = Result<Bytes, Error>> + Send + 'static,
    {
        let wrap = self.wrap;
        check_chunk_size(self.chunk_size, self.client.nats().max_payload(), |chunk| {
            <C as Codec<M>>::encode(&wrap(chunk)).map(|body| body.len()).map_err(Error::invalid_argument)
        })?;
        let tally = Arc::new(Mutex::new(Tally::default()));
        let counted = tally.clone();
        let requests =
            chunks.filter(|chunk| std::future::ready(!matches!(chunk, Ok(chunk) if chunk.is_empty()))).map(move |chunk| {
                chunk.map(|chunk| {
                    counted.lock().unwrap_or_else(PoisonError::into_inner).add(&chunk);
                    wrap(chunk)
                })
            });
        let trailers = Box::new(move || tally.lock().unwrap_or_else(PoisonError::into_inner).trailers());
        let source = Source { requests, headers: self.headers, timeout: self.timeout, trailers: Some(trailers) };
        let method = &self.endpoint.method;
        Ok(self.client.client_streaming_from::<C, M, Resp, _>(method, self.endpoint.window, source).await?)
    }
}

/// The caller's side of a chunked download (a server-streaming RPC): the
/// payload into bytes, an async writer or a file, its order, size and
/// digest checked. A failed transfer returns its error and never leaves
/// partial data behind as success.
///
/// ```no_run
/// # async fn demo(download: nats_micro_runtime::chunked::ChunkedDownload<nats_micro_runtime::Protobuf, (), (), nats_micro_runtime::Error>) -> Result<(), nats_micro_runtime::Error> {
/// // Generated: `client.download_chunked(request)`.
/// let transfer = download.receive_file("/tmp/report.bin").await?; // renamed into place once verified
/// println!("{} bytes, sha-256 {}", transfer.size, transfer.sha256_hex());
/// # Ok(()) }
/// ```
pub struct ChunkedDownload<C, Req, M, E = Error> {
    client: Client,
    endpoint: &'static EndpointSpec,
    unwrap: fn(M) -> Bytes,
    request: Request<Req>,
    _types: std::marker::PhantomData<fn(C) -> E>,
}

impl<C, Req, M, E> std::fmt::Debug for ChunkedDownload<C, Req, M, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkedDownload").field("method", &self.endpoint.method.method).finish_non_exhaustive()
    }
}

impl<C, Req, M, E> ChunkedDownload<C, Req, M, E>
where
    C: Codec<Req> + Codec<M>,
    E: From<Error>,
{
    /// A download of `request` from `endpoint` through `client` (generated code calls it).
    pub fn new(client: &Client, endpoint: &'static EndpointSpec, field: &ChunkField<M>, request: Request<Req>) -> Self {
        ChunkedDownload { client: client.clone(), endpoint, unwrap: field.unwrap, request, _types: std::marker::PhantomData }
    }

    /// Opens the stream: the chunks as they come ([`ChunkReceiver::chunk`]), checked at the end.
    pub async fn receive(self) -> Result<ChunkReceiver<M>, E> {
        Ok(self.open().await?)
    }

    async fn open(self) -> Result<ChunkReceiver<M>, Error> {
        let method = &self.endpoint.method;
        let messages = self.client.server_streaming::<C, Req, M, Error>(method, self.endpoint.window, self.request).await?;
        Ok(ChunkReceiver { messages, unwrap: self.unwrap, tally: Tally::default(), transfer: None, unread: Bytes::new() })
    }

    /// The whole payload in memory, checked.
    pub async fn receive_bytes(self) -> Result<(Bytes, Transfer), E> {
        let mut chunks = self.receive().await?;
        let mut payload = BytesMut::new();
        while let Some(chunk) = chunks.chunk().await? {
            payload.extend_from_slice(&chunk);
        }
        let transfer =
            chunks.transfer().cloned().ok_or_else(|| E::from(Error::internal("a finished transfer without its summary")))?;
        Ok((payload.freeze(), transfer))
    }

    /// The payload written to `writer` as it arrives; the error of a failed
    /// transfer comes after what was written (the writer holds partial data
    /// then: use [`ChunkedDownload::receive_file`] for all-or-nothing).
    pub async fn receive_writer<W: AsyncWrite + Unpin>(self, writer: &mut W) -> Result<Transfer, E> {
        let mut chunks = self.receive().await?;
        Ok(chunks.write_to(writer).await?)
    }

    /// The payload in the file at `path`: written to a temporary file beside
    /// it, renamed over `path` once size and digest are checked, removed on
    /// any failure (so `path` never holds a partial payload).
    pub async fn receive_file(self, path: impl AsRef<Path>) -> Result<Transfer, E> {
        let path = path.as_ref();
        let partial = partial_path(path);
        let written = async {
            let mut file = tokio::fs::File::create(&partial)
                .await
                .map_err(|err| io_error(&format!("creating {}", partial.display()), &err))?;
            let transfer = self.open().await?.write_to(&mut file).await?;
            file.sync_all().await.map_err(|err| io_error(&format!("writing {}", partial.display()), &err))?;
            drop(file);
            tokio::fs::rename(&partial, path)
                .await
                .map_err(|err| io_error(&format!("renaming {} to {}", partial.display(), path.display()), &err))?;
            Ok::<Transfer, Error>(transfer)
        };
        match written.await {
            Ok(transfer) => Ok(transfer),
            Err(err) => {
                let _ = tokio::fs::remove_file(&partial).await;
                Err(E::from(err))
            }
        }
    }
}

/// `dir/.name.partial-<nuid>`: the temporary file of a download to `path`.
fn partial_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_else(|| "download".to_owned());
    path.with_file_name(format!(".{name}.partial-{}", nuid::next()))
}

/// The receiving side of a chunked transfer, over a stream of chunk
/// messages: an upload handler's request stream (generated:
/// `upload_chunks(requests)`) or a download's response stream. Yields the
/// chunks in order ([`ChunkReceiver::chunk`]) or reads as an [`AsyncRead`];
/// at the end it checks the sender's size and digest, and fails with
/// `DATA_LOSS` on a mismatch instead of ending.
///
/// ```no_run
/// # async fn demo(mut upload: nats_micro_runtime::chunked::ChunkReceiver<()>) -> Result<(), Box<dyn std::error::Error>> {
/// let mut file = tokio::fs::File::create("/tmp/upload.bin").await?;
/// let transfer = upload.write_to(&mut file).await?; // or: while let Some(chunk) = upload.chunk().await? { .. }
/// assert!(transfer.digest_verified, "a Go-plugin client sends no digest");
/// # Ok(()) }
/// ```
pub struct ChunkReceiver<M, E = Error> {
    messages: Streaming<M, E>,
    unwrap: fn(M) -> Bytes,
    tally: Tally,
    transfer: Option<Transfer>,
    /// What an [`AsyncRead`] caller has not read yet of the current chunk.
    unread: Bytes,
}

impl<M, E> std::fmt::Debug for ChunkReceiver<M, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkReceiver").field("received", &self.tally.size).field("transfer", &self.transfer).finish()
    }
}

impl<M, E> ChunkReceiver<M, E>
where
    E: Into<Error> + From<Error>,
{
    /// Reads the chunks of `messages`.
    pub fn new(messages: Streaming<M, E>, field: &ChunkField<M>) -> Self {
        ChunkReceiver { messages, unwrap: field.unwrap, tally: Tally::default(), transfer: None, unread: Bytes::new() }
    }

    /// The next chunk, `None` after the end once the sender's size and
    /// digest matched; the stream's error, or `DATA_LOSS`, otherwise.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, E> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await.map_err(E::from)
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, Error>> {
        loop {
            if self.transfer.is_some() {
                return Poll::Ready(Ok(None));
            }
            match std::task::ready!(Pin::new(&mut self.messages).poll_next(cx)) {
                Some(Ok(message)) => {
                    let chunk = (self.unwrap)(message);
                    if chunk.is_empty() {
                        continue;
                    }
                    self.tally.add(&chunk);
                    return Poll::Ready(Ok(Some(chunk)));
                }
                Some(Err(err)) => return Poll::Ready(Err(err.into())),
                None => {
                    let transfer = self.tally.verify(self.messages.trailers())?;
                    self.transfer = Some(transfer);
                    return Poll::Ready(Ok(None));
                }
            }
        }
    }

    /// The transfer's size and digest, once it ended and was checked.
    pub fn transfer(&self) -> Option<&Transfer> {
        self.transfer.as_ref()
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.tally.size
    }

    /// Writes every chunk to `writer` as it arrives, then returns the checked transfer.
    pub async fn write_to<W: AsyncWrite + Unpin>(&mut self, writer: &mut W) -> Result<Transfer, E> {
        while let Some(chunk) = self.chunk().await? {
            writer.write_all(&chunk).await.map_err(|err| E::from(io_error("writing the payload", &err)))?;
        }
        writer.flush().await.map_err(|err| E::from(io_error("writing the payload", &err)))?;
        self.transfer.clone().ok_or_else(|| E::from(Error::internal("a finished transfer without its summary")))
    }
}

/// Reads the payload; a failed transfer is an [`std::io::Error`] that
/// [`error_from_io`] turns back into the typed error.
impl<M, E> AsyncRead for ChunkReceiver<M, E>
where
    E: Into<Error> + From<Error>,
{
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.unread.is_empty() {
            match std::task::ready!(this.poll_chunk(cx)) {
                Ok(Some(chunk)) => this.unread = chunk,
                Ok(None) => return Poll::Ready(Ok(())),
                Err(err) => return Poll::Ready(Err(std::io::Error::other(err))),
            }
        }
        let n = this.unread.len().min(buf.remaining());
        buf.put_slice(&this.unread.split_to(n));
        Poll::Ready(Ok(()))
    }
}

// The request stream of a handler is Unpin (it holds no self-references).
impl<M, E> Unpin for ChunkReceiver<M, E> {}

/// The typed error of a failed transfer read through [`AsyncRead`]
/// (`INTERNAL` for an I/O error of another origin).
///
/// ```
/// use nats_micro_runtime::{Code, Error};
/// use nats_micro_runtime::chunked::error_from_io;
/// let io = std::io::Error::other(Error::data_loss("digest mismatch"));
/// assert_eq!(error_from_io(&io).code(), &Code::DataLoss);
/// ```
pub fn error_from_io(err: &std::io::Error) -> Error {
    match err.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(typed) => typed.clone(),
        None => io_error("reading", err),
    }
}

/// The sending side of a chunked download, onto a download handler's
/// response stream (generated: `download_chunks(&ctx, responses)`): the
/// payload from bytes, an async reader, a stream of bytes or a file, in
/// chunks of the proto's size (or [`ChunkSender::chunk_size`]), with the
/// payload's size and digest on the stream's end.
///
/// ```no_run
/// # async fn demo(sender: nats_micro_runtime::chunked::ChunkSender<()>) -> Result<(), Box<dyn std::error::Error>> {
/// let file = tokio::fs::File::open("/var/reports/q1.pdf").await?;
/// let transfer = sender.send_reader(file).await?;
/// # let _ = transfer; Ok(()) }
/// ```
pub struct ChunkSender<M> {
    ctx: RequestContext,
    responses: ResponseSender<M>,
    wrap: fn(Bytes) -> M,
    chunk_size: u32,
}

impl<M> std::fmt::Debug for ChunkSender<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSender").field("chunk_size", &self.chunk_size).finish_non_exhaustive()
    }
}

impl<M> ChunkSender<M> {
    /// Sends onto `responses`; the end's headers go through `ctx`.
    pub fn new(ctx: &RequestContext, responses: ResponseSender<M>, field: &ChunkField<M>) -> Self {
        ChunkSender { ctx: ctx.clone(), responses, wrap: field.wrap, chunk_size: field.chunk_size }
    }

    /// Sets this transfer's chunk size (bytes per message).
    pub fn chunk_size(mut self, bytes: u32) -> Self {
        self.chunk_size = bytes;
        self
    }

    /// Sends `data`, split into chunks without copying.
    pub async fn send_bytes(self, data: impl Into<Bytes>) -> Result<Transfer, Error> {
        let chunk_size = self.chunk_size.max(1);
        self.send(bytes_chunks(data.into(), chunk_size)).await
    }

    /// Sends what `reader` yields until its end.
    pub async fn send_reader<R: AsyncRead + Send + Unpin + 'static>(self, reader: R) -> Result<Transfer, Error> {
        let chunk_size = self.chunk_size.max(1);
        self.send(reader_chunks(reader, chunk_size)).await
    }

    /// Sends the file at `path`.
    pub async fn send_file(self, path: impl AsRef<Path>) -> Result<Transfer, Error> {
        let file = open_file(path.as_ref()).await?;
        self.send_reader(file).await
    }

    /// Sends the pieces `stream` yields (of any size; regrouped into
    /// chunks). Its error fails the transfer: return it from the handler.
    pub async fn send_stream<S, SE>(self, stream: S) -> Result<Transfer, Error>
    where
        S: Stream<Item = Result<Bytes, SE>> + Send + 'static,
        SE: Into<Error> + 'static,
    {
        let chunk_size = self.chunk_size.max(1);
        self.send(rechunk(stream, chunk_size)).await
    }

    async fn send<S>(self, chunks: S) -> Result<Transfer, Error>
    where
        S: Stream<Item = Result<Bytes, Error>> + Send,
    {
        let wrap = self.wrap;
        check_chunk_size(self.chunk_size, self.responses.max_payload(), |chunk| self.responses.encoded_len(&wrap(chunk)))?;
        let mut tally = Tally::default();
        let mut chunks = std::pin::pin!(chunks);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if chunk.is_empty() {
                continue;
            }
            tally.add(&chunk);
            self.responses.send(wrap(chunk)).await?;
        }
        for (name, values) in tally.trailers().iter() {
            if let Some(value) = values.first() {
                self.ctx.set_response_header(name.as_ref(), value.as_str());
            }
        }
        let (size, sha256) = tally.finish();
        Ok(Transfer { size, sha256, digest_verified: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rechunk_gives_exact_chunks_and_passes_errors() {
        let pieces = futures_util::stream::iter(
            [&b"abc"[..], b"defgh", b"", b"ij"].map(|piece| Ok::<_, Error>(Bytes::from_static(piece))),
        );
        let chunks: Vec<Bytes> = rechunk(pieces, 4).map(|chunk| chunk.unwrap()).collect().await;
        assert_eq!(chunks, [&b"abcd"[..], b"efgh", b"ij"]);
        let failing = futures_util::stream::iter([Ok(Bytes::from_static(b"ab")), Err(Error::unavailable("cut"))]);
        let chunks: Vec<Result<Bytes, Error>> = rechunk(failing, 4).collect().await;
        assert!(matches!(chunks.as_slice(), [Err(err)] if err.message() == "cut"), "{chunks:?}");
    }

    #[tokio::test]
    async fn readers_give_full_chunks() {
        let data: Vec<u8> = (0..10u8).collect();
        let chunks: Vec<Bytes> = reader_chunks(std::io::Cursor::new(data), 4).map(|chunk| chunk.unwrap()).collect().await;
        assert_eq!(chunks.iter().map(Bytes::len).collect::<Vec<_>>(), [4, 4, 2]);
        let exact: Vec<Bytes> = reader_chunks(std::io::Cursor::new(vec![1u8; 8]), 4).map(|c| c.unwrap()).collect().await;
        assert_eq!(exact.len(), 2);
    }

    #[test]
    fn verification_checks_size_and_digest_and_accepts_their_absence() {
        let mut tally = Tally::default();
        tally.add(b"hello");
        let sent = tally.trailers();
        assert_eq!(sent.get(CHUNKED_DIGEST).unwrap().as_str(), "sha-256=LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=");
        assert_eq!(sent.get(CHUNKED_SIZE).unwrap().as_str(), "5");
        assert!(tally.verify(Some(&sent)).unwrap().digest_verified);
        assert!(!tally.verify(None).unwrap().digest_verified);
        let mut other = Tally::default();
        other.add(b"hellO");
        for (name, value) in
            [(CHUNKED_DIGEST, other.trailers().get(CHUNKED_DIGEST).unwrap().to_string()), (CHUNKED_SIZE, "4".into())]
        {
            let mut wrong = sent.clone();
            wrong.insert(name, value.as_str());
            assert_eq!(tally.verify(Some(&wrong)).unwrap_err().code(), &crate::Code::DataLoss, "{name}");
        }
    }

    #[test]
    fn chunks_over_max_payload_are_refused() {
        let len = |chunk: Bytes| Ok(chunk.len() + 3);
        assert!(check_chunk_size(65536, 1 << 20, len).is_ok());
        let err = check_chunk_size(1 << 20, 1 << 20, len).unwrap_err();
        assert_eq!(err.code(), &crate::Code::InvalidArgument);
        assert!(err.message().contains("max_payload"), "{err}");
        assert!(check_chunk_size(0, 1 << 20, len).is_err());
    }
}
