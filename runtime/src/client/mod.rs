//! The client call path: one unary request through the interceptors to NATS,
//! with deadline, headers and error mapping.

pub mod breaker;
mod connection;
pub(crate) mod interceptor;
pub mod retry;
pub(crate) mod stream;

use std::borrow::Cow;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use async_nats::client::{RequestError, RequestErrorKind};
use async_nats::{HeaderMap, Message};
use bytes::Bytes;

use crate::code::Code;
use crate::codec::Codec;
use crate::error::{Error, ErrorKind};
use crate::headers;
use crate::telemetry;
use breaker::CircuitBreaker;
use connection::{ConnectionWatch, Link};
use interceptor::{ClientCall, ClientInterceptor, ClientInterceptorFn, ClientNext, Reply};
use retry::{RetryBudget, RetryPolicy};
use tracing::Instrument;

/// Used when neither the call, the client, nor the proto sets a timeout and
/// the NATS connection has no request timeout either.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A request message with per-call headers and timeout.
///
/// ```
/// use std::time::Duration;
/// use nats_micro_runtime::Request;
/// let request = Request::new(42u32)
///     .with_header("X-Request-Id", "abc")
///     .with_timeout(Duration::from_millis(250));
/// assert_eq!(*request.message(), 42);
/// assert_eq!(request.timeout(), Some(Duration::from_millis(250)));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Request<T> {
    message: T,
    headers: HeaderMap,
    timeout: Option<Duration>,
    /// Boxed: most calls set none, and the request moves through every layer.
    retry: Option<Box<RetryPolicy>>,
    idempotent: Option<bool>,
}

impl<T> Request<T> {
    /// Wraps a message, with no headers and the client's timeout.
    pub fn new(message: T) -> Self {
        Request { message, headers: HeaderMap::new(), timeout: None, retry: None, idempotent: None }
    }

    /// Sets the retry policy of this call only, over the method's and the
    /// client's (PROTOCOL §10.1).
    ///
    /// ```
    /// use nats_micro_runtime::Request;
    /// use nats_micro_runtime::retry::RetryPolicy;
    /// let request = Request::new(7u32).with_retry(RetryPolicy::disabled());
    /// assert_eq!(request.retry_policy().map(|p| p.attempts()), Some(1));
    /// ```
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(Box::new(policy));
        self
    }

    /// Says whether this call is safe to repeat after a timeout or a lost
    /// connection, over the proto's `idempotency_level` and the client's
    /// setting for the method.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = Some(idempotent);
        self
    }

    /// This call's own retry policy, if set.
    pub fn retry_policy(&self) -> Option<&RetryPolicy> {
        self.retry.as_deref()
    }

    /// Adds a header to send with the request.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sets a timeout for this call only; it wins over every other timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The message.
    pub fn message(&self) -> &T {
        &self.message
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The request headers, to change.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// This call's timeout, if set.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Message, headers and timeout.
    pub fn into_parts(self) -> (T, HeaderMap, Option<Duration>) {
        (self.message, self.headers, self.timeout)
    }
}

/// Accepted by generated client methods: a bare message or a [`Request`].
pub trait IntoRequest<T> {
    /// Wraps into a [`Request`].
    fn into_request(self) -> Request<T>;
}

impl<T> IntoRequest<T> for T {
    fn into_request(self) -> Request<T> {
        Request::new(self)
    }
}

impl<T> IntoRequest<T> for Request<T> {
    fn into_request(self) -> Request<T> {
        self
    }
}

/// Accepted by generated client methods of client-streaming and
/// bidirectional RPCs: a [`Stream`](futures_util::Stream) of messages, or a
/// [`Request`] around one (for headers and a timeout).
///
/// ```
/// use nats_micro_runtime::{IntoStreamingRequest, Request};
/// let numbers = futures_util::stream::iter([1i64, 2, 3]);
/// let request = Request::new(numbers).with_header("X-Batch", "7").into_streaming_request();
/// assert_eq!(request.headers().get("X-Batch").map(|v| v.as_str()), Some("7"));
/// ```
pub trait IntoStreamingRequest {
    /// The messages' type.
    type Message;
    /// The stream of messages.
    type Stream: futures_util::Stream<Item = Self::Message> + Send + 'static;
    /// Wraps into a [`Request`].
    fn into_streaming_request(self) -> Request<Self::Stream>;
}

