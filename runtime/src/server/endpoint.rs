//! One endpoint's request path: admission (reply policy, backlog bound,
//! deadline from arrival), the handler under its deadline and panic guard,
//! the reply, and the endpoint's statistics.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Poll;
use std::time::Duration;

use async_nats::{HeaderMap, Message, Subject, Subscriber};
use bytes::Bytes;
use futures_util::future::Either;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::discovery::{EndpointInfo, EndpointStats};
use super::interceptor::{EndpointHandler, ServerInterceptor, ServerNext};
use super::reply_policy::ReplyCheck;
use super::stream::StreamOpen;
use crate::code::CodeFormat;
use crate::context::{RequestContext, ResponseHeaders};
use crate::error::Error;
use crate::future::{BoxFuture, first};
use crate::headers;
use crate::status_body;
use crate::stream::StreamSettings;
use crate::stream::wire::{STREAM_CREDIT, announces_batches, name, parse_count};
use crate::telemetry::{self, Side, event};

/// One endpoint: its configuration, limits and statistics, for the life of
/// the service (whatever connection serves it).
pub(super) struct Endpoint {
    pub(super) info: EndpointInfo,
    /// The ADR-32 service name (the `service` field of events).
    pub(super) service: Arc<str>,
    /// The proto's full service name (spans and metrics).
    pub(super) proto_service: Arc<str>,
    pub(super) method: Arc<str>,
    pub(super) endpoint: Arc<str>,
    pub(super) timeout: Option<Duration>,
    pub(super) code_format: CodeFormat,
    pub(super) expose_internal_errors: bool,
    /// The delay of the RetryInfo a shed request is answered with.
    pub(super) retry_after_hint: Duration,
    pub(super) chain: Arc<[Arc<dyn ServerInterceptor>]>,
    pub(super) handler: Arc<dyn EndpointHandler>,
    pub(super) reply_check: Arc<ReplyCheck>,
    pub(super) stats: EndpointCounters,
    pub(super) permits: Arc<Semaphore>,
    pub(super) max_concurrency: usize,
    pub(super) pending_msg_limit: Option<usize>,
    pub(super) pending_bytes_limit: Option<usize>,
    pub(super) queued: AtomicUsize,
    pub(super) queued_bytes: AtomicUsize,
    /// Keepalive and silence limits of the endpoint's streams (if it streams).
    pub(super) stream_settings: StreamSettings,
    /// The flow-control window of the endpoint's streams.
    pub(super) window: u32,
}

/// An endpoint served on one connection: what every request path needs.
pub(super) struct Serving {
    pub(super) endpoint: Arc<Endpoint>,
    pub(super) nats: async_nats::Client,
    pub(super) cancel: watch::Receiver<bool>,
}

impl Serving {
    /// Resolves once [`Service::stop`] gives up waiting (or the service is gone).
    async fn cancelled(&self) {
        let mut cancel = self.cancel.clone();
        let _ = cancel.wait_for(|cancelled| *cancelled).await;
    }
}

#[derive(Default)]
pub(super) struct EndpointCounters {
    requests: AtomicU64,
    errors: AtomicU64,
    processing_nanos: AtomicU64,
    /// Requests answered at once because the backlog was full (PROTOCOL §5).
    shed: AtomicU64,
    last_error: Mutex<String>,
}

impl EndpointCounters {
    fn record(&self, elapsed: Duration, error: Option<&Error>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.processing_nanos.fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        if let Some(error) = error {
            self.errors.fetch_add(1, Ordering::Relaxed);
            *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = format!("{}:{}", error.code(), error.message());
        }
    }

