//! The error type of every call and handler, and the trait by which a
//! handler's own errors say what to reply.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::sync::Arc;

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::code::Code;
use crate::rpc::{
    self, Any, BadRequest, DebugInfo, ErrorInfo, FieldViolation, Help, LocalizedMessage, PreconditionFailure, QuotaFailure,
    RequestInfo, ResourceInfo, RetryInfo,
};

/// What went wrong, beyond the code: lets a caller tell a reply from the
/// service apart from a transport failure without matching on strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The service (or a handler or interceptor) answered with this error.
    Service,
    /// Nobody listens on the subject (code `UNAVAILABLE`).
    NoResponders,
    /// No reply before the deadline (code `DEADLINE_EXCEEDED`).
    Timeout,
    /// The request is larger than the server's `max_payload` (code `RESOURCE_EXHAUSTED`).
    MaxPayloadExceeded,
    /// The connection to NATS is closed (code `UNAVAILABLE`).
    ConnectionClosed,
    /// The reply could not be decoded as the response message (code `INTERNAL`).
    Decode,
    /// The request could not be encoded (code `INTERNAL`).
    Encode,
    /// Another transport failure (code `UNAVAILABLE`).
    Transport,
    /// The circuit breaker is open: the call failed at once without touching
    /// the network (code `UNAVAILABLE`, never retried; PROTOCOL §10.2).
    CircuitOpen,
    /// The connection to NATS was lost while the request was in flight; the
    /// request may or may not have been executed (code `UNAVAILABLE`).
    ConnectionLost,
}

/// The error of a call or a handler: a [`Code`], a message, and what else
/// travelled with it.
///
/// Errors that came over the wire carry the method, the error data (the reply
/// body), typed details (PROTOCOL §4.1, see [`rpc`](crate::rpc)) and the
/// reply's headers. Transport failures have a [`ErrorKind`] other than
/// [`ErrorKind::Service`] and a sensible code.
///
/// ```
/// use nats_micro_runtime::{Code, Error};
///
/// let err = Error::not_found("order 42 does not exist")
///     .with_method("GetOrder")
///     .with_data(&b"{\"id\":42}"[..]);
/// assert_eq!(err.code(), &Code::NotFound);
/// assert_eq!(err.message(), "order 42 does not exist");
/// assert_eq!(err.method(), Some("GetOrder"));
/// assert_eq!(&err.data()[..], b"{\"id\":42}");
/// assert!(!err.is_timeout());
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(Box<Inner>);

#[derive(Clone, Debug, thiserror::Error)]
#[error("{code}: {message}")]
struct Inner {
    code: Code,
    message: String,
    method: Option<Cow<'static, str>>,
    data: Bytes,
    headers: Option<HeaderMap>,
    /// Typed details, in the order they were added (or received).
    details: Vec<Any>,
    kind: ErrorKind,
    /// Text that must not reach the caller (an uncoded handler error); it is
    /// logged by the service and sent only when the service opts in.
    internal_text: Option<String>,
    #[source]
    source: Option<Arc<dyn StdError + Send + Sync>>,
    /// Attempts made by the call that ended with this error (1 when none was retried).
    attempts: u32,
}

/// The message a caller sees for an INTERNAL error whose text is withheld.
pub const INTERNAL_MESSAGE: &str = "internal error";