impl<S: futures_util::Stream + Send + 'static> IntoStreamingRequest for S {
    type Message = S::Item;
    type Stream = S;
    fn into_streaming_request(self) -> Request<S> {
        Request::new(self)
    }
}

impl<S: futures_util::Stream + Send + 'static> IntoStreamingRequest for Request<S> {
    type Message = S::Item;
    type Stream = S;
    fn into_streaming_request(self) -> Request<S> {
        self
    }
}

/// A response message with the reply's headers. Derefs to the message.
///
/// ```
/// use nats_micro_runtime::Response;
/// let response = Response::new(String::from("ok"), Default::default());
/// assert_eq!(response.len(), 2); // Deref to the message
/// assert_eq!(response.into_inner(), "ok");
/// ```
#[derive(Clone, Debug, Default)]
pub struct Response<T> {
    message: T,
    headers: HeaderMap,
}

impl<T> Response<T> {
    /// A response from its parts.
    pub fn new(message: T, headers: HeaderMap) -> Self {
        Response { message, headers }
    }

    /// The reply headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The message.
    pub fn into_inner(self) -> T {
        self.message
    }

    /// Message and headers.
    pub fn into_parts(self) -> (T, HeaderMap) {
        (self.message, self.headers)
    }
}

impl<T> Deref for Response<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.message
    }
}

impl<T> DerefMut for Response<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.message
    }
}

/// What generated code knows about one RPC at compile time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodSpec {
    /// The proto method name (`CreateOrder`).
    pub method: &'static str,
    /// The ADR-32 endpoint name and last subject token (`create_order`).
    pub endpoint: &'static str,
    /// The timeout from the proto: the endpoint's, else the service's.
    pub timeout: Option<Duration>,
    /// Safe to repeat after a timeout or a lost connection: the proto's
    /// `idempotency_level` is `NO_SIDE_EFFECTS` or `IDEMPOTENT`.
    pub idempotent: bool,
}

/// The untyped client under every generated client: a NATS connection, the
/// subject prefix, a client-wide timeout, interceptors, and what makes calls
/// resilient (retries, a retry budget, circuit breakers). Cheap to clone;
/// clones share the budget, the breakers and the connection watcher.
///
/// Timeout precedence for a call (first that is set wins):
/// 1. the call's own ([`Request::with_timeout`]);
/// 2. the client's run-time override ([`Client::with_timeout`]);
/// 3. the endpoint's proto option `(natsmicro.endpoint).timeout`;
/// 4. the service's proto option `(natsmicro.service).timeout`;
/// 5. the NATS connection's request timeout, else [`DEFAULT_TIMEOUT`].
///
/// The timeout is the whole call's, retries included. What is left of it is
/// sent with each attempt in the `Nats-Micro-Timeout` header, so the server
/// stops working once the caller gave up.
///
/// Unary calls are retried by [`RetryPolicy::default`] unless told otherwise
/// (PROTOCOL §10.1); a call in flight when the connection is lost fails at
/// once with [`ErrorKind::ConnectionLost`].
#[derive(Clone)]
pub struct Client {
    nats: async_nats::Client,
    subject_prefix: Arc<str>,
    service: Option<&'static str>,
    timeout: Option<Duration>,
    headers: HeaderMap,
    interceptors: Arc<[Arc<dyn ClientInterceptor>]>,
    stream_settings: crate::stream::StreamSettings,
    /// Behind one pointer: the client stays small to clone and to move.
    resilience: Arc<Resilience>,
    watch: Arc<ConnectionWatch>,
}

/// Retries and breakers of a client.
#[derive(Clone, Debug, Default)]
struct Resilience {
    retry: RetryPolicy,
    budget: Arc<RetryBudget>,
    breaker: Option<CircuitBreaker>,
    methods: Vec<MethodSettings>,
}

/// What a client overrides for one method.
#[derive(Clone, Debug)]
struct MethodSettings {
    method: Arc<str>,
    retry: Option<RetryPolicy>,
    idempotent: Option<bool>,
    breaker: Option<CircuitBreaker>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("subject_prefix", &self.subject_prefix)
            .field("timeout", &self.timeout)
            .field("interceptors", &self.interceptors.len())
            .field("resilience", &self.resilience)
            .finish()
    }
}

