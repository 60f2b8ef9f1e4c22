//! The caller's side of streams (PROTOCOL §9): open, ack (or a Go-plugin
//! server's first message), the request pump, and the response stream.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::status::StatusCode;
use bytes::Bytes;
use futures_util::future::Either;
use futures_util::{Stream, StreamExt};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument;

use super::interceptor::{ClientCall, ClientNext, Reply, Terminal};
use super::{Client, MethodSpec, Request, Response};
use crate::Code;
use crate::codec::Codec;
use crate::error::{Error, ErrorKind};
use crate::future::first;
use crate::headers;
use crate::stream::link::{Event, Outbound, Reader, ReaderPlan, TaskGuard, spawn_reader};
use crate::stream::wire::{self, Frame, name};
use crate::stream::{Ending, Outcome, StreamSettings, Streaming};
use crate::telemetry::CallSpan;

/// An acknowledged stream: where to send, what the server sends, and the
/// client interceptors waiting for its outcome (if there are any).
struct Opened {
    outbound: Arc<Outbound>,
    reader: Reader,
    deadline: Option<Instant>,
    interceptors: Option<Outcome>,
}

impl Client {
    /// Calls a server-streaming RPC: one request, then the responses as a
    /// [`Streaming`] (dropping it cancels the call).
    pub async fn server_streaming<C, Req, Resp, E>(
        &self,
        method: &MethodSpec,
        window: u32,
        request: Request<Req>,
    ) -> Result<Streaming<Resp, E>, Error>
    where
        C: Codec<Req> + Codec<Resp>,
        E: From<Error>,
    {
        let (message, call_headers, timeout) = request.into_parts();
        let mut call = self.call_span(method);
        let opened = match encode::<C, Req>(&message, method) {
            Ok(body) => in_span(&call, self.open_stream(method, window, call_headers, timeout, body, false)).await,
            Err(err) => Err(err),
        };
        let opened = opened_or_finish(opened, &mut call)?;
        Ok(self.responses::<C, Resp, E>(opened, window, None, call))
    }

    /// Calls a client-streaming RPC: sends `requests` (each waiting for the
    /// server's credit), then returns the server's one response.
    pub async fn client_streaming<C, Req, Resp, S>(
        &self,
        method: &MethodSpec,
        window: u32,
        requests: Request<S>,
    ) -> Result<Response<Resp>, Error>
    where
        C: Codec<Req> + Codec<Resp>,
        S: Stream<Item = Req> + Send + 'static,
        Req: Send + 'static,
    {
        let (requests, headers, timeout) = requests.into_parts();
        let source = Source { requests: requests.map(Ok), headers, timeout, trailers: None };
        self.client_streaming_from::<C, Req, Resp, _>(method, window, source).await
    }

    /// A client-streaming call from a [`Source`]: an item that fails cancels
    /// the stream (the server is told) and fails the call with its error; the
    /// half-close carries the source's trailing headers.
    pub(crate) async fn client_streaming_from<C, Req, Resp, S>(
        &self,
        method: &MethodSpec,
        window: u32,
        source: Source<S>,
    ) -> Result<Response<Resp>, Error>
    where
        C: Codec<Req> + Codec<Resp>,
        S: Stream<Item = Result<Req, Error>> + Send + 'static,
        Req: Send + 'static,
    {
        let call = self.call_span(method);
        let result = in_span(&call, self.client_streaming_call::<C, Req, Resp, S>(method, window, source)).await;
        if let Some(call) = call {
            call.finish(result.as_ref().err());
        }
        result
    }

