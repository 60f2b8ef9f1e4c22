//! The server side of streams (PROTOCOL §9): the open as the endpoint
//! admitted it, the session a handler runs in (ack, reader, sender), and
//! the endpoint handlers of the three streaming kinds.
//!
//! A stream endpoint goes through the same path as a unary one: admission,
//! interceptors (they see the open and the outcome), deadline, panic guard
//! and statistics. Its handler publishes the ack and the stream messages;
//! the endpoint sends the end (the "reply") when the handler returns.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use futures_util::future::Either;
use tokio::sync::watch;

use super::interceptor::EndpointHandler;
use crate::codec::Codec;
use crate::context::RequestContext;
use crate::error::Error;
use crate::future::{BoxFuture, first};
use crate::stream::link::{Outbound, Reader, ReaderPlan, spawn_reader};
use crate::stream::wire::name;
use crate::stream::{ResponseSender, StreamKind, StreamSettings, Streaming};

/// An admitted stream open, handed to the handler through its context.
#[derive(Debug)]
pub(crate) struct StreamOpen {
    pub(crate) nats: async_nats::Client,
    /// `Reply-To`: where stream messages go.
    pub(crate) caller: Subject,
    /// The open's reply subject: where the ack goes (`None`: no ack, §9.8).
    pub(crate) ack_to: Option<Subject>,
    /// The caller's window (`None`: a caller without flow control).
    pub(crate) caller_window: Option<u32>,
    /// The caller accepts batches (PROTOCOL §9.9).
    pub(crate) caller_batches: bool,
    /// The endpoint's window for the caller's messages.
    pub(crate) window: u32,
    pub(crate) settings: StreamSettings,
    /// Set once the ack is out: until then the stream's end (a refusal by
    /// an interceptor, a failed open) goes where the ack would have gone.
    pub(crate) acked: AtomicBool,
    /// The sender towards the caller, once the handler runs: the end waits
    /// for its queued data (PROTOCOL §9.9), however the handler finished.
    pub(crate) outbound: OnceLock<Arc<Outbound>>,
}

/// A running stream on the server: the sender towards the caller and,
/// once acked, the reader of the server's inbox (alive until the handler
/// returns, whatever the handler does with the request stream).
struct Session {
    outbound: Arc<Outbound>,
    reader: Option<Reader>,
    /// The window offered for the caller's messages (`None`: a caller without flow control).
    inbound_window: Option<u32>,
}

impl Session {
    /// Subscribes the server's inbox and acks the open (when it can be
    /// acked); a caller that streams needs both.
    async fn open(ctx: &RequestContext, caller_streams: bool) -> Result<Session, Error> {
        let open = ctx.stream_open().ok_or_else(|| Error::internal("a stream handler ran without a stream open"))?;
        let outbound = Outbound::new(open.nats.clone(), open.caller.clone(), open.caller_window, open.caller_batches);
        let _ = open.outbound.set(outbound.clone());
        // Only a caller that announced credit speaks flow control (and gets credit back).
        let inbound_window = open.caller_window.map(|_| open.window);
        let Some(ack_to) = open.ack_to.clone() else {
            if caller_streams {
                return Err(Error::invalid_argument("a stream open that sends requests needs a reply subject for its ack"));
            }
            return Ok(Session { outbound, reader: None, inbound_window });
        };
        let inbox = open.nats.new_inbox();
        let subscriber = open
            .nats
            .subscribe(inbox.clone())
            .await
            .map_err(|err| Error::unavailable(format!("subscribing the stream inbox: {err}")))?;
        let plan = ReaderPlan { window: inbound_window, plain_is_result: false, settings: open.settings };
        let reader = spawn_reader(subscriber, outbound.clone(), plan);
        let mut headers = HeaderMap::new();
        headers.insert(name::INBOX, inbox.as_str());
        headers.insert(name::CREDIT, open.window.to_string());
        headers.insert(name::BATCH, "true");
        open.nats
            .publish_with_headers(ack_to, headers, Bytes::new())
            .await
            .map_err(|err| Error::unavailable(format!("acknowledging the stream: {err}")))?;
        open.acked.store(true, Ordering::Relaxed);
        Ok(Session { outbound, reader: Some(reader), inbound_window })
    }
}