impl Client {
    /// A client sending to `{subject_prefix}.{endpoint}`.
    pub fn new(nats: async_nats::Client, subject_prefix: impl Into<Arc<str>>) -> Self {
        Client {
            nats,
            subject_prefix: subject_prefix.into(),
            service: None,
            timeout: None,
            headers: HeaderMap::new(),
            interceptors: Arc::new([]),
            stream_settings: crate::stream::StreamSettings::default(),
            resilience: Arc::default(),
            watch: Arc::default(),
        }
    }

    /// Names the proto service this client calls (`order.v1.OrderService`),
    /// for span names and attributes and for "circuit open" messages.
    /// Generated clients set it.
    #[doc(hidden)]
    pub fn with_service_name(mut self, service: &'static str) -> Self {
        self.service = Some(service);
        self
    }

    /// Sets the retry policy of every unary call of this client (default:
    /// [`RetryPolicy::default`]; [`RetryPolicy::disabled`] turns retries off).
    ///
    /// ```no_run
    /// # async fn demo(nats: async_nats::Client) {
    /// use std::time::Duration;
    /// use nats_micro_runtime::Client;
    /// use nats_micro_runtime::retry::RetryPolicy;
    /// let client = Client::new(nats, "api.v1")
    ///     .with_retry_policy(RetryPolicy::default().max_attempts(5).max_delay(Duration::from_millis(500)))
    ///     .with_method_retry_policy("CreateOrder", RetryPolicy::disabled())
    ///     .with_method_idempotent("CancelOrder", true);
    /// # }
    /// ```
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        Arc::make_mut(&mut self.resilience).retry = policy;
        self
    }

    /// Sets the retry policy of one method (by proto name, `CreateOrder`),
    /// over the client's.
    pub fn with_method_retry_policy(self, method: &str, policy: RetryPolicy) -> Self {
        self.with_method(method, |settings| settings.retry = Some(policy))
    }

    /// Says whether a method (by proto name) is safe to repeat after a
    /// timeout or a lost connection, over its proto `idempotency_level`.
    pub fn with_method_idempotent(self, method: &str, idempotent: bool) -> Self {
        self.with_method(method, |settings| settings.idempotent = Some(idempotent))
    }

    /// Replaces the retry budget (default: 10 tokens, 0.1 back per success),
    /// shared by the clones made from here on.
    pub fn with_retry_budget(mut self, max_tokens: f64, token_ratio: f64) -> Self {
        Arc::make_mut(&mut self.resilience).budget = Arc::new(RetryBudget::new(max_tokens, token_ratio));
        self
    }

    /// Guards every unary call of this client with one circuit breaker
    /// (PROTOCOL §10.2). Keep a clone to watch its state.
    ///
    /// ```no_run
    /// # async fn demo(nats: async_nats::Client) {
    /// use nats_micro_runtime::Client;
    /// use nats_micro_runtime::breaker::CircuitBreaker;
    /// let breaker = CircuitBreaker::new().on_state_change(|from, to| eprintln!("orders breaker: {from} -> {to}"));
    /// let client = Client::new(nats, "api.v1").with_circuit_breaker(breaker.clone());
    /// # }
    /// ```
    pub fn with_circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        let name = self.service.map_or_else(|| self.subject_prefix.to_string(), str::to_owned);
        Arc::make_mut(&mut self.resilience).breaker = Some(breaker.named(&name));
        self
    }

    /// Guards one method (by proto name) with its own circuit breaker,
    /// instead of the client's.
    pub fn with_method_circuit_breaker(self, method: &str, breaker: CircuitBreaker) -> Self {
        let breaker = breaker.named(method);
        self.with_method(method, |settings| settings.breaker = Some(breaker))
    }

    /// The retry budget shared by this client's calls.
    pub fn retry_budget(&self) -> &RetryBudget {
        &self.resilience.budget
    }

    fn with_method(mut self, method: &str, change: impl FnOnce(&mut MethodSettings)) -> Self {
        let methods = &mut Arc::make_mut(&mut self.resilience).methods;
        let index = match methods.iter().position(|settings| &*settings.method == method) {
            Some(index) => index,
            None => {
                methods.push(MethodSettings { method: method.into(), retry: None, idempotent: None, breaker: None });
                methods.len() - 1
            }
        };
        change(&mut methods[index]);
        self
    }

    /// Replaces the subject prefix (e.g. to reach a service deployed under
    /// another prefix).
    pub fn with_subject_prefix(mut self, subject_prefix: impl Into<Arc<str>>) -> Self {
        self.subject_prefix = subject_prefix.into();
        self
    }

    /// Sets a timeout for every call of this client, over the proto's.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Adds a header sent with every call (a call's own headers win).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Adds an interceptor; the first added runs outermost.
    pub fn with_interceptor(mut self, interceptor: impl ClientInterceptor) -> Self {
        let mut chain = self.interceptors.to_vec();
        chain.push(Arc::new(interceptor));
        self.interceptors = chain.into();
        self
    }

    /// Adds an interceptor written as an async closure.
    ///
    /// ```no_run
    /// # async fn demo(nats: async_nats::Client) {
    /// use nats_micro_runtime::Client;
    /// use nats_micro_runtime::interceptor::{ClientCall, ClientNext};
    /// let client = Client::new(nats, "api.v1").interceptor_fn(|mut call: ClientCall, next: ClientNext| async move {
    ///     call.headers.insert("X-Tenant", "acme");
    ///     next.run(call).await
    /// });
    /// # }
    /// ```
    pub fn interceptor_fn<F, Fut>(self, interceptor: F) -> Self
    where
        F: Fn(ClientCall, ClientNext) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Reply, Error>> + Send + 'static,
    {
        self.with_interceptor(ClientInterceptorFn(interceptor))
    }

    /// The NATS connection.
    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// The subject prefix in use.
    pub fn subject_prefix(&self) -> &str {
        &self.subject_prefix
    }

    /// The subject of an endpoint: `{subject_prefix}.{endpoint}`.
    pub fn subject(&self, endpoint: &str) -> String {
        let mut subject = String::with_capacity(self.subject_prefix.len() + 1 + endpoint.len());
        subject.push_str(&self.subject_prefix);
        subject.push('.');
        subject.push_str(endpoint);
        subject
    }

    /// The timeout a call to `method` gets when the call sets none.
    pub fn effective_timeout(&self, method: &MethodSpec) -> Duration {
        self.timeout.or(method.timeout).or(self.nats.timeout()).unwrap_or(DEFAULT_TIMEOUT)
    }

    /// The client's headers with a call's own over them (a call's header
    /// replaces the client's of the same name, all its values kept).
    fn call_headers(&self, call_headers: &HeaderMap) -> HeaderMap {
        let mut headers = self.headers.clone();
        for (name, values) in call_headers.iter() {
            let mut values = values.iter();
            if let Some(first) = values.next() {
                headers.insert(name.clone(), first.clone());
                values.for_each(|value| headers.append(name.clone(), value.clone()));
            }
        }
        headers
    }

    /// Sends one unary request and decodes the reply with codec `C`,
    /// retrying as the call's, the method's or the client's [`RetryPolicy`]
    /// says. Every error carries `method.method` and the attempts made. The
    /// call runs in its client span (PROTOCOL §11.2), whose trace context
    /// every attempt carries.
    pub async fn unary<C, Req, Resp>(&self, method: &MethodSpec, request: Request<Req>) -> Result<Response<Resp>, Error>
    where
        C: Codec<Req> + Codec<Resp>,
    {
        let subject = self.subject(method.endpoint);
        let Some(call) = telemetry::CallSpan::start(self.telemetry_names(method), &subject) else {
            // Nothing records calls: no instrumented future, no clock read.
            return self.attempts::<C, Req, Resp>(method, subject, request).await;
        };
        let result = self.attempts::<C, Req, Resp>(method, subject, request).instrument(call.span().clone()).await;
        call.finish(result.as_ref().err());
        result
    }

    /// The names a call's span and metrics carry.
    fn telemetry_names(&self, method: &MethodSpec) -> telemetry::Names<'static> {
        telemetry::Names { proto_service: self.service.unwrap_or_default(), method: method.method, endpoint: method.endpoint }
    }

    /// The attempts of one unary call to `subject`, within its deadline.
    async fn attempts<C, Req, Resp>(
        &self,
        method: &MethodSpec,
        subject: String,
        request: Request<Req>,
    ) -> Result<Response<Resp>, Error>
    where
        C: Codec<Req> + Codec<Resp>,
    {
        // The first attempt takes the subject; a retry builds it again.
        let mut subject = Some(subject);
        let Request { message, headers: call_headers, timeout: call_timeout, retry, idempotent } = request;
        let resilience = &*self.resilience;
        let overrides = resilience.methods.iter().find(|settings| &*settings.method == method.method);
        let policy = retry.as_deref().or(overrides.and_then(|o| o.retry.as_ref())).unwrap_or(&resilience.retry);
        let idempotent = idempotent.or(overrides.and_then(|o| o.idempotent)).unwrap_or(method.idempotent);
        let breaker = overrides.and_then(|o| o.breaker.as_ref()).or(resilience.breaker.as_ref());
        let timeout = call_timeout.unwrap_or_else(|| self.effective_timeout(method));
        let deadline = Instant::now() + timeout;
        let mut link = self.watch.subscribe(&self.nats);
        let mut attempt = 1;
        let mut last: Option<Error> = None;
        loop {
            let outcome = match wait_connected(&mut link, deadline).await {
                true => {
                    // The first attempt has the whole timeout; later ones what is left of it.
                    let left = if attempt == 1 { timeout } else { deadline.saturating_duration_since(Instant::now()) };
                    let subject = subject.take().unwrap_or_else(|| self.subject(method.endpoint));
                    self.attempt::<C, Req>(method, subject, &message, &call_headers, attempt, policy, left, breaker, &mut link)
                        .await
                }
                // Still disconnected at the deadline: the last failure says why.
                false => Err(last.take().unwrap_or_else(|| {
                    Error::transport(ErrorKind::ConnectionClosed, Code::Unavailable, "not connected to NATS before the deadline")
                })),
            };
            let err = match outcome {
                Ok(reply) => {
                    resilience.budget.record_success();
                    let message = <C as Codec<Resp>>::decode(reply.payload).map_err(|err| {
                        Error::transport(ErrorKind::Decode, Code::Internal, format!("decoding the reply: {err}"))
                            .with_method(method.method)
                            .with_headers(reply.headers.clone())
                            .with_attempts(attempt)
                    })?;
                    return Ok(Response::new(message, reply.headers));
                }
                Err(err) => err.with_method(method.method).with_attempts(attempt),
            };
            let hint = retry::retry_hint(&err);
            if !retry::retryable(&err, idempotent, hint.is_some()) {
                if err.kind() == ErrorKind::Service {
                    resilience.budget.record_success(); // the service answered: not a transient failure
                }
                return Err(err);
            }
            if attempt >= policy.attempts() || Instant::now() >= deadline || !resilience.budget.try_retry() {
                return Err(err);
            }
            let delay = policy.delay(attempt).max(hint.unwrap_or_default());
            let wake = Instant::now() + delay;
            if wake >= deadline {
                return Err(err);
            }
            tokio::time::sleep_until(wake).await;
            last = Some(err);
            attempt += 1;
        }
    }

    /// One attempt of a unary call: through the breaker and the
    /// interceptors to NATS, failing at once if the connection is lost.
    #[allow(clippy::too_many_arguments, reason = "the parts of one call, borrowed across its attempts")]
    async fn attempt<C, Req>(
        &self,
        method: &MethodSpec,
        subject: String,
        message: &Req,
        call_headers: &HeaderMap,
        attempt: u32,
        policy: &RetryPolicy,
        remaining: Duration,
        breaker: Option<&CircuitBreaker>,
        link: &mut tokio::sync::watch::Receiver<Link>,
    ) -> Result<Reply, Error>
    where
        C: Codec<Req>,
    {
        if remaining.is_zero() {
            return Err(Error::transport(ErrorKind::Timeout, Code::DeadlineExceeded, "no time left for another attempt"));
        }
        let timeout = policy.per_attempt_timeout().map_or(remaining, |each| each.min(remaining));
        let permit = match breaker {
            Some(breaker) => Some(breaker.try_acquire().ok_or_else(|| self.circuit_open(method))?),
            None => None,
        };
        let payload = <C as Codec<Req>>::encode(message)
            .map_err(|err| Error::transport(ErrorKind::Encode, Code::Internal, format!("encoding the request: {err}")))?;
        let mut headers = self.call_headers(call_headers);
        if attempt > 1 {
            headers.insert(headers::name::ATTEMPT, attempt.to_string());
        }
        let call = ClientCall { method: method.method, subject, headers, timeout: Some(timeout), payload };
        let seen = link.borrow_and_update().losses;
        let sending = async {
            // Without interceptors the chain is skipped: no boxed future, no client clone per call.
            if self.interceptors.is_empty() {
                send(&self.nats, call).await
            } else {
                ClientNext::start(self.interceptors.clone(), interceptor::Terminal::Request(self.nats.clone())).run(call).await
            }
        };
        let lost = async {
            if link.wait_for(|now| now.losses != seen).await.is_err() {
                std::future::pending::<()>().await; // the watcher is gone with the client: nothing to wait for
            }
        };
        let result = match futures_util::future::select(std::pin::pin!(sending), std::pin::pin!(lost)).await {
            futures_util::future::Either::Left((result, _)) => result,
            futures_util::future::Either::Right(((), _)) => Err(Error::transport(
                ErrorKind::ConnectionLost,
                Code::Unavailable,
                "the connection to NATS was lost while the request was in flight",
            )),
        };
        if let (Some(breaker), Some(permit)) = (breaker, permit) {
            breaker.record(permit, matches!(&result, Err(err) if retry::transient(err)));
        }
        result
    }

    fn circuit_open(&self, method: &MethodSpec) -> Error {
        let service = self.service.unwrap_or(&self.subject_prefix);
        Error::transport(ErrorKind::CircuitOpen, Code::Unavailable, format!("circuit open for {service}.{}", method.method))
    }
}