    /// The endpoint's STATS entry; `persist_failures` for a persisting endpoint.
    pub(super) fn snapshot(&self, info: &EndpointInfo, persist_failures: Option<u64>) -> EndpointStats {
        let num_requests = self.requests.load(Ordering::Relaxed);
        let processing_time = self.processing_nanos.load(Ordering::Relaxed);
        EndpointStats {
            name: info.name.clone(),
            subject: info.subject.clone(),
            queue_group: info.queue_group.clone(),
            num_requests,
            num_errors: self.errors.load(Ordering::Relaxed),
            last_error: self.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            processing_time,
            average_processing_time: processing_time.checked_div(num_requests).unwrap_or(0),
            data: Some(match persist_failures {
                None => serde_json::json!({ "shed": self.shed.load(Ordering::Relaxed) }),
                Some(failures) => serde_json::json!({ "shed": self.shed.load(Ordering::Relaxed), "persist_failures": failures }),
            }),
        }
    }
}

impl Endpoint {
    /// Where a request was, for the §11.4 events.
    fn at<'a>(&'a self, subject: &'a str) -> event::At<'a> {
        event::At { service: &self.service, endpoint: &self.endpoint, subject }
    }

    /// Records a request's outcome: statistics, span, metrics.
    fn finish(&self, route: &Route, elapsed: Duration, error: Option<&Error>) {
        self.stats.record(elapsed, error);
        let names = telemetry::Names { proto_service: &self.proto_service, method: &self.method, endpoint: &self.endpoint };
        telemetry::finish(&route.span, Side::Server, names, elapsed, error);
    }
}

/// Where the answers to one request go. A unary request is answered on
/// its reply subject. A stream open (PROTOCOL §9.2) is ended on its
/// `Reply-To`, and refused on its reply subject if it has one.
struct Route {
    /// Where the reply (a stream's end) goes.
    reply_to: Option<Subject>,
    /// The open's own reply subject (a stream's ack goes there).
    ack_to: Option<Subject>,
    /// Answers are stream ends (`Nats-Stream-End: true`).
    stream: bool,
    /// The request's server span (disabled when no subscriber wants it).
    span: tracing::Span,
}

impl Route {
    fn unary(message: &Message) -> Route {
        Route { reply_to: message.reply.clone(), ack_to: None, stream: false, span: tracing::Span::none() }
    }

    fn stream(message: &Message) -> Route {
        let reply_to = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(name::REPLY_TO))
            .map(|value| Subject::from(value.as_str()))
            .or_else(|| message.reply.clone());
        Route { reply_to, ack_to: message.reply.clone(), stream: true, span: tracing::Span::none() }
    }

    /// Where a refusal before the handler runs goes: a stream open's reply
    /// subject if it has one, else where its end would go.
    fn refusal_to(&self) -> Option<Subject> {
        self.ack_to.clone().or_else(|| self.reply_to.clone())
    }
}

/// When a request arrived and when its caller stops waiting.
#[derive(Clone, Copy)]
struct Arrival {
    received: Instant,
    /// The earlier of arrival + the caller's budget and arrival + the server's timeout.
    deadline: Option<Instant>,
}

/// Reads requests until stopped, never waiting for a handler slot (so that
/// a request's arrival is when it is read and the subscription never backs
/// up): each runs at once when a slot is free, waits in a bounded backlog
/// otherwise, and is refused beyond it.
pub(super) async fn serve_endpoint(serving: Arc<Serving>, mut subscriber: Subscriber, mut stop: watch::Receiver<bool>) {
    let endpoint = &serving.endpoint;
    let stopped = 'serving: {
        // One wait for the stop, polled after the subscription on every turn: set
        // up once for the life of the endpoint, not once per request.
        let mut stopped = std::pin::pin!(async {
            let _ = stop.wait_for(|stopped| *stopped).await;
        });
        loop {
            let next = std::future::poll_fn(|cx| match subscriber.poll_next_unpin(cx) {
                Poll::Ready(message) => Poll::Ready(Some(message)),
                Poll::Pending => stopped.as_mut().poll(cx).map(|()| None),
            })
            .await;
            match next {
                Some(Some(message)) => dispatch(&serving, message).await,
                Some(None) => break 'serving false,
                None => break 'serving true,
            }
        }
    };
    if stopped {
        // Stop taking requests; what was delivered already is still served.
        match subscriber.drain().await {
            Ok(()) => {
                while let Some(message) = subscriber.next().await {
                    dispatch(&serving, message).await;
                }
            }
            Err(err) => tracing::warn!(error = %err, endpoint = %endpoint.endpoint, "draining endpoint"),
        }
    }
    // Wait for the requests running and waiting (those wait ahead of this in the semaphore's queue).
    let _ = endpoint.permits.acquire_many(u32::try_from(endpoint.max_concurrency).unwrap_or(u32::MAX)).await;
}

