//! Streams (PROTOCOL §9): what a streaming handler or caller holds.
//!
//! - [`Streaming`]: the messages the peer sends, as a [`Stream`] of
//!   results; consuming them grants the peer more credit.
//! - [`ResponseSender`]: sends a handler's responses, waiting for the
//!   caller's credit.
//!
//! The wire (open, ack, sequence numbers, ends, credit, keepalives,
//! cancel) is handled underneath, the same in every language.

pub(crate) mod link;
pub mod wire;

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::{oneshot, watch};

use crate::codec::Codec;
use crate::error::Error;
use crate::telemetry::CallSpan;
use link::{Command, Event, Inbox, Outbound, Reader, TaskGuard};

/// Which side of an RPC streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// One request, a stream of responses.
    Server,
    /// A stream of requests, one response.
    Client,
    /// Streams both ways.
    Bidirectional,
}

impl StreamKind {
    /// `server`, `client` or `bidirectional`: the value of the
    /// [`STREAM_METADATA_KEY`] endpoint metadata in ADR-32 INFO.
    pub const fn as_str(self) -> &'static str {
        match self {
            StreamKind::Server => "server",
            StreamKind::Client => "client",
            StreamKind::Bidirectional => "bidirectional",
        }
    }
}

/// The endpoint metadata key that marks a streaming endpoint in ADR-32
/// INFO, with its [`StreamKind`] as value (PROTOCOL §9).
pub const STREAM_METADATA_KEY: &str = "nats_micro.stream";

/// The flow-control window when the proto sets no `max_inflight`.
pub const DEFAULT_WINDOW: u32 = 64;

/// Keepalive and silence limits of a stream (PROTOCOL §9.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamSettings {
    /// Send a keepalive after this long without sending anything (5 s).
    pub keepalive: Duration,
    /// Consider the peer gone after this long without hearing from it (20 s).
    pub peer_timeout: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings { keepalive: Duration::from_secs(5), peer_timeout: Duration::from_secs(20) }
    }
}

/// The messages a peer sends on a stream: a [`Stream`] of `Result<T, E>`
/// that ends after the peer's end (or after the first error). Reading
/// grants the peer more credit, so a slow reader slows the sender down.
/// Dropping it early cancels the stream (a caller) or ignores the rest (a
/// handler).
///
/// ```no_run
/// # async fn demo(mut numbers: nats_micro_runtime::Streaming<i64>) -> Result<(), nats_micro_runtime::Error> {
/// let mut total = 0;
/// while let Some(n) = numbers.message().await? {
///     total += n;
/// }
/// # let _ = total; Ok(()) }
/// ```
pub struct Streaming<T, E = Error> {
    inbox: Inbox,
    /// The reader task, when this end owns it (a caller's response stream)
    /// and the stream is not over: dropping it then cancels the stream.
    task: Option<TaskGuard>,
    decode: fn(Bytes) -> Result<T, Error>,
    window: Option<u32>,
    consumed: u32,
    trailers: Option<HeaderMap>,
    finished: bool,
    /// A caller's deadline for the whole stream.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A bidi caller's request pump, stopped with the stream.
    _pump: Option<TaskGuard>,
    /// A caller's client interceptors, waiting for the stream's outcome.
    interceptors: Option<Outcome>,
    /// A caller's client span, finished with the stream's outcome.
    call: Option<CallSpan>,
    _error: PhantomData<fn() -> E>,
}

/// How a stream ended: the peer's end (body and trailing headers) or the
/// stream's error.
pub(crate) type Ending = Result<(Bytes, HeaderMap), Error>;

/// Hands a caller's stream ending to its client interceptors (which wait
/// for it as their call's reply) and takes back what they settle with:
/// that is what the caller sees. Dropped unreported, the interceptors see
/// the call cancelled.
#[derive(Debug)]
pub(crate) struct Outcome {
    report: Option<oneshot::Sender<Ending>>,
    settled: oneshot::Receiver<Ending>,
    /// The ending as reported, in case the interceptors' task is gone.
    reported: Option<Ending>,
    /// The ending was found here (deadline, a message that does not
    /// decode): the peer is still told, on drop.
    local: bool,
}

impl Outcome {
    pub(crate) fn new(report: oneshot::Sender<Ending>, settled: oneshot::Receiver<Ending>) -> Outcome {
        Outcome { report: Some(report), settled, reported: None, local: false }
    }