macro_rules! constructors {
    ($($(#[$doc:meta])* $fn:ident => $code:ident,)*) => {
        $( $(#[$doc])* pub fn $fn(message: impl Into<String>) -> Error { Error::new(Code::$code, message) } )*
    };
}

impl Error {
    /// An error with `code` and `message`, of kind [`ErrorKind::Service`].
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error(Box::new(Inner {
            code,
            message: message.into(),
            method: None,
            data: Bytes::new(),
            headers: None,
            details: Vec::new(),
            kind: ErrorKind::Service,
            internal_text: None,
            source: None,
            attempts: 1,
        }))
    }

    constructors! {
        /// `INVALID_ARGUMENT`
        invalid_argument => InvalidArgument,
        /// `UNAUTHENTICATED`
        unauthenticated => Unauthenticated,
        /// `PERMISSION_DENIED`
        permission_denied => PermissionDenied,
        /// `NOT_FOUND`
        not_found => NotFound,
        /// `ALREADY_EXISTS`
        already_exists => AlreadyExists,
        /// `INTERNAL`; the message is sent to the caller as given.
        internal => Internal,
        /// `UNAVAILABLE`
        unavailable => Unavailable,
        /// `CANCELLED`
        cancelled => Cancelled,
        /// `UNKNOWN`
        unknown => Unknown,
        /// `DEADLINE_EXCEEDED`
        deadline_exceeded => DeadlineExceeded,
        /// `RESOURCE_EXHAUSTED`
        resource_exhausted => ResourceExhausted,
        /// `FAILED_PRECONDITION`
        failed_precondition => FailedPrecondition,
        /// `ABORTED`
        aborted => Aborted,
        /// `OUT_OF_RANGE`
        out_of_range => OutOfRange,
        /// `UNIMPLEMENTED`
        unimplemented => Unimplemented,
        /// `DATA_LOSS`
        data_loss => DataLoss,
    }

    /// An INTERNAL error from any error value. Its text is withheld from the
    /// caller (who gets [`INTERNAL_MESSAGE`]) and logged by the service,
    /// unless the service opts in to exposing it.
    ///
    /// ```
    /// use nats_micro_runtime::{Code, Error};
    /// let io = std::io::Error::other("disk /dev/sdb1 failed");
    /// let err = Error::from_internal(io);
    /// assert_eq!(err.code(), &Code::Internal);
    /// assert_eq!(err.message(), "internal error");
    /// assert_eq!(err.internal_text(), Some("disk /dev/sdb1 failed"));
    /// ```
    pub fn from_internal(error: impl StdError + Send + Sync + 'static) -> Error {
        let text = error.to_string();
        let mut err = Error::new(Code::Internal, INTERNAL_MESSAGE);
        err.0.internal_text = Some(text);
        err.0.source = Some(Arc::new(error));
        err
    }

    /// An error from what a handler returned, through [`HandlerError`].
    pub fn from_handler_error<E: HandlerError + ?Sized>(error: &E) -> Error {
        match error.nats_error_code() {
            Some(code) => {
                let mut err = Error::new(code, error.nats_error_message()).with_data(error.nats_error_data());
                err.0.details = error.nats_error_details();
                err
            }
            None => {
                let mut err = Error::new(Code::Internal, INTERNAL_MESSAGE);
                err.0.internal_text = Some(error.nats_error_message());
                err.0.details = error.nats_error_details();
                err
            }
        }
    }

    /// The `INVALID_ARGUMENT` for a request body that does not decode, with a
    /// `BadRequest` naming what failed (PROTOCOL §4.1); the codecs report no
    /// field path, so the violation's field is empty.
    pub(crate) fn malformed_request(method: &str, reason: &str) -> Error {
        Error::invalid_argument(format!("malformed request for {method}: {reason}"))
            .with_field_violation("", format!("the request does not decode as the {method} request: {reason}"))
    }

    /// The error an error reply describes, read as every generated client
    /// reads it: `None` when the headers mark no error. For replies received
    /// with the NATS client directly.
    ///
    /// ```
    /// use async_nats::HeaderMap;
    /// use nats_micro_runtime::{Code, Error};
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("Nats-Service-Error-Code", "404");
    /// headers.insert("Nats-Service-Error", "gone");
    /// let err = Error::from_reply(&headers, &bytes::Bytes::from_static(b"{}")).unwrap();
    /// assert_eq!((err.code(), err.message(), &err.data()[..]), (&Code::NotFound, "gone", &b"{}"[..]));
    /// assert!(Error::from_reply(&HeaderMap::new(), &bytes::Bytes::new()).is_none());
    /// ```
    pub fn from_reply(headers: &HeaderMap, body: &Bytes) -> Option<Error> {
        crate::client::error_from_reply(headers, body)
    }

    pub(crate) fn transport(kind: ErrorKind, code: Code, message: impl Into<String>) -> Error {
        let mut err = Error::new(code, message);
        err.0.kind = kind;
        err
    }

    /// Sets the RPC method (proto name, e.g. `CreateOrder`) the error belongs to.
    pub fn with_method(mut self, method: impl Into<Cow<'static, str>>) -> Error {
        self.0.method = Some(method.into());
        self
    }

    /// Sets the error data, sent as the body of the error reply.
    pub fn with_data(mut self, data: impl Into<Bytes>) -> Error {
        self.0.data = data.into();
        self
    }

    /// Adds a header to send with the error reply.
    pub fn with_header(mut self, name: &str, value: &str) -> Error {
        self.0.headers.get_or_insert_with(HeaderMap::new).insert(name, value);
        self
    }

    /// Replaces the headers (on the client: the reply's headers).
    pub fn with_headers(mut self, headers: HeaderMap) -> Error {
        self.0.headers = Some(headers);
        self
    }

    /// Attaches the underlying cause, reachable through [`StdError::source`].
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Error {
        self.0.source = Some(Arc::new(source));
        self
    }

    /// The error code.
    pub fn code(&self) -> &Code {
        &self.0.code
    }

    /// The human-readable message (the `Nats-Service-Error` header).
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The RPC method the error belongs to, if known.
    pub fn method(&self) -> Option<&str> {
        self.0.method.as_deref()
    }

    /// The error data: the body of the error reply (may be empty).
    pub fn data(&self) -> &Bytes {
        &self.0.data
    }

    /// Headers: those of the reply on the client, those to send on the server.
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.0.headers.as_ref()
    }

    /// How many attempts the call made before it failed with this error:
    /// 1 when it was not retried (PROTOCOL §10.1).
    ///
    /// ```
    /// use nats_micro_runtime::Error;
    /// assert_eq!(Error::unavailable("down").attempts(), 1);
    /// ```
    pub fn attempts(&self) -> u32 {
        self.0.attempts
    }

    pub(crate) fn with_attempts(mut self, attempts: u32) -> Error {
        self.0.attempts = attempts;
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// Text withheld from the caller (see [`Error::from_internal`]).
    pub fn internal_text(&self) -> Option<&str> {
        self.0.internal_text.as_deref()
    }

    /// No reply arrived before the deadline.
    pub fn is_timeout(&self) -> bool {
        self.0.kind == ErrorKind::Timeout
    }

    /// Nobody was listening on the subject.
    pub fn is_no_responders(&self) -> bool {
        self.0.kind == ErrorKind::NoResponders
    }

    /// The failure happened in transport, not in the service.
    pub fn is_transport(&self) -> bool {
        !matches!(self.0.kind, ErrorKind::Service)
    }

    /// Whether the code is `code`.
    pub fn has_code(&self, code: &Code) -> bool {
        &self.0.code == code
    }
}

/// Typed details (PROTOCOL §4.1): builders that add one detail each, in the
/// order called, and getters that find the first detail of a type.
///
/// ```
/// use std::time::Duration;
/// use nats_micro_runtime::Error;
/// use nats_micro_runtime::rpc::{ErrorInfo, LocalizedMessage};
///
/// let err = Error::unavailable("warehouse offline")
///     .with_retry_info(Duration::from_millis(250))
///     .with_error_info(ErrorInfo::new("OFFLINE", "shop.example", [("site", "b")]))
///     .with_localized_message("fr-FR", "entrepôt hors ligne");
/// assert_eq!(err.retry_info().and_then(|info| info.delay()), Some(Duration::from_millis(250)));
/// assert_eq!(err.error_info().unwrap().metadata["site"], "b");
/// assert_eq!(err.details::<LocalizedMessage>()[0].locale, "fr-FR");
/// assert_eq!(err.details_any().len(), 3);
/// ```
impl Error {
    /// Adds any message as a detail, with the type URL
    /// `type.googleapis.com/<full name>`.
    pub fn with_detail<M: prost::Name>(self, detail: &M) -> Error {
        self.with_any(rpc::pack(detail))
    }

    /// Adds a detail already packed (kept and sent verbatim).
    pub fn with_any(mut self, detail: Any) -> Error {
        self.0.details.push(detail);
        self
    }

    /// Adds an [`ErrorInfo`].
    pub fn with_error_info(self, info: ErrorInfo) -> Error {
        self.with_detail(&info)
    }

    /// Adds a [`RetryInfo`] asking the caller to wait `delay` before retrying.
    pub fn with_retry_info(self, delay: std::time::Duration) -> Error {
        self.with_detail(&RetryInfo::new(delay))
    }

    /// Adds a [`DebugInfo`]; it reaches callers only from a service that
    /// exposes internal errors.
    pub fn with_debug_info(self, stack_entries: impl IntoIterator<Item = impl Into<String>>, detail: impl Into<String>) -> Error {
        self.with_detail(&DebugInfo { stack_entries: stack_entries.into_iter().map(Into::into).collect(), detail: detail.into() })
    }

    /// Adds a [`QuotaFailure`].
    pub fn with_quota_failure(self, failure: QuotaFailure) -> Error {
        self.with_detail(&failure)
    }

    /// Adds a [`PreconditionFailure`].
    pub fn with_precondition_failure(self, failure: PreconditionFailure) -> Error {
        self.with_detail(&failure)
    }

    /// Adds a [`BadRequest`].
    pub fn with_bad_request(self, request: BadRequest) -> Error {
        self.with_detail(&request)
    }

    /// Adds a [`BadRequest`] of one [`FieldViolation`].
    pub fn with_field_violation(self, field: impl Into<String>, description: impl Into<String>) -> Error {
        self.with_bad_request(BadRequest { field_violations: vec![FieldViolation::new(field, description)] })
    }

    /// Adds a [`RequestInfo`].
    pub fn with_request_info(self, request_id: impl Into<String>, serving_data: impl Into<String>) -> Error {
        self.with_detail(&RequestInfo { request_id: request_id.into(), serving_data: serving_data.into() })
    }

    /// Adds a [`ResourceInfo`].
    pub fn with_resource_info(self, info: ResourceInfo) -> Error {
        self.with_detail(&info)
    }

    /// Adds a [`Help`].
    pub fn with_help(self, help: Help) -> Error {
        self.with_detail(&help)
    }

    /// Adds a [`LocalizedMessage`].
    pub fn with_localized_message(self, locale: impl Into<String>, message: impl Into<String>) -> Error {
        self.with_detail(&LocalizedMessage { locale: locale.into(), message: message.into() })
    }

    /// Replaces the details.
    pub fn with_details_any(mut self, details: Vec<Any>) -> Error {
        self.0.details = details;
        self
    }

    /// Every detail as sent or received, in order; types the runtime does not
    /// know stay as they came and are sent again verbatim.
    pub fn details_any(&self) -> &[Any] {
        &self.0.details
    }

    /// Every detail of type `M` (whatever its type URL's prefix), in order.
    pub fn details<M: prost::Name + Default>(&self) -> Vec<M> {
        self.0.details.iter().filter_map(rpc::unpack).collect()
    }

    /// The first detail of type `M`.
    pub fn detail<M: prost::Name + Default>(&self) -> Option<M> {
        self.0.details.iter().find_map(rpc::unpack)
    }

    /// The first [`ErrorInfo`].
    pub fn error_info(&self) -> Option<ErrorInfo> {
        self.detail()
    }

    /// The first [`RetryInfo`].
    pub fn retry_info(&self) -> Option<RetryInfo> {
        self.detail()
    }

    /// The first [`DebugInfo`].
    pub fn debug_info(&self) -> Option<DebugInfo> {
        self.detail()
    }

    /// The first [`QuotaFailure`].
    pub fn quota_failure(&self) -> Option<QuotaFailure> {
        self.detail()
    }

    /// The first [`PreconditionFailure`].
    pub fn precondition_failure(&self) -> Option<PreconditionFailure> {
        self.detail()
    }

    /// The first [`BadRequest`].
    pub fn bad_request(&self) -> Option<BadRequest> {
        self.detail()
    }

    /// The first [`RequestInfo`].
    pub fn request_info(&self) -> Option<RequestInfo> {
        self.detail()
    }

    /// The first [`ResourceInfo`].
    pub fn resource_info(&self) -> Option<ResourceInfo> {
        self.detail()
    }

    /// The first [`Help`].
    pub fn help(&self) -> Option<Help> {
        self.detail()
    }

    /// The first [`LocalizedMessage`].
    pub fn localized_message(&self) -> Option<LocalizedMessage> {
        self.detail()
    }
}

/// Implemented by a handler's own error types to say what the caller gets:
/// the counterpart of the Go plugin's `NatsErrorCode()`, `NatsErrorMessage()`
/// and `NatsErrorData()`. Such errors convert into every generated service
/// error with `?`, and into [`Error`] with [`HandlerError::into_error`].
///
/// An error whose [`nats_error_code`](HandlerError::nats_error_code) is `None`
/// becomes INTERNAL; its text is logged, not sent.
///
/// ```
/// use nats_micro_runtime::{Code, Error, HandlerError};
///
/// #[derive(Debug)]
/// enum StoreError { Missing(u64), Io(String) }
///
/// impl std::fmt::Display for StoreError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         match self { StoreError::Missing(id) => write!(f, "no item {id}"), StoreError::Io(e) => write!(f, "io: {e}") }
///     }
/// }
///
/// impl HandlerError for StoreError {
///     fn nats_error_code(&self) -> Option<Code> {
///         match self { StoreError::Missing(_) => Some(Code::NotFound), StoreError::Io(_) => None }
///     }
/// }
///
/// let err = StoreError::Missing(7).into_error();
/// assert_eq!((err.code(), err.message()), (&Code::NotFound, "no item 7"));
/// let err = StoreError::Io("/var/db locked".into()).into_error();
/// assert_eq!((err.code(), err.message()), (&Code::Internal, "internal error"));
/// ```
pub trait HandlerError: std::fmt::Display {
    /// The code to reply with; `None` means INTERNAL with the text withheld.
    fn nats_error_code(&self) -> Option<Code> {
        None
    }

    /// The message to reply with. Defaults to the `Display` text.
    fn nats_error_message(&self) -> String {
        self.to_string()
    }

    /// The error data to send as the reply body. Defaults to none.
    fn nats_error_data(&self) -> Bytes {
        Bytes::new()
    }

    /// Typed details to send (PROTOCOL §4.1), packed with
    /// [`rpc::pack`](crate::rpc::pack). Defaults to none. Details of an
    /// error without a code are withheld like its text.
    fn nats_error_details(&self) -> Vec<Any> {
        Vec::new()
    }

    /// Converts into an [`Error`]. Types that already are one override this
    /// to lose nothing.
    fn into_error(self) -> Error
    where
        Self: Sized,
    {
        Error::from_handler_error(&self)
    }
}

/// [`Error`] converts to itself without loss, so generated service errors
/// and `?` accept it wherever they accept a [`HandlerError`].
impl HandlerError for Error {
    fn nats_error_code(&self) -> Option<Code> {
        Some(self.0.code.clone())
    }
    fn nats_error_message(&self) -> String {
        self.0.message.clone()
    }
    fn nats_error_data(&self) -> Bytes {
        self.0.data.clone()
    }
    fn nats_error_details(&self) -> Vec<Any> {
        self.0.details.clone()
    }
    fn into_error(self) -> Error {
        self
    }
}

/// Common error types convert into every generated service error with `?`
/// as INTERNAL: their text is logged by the service and not sent to the
/// caller (unless the service exposes internal errors).
macro_rules! internal_handler_errors {
    ($($ty:ty),* $(,)?) => { $( impl HandlerError for $ty {} )* };
}

internal_handler_errors!(
    std::io::Error,
    std::fmt::Error,
    std::num::ParseIntError,
    std::num::ParseFloatError,
    std::str::Utf8Error,
    std::string::FromUtf8Error,
    serde_json::Error,
    prost::DecodeError,
    prost::EncodeError,
    Box<dyn StdError + Send + Sync>,
);

/// Why [`ServiceBuilder::start`](crate::ServiceBuilder::start) failed: a
/// setup failure, not the error of a call.
///
/// ```
/// use nats_micro_runtime::StartError;
/// let err = StartError::InvalidConfig("service name \"a b\" must match [A-Za-z0-9_-]+".into());
/// assert!(err.to_string().starts_with("invalid service configuration"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A name, version, subject or queue group is not valid.
    #[error("invalid service configuration: {0}")]
    InvalidConfig(String),
    /// The server refused a subscription, or the connection is gone.
    #[error("subscribing to {subject}: {source}")]
    Subscribe {
        /// The subject that could not be subscribed.
        subject: String,
        /// What async-nats reported.
        #[source]
        source: async_nats::SubscribeError,
    },
    /// The discovery documents could not be encoded.
    #[error("encoding the service's discovery documents: {0}")]
    Discovery(#[from] serde_json::Error),
    /// A bucket of a persisting method could not be created or updated
    /// (PROTOCOL §12.2): `FAILED_PRECONDITION`, naming JetStream and the bucket.
    #[error("{0}")]
    Store(Error),
}

impl StartError {
    /// The typed error, when the failure has one ([`StartError::Store`]).
    ///
    /// ```
    /// use nats_micro_runtime::{Code, Error, StartError};
    /// let err = StartError::Store(Error::failed_precondition("key-value bucket \"profiles\": JetStream is not enabled"));
    /// assert_eq!(err.error().map(Error::code), Some(&Code::FailedPrecondition));
    /// ```
    pub fn error(&self) -> Option<&Error> {
        match self {
            StartError::Store(err) => Some(err),
            _ => None,
        }
    }
}