/// Waits until the connection is up, or the deadline; whether it is up.
async fn wait_connected(link: &mut tokio::sync::watch::Receiver<Link>, deadline: Instant) -> bool {
    if link.borrow().connected {
        return true;
    }
    matches!(tokio::time::timeout_at(deadline, link.wait_for(|now| now.connected)).await, Ok(Ok(_)))
}

/// The end of a client chain: the NATS request itself.
pub(crate) async fn send(nats: &async_nats::Client, mut call: ClientCall) -> Result<Reply, Error> {
    if let Some(timeout) = call.timeout {
        call.headers.insert(headers::name::TIMEOUT, headers::encode_timeout(timeout));
    }
    telemetry::inject_current(&mut call.headers);
    telemetry::attempt_event(&call.headers);
    let request = async_nats::Request::new().payload(call.payload).headers(call.headers).timeout(call.timeout);
    match nats.send_request(call.subject, request).await {
        Ok(message) => reply_from_message(message),
        Err(err) => Err(request_error(nats, err)),
    }
}

/// Turns a reply into a success or, when it carries the error headers, the
/// error it describes.
pub fn reply_from_message(message: Message) -> Result<Reply, Error> {
    let headers = message.headers.unwrap_or_default();
    match error_from_reply(&headers, &message.payload) {
        Some(err) => Err(err),
        None => Ok(Reply { payload: message.payload, headers }),
    }
}

