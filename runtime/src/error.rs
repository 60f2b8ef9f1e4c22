//! The error type of every call and handler, and the trait by which a
//! handler's own errors say what to reply.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::sync::Arc;

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::code::Code;

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
/// body) and the reply's headers. Transport failures have a [`ErrorKind`]
/// other than [`ErrorKind::Service`] and a sensible code.
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
    kind: ErrorKind,
    /// Text that must not reach the caller (an uncoded handler error); it is
    /// logged by the service and sent only when the service opts in.
    detail: Option<String>,
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
            kind: ErrorKind::Service,
            detail: None,
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
    /// assert_eq!(err.detail(), Some("disk /dev/sdb1 failed"));
    /// ```
    pub fn from_internal(error: impl StdError + Send + Sync + 'static) -> Error {
        let detail = error.to_string();
        let mut err = Error::new(Code::Internal, INTERNAL_MESSAGE);
        err.0.detail = Some(detail);
        err.0.source = Some(Arc::new(error));
        err
    }

    /// An error from what a handler returned, through [`HandlerError`].
    pub fn from_handler_error<E: HandlerError + ?Sized>(error: &E) -> Error {
        match error.nats_error_code() {
            Some(code) => Error::new(code, error.nats_error_message()).with_data(error.nats_error_data()),
            None => {
                let mut err = Error::new(Code::Internal, INTERNAL_MESSAGE);
                err.0.detail = Some(error.nats_error_message());
                err
            }
        }
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
    pub fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
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
}