async fn dispatch(serving: &Arc<Serving>, message: Message) {
    let received = Instant::now();
    let endpoint = &serving.endpoint;
    let mut route = if endpoint.handler.is_stream() { Route::stream(&message) } else { Route::unary(&message) };
    let budget = message.headers.as_ref().and_then(headers::request_budget);
    let limit = match (budget, endpoint.timeout) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    route.span = telemetry::server_span(telemetry::ServerRequest {
        proto_service: &endpoint.proto_service,
        method: &endpoint.method,
        endpoint: &endpoint.endpoint,
        subject: message.subject.as_str(),
        headers: message.headers.as_ref(),
        deadline: limit,
    });
    let refusal = endpoint.reply_check.refusal(route.reply_to.as_ref()).or_else(|| {
        // A stream open's reply subject (for the ack) must pass as well, when it differs.
        route
            .ack_to
            .as_ref()
            .filter(|ack| Some(*ack) != route.reply_to.as_ref())
            .and_then(|ack| endpoint.reply_check.refusal(Some(ack)))
    });
    if let Some(reason) = refusal {
        let reply = route.reply_to.as_ref().map_or("", |reply| reply.as_str());
        route.span.in_scope(|| event::reply_refused(endpoint.at(&message.subject), reply, &reason));
        endpoint.finish(&route, received.elapsed(), Some(&Error::permission_denied(reason)));
        return;
    }
    let arrival = Arrival { received, deadline: limit.map(|limit| received + limit) };
    if let Ok(permit) = endpoint.permits.clone().try_acquire_owned() {
        serve_now(serving.clone(), message, route, arrival, permit).await;
        return;
    }
    let size = message.length;
    let queued = endpoint.queued.load(Ordering::Relaxed);
    let over_msgs = endpoint.pending_msg_limit.is_some_and(|limit| queued >= limit);
    let over_bytes =
        endpoint.pending_bytes_limit.is_some_and(|limit| endpoint.queued_bytes.load(Ordering::Relaxed) + size > limit);
    if over_msgs || over_bytes {
        endpoint.stats.shed.fetch_add(1, Ordering::Relaxed);
        route.span.in_scope(|| event::request_shed(endpoint.at(&message.subject), queued));
        let err = Error::resource_exhausted(format!("endpoint {} is overloaded", endpoint.endpoint))
            .with_retry_info(endpoint.retry_after_hint);
        reply(serving, &route, route.refusal_to(), Err(err), None, received).await;
        return;
    }
    endpoint.queued.fetch_add(1, Ordering::Relaxed);
    endpoint.queued_bytes.fetch_add(size, Ordering::Relaxed);
    let serving = serving.clone();
    tokio::spawn(async move {
        let endpoint = &serving.endpoint;
        let permit = match first(serving.cancelled(), endpoint.permits.clone().acquire_owned()).await {
            Either::Left(()) => None,
            Either::Right(permit) => permit.ok(),
        };
        endpoint.queued.fetch_sub(1, Ordering::Relaxed);
        endpoint.queued_bytes.fetch_sub(size, Ordering::Relaxed);
        match permit {
            Some(permit) => {
                handle(&serving, message, route, arrival).await;
                drop(permit);
            }
            None => {
                let err = Error::unavailable(format!("the service stopped before {} started", endpoint.method));
                reply(&serving, &route, route.refusal_to(), Err(err), None, received).await;
            }
        }
    });
}