    /// A client-streaming call, from its open to the server's response.
    async fn client_streaming_call<C, Req, Resp, S>(
        &self,
        method: &MethodSpec,
        window: u32,
        source: Source<S>,
    ) -> Result<Response<Resp>, Error>
    where
        C: Codec<Req> + Codec<Resp>,
        S: Stream<Item = Result<Req, Error>> + Send + 'static,
        Req: Send + 'static,
    {
        let Source { requests, headers: call_headers, timeout, trailers } = source;
        let opened = self.open_stream(method, window, call_headers, timeout, Bytes::new(), true).await?;
        let (failed_tx, failed) = oneshot::channel::<Error>();
        let _pump = pump::<C, Req, S>(opened.outbound.clone(), &opened.reader, requests, trailers, Some(failed_tx));
        let Opened { reader, deadline, interceptors, .. } = opened;
        let mut events = reader.inbox.events;
        let ending = async {
            loop {
                match events.recv().await {
                    Some(Event::End(ending)) => return ending,
                    Some(Event::Data(_)) => continue,
                    None => return Err(Error::unavailable("the stream closed without a result")),
                }
            }
        };
        // A request that could not be produced fails the call (the pump cancelled the stream).
        let failed = async {
            match failed.await {
                Ok(err) => Err(err),
                Err(_) => std::future::pending().await,
            }
        };
        let ending = async {
            match first(ending, failed).await {
                Either::Left(ending) | Either::Right(ending) => ending,
            }
        };
        let mut ending = within(deadline, ending).await;
        if let Some(mut interceptors) = interceptors {
            interceptors.report(ending, false);
            ending = interceptors.settle().await;
        }
        drop(reader.task);
        let (body, headers) = ending.map_err(|err| err.with_method(method.method))?;
        let message = <C as Codec<Resp>>::decode(body).map_err(|err| {
            Error::transport(ErrorKind::Decode, Code::Internal, format!("decoding the reply: {err}")).with_method(method.method)
        })?;
        Ok(Response::new(message, headers))
    }

    /// Calls a bidirectional RPC: sends `requests` as the server grants
    /// credit and returns the responses as a [`Streaming`] (dropping it
    /// cancels the call).
    pub async fn bidi_streaming<C, Req, Resp, E, S>(
        &self,
        method: &MethodSpec,
        window: u32,
        requests: Request<S>,
    ) -> Result<Streaming<Resp, E>, Error>
    where
        C: Codec<Req> + Codec<Resp>,
        E: From<Error>,
        S: Stream<Item = Req> + Send + 'static,
        Req: Send + 'static,
    {
        let (requests, call_headers, timeout) = requests.into_parts();
        let mut call = self.call_span(method);
        let opened = in_span(&call, self.open_stream(method, window, call_headers, timeout, Bytes::new(), false)).await;
        let opened = opened_or_finish(opened, &mut call)?;
        let pump = pump::<C, Req, _>(opened.outbound.clone(), &opened.reader, requests.map(Ok), None, None);
        Ok(self.responses::<C, Resp, E>(opened, window, Some(pump), call))
    }

    /// The client span of a stream call (PROTOCOL §11.2), `None` when
    /// nothing records calls.
    fn call_span(&self, method: &MethodSpec) -> Option<CallSpan> {
        CallSpan::start(self.telemetry_names(method), &self.subject(method.endpoint))
    }

    fn responses<C: Codec<Resp>, Resp, E: From<Error>>(
        &self,
        opened: Opened,
        window: u32,
        pump: Option<TaskGuard>,
        call: Option<CallSpan>,
    ) -> Streaming<Resp, E> {
        let window = opened.outbound.peer_has_flow_control().then_some(window);
        let Opened { reader, deadline, interceptors, .. } = opened;
        Streaming::new::<C>(reader.inbox, Some(reader.task), window).with_call(deadline, pump, interceptors, call)
    }

