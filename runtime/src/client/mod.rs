//! The client call path: one unary request through the interceptors to NATS,
//! with deadline, headers and error mapping.

pub(crate) mod interceptor;
mod stream;

use std::borrow::Cow;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use async_nats::client::{RequestError, RequestErrorKind};
use async_nats::{HeaderMap, Message};
use bytes::Bytes;

use crate::code::{Code, CodeFormat};
use crate::codec::Codec;
use crate::error::{Error, ErrorKind};
use crate::headers;
use crate::telemetry::{self, Side};
use interceptor::{ClientCall, ClientInterceptor, ClientInterceptorFn, ClientNext, Reply};
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
}

impl<T> Request<T> {
    /// Wraps a message, with no headers and the client's timeout.
    pub fn new(message: T) -> Self {
        Request { message, headers: HeaderMap::new(), timeout: None }
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
/// subject prefix, a client-wide timeout and interceptors. Cheap to clone.
///
/// Timeout precedence for a call (first that is set wins):
/// 1. the call's own ([`Request::with_timeout`]);
/// 2. the client's run-time override ([`Client::with_timeout`]);
/// 3. the endpoint's proto option `(natsmicro.endpoint).timeout`;
/// 4. the service's proto option `(natsmicro.service).timeout`;
/// 5. the NATS connection's request timeout, else [`DEFAULT_TIMEOUT`].
///
/// The chosen budget is sent in the `Nats-Micro-Timeout` header so the server
/// stops working once the caller gave up.
#[derive(Clone)]
pub struct Client {
    nats: async_nats::Client,
    subject_prefix: Arc<str>,
    timeout: Option<Duration>,
    headers: HeaderMap,
    interceptors: Arc<[Arc<dyn ClientInterceptor>]>,
    stream_settings: crate::stream::StreamSettings,
    /// The proto's full service name, for span names (empty when unknown).
    service: &'static str,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("subject_prefix", &self.subject_prefix)
            .field("timeout", &self.timeout)
            .field("interceptors", &self.interceptors.len())
            .finish()
    }
}

impl Client {
    /// A client sending to `{subject_prefix}.{endpoint}`.
    pub fn new(nats: async_nats::Client, subject_prefix: impl Into<Arc<str>>) -> Self {
        Client {
            nats,
            subject_prefix: subject_prefix.into(),
            timeout: None,
            headers: HeaderMap::new(),
            interceptors: Arc::new([]),
            stream_settings: crate::stream::StreamSettings::default(),
            service: "",
        }
    }

    /// Names the proto service this client calls (`order.v1.OrderService`),
    /// for span names and attributes. Generated clients set it.
    pub fn for_service(mut self, proto_service: &'static str) -> Self {
        self.service = proto_service;
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

    /// Sends one unary request and decodes the reply with codec `C`.
    /// Every error carries `method.method`. The call runs in its client
    /// span (PROTOCOL §11.2), whose trace context the request carries.
    pub async fn unary<C, Req, Resp>(&self, method: &MethodSpec, request: Request<Req>) -> Result<Response<Resp>, Error>
    where
        C: Codec<Req> + Codec<Resp>,
    {
        let subject = self.subject(method.endpoint);
        let span = telemetry::client_span(self.service, method.method, method.endpoint, &subject);
        if !telemetry::wanted(&span) {
            // Nothing records calls: no instrumented future, no clock read.
            return self.unary_in_span::<C, Req, Resp>(method, subject, request).await;
        }
        let started = std::time::Instant::now();
        let result = self.unary_in_span::<C, Req, Resp>(method, subject, request).instrument(span.clone()).await;
        let names = telemetry::Names { proto_service: self.service, method: method.method, endpoint: method.endpoint };
        telemetry::finish(&span, Side::Client, names, started.elapsed(), result.as_ref().err(), CodeFormat::Names);
        result
    }

    async fn unary_in_span<C, Req, Resp>(
        &self,
        method: &MethodSpec,
        subject: String,
        request: Request<Req>,
    ) -> Result<Response<Resp>, Error>
    where
        C: Codec<Req> + Codec<Resp>,
    {
        let (message, call_headers, call_timeout) = request.into_parts();
        let with_method = |err: Error| err.with_method(method.method);
        let payload = <C as Codec<Req>>::encode(&message).map_err(|err| {
            with_method(Error::transport(ErrorKind::Encode, Code::Internal, format!("encoding the request: {err}")))
        })?;
        let headers = self.call_headers(&call_headers);
        let call = ClientCall {
            method: method.method,
            subject,
            headers,
            timeout: Some(call_timeout.unwrap_or_else(|| self.effective_timeout(method))),
            payload,
        };
        // Without interceptors the chain is skipped: no boxed future, no client clone per call.
        let reply = if self.interceptors.is_empty() {
            send(&self.nats, call).await
        } else {
            ClientNext::start(self.interceptors.clone(), interceptor::Terminal::Request(self.nats.clone())).run(call).await
        }
        .map_err(with_method)?;
        let message = <C as Codec<Resp>>::decode(reply.payload).map_err(|err| {
            with_method(Error::transport(ErrorKind::Decode, Code::Internal, format!("decoding the reply: {err}")))
                .with_headers(reply.headers.clone())
        })?;
        Ok(Response::new(message, reply.headers))
    }
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