    /// Passes the ending on; then [`Outcome::settle`] waits for the interceptors.
    pub(crate) fn report(&mut self, ending: Ending, local: bool) {
        if let Some(report) = self.report.take() {
            let _ = report.send(ending.clone());
        }
        self.reported = Some(ending);
        self.local = local;
    }

    fn reported(&self) -> bool {
        self.reported.is_some()
    }

    /// What the interceptors settled with (the reported ending if they are gone).
    fn poll_settled(&mut self, cx: &mut Context<'_>) -> Poll<Ending> {
        Pin::new(&mut self.settled).poll(cx).map(|settled| match settled {
            Ok(settled) => settled,
            Err(_) => self.reported.take().unwrap_or_else(|| Err(Error::internal("the stream's interceptors went away"))),
        })
    }

    /// Waits for what the interceptors settle with.
    pub(crate) async fn settle(&mut self) -> Ending {
        std::future::poll_fn(|cx| self.poll_settled(cx)).await
    }
}

impl<T, E> std::fmt::Debug for Streaming<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streaming").field("finished", &self.finished).finish_non_exhaustive()
    }
}

impl<T, E: From<Error>> Streaming<T, E> {
    /// Reads `inbox`; `task` is given when dropping this end must cancel the stream.
    pub(crate) fn new<C: Codec<T>>(inbox: Inbox, task: Option<TaskGuard>, window: Option<u32>) -> Self {
        Streaming {
            inbox,
            task,
            decode: |payload| {
                <C as Codec<T>>::decode(payload)
                    .map_err(|err| Error::invalid_argument(format!("a stream message does not decode: {err}")))
            },
            window,
            consumed: 0,
            trailers: None,
            finished: false,
            deadline: None,
            _pump: None,
            interceptors: None,
            call: None,
            _error: PhantomData,
        }
    }

    /// A caller's stream: failed at `deadline`, owning the request pump,
    /// and ending the call's span.
    pub(crate) fn with_call(
        mut self,
        deadline: Option<tokio::time::Instant>,
        pump: Option<TaskGuard>,
        interceptors: Option<Outcome>,
        call: Option<CallSpan>,
    ) -> Self {
        self.deadline = deadline.map(|deadline| Box::pin(tokio::time::sleep_until(deadline)));
        self._pump = pump;
        self.interceptors = interceptors;
        self.call = call;
        self
    }

    /// The next message, `None` after the peer's end.
    pub async fn message(&mut self) -> Result<Option<T>, E> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await.transpose()
    }

    /// The trailing headers of the peer's end, once the stream has ended.
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_ref()
    }

    /// Ends the stream with `ending`: at once (`Some`), or, when client
    /// interceptors wait for the outcome, once they settled (`None`: poll
    /// again). A `local` ending (deadline, undecodable message) leaves the
    /// reader to tell the peer on drop; the peer's own end stops it.
    fn end(&mut self, ending: Ending, local: bool) -> Option<Option<Result<T, E>>> {
        match &mut self.interceptors {
            Some(interceptors) => {
                interceptors.report(ending, local);
                None
            }
            None => Some(self.conclude(ending, local)),
        }
    }

    fn conclude(&mut self, ending: Ending, local: bool) -> Option<Result<T, E>> {
        self.finished = true;
        if !local {
            self.task = None;
        }
        if let Some(call) = self.call.take() {
            call.finish(ending.as_ref().err());
        }
        match ending {
            Ok((_, trailers)) => {
                self.trailers = Some(trailers);
                None
            }
            Err(err) => Some(Err(err.into())),
        }
    }
}