    /// Opens a stream through the client's interceptors: they see the open
    /// as a call (headers, timeout, the request of a server-streaming RPC)
    /// and may change it or refuse the call; their `next` settles with the
    /// stream's outcome (the end's body and trailing headers, or its error;
    /// `CANCELLED` when the caller drops the stream), and what the chain
    /// settles with is what the caller sees at the end. The chain runs in a
    /// task of its own, since the caller streams while it waits.
    async fn open_stream(
        &self,
        method: &MethodSpec,
        window: u32,
        call_headers: HeaderMap,
        call_timeout: Option<Duration>,
        body: Bytes,
        plain_is_result: bool,
    ) -> Result<Opened, Error> {
        let call = ClientCall {
            method: method.method,
            subject: self.subject(method.endpoint),
            headers: self.call_headers(&call_headers),
            // Streams may run long: no default timeout beyond the proto's (keepalives guard them).
            timeout: call_timeout.or(self.timeout).or(method.timeout),
            payload: body,
        };
        let with_method = |err: Error| err.with_method(method.method);
        if self.interceptors.is_empty() {
            return self.open_call(call, window, plain_is_result).await.map_err(with_method);
        }
        let (opened_tx, opened_rx) = oneshot::channel::<(Opened, oneshot::Sender<Ending>)>();
        let (settled_tx, settled_rx) = oneshot::channel::<Ending>();
        let opened_tx = Arc::new(Mutex::new(Some(opened_tx)));
        let open = {
            let client = self.clone();
            Terminal::Open(Arc::new(move |call| {
                let (client, opened_tx) = (client.clone(), opened_tx.clone());
                Box::pin(async move {
                    let Some(opened_tx) = opened_tx.lock().unwrap_or_else(PoisonError::into_inner).take() else {
                        return Err(Error::internal("a client interceptor opened the stream twice"));
                    };
                    let opened = client.open_call(call, window, plain_is_result).await?;
                    let (report_tx, report_rx) = oneshot::channel::<Ending>();
                    if opened_tx.send((opened, report_tx)).is_err() {
                        return Err(Error::cancelled("the caller went away while the stream opened"));
                    }
                    match report_rx.await {
                        Ok(Ok((payload, headers))) => Ok(Reply { payload, headers }),
                        Ok(Err(err)) => Err(err),
                        Err(_) => Err(Error::cancelled("the caller dropped the stream")),
                    }
                })
            }))
        };
        let chain = ClientNext::start(self.interceptors.clone(), open).run(call);
        // In the call's span (the current one), so the open carries its trace context.
        tokio::spawn(
            async move {
                let settled = chain.await.map(|reply| (reply.payload, reply.headers));
                let _ = settled_tx.send(settled);
            }
            .instrument(tracing::Span::current()),
        );
        match opened_rx.await {
            Ok((mut opened, report)) => {
                opened.interceptors = Some(Outcome::new(report, settled_rx));
                Ok(opened)
            }
            // The chain ended without opening: refused, failed to open, or answered by an interceptor.
            Err(_) => match settled_rx.await {
                Ok(Err(err)) => Err(with_method(err)),
                _ => Err(with_method(Error::internal("a client interceptor answered a stream open without opening the stream"))),
            },
        }
    }

    /// Sends the open and waits for the ack, or for the first message of a
    /// server that sends no ack (PROTOCOL §9.8).
    async fn open_call(&self, mut call: ClientCall, window: u32, plain_is_result: bool) -> Result<Opened, Error> {
        let settings = self.stream_settings;
        let deadline = call.timeout.map(|timeout| Instant::now() + timeout);
        let inbox = self.nats.new_inbox();
        let mut subscriber = self
            .nats
            .subscribe(inbox.clone())
            .await
            .map_err(|err| Error::unavailable(format!("subscribing the stream inbox: {err}")))?;
        call.headers.insert(name::REPLY_TO, inbox.as_str());
        call.headers.insert(name::CREDIT, window.to_string());
        call.headers.insert(name::BATCH, "true");
        crate::telemetry::inject_current(&mut call.headers);
        if let Some(timeout) = call.timeout {
            call.headers.insert(headers::name::TIMEOUT, headers::encode_timeout(timeout));
        }
        self.nats
            .publish_with_reply_and_headers(call.subject, inbox.clone(), call.headers, call.payload)
            .await
            .map_err(|err| Error::unavailable(format!("sending the stream open: {err}")))?;
        // No deadline: a live server acks at once, a missing one is reported by NATS (503).
        let ack_wait = deadline.unwrap_or_else(|| Instant::now() + settings.peer_timeout);
        let first_message = match tokio::time::timeout_at(ack_wait, subscriber.next()).await {
            Ok(Some(message)) => message,
            Ok(None) => return Err(Error::unavailable("the stream inbox closed before the ack")),
            Err(_) => {
                return Err(Error::transport(ErrorKind::Timeout, Code::DeadlineExceeded, "no stream ack before the deadline"));
            }
        };
        if first_message.status == Some(StatusCode::NO_RESPONDERS) {
            return Err(Error::transport(ErrorKind::NoResponders, Code::Unavailable, "no responders on the subject"));
        }
        let (outbound, window, first) = match wire::classify(first_message.clone())? {
            Frame::Ack { inbox, credit, batches } => {
                (Outbound::new(self.nats.clone(), inbox.into(), credit, batches), credit.map(|_| window), None)
            }
            Frame::End(Err(err)) => return Err(err),
            // A server without acks (a Go-plugin server-streaming one): its first message is the stream's.
            _ => (Outbound::new(self.nats.clone(), inbox.clone().into(), None, false), None, Some(first_message)),
        };
        let messages = futures_util::stream::iter(first).chain(subscriber);
        let plan = ReaderPlan { window, plain_is_result, settings };
        let reader = spawn_reader(messages, outbound.clone(), plan);
        Ok(Opened { outbound, reader, deadline, interceptors: None })
    }