/// Serves a request holding a slot: its handler is polled once right here,
/// and moved to a task of its own only if it has to wait. A handler that
/// finishes without waiting thus replies from the endpoint's task, so the
/// replies of a burst leave in one write instead of one system call each,
/// with no task, timer or cancellation watch set up for it; one that awaits
/// runs concurrently with the requests after it. (A handler's synchronous
/// part, up to its first `.await`, runs on the endpoint's task: keep
/// CPU-heavy work in `spawn_blocking`, as anywhere in tokio.) The reply of a
/// handler that finished at once is published from the endpoint's task too:
/// should the connection's outgoing queue be full, the endpoint waits for
/// room before reading on (as a shed request's reply always did), with the
/// NATS subscription's buffer behind it, instead of a task per waiting reply.
async fn serve_now(serving: Arc<Serving>, message: Message, route: Route, arrival: Arrival, permit: OwnedSemaphorePermit) {
    let Some(mut call) = start(&serving, message, route, arrival, false).await else { return };
    let first_poll = std::future::poll_fn(|cx| Poll::Ready(call.future.poll_unpin(cx))).await;
    match first_poll {
        Poll::Ready(outcome) => {
            call.finish(&serving, outcome).await;
            drop(permit);
        }
        Poll::Pending => {
            tokio::spawn(async move {
                call.run(&serving).await;
                drop(permit);
            });
        }
    }
}

/// Serves one request that waited for its slot: as [`serve_now`], but
/// already on a task of its own.
async fn handle(serving: &Serving, message: Message, route: Route, arrival: Arrival) {
    if let Some(call) = start(serving, message, route, arrival, true).await {
        call.run(serving).await;
    }
}

/// The handler's future: interceptors and handler, in the request's span
/// (so the handler's own calls are children of it), under a panic guard.
type CallFuture =
    futures_util::future::CatchUnwind<AssertUnwindSafe<tracing::instrument::Instrumented<BoxFuture<Result<Bytes, Error>>>>>;

/// A request whose handler has started: what its reply needs.
struct Call {
    future: CallFuture,
    route: Route,
    arrival: Arrival,
    response_headers: ResponseHeaders,
    stream: Option<Arc<StreamOpen>>,
}

/// Starts a request's handler (interceptors first), or answers it at once
/// (`None`): nothing starts after its deadline, and a stream open with a
/// malformed credit header is refused. A request that `waited` for its slot
/// is checked against the clock; one served on arrival only when its budget
/// is under a millisecond (a zero budget is spent on arrival, PROTOCOL §3.2).
async fn start(serving: &Serving, message: Message, route: Route, arrival: Arrival, waited: bool) -> Option<Call> {
    let endpoint = &serving.endpoint;
    // The endpoint's subject is the request's (endpoint subjects have no wildcards): no clone of the message's.
    let subject = endpoint.info.subject.as_str();
    let late = arrival.deadline.is_some_and(|deadline| {
        if waited || deadline < arrival.received + Duration::from_millis(1) { Instant::now() >= deadline } else { false }
    });
    if late {
        route.span.in_scope(|| event::deadline_dropped(endpoint.at(&message.subject), arrival.received.elapsed()));
        let err = Error::deadline_exceeded(format!("the deadline of {} passed before a handler was free", endpoint.method));
        reply(serving, &route, route.refusal_to(), Err(err), None, arrival.received).await;
        return None;
    }
    let headers = message.headers.unwrap_or_default();
    let mut ctx =
        RequestContext::new(endpoint.method.clone(), endpoint.endpoint.clone(), message.subject, headers, arrival.deadline)
            .with_service(endpoint.service.clone());
    let mut stream = None;
    if let Some(caller) = route.reply_to.clone().filter(|_| route.stream) {
        let caller_window = match ctx.header(STREAM_CREDIT).map(|value| (value, parse_count(value))) {
            None => None,
            Some((_, Some(window))) => Some(window),
            Some((value, None)) => {
                let err = Error::invalid_argument(format!("malformed {STREAM_CREDIT} {value:?} in the stream open"));
                route.span.in_scope(|| event::request_malformed(endpoint.at(subject), &err.message()));
                reply(serving, &route, route.refusal_to(), Err(err), None, arrival.received).await;
                return None;
            }
        };
        let open = Arc::new(StreamOpen {
            nats: serving.nats.clone(),
            caller,
            ack_to: route.ack_to.clone(),
            caller_window,
            caller_batches: announces_batches(ctx.headers()),
            window: endpoint.window,
            settings: endpoint.stream_settings,
            acked: AtomicBool::new(false),
            outbound: OnceLock::new(),
        });
        ctx = ctx.with_stream(open.clone());
        stream = Some(open);
    }
    let response_headers = ctx.response_headers_handle();
    let call = match endpoint.chain.is_empty() {
        // No interceptors: the handler directly, without the chain's reference counts.
        true => endpoint.handler.call(ctx, message.payload),
        false => ServerNext::start(endpoint.chain.clone(), endpoint.handler.clone()).run(ctx, message.payload),
    };
    let future = AssertUnwindSafe(call.instrument(route.span.clone())).catch_unwind();
    Some(Call { future, route, arrival, response_headers, stream })
}

