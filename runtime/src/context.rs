//! What a handler knows about the request it serves.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::{HeaderMap, Subject};
use tokio::time::Instant;

use crate::server::stream::StreamOpen;

/// The request context handed to every handler and server interceptor:
/// method, subject, incoming headers, the deadline, and the headers to send
/// back. Cloning is cheap; clones share the response headers.
///
/// ```
/// use nats_micro_runtime::RequestContext;
/// let ctx = RequestContext::for_test("GetOrder", "get_order", "api.v1.get_order");
/// ctx.set_response_header("X-Served-By", "orders-1");
/// assert_eq!(ctx.method(), "GetOrder");
/// assert_eq!(ctx.response_headers().get("X-Served-By").map(|v| v.as_str()), Some("orders-1"));
/// ```
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// `None` until the service names itself (no allocation for an empty name).
    service: Option<Arc<str>>,
    method: Arc<str>,
    endpoint: Arc<str>,
    subject: Subject,
    headers: HeaderMap,
    deadline: Option<Instant>,
    response_headers: Arc<Mutex<HeaderMap>>,
    stream: Option<Arc<StreamOpen>>,
}

impl RequestContext {
    pub(crate) fn new(
        method: Arc<str>,
        endpoint: Arc<str>,
        subject: Subject,
        headers: HeaderMap,
        deadline: Option<Instant>,
    ) -> Self {
        RequestContext {
            service: None,
            method,
            endpoint,
            subject,
            headers,
            deadline,
            response_headers: Arc::default(),
            stream: None,
        }
    }

    /// Names the ADR-32 service the request is for.
    pub(crate) fn with_service(mut self, service: Arc<str>) -> Self {
        self.service = Some(service);
        self
    }

    /// The context of an admitted stream open.
    pub(crate) fn with_stream(mut self, open: Arc<StreamOpen>) -> Self {
        self.stream = Some(open);
        self
    }

    pub(crate) fn stream_open(&self) -> Option<&StreamOpen> {
        self.stream.as_deref()
    }

    /// A context for calling a handler directly in unit tests.
    pub fn for_test(method: &str, endpoint: &str, subject: &str) -> Self {
        Self::new(method.into(), endpoint.into(), Subject::from(subject), HeaderMap::new(), None)
    }

    /// The ADR-32 service name (`orders`; empty in [`RequestContext::for_test`]).
    pub fn service(&self) -> &str {
        self.service.as_deref().unwrap_or_default()
    }

    /// The RPC method's proto name (`CreateOrder`).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The ADR-32 endpoint name (`create_order`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The subject the request arrived on.
    pub fn subject(&self) -> &str {
        self.subject.as_str()
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The request headers, for interceptors that add or change them.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// A request header's first value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.as_str())
    }

    /// Which attempt of the caller's call this request is: 1 for the first,
    /// 2 for the first retry (the `Nats-Micro-Attempt` header; 1 when it is
    /// absent or not a positive number).
    ///
    /// ```
    /// use nats_micro_runtime::RequestContext;
    /// let mut ctx = RequestContext::for_test("GetOrder", "get_order", "api.v1.get_order");
    /// assert_eq!(ctx.attempt(), 1);
    /// ctx.headers_mut().insert("Nats-Micro-Attempt", "2");
    /// assert_eq!(ctx.attempt(), 2);
    /// ```
    pub fn attempt(&self) -> u32 {
        crate::headers::request_attempt(&self.headers)
    }

    /// When the caller stops waiting: the earlier of the caller's budget
    /// (its `Nats-Micro-Timeout` header) and the endpoint's timeout. The
    /// service stops the handler at that instant.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left until the deadline (zero once it passed).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    /// Sets a header on the reply, success or error (replacing earlier
    /// values); on a stream, on its end (trailing headers).
    pub fn set_response_header(&self, name: &str, value: &str) {
        self.response_headers.lock().unwrap_or_else(PoisonError::into_inner).insert(name, value);
    }

    /// Adds a value to a reply header.
    pub fn append_response_header(&self, name: &str, value: &str) {
        self.response_headers.lock().unwrap_or_else(PoisonError::into_inner).append(name, value);
    }

    /// The headers set for the reply so far.
    pub fn response_headers(&self) -> HeaderMap {
        self.response_headers.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The shared reply headers, kept by the service while `self` moves
    /// through the interceptors and the handler.
    pub(crate) fn response_headers_handle(&self) -> ResponseHeaders {
        ResponseHeaders(self.response_headers.clone())
    }
}

/// The reply headers of one request, as the service takes them to reply.
pub(crate) struct ResponseHeaders(Arc<Mutex<HeaderMap>>);

impl ResponseHeaders {
    /// Takes what the handler and interceptors set (`None` if nothing).
    pub(crate) fn take(&self) -> Option<HeaderMap> {
        let mut headers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if headers.is_empty() { None } else { Some(std::mem::take(&mut *headers)) }
    }
}