/// The error a reply (or a stream's end) describes, when it carries the
/// error headers: code, message, the body as error data (or, marked with
/// `Nats-Micro-Error-Details`, the details and data it holds), all headers kept.
pub(crate) fn error_from_reply(headers: &HeaderMap, payload: &Bytes) -> Option<Error> {
    let code = headers.get(headers::name::ERROR_CODE).map(|value| value.as_str());
    let text = headers.get(headers::name::ERROR_MESSAGE).map(|value| value.as_str());
    if code.is_none() && text.is_none() {
        return None;
    }
    let code = code.map(Code::from_wire).unwrap_or(Code::Unknown);
    let text = text.unwrap_or_default().to_owned();
    let marker = headers.get(headers::name::ERROR_DETAILS).map(|value| value.as_str());
    let (data, details) = crate::status_body::decode(marker, payload);
    Some(Error::new(code, text).with_data(data).with_details_any(details).with_headers(headers.clone()))
}

fn request_error(nats: &async_nats::Client, err: RequestError) -> Error {
    let (kind, code, message): (ErrorKind, Code, Cow<'static, str>) = match err.kind() {
        RequestErrorKind::TimedOut => (ErrorKind::Timeout, Code::DeadlineExceeded, "no reply before the deadline".into()),
        RequestErrorKind::NoResponders => (ErrorKind::NoResponders, Code::Unavailable, "no responders on the subject".into()),
        RequestErrorKind::MaxPayloadExceeded => (ErrorKind::MaxPayloadExceeded, Code::ResourceExhausted, err.to_string().into()),
        RequestErrorKind::InvalidSubject => (ErrorKind::Transport, Code::InvalidArgument, err.to_string().into()),
        _ if nats.connection_state() != async_nats::connection::State::Connected => {
            (ErrorKind::ConnectionClosed, Code::Unavailable, format!("connection closed: {err}").into())
        }
        _ => (ErrorKind::Transport, Code::Unavailable, err.to_string().into()),
    };
    Error::transport(kind, code, message).with_source(err)
}