impl Call {
    /// Runs the handler to its end, cancelled at the deadline or when a stop
    /// gives up waiting, then replies.
    async fn run(mut self, serving: &Serving) {
        let endpoint = &serving.endpoint;
        let (route, arrival) = (&self.route, self.arrival);
        let call = &mut self.future;
        let timed = async {
            match arrival.deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, call).await.unwrap_or_else(|_| {
                    let subject = endpoint.info.subject.as_str();
                    route.span.in_scope(|| event::deadline_dropped(endpoint.at(subject), arrival.received.elapsed()));
                    Ok(Err(Error::deadline_exceeded(format!("{} did not finish before its deadline", endpoint.method))))
                }),
                None => call.await,
            }
        };
        let outcome = match first(timed, serving.cancelled()).await {
            Either::Left(outcome) => outcome,
            Either::Right(()) => Ok(Err(Error::unavailable(format!("the service stopped before {} finished", endpoint.method)))),
        };
        self.finish(serving, outcome).await;
    }

    /// Replies with the handler's outcome (a panic is `INTERNAL`) and records it.
    async fn finish(self, serving: &Serving, outcome: std::thread::Result<Result<Bytes, Error>>) {
        let endpoint = &serving.endpoint;
        let subject = endpoint.info.subject.as_str();
        let route = &self.route;
        let panicked = outcome.is_err();
        let result = outcome.unwrap_or_else(|panic| {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic with no message".to_owned());
            route.span.in_scope(|| event::handler_panicked(endpoint.at(subject), &detail));
            Err(Error::from_internal(std::io::Error::other(format!("handler panicked: {detail}"))))
        });
        if let Some(detail) = result.as_ref().err().and_then(Error::internal_text).filter(|_| !panicked) {
            route.span.in_scope(|| event::handler_failed(endpoint.at(subject), detail));
        }
        if let Some(outbound) = self.stream.as_ref().and_then(|open| open.outbound.get())
            && let Err(err) = outbound.flushed().await
        {
            tracing::debug!(error = %err, "sending the stream's last messages");
        }
        // A stream refused before its ack (§9.2) is ended where the ack was awaited.
        let end_to = match self.stream {
            Some(open) if !open.acked.load(Ordering::Relaxed) => route.refusal_to(),
            _ => route.reply_to.clone(),
        };
        reply(serving, route, end_to, result, self.response_headers.take(), self.arrival.received).await;
    }
}