impl<T, E: From<Error>> Stream for Streaming<T, E> {
    type Item = Result<T, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            if let Some(interceptors) = this.interceptors.as_mut() {
                // Once the ending is reported, wait for the interceptors; an
                // interceptor that settles before (a timeout of its own) ends
                // the stream early, and the peer is told on drop.
                let settled = match interceptors.poll_settled(cx) {
                    Poll::Ready(settled) => Some((settled, !interceptors.reported() || interceptors.local)),
                    Poll::Pending if interceptors.reported() => return Poll::Pending,
                    Poll::Pending => None,
                };
                if let Some((settled, local)) = settled {
                    this.interceptors = None;
                    return Poll::Ready(this.conclude(settled, local));
                }
            }
            if let Some(deadline) = this.deadline.as_mut()
                && deadline.as_mut().poll(cx).is_ready()
            {
                // Ended by the deadline: the peer is told (cancel) as on drop.
                this.deadline = None;
                let err =
                    Error::transport(crate::ErrorKind::Timeout, crate::Code::DeadlineExceeded, "the stream's deadline passed");
                match this.end(Err(err), true) {
                    Some(item) => return Poll::Ready(item),
                    None => continue,
                }
            }
            let (ending, local) = match std::task::ready!(this.inbox.events.poll_recv(cx)) {
                None => (Err(Error::unavailable("the stream closed without an end")), false),
                Some(Event::End(ending)) => (ending, false),
                Some(Event::Data(payload)) => {
                    if let Some(window) = this.window {
                        this.consumed += 1;
                        if this.consumed >= (window / 2).max(1) {
                            let _ = this.inbox.commands.send(Command::Grant(this.consumed));
                            this.consumed = 0;
                        }
                    }
                    match (this.decode)(payload) {
                        Ok(message) => return Poll::Ready(Some(Ok(message))),
                        // The stream is over; a caller still tells the server (on drop).
                        Err(err) => (Err(err), true),
                    }
                }
            };
            if let Some(item) = this.end(ending, local) {
                return Poll::Ready(item);
            }
        }
    }
}

impl<T, E> Drop for Streaming<T, E> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.finish(Some(&Error::cancelled("the caller dropped the stream")));
        }
        if let Some(task) = self.task.take() {
            // The reader tells the peer, then stops; it owns the subscription until then.
            let _ = self.inbox.commands.send(Command::Cancel);
            task.detach();
        }
    }
}

/// Sends a handler's responses to the caller, in order, each waiting for
/// the caller's credit (so a slow caller slows the handler down instead of
/// filling memory). Cheap to clone.
///
/// ```no_run
/// # async fn demo(responses: nats_micro_runtime::ResponseSender<i64>) -> Result<(), nats_micro_runtime::Error> {
/// for n in 1..=5 {
///     responses.send(n).await?; // fails once the caller is gone: stop then
/// }
/// # Ok(()) }
/// ```
pub struct ResponseSender<T> {
    outbound: Arc<Outbound>,
    aborted: Option<watch::Receiver<Option<Error>>>,
    encode: fn(&T) -> Result<Bytes, Error>,
}

impl<T> Clone for ResponseSender<T> {
    fn clone(&self) -> Self {
        ResponseSender { outbound: self.outbound.clone(), aborted: self.aborted.clone(), encode: self.encode }
    }
}

impl<T> std::fmt::Debug for ResponseSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseSender").field("outbound", &self.outbound).finish_non_exhaustive()
    }
}

impl<T> ResponseSender<T> {
    pub(crate) fn new<C: Codec<T>>(outbound: Arc<Outbound>, aborted: Option<watch::Receiver<Option<Error>>>) -> Self {
        ResponseSender {
            outbound,
            aborted,
            encode: |message| {
                <C as Codec<T>>::encode(message)
                    .map_err(|err| Error::from_internal(std::io::Error::other(format!("encoding a stream message: {err}"))))
            },
        }
    }

    /// The connection's `max_payload` (0: unknown).
    pub(crate) fn max_payload(&self) -> usize {
        self.outbound.max_payload()
    }

    /// The size of `message` once encoded.
    pub(crate) fn encoded_len(&self, message: &T) -> Result<usize, Error> {
        (self.encode)(message).map(|body| body.len())
    }

    /// Sends one message once the caller has credit for it. Fails when the
    /// caller cancelled or went away, or the message is over the server's
    /// `max_payload` (`RESOURCE_EXHAUSTED`; the stream stays open).
    pub async fn send(&self, message: T) -> Result<(), Error> {
        let payload = (self.encode)(&message)?;
        match &self.aborted {
            Some(aborted) => {
                let mut aborted = aborted.clone();
                if let Some(reason) = aborted.borrow().clone() {
                    return Err(reason);
                }
                match crate::future::first(self.outbound.send_data(payload), Reader::aborted(&mut aborted)).await {
                    futures_util::future::Either::Left(sent) => sent,
                    futures_util::future::Either::Right(reason) => Err(reason),
                }
            }
            None => self.outbound.send_data(payload).await,
        }
    }
}