/// Runs `work` until it finishes or the caller aborts the stream.
async fn until_aborted<T>(
    aborted: Option<watch::Receiver<Option<Error>>>,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match aborted {
        None => work.await,
        Some(mut aborted) => match first(work, Reader::aborted(&mut aborted)).await {
            Either::Left(result) => result,
            Either::Right(reason) => Err(reason),
        },
    }
}

/// What a typed streaming call gets: the decoded request (server-streaming
/// only), the caller's messages (client-streaming and bidi) and the
/// response sender (server-streaming and bidi).
#[derive(Debug)]
pub struct StreamCall<Req, Resp, E> {
    /// The request of a server-streaming call.
    pub request: Option<Req>,
    /// The caller's messages (client-streaming and bidi), failing with `E`.
    pub requests: Option<Streaming<Req, E>>,
    /// Where responses go (server-streaming and bidi).
    pub responses: ResponseSender<Resp>,
}

/// Builds the handler of one streaming endpoint: `call` gets the
/// [`StreamCall`] once the open is acked and returns the response of a
/// client-streaming call (`None` for the other shapes).
pub fn stream_handler<C, Req, Resp, E, F, Fut>(shape: StreamKind, call: F) -> Arc<dyn EndpointHandler>
where
    C: Codec<Req> + Codec<Resp>,
    Req: Send + 'static,
    Resp: Send + 'static,
    E: From<Error> + Send + 'static,
    F: Fn(RequestContext, StreamCall<Req, Resp, E>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Resp>, Error>> + Send + 'static,
{
    Arc::new(StreamEndpoint::<C, Req, Resp, E, F> { shape, call: Arc::new(call), types: PhantomData })
}

struct StreamEndpoint<C, Req, Resp, E, F> {
    shape: StreamKind,
    call: Arc<F>,
    types: PhantomData<fn(C, Req, E) -> Resp>,
}

impl<C, Req, Resp, E, F, Fut> EndpointHandler for StreamEndpoint<C, Req, Resp, E, F>
where
    C: Codec<Req> + Codec<Resp>,
    Req: Send + 'static,
    Resp: Send + 'static,
    E: From<Error> + Send + 'static,
    F: Fn(RequestContext, StreamCall<Req, Resp, E>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Resp>, Error>> + Send + 'static,
{
    fn call(&self, ctx: RequestContext, payload: Bytes) -> BoxFuture<Result<Bytes, Error>> {
        let shape = self.shape;
        let request = match shape {
            StreamKind::Server => match <C as Codec<Req>>::decode(payload) {
                Ok(request) => Some(request),
                Err(err) => {
                    let err = Error::malformed_request(ctx.method(), &err);
                    return Box::pin(std::future::ready(Err(err)));
                }
            },
            StreamKind::Client | StreamKind::Bidirectional => None,
        };
        let call = self.call.clone();
        Box::pin(async move {
            let caller_streams = shape != StreamKind::Server;
            let session = Session::open(&ctx, caller_streams).await?;
            let (aborted, requests, _task) = match session.reader {
                Some(reader) => {
                    let requests = caller_streams.then(|| Streaming::new::<C>(reader.inbox, None, session.inbound_window));
                    (Some(reader.aborted), requests, Some(reader.task))
                }
                None => (None, None, None),
            };
            let responses = ResponseSender::new::<C>(session.outbound.clone(), aborted.clone());
            let response = until_aborted(aborted, call(ctx, StreamCall { request, requests, responses })).await?;
            match response {
                Some(response) if shape == StreamKind::Client => <C as Codec<Resp>>::encode(&response)
                    .map_err(|err| Error::from_internal(std::io::Error::other(format!("encoding the response: {err}")))),
                _ => Ok(Bytes::new()),
            }
        })
    }

    fn is_stream(&self) -> bool {
        true
    }
}