/// Sends the reply to `reply_to` (a stream's end, per `route`) and records it.
async fn reply(
    serving: &Serving,
    route: &Route,
    reply_to: Option<Subject>,
    result: Result<Bytes, Error>,
    response_headers: Option<HeaderMap>,
    received: Instant,
) {
    let endpoint = &serving.endpoint;
    let elapsed = received.elapsed();
    let response_headers = match route.stream {
        true => {
            let mut headers = response_headers.unwrap_or_default();
            headers.insert(name::END, "true");
            Some(headers)
        }
        false => response_headers,
    };
    // The body moves into the publish (a first clone of a `Bytes` made from a
    // `Vec`, as encoded responses are, allocates); only an error is kept.
    let (headers, body, result) = match result {
        Ok(body) => (response_headers, body, Ok(())),
        Err(err) => {
            let mut headers = response_headers.unwrap_or_default();
            if let Some(extra) = err.headers() {
                // A re-raised error carries the headers of the reply it came in; its marker is decided anew below.
                for (name, values) in extra.iter().filter(|(name, _)| **name != headers::name::ERROR_DETAILS) {
                    for value in values {
                        headers.append(name.clone(), value.clone());
                    }
                }
            }
            // An uncoded failure was logged as `handler_failed` (or `handler_panicked`) where it happened.
            let message = match err.internal_text() {
                Some(detail) if endpoint.expose_internal_errors => detail,
                _ => err.message(),
            };
            headers.insert(headers::name::ERROR_CODE, err.code().to_wire(endpoint.code_format).as_ref());
            headers.insert(headers::name::ERROR_MESSAGE, sanitize_header_value(message).as_str());
            let body = if err.details_any().is_empty() {
                err.data().clone()
            } else {
                let marker_len = headers::ERROR_DETAILS.len() + headers::ERROR_DETAILS_STATUS.len() + 4;
                let budget = serving.nats.server_info().max_payload.saturating_sub(header_len(&headers) + marker_len);
                let encoded = status_body::encode(&err, endpoint.expose_internal_errors, budget);
                if encoded.marked {
                    headers.insert(headers::name::ERROR_DETAILS, headers::ERROR_DETAILS_STATUS);
                }
                if encoded.dropped > 0 {
                    tracing::warn!(method = %endpoint.method, dropped = encoded.dropped, "error details over max_payload were dropped");
                }
                encoded.body
            };
            (Some(headers), body, Err(err))
        }
    };
    let Some(reply_to) = reply_to else {
        endpoint.finish(route, elapsed, result.as_ref().err());
        return;
    };
    let sent = match headers {
        Some(headers) => serving.nats.publish_with_headers(reply_to.clone(), headers, body).await,
        None => serving.nats.publish(reply_to.clone(), body).await,
    };
    match (sent, result) {
        (Ok(()), result) => endpoint.finish(route, elapsed, result.as_ref().err()),
        (Err(err), Ok(_)) => {
            // Most likely a response over max_payload: tell the caller rather than leave it waiting.
            let failure = Error::resource_exhausted(format!("the response could not be sent: {err}"));
            tracing::warn!(error = %err, method = %endpoint.method, "sending reply");
            let mut headers = HeaderMap::new();
            if route.stream {
                headers.insert(name::END, "true");
            }
            headers.insert(headers::name::ERROR_CODE, failure.code().to_wire(endpoint.code_format).as_ref());
            headers.insert(headers::name::ERROR_MESSAGE, failure.message());
            if let Err(err) = serving.nats.publish_with_headers(reply_to, headers, Bytes::new()).await {
                tracing::warn!(error = %err, method = %endpoint.method, "sending error reply");
            }
            endpoint.finish(route, elapsed, Some(&failure));
        }
        (Err(err), Err(failure)) => {
            tracing::warn!(error = %err, method = %endpoint.method, "sending error reply");
            endpoint.finish(route, elapsed, Some(&failure));
        }
    }
}

/// The size of a header block on the wire (`NATS/1.0`, each `name: value`,
/// the blank line), which counts toward `max_payload` with the body.
fn header_len(headers: &HeaderMap) -> usize {
    let lines: usize = headers
        .iter()
        .map(|(name, values)| values.iter().map(|value| name.to_string().len() + value.as_str().len() + 4).sum::<usize>())
        .sum();
    "NATS/1.0\r\n\r\n".len() + lines
}

/// Header values cannot hold line breaks; keep the message on one line.
fn sanitize_header_value(value: &str) -> String {
    value.replace(['\r', '\n'], " ")
}