    /// Sets the keepalive and silence limits of this client's streams
    /// (PROTOCOL §9.5; 5 s and 20 s by default).
    pub fn with_stream_settings(mut self, settings: StreamSettings) -> Self {
        self.stream_settings = settings;
        self
    }
}

fn encode<C: Codec<T>, T>(message: &T, method: &MethodSpec) -> Result<Bytes, Error> {
    <C as Codec<T>>::encode(message).map_err(|err| {
        Error::transport(ErrorKind::Encode, Code::Internal, format!("encoding the request: {err}")).with_method(method.method)
    })
}

/// The messages of a client-streaming call with what its half-close carries.
pub(crate) struct Source<S> {
    /// The messages; an error cancels the stream and fails the call.
    pub(crate) requests: S,
    /// The open's headers.
    pub(crate) headers: HeaderMap,
    /// The call's timeout.
    pub(crate) timeout: Option<Duration>,
    /// The half-close's trailing headers, asked for once `requests` is exhausted.
    pub(crate) trailers: Option<Trailers>,
}

/// Trailing headers computed once every request was sent.
pub(crate) type Trailers = Box<dyn FnOnce() -> HeaderMap + Send>;

/// Sends `requests` to the server as it grants credit, then the end (with
/// `trailers`); stops when the server aborts the stream or the guard is
/// dropped. A request that fails cancels the stream and goes to `failed`.
fn pump<C, Req, S>(
    outbound: Arc<Outbound>,
    reader: &Reader,
    requests: S,
    trailers: Option<Trailers>,
    failed: Option<oneshot::Sender<Error>>,
) -> TaskGuard
where
    C: Codec<Req>,
    S: Stream<Item = Result<Req, Error>> + Send + 'static,
    Req: Send + 'static,
{
    let mut aborted = reader.aborted.clone();
    TaskGuard::spawn(async move {
        let send_all = async {
            let mut requests = std::pin::pin!(requests);
            while let Some(request) = requests.next().await {
                let request = match request {
                    Ok(request) => request,
                    Err(err) => {
                        outbound.send_cancel().await;
                        if let Some(failed) = failed {
                            let _ = failed.send(err.clone());
                        }
                        return Err(err);
                    }
                };
                let payload = <C as Codec<Req>>::encode(&request)
                    .map_err(|err| Error::invalid_argument(format!("encoding a stream message: {err}")))?;
                outbound.send_data(payload).await?;
            }
            let mut headers = trailers.map(|trailers| trailers()).unwrap_or_default();
            headers.insert(name::END, "true");
            outbound.publish(headers, Bytes::new()).await
        };
        if let Either::Left(Err(err)) = first(send_all, Reader::aborted(&mut aborted)).await {
            tracing::debug!(error = %err, "sending the request stream stopped");
        }
    })
}

/// Runs `work` in the call's span, if there is one.
async fn in_span<F: std::future::Future>(call: &Option<CallSpan>, work: F) -> F::Output {
    match call {
        Some(call) => work.instrument(call.span().clone()).await,
        None => work.await,
    }
}

/// A stream that failed to open ends its call there.
fn opened_or_finish(opened: Result<Opened, Error>, call: &mut Option<CallSpan>) -> Result<Opened, Error> {
    if let Err(err) = &opened
        && let Some(call) = call.take()
    {
        call.finish(Some(err));
    }
    opened
}

/// `work`, failed with `DEADLINE_EXCEEDED` at `deadline`.
async fn within<T>(deadline: Option<Instant>, work: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, Error> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, work).await.unwrap_or_else(|_| {
            Err(Error::transport(ErrorKind::Timeout, Code::DeadlineExceeded, "the stream's deadline passed"))
        }),
        None => work.await,
    }
}
