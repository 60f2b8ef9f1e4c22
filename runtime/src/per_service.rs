//! What every generated service module has in common, written once.
//!
//! A generated module keeps only what differs per service (its spec, the
//! server trait, the RPC methods of the client) and invokes
//! [`service_error!`](crate::service_error) and
//! [`service_client!`](crate::service_client) for the rest: the code enum,
//! the error type and the client's plumbing. The macros expand to plain
//! items, so users see ordinary types with inherent methods (an exhaustive
//! `match` over the code enum, `OrderServiceError::order_expired(..)`)
//! exactly as if they had been generated in full.
//!
//! Everything here is reached by generated code through `crate::codegen`
//! only; nothing is meant to be called by hand.

use std::future::Future;
use std::sync::Arc;

use crate::codegen::{Client, Codec, EndpointHandler, EndpointInfo, EndpointSpec, Error, RequestContext};
use crate::server::stream::{StreamCall, stream_handler};
use crate::store::StoreKeys;
use crate::stream::{ResponseSender, StreamKind, Streaming};

/// The handler of one unary RPC of a service implementation `S`: decodes
/// with codec `C`, calls `call` with a shared handle on the service, and
/// names the RPC (`method`, its proto name) on the error it returns, so
/// that interceptors and logs see it without the handler naming it.
pub fn unary_method<C, S, Req, Resp, E, F, Fut>(
    _codec: C,
    method: &'static str,
    service: &Arc<S>,
    call: F,
) -> Arc<dyn EndpointHandler>
where
    C: Codec<Req> + Codec<Resp>,
    S: Send + Sync + 'static,
    Req: Send + 'static,
    Resp: Send + 'static,
    E: Into<Error> + Send + 'static,
    F: Fn(Arc<S>, RequestContext, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, E>> + Send + 'static,
{
    let service = Arc::clone(service);
    crate::codegen::unary_handler::<C, Req, Resp, Error, _, _>(move |ctx, request| {
        let response = call(Arc::clone(&service), ctx, request);
        async move { response.await.map_err(|err| err.into().with_method(method)) }
    })
}

/// [`unary_method`] for an RPC that persists its responses (`kv_store`,
/// `object_store`; PROTOCOL §12): `spec` is its endpoint spec, which names
/// the stores, and `keys` its key functions.
pub fn stored_unary_method<C, S, Req, Resp, E, F, Fut>(
    _codec: C,
    method: &'static str,
    service: &Arc<S>,
    spec: &'static EndpointSpec,
    keys: StoreKeys<Req>,
    call: F,
) -> Arc<dyn EndpointHandler>
where
    C: Codec<Req> + Codec<Resp>,
    S: Send + Sync + 'static,
    Req: Send + 'static,
    Resp: Send + 'static,
    E: Into<Error> + Send + 'static,
    F: Fn(Arc<S>, RequestContext, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, E>> + Send + 'static,
{
    let service = Arc::clone(service);
    crate::server::stored_unary_handler::<C, Req, Resp, Error, _, _>(spec, keys, move |ctx, request| {
        let response = call(Arc::clone(&service), ctx, request);
        async move { response.await.map_err(|err| err.into().with_method(method)) }
    })
}

/// The handler of one server-streaming RPC: `call` gets the request and a
/// [`ResponseSender`] and returns once it has sent everything.
pub fn server_streaming_method<C, S, Req, Resp, E, F, Fut>(
    _codec: C,
    method: &'static str,
    service: &Arc<S>,
    call: F,
) -> Arc<dyn EndpointHandler>
where
    C: Codec<Req> + Codec<Resp>,
    S: Send + Sync + 'static,
    Req: Send + 'static,
    Resp: Send + 'static,
    E: Into<Error> + From<Error> + Send + 'static,
    F: Fn(Arc<S>, RequestContext, Req, ResponseSender<Resp>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
{
    let start =
        move |service, ctx, parts: StreamCall<Req, Resp, E>| parts.request.map(|r| call(service, ctx, r, parts.responses));
    stream_method::<C, S, Req, Resp, E, (), Fut>(StreamKind::Server, method, service, start, |()| None)
}

/// The handler of one client-streaming RPC: `call` reads the caller's
/// messages and returns the one response.
pub fn client_streaming_method<C, S, Req, Resp, E, F, Fut>(
    _codec: C,
    method: &'static str,
    service: &Arc<S>,
    call: F,
) -> Arc<dyn EndpointHandler>
where
    C: Codec<Req> + Codec<Resp>,
    S: Send + Sync + 'static,
    Req: Send + 'static,
    Resp: Send + 'static,
    E: Into<Error> + From<Error> + Send + 'static,
    F: Fn(Arc<S>, RequestContext, Streaming<Req, E>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, E>> + Send + 'static,
{
    let start = move |service, ctx, parts: StreamCall<Req, Resp, E>| parts.requests.map(|r| call(service, ctx, r));
    stream_method::<C, S, Req, Resp, E, Resp, Fut>(StreamKind::Client, method, service, start, Some)
}

/// The handler of one bidirectional RPC: `call` reads the caller's
/// messages and sends responses until it returns.
pub fn bidi_streaming_method<C, S, Req, Resp, E, F, Fut>(
    _codec: C,
    method: &'static str,
    service: &Arc<S>,
    call: F,
) -> Arc<dyn EndpointHandler>
where
    C: Codec<Req> + Codec<Resp>,
    S: Send + Sync + 'static,
    Req: Send + 'static,
    Resp: Send + 'static,
    E: Into<Error> + From<Error> + Send + 'static,
    F: Fn(Arc<S>, RequestContext, Streaming<Req, E>, ResponseSender<Resp>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
{
    let start =
        move |service, ctx, parts: StreamCall<Req, Resp, E>| parts.requests.map(|r| call(service, ctx, r, parts.responses));
    stream_method::<C, S, Req, Resp, E, (), Fut>(StreamKind::Bidirectional, method, service, start, |()| None)
}

/// What the three streaming constructors share: `start` picks the parts
/// of its shape from the call (none missing for the shape the runtime
/// built it for), and `response` turns its outcome into the
/// client-streaming response, if any. Errors name the RPC.
fn stream_method<C, S, Req, Resp, E, Out, Fut>(
    shape: StreamKind,
    method: &'static str,
    service: &Arc<S>,
    start: impl Fn(Arc<S>, RequestContext, StreamCall<Req, Resp, E>) -> Option<Fut> + Send + Sync + 'static,
    response: fn(Out) -> Option<Resp>,
) -> Arc<dyn EndpointHandler>
where
    C: Codec<Req> + Codec<Resp>,
    S: Send + Sync + 'static,
    Req: Send + 'static,
    Resp: Send + 'static,
    E: Into<Error> + From<Error> + Send + 'static,
    Out: Send + 'static,
    Fut: Future<Output = Result<Out, E>> + Send + 'static,
{
    let service = Arc::clone(service);
    stream_handler::<C, Req, Resp, E, _, _>(shape, move |ctx, parts| {
        let call = start(Arc::clone(&service), ctx, parts);
        async move {
            let outcome = match call {
                Some(call) => call.await.map_err(Into::into),
                None => Err(Error::internal("a stream call without the parts of its shape")),
            };
            outcome.map(response).map_err(|err| err.with_method(method))
        }
    })
}

/// Endpoint names and the subjects `client` sends them to, in `specs` order.
pub fn endpoint_infos(client: &Client, specs: &[EndpointSpec]) -> Vec<EndpointInfo> {
    specs
        .iter()
        .map(|spec| EndpointInfo {
            name: spec.method.endpoint.into(),
            subject: client.subject(spec.method.endpoint),
            queue_group: None,
            metadata: spec.info_metadata(),
        })
        .collect()
}

/// The code enum and the error type of one service.
///
/// ```ignore
/// service_error! {
///     service "order.v1.OrderService";
///     code OrderServiceErrorCode;
///     error OrderServiceError;
///     custom { ORDER_EXPIRED => OrderExpired, order_expired, is_order_expired; }
/// }
/// ```
///
/// Each custom code is its UPPER_SNAKE wire name (which becomes an
/// associated string constant), then the enum variant, the constructor and
/// the checker; the generator picks names that clash with nothing. The
/// canonical codes come first, in the Go plugin's order: the seven built-in
/// codes, then the nine further ones.
#[doc(hidden)]
#[macro_export]
macro_rules! service_error {
    (
        service $service:literal;
        code $code:ident;
        error $error:ident;
        custom { $( $wire:ident => $variant:ident, $constructor:ident, $checker:ident; )* }
    ) => {
        $crate::__service_error_items! {
            service $service;
            code $code;
            error $error;
            canonical {
                INVALID_ARGUMENT => InvalidArgument, invalid_argument, is_invalid_argument;
                NOT_FOUND => NotFound, not_found, is_not_found;
                ALREADY_EXISTS => AlreadyExists, already_exists, is_already_exists;
                PERMISSION_DENIED => PermissionDenied, permission_denied, is_permission_denied;
                UNAUTHENTICATED => Unauthenticated, unauthenticated, is_unauthenticated;
                INTERNAL => Internal, internal, is_internal;
                UNAVAILABLE => Unavailable, unavailable, is_unavailable;
                CANCELLED => Cancelled, cancelled, is_cancelled;
                UNKNOWN => Unknown, unknown, is_unknown;
                DEADLINE_EXCEEDED => DeadlineExceeded, deadline_exceeded, is_deadline_exceeded;
                RESOURCE_EXHAUSTED => ResourceExhausted, resource_exhausted, is_resource_exhausted;
                FAILED_PRECONDITION => FailedPrecondition, failed_precondition, is_failed_precondition;
                ABORTED => Aborted, aborted, is_aborted;
                OUT_OF_RANGE => OutOfRange, out_of_range, is_out_of_range;
                UNIMPLEMENTED => Unimplemented, unimplemented, is_unimplemented;
                DATA_LOSS => DataLoss, data_loss, is_data_loss;
            }
            custom { $( $wire => $variant, $constructor, $checker; )* }
        }
    };
}

/// The expansion of [`service_error!`](crate::service_error), with the
/// canonical codes spelled out (a canonical variant has the name of the
/// runtime `Code` variant it stands for).
#[doc(hidden)]
#[macro_export]
macro_rules! __service_error_items {
    (
        service $service:literal;
        code $code:ident;
        error $error:ident;
        canonical { $( $cwire:ident => $cvariant:ident, $cconstructor:ident, $cchecker:ident; )* }
        custom { $( $wire:ident => $variant:ident, $constructor:ident, $checker:ident; )* }
    ) => {
        #[doc = ::core::concat!(
            " The codes `", $service, "` can return: the canonical codes (in the Go plugin's order), ",
            "the custom codes from `error_codes`, and any other code kept verbatim."
        )]
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $code {
            $(
                #[doc = ::core::concat!(" Canonical code `", ::core::stringify!($cwire), "`.")]
                $cvariant,
            )*
            $(
                #[doc = ::core::concat!(" Custom code `", ::core::stringify!($wire), "`, declared in `error_codes` (sent by name).")]
                $variant,
            )*
            /// A code this service does not declare, kept verbatim.
            Unrecognized(::std::string::String),
        }

        impl $code {
            /// The canonical codes, in the Go plugin's order.
            pub const CANONICAL: [$code; 16] = [$( $code::$cvariant ),*];
            $(
                #[doc = ::core::concat!(" `", ::core::stringify!($cwire), "` as a string.")]
                pub const $cwire: &'static str = ::core::stringify!($cwire);
            )*
            $(
                #[doc = ::core::concat!(" `", ::core::stringify!($wire), "` as a string.")]
                pub const $wire: &'static str = ::core::stringify!($wire);
            )*

            /// The code's name (or the verbatim value of an unrecognised code).
            pub fn as_str(&self) -> &str {
                match self {
                    $( $code::$cvariant => ::core::stringify!($cwire), )*
                    $( $code::$variant => ::core::stringify!($wire), )*
                    $code::Unrecognized(raw) => raw,
                }
            }

            /// Classifies a runtime code.
            pub fn from_code(code: &$crate::codegen::Code) -> Self {
                match code {
                    $( $crate::codegen::Code::$cvariant => $code::$cvariant, )*
                    $( $crate::codegen::Code::Custom(name) if name == ::core::stringify!($wire) => $code::$variant, )*
                    other => $code::Unrecognized(other.as_str().into()),
                }
            }

            /// The runtime code.
            pub fn to_code(&self) -> $crate::codegen::Code {
                match self {
                    $( $code::$cvariant => $crate::codegen::Code::$cvariant, )*
                    $( $code::$variant => $crate::codegen::Code::Custom(::std::borrow::Cow::Borrowed(::core::stringify!($wire))), )*
                    $code::Unrecognized(raw) => $crate::codegen::Code::from_wire(raw),
                }
            }
        }

        impl ::core::fmt::Display for $code {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        #[doc = ::core::concat!(" An error of `", $service, "`: a [`", ::core::stringify!($code), "`], a message, optional data and headers.")]
        ///
        /// Derefs to the runtime error for the method, the kind and the
        /// transport checks (`is_timeout`, `is_no_responders`).
        #[derive(Clone, Debug)]
        pub struct $error(pub $crate::codegen::Error);

        impl $error {
            /// An error with any code. The runtime names the RPC it came from.
            pub fn new(code: $code, message: impl ::core::convert::Into<::std::string::String>) -> Self {
                $error($crate::codegen::Error::new(code.to_code(), message))
            }

            $(
                #[doc = ::core::concat!(" A `", ::core::stringify!($cwire), "` error.")]
                pub fn $cconstructor(message: impl ::core::convert::Into<::std::string::String>) -> Self {
                    $error($crate::codegen::Error::new($crate::codegen::Code::$cvariant, message))
                }
            )*
            $(
                #[doc = ::core::concat!(" A `", ::core::stringify!($wire), "` error.")]
                pub fn $constructor(message: impl ::core::convert::Into<::std::string::String>) -> Self {
                    $error::new($code::$variant, message)
                }
            )*

            /// The code, classified for this service.
            pub fn code(&self) -> $code {
                $code::from_code(self.0.code())
            }

            $(
                #[doc = ::core::concat!(" Whether the code is `", ::core::stringify!($cwire), "`.")]
                pub fn $cchecker(&self) -> bool {
                    *self.0.code() == $crate::codegen::Code::$cvariant
                }
            )*
            $(
                #[doc = ::core::concat!(" Whether the code is `", ::core::stringify!($wire), "`.")]
                pub fn $checker(&self) -> bool {
                    ::core::matches!(self.0.code(), $crate::codegen::Code::Custom(name) if name == ::core::stringify!($wire))
                }
            )*

            /// The human-readable message.
            pub fn message(&self) -> &str {
                self.0.message()
            }

            /// The error data: the body of the error reply (may be empty).
            pub fn data(&self) -> &$crate::codegen::Bytes {
                self.0.data()
            }

            /// Headers: those of the reply on the client, those to send on the server.
            pub fn headers(&self) -> ::core::option::Option<&$crate::codegen::async_nats::HeaderMap> {
                self.0.headers()
            }

            /// Sets the error data (sent as the reply body).
            pub fn with_data(self, data: impl ::core::convert::Into<$crate::codegen::Bytes>) -> Self {
                $error(self.0.with_data(data))
            }

            /// Adds a header to the error reply.
            pub fn with_header(self, name: &str, value: &str) -> Self {
                $error(self.0.with_header(name, value))
            }

            /// Adds any message as a typed detail (PROTOCOL §4.1).
            pub fn with_detail<M: $crate::codegen::prost::Name>(self, detail: &M) -> Self {
                $error(self.0.with_detail(detail))
            }

            /// Adds a detail already packed as `google.protobuf.Any`.
            pub fn with_any(self, detail: $crate::rpc::Any) -> Self {
                $error(self.0.with_any(detail))
            }

            /// Adds a `google.rpc.ErrorInfo`.
            pub fn with_error_info(self, info: $crate::rpc::ErrorInfo) -> Self {
                $error(self.0.with_error_info(info))
            }

            /// Adds a `google.rpc.RetryInfo` asking the caller to wait `delay`.
            pub fn with_retry_info(self, delay: ::core::time::Duration) -> Self {
                $error(self.0.with_retry_info(delay))
            }

            /// Adds a `google.rpc.BadRequest` of one field violation.
            pub fn with_field_violation(
                self,
                field: impl ::core::convert::Into<::std::string::String>,
                description: impl ::core::convert::Into<::std::string::String>,
            ) -> Self {
                $error(self.0.with_field_violation(field, description))
            }

            /// Adds a `google.rpc.LocalizedMessage`.
            pub fn with_localized_message(
                self,
                locale: impl ::core::convert::Into<::std::string::String>,
                message: impl ::core::convert::Into<::std::string::String>,
            ) -> Self {
                $error(self.0.with_localized_message(locale, message))
            }

            /// Changes the runtime error underneath: the way to every other
            /// detail builder of the runtime error (`with_quota_failure`, `with_help`, …).
            pub fn map(self, f: impl ::core::ops::FnOnce($crate::codegen::Error) -> $crate::codegen::Error) -> Self {
                $error(f(self.0))
            }

            /// The runtime error.
            pub fn into_inner(self) -> $crate::codegen::Error {
                self.0
            }
        }

        impl ::core::ops::Deref for $error {
            type Target = $crate::codegen::Error;
            fn deref(&self) -> &$crate::codegen::Error {
                &self.0
            }
        }

        impl ::core::fmt::Display for $error {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Display::fmt(&self.0, f)
            }
        }

        impl ::std::error::Error for $error {
            fn source(&self) -> ::core::option::Option<&(dyn ::std::error::Error + 'static)> {
                ::std::error::Error::source(&self.0)
            }
        }

        impl ::core::convert::From<$error> for $crate::codegen::Error {
            fn from(error: $error) -> $crate::codegen::Error {
                error.0
            }
        }

        /// Any `HandlerError` (including the runtime error) converts with `?`.
        impl<E: $crate::codegen::HandlerError> ::core::convert::From<E> for $error {
            fn from(error: E) -> Self {
                $error(error.into_error())
            }
        }
    };
}

/// The typed client of one service, without its RPC methods (the generator
/// adds those in an `impl` block of its own): construction, configuration,
/// and the endpoint list, over the module's `SERVICE` and `ENDPOINTS`.
/// Attributes before `client` (e.g. `#[deprecated]`) go on the struct.
///
/// ```ignore
/// service_client! {
///     service "order.v1.OrderService"; client OrderServiceClient; codec Protobuf; error OrderServiceError;
///     spec SERVICE, ENDPOINTS;
/// }
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! service_client {
    (
        service $service:literal; $(#[$attr:meta])* client $client:ident; codec $codec:path; error $error:ident;
        spec $spec:ident, $endpoints:ident;
    ) => {
        #[doc = ::core::concat!(" Typed client for `", $service, "`.")]
        $(#[$attr])*
        #[derive(Clone, Debug)]
        pub struct $client {
            inner: $crate::codegen::Client,
        }

        #[allow(deprecated, reason = "a deprecated service still has a working client")]
        impl $client {
            /// A client with the proto's subject prefix and timeouts.
            pub fn new(nats: $crate::codegen::async_nats::Client) -> Self {
                $client { inner: $crate::codegen::Client::new(nats, $spec.subject_prefix).with_service_name($service) }
            }

            /// A client over a configured runtime client (interceptors, headers,
            /// timeout, retries, circuit breakers).
            pub fn from_client(inner: $crate::codegen::Client) -> Self {
                $client { inner: inner.with_service_name($service) }
            }

            /// Sends to another subject prefix.
            pub fn with_subject_prefix(self, prefix: &str) -> Self {
                $client { inner: self.inner.with_subject_prefix(prefix) }
            }

            /// Sets a timeout for every call, over the proto's.
            pub fn with_timeout(self, timeout: ::core::time::Duration) -> Self {
                $client { inner: self.inner.with_timeout(timeout) }
            }

            /// Adds a header to every call.
            pub fn with_header(self, name: &str, value: &str) -> Self {
                $client { inner: self.inner.with_header(name, value) }
            }

            /// Adds an interceptor; the first added runs outermost.
            pub fn with_interceptor(self, interceptor: impl $crate::codegen::ClientInterceptor) -> Self {
                $client { inner: self.inner.with_interceptor(interceptor) }
            }

            /// Sets the retry policy of every unary call (PROTOCOL §10.1).
            pub fn with_retry_policy(self, policy: $crate::retry::RetryPolicy) -> Self {
                $client { inner: self.inner.with_retry_policy(policy) }
            }

            /// Sets the retry policy of one method (by proto name), over the client's.
            pub fn with_method_retry_policy(self, method: &str, policy: $crate::retry::RetryPolicy) -> Self {
                $client { inner: self.inner.with_method_retry_policy(method, policy) }
            }

            /// Replaces the retry budget (a token bucket shared by all calls).
            pub fn with_retry_budget(self, max_tokens: f64, token_ratio: f64) -> Self {
                $client { inner: self.inner.with_retry_budget(max_tokens, token_ratio) }
            }

            /// Guards every unary call with a circuit breaker (PROTOCOL §10.2).
            pub fn with_circuit_breaker(self, breaker: $crate::breaker::CircuitBreaker) -> Self {
                $client { inner: self.inner.with_circuit_breaker(breaker) }
            }

            /// The runtime client underneath.
            pub fn inner(&self) -> &$crate::codegen::Client {
                &self.inner
            }

            /// The runtime client underneath, by value.
            pub fn into_inner(self) -> $crate::codegen::Client {
                self.inner
            }

            /// Endpoint names and the subjects this client sends to, in proto order.
            pub fn endpoints(&self) -> ::std::vec::Vec<$crate::codegen::EndpointInfo> {
                $crate::codegen::endpoint_infos(&self.inner, &$endpoints)
            }
        }

        /// One unary call of `client` to `endpoint`, with the service's codec
        /// and error type: the body of every RPC method of the client. A free
        /// function, so that no RPC name can clash with it.
        #[allow(dead_code, reason = "a service without unary RPCs calls nothing")]
        #[allow(deprecated, reason = "a deprecated service still has a working client")]
        async fn call_unary<Req, Resp>(
            client: &$client,
            endpoint: &'static $crate::codegen::EndpointSpec,
            request: impl $crate::codegen::IntoRequest<Req>,
        ) -> ::core::result::Result<$crate::codegen::Response<Resp>, $error>
        where
            $codec: $crate::codegen::Codec<Req> + $crate::codegen::Codec<Resp>,
        {
            client.inner.unary::<$codec, Req, Resp>(&endpoint.method, request.into_request()).await.map_err($error)
        }

        /// One server-streaming call: the body of every such RPC method.
        #[allow(dead_code, reason = "a service without server-streaming RPCs calls nothing")]
        #[allow(deprecated, reason = "a deprecated service still has a working client")]
        async fn call_server_streaming<Req, Resp>(
            client: &$client,
            endpoint: &'static $crate::codegen::EndpointSpec,
            request: impl $crate::codegen::IntoRequest<Req>,
        ) -> ::core::result::Result<$crate::codegen::Streaming<Resp, $error>, $error>
        where
            $codec: $crate::codegen::Codec<Req> + $crate::codegen::Codec<Resp>,
        {
            client
                .inner
                .server_streaming::<$codec, Req, Resp, $error>(&endpoint.method, endpoint.window, request.into_request())
                .await
                .map_err($error)
        }

        /// One client-streaming call: the body of every such RPC method.
        #[allow(dead_code, reason = "a service without client-streaming RPCs calls nothing")]
        #[allow(deprecated, reason = "a deprecated service still has a working client")]
        async fn call_client_streaming<Req, Resp>(
            client: &$client,
            endpoint: &'static $crate::codegen::EndpointSpec,
            requests: impl $crate::codegen::IntoStreamingRequest<Message = Req>,
        ) -> ::core::result::Result<$crate::codegen::Response<Resp>, $error>
        where
            $codec: $crate::codegen::Codec<Req> + $crate::codegen::Codec<Resp>,
            Req: ::core::marker::Send + 'static,
        {
            client
                .inner
                .client_streaming::<$codec, Req, Resp, _>(&endpoint.method, endpoint.window, requests.into_streaming_request())
                .await
                .map_err($error)
        }

        /// One bidirectional call: the body of every such RPC method.
        #[allow(dead_code, reason = "a service without bidirectional RPCs calls nothing")]
        #[allow(deprecated, reason = "a deprecated service still has a working client")]
        async fn call_bidi_streaming<Req, Resp>(
            client: &$client,
            endpoint: &'static $crate::codegen::EndpointSpec,
            requests: impl $crate::codegen::IntoStreamingRequest<Message = Req>,
        ) -> ::core::result::Result<$crate::codegen::Streaming<Resp, $error>, $error>
        where
            $codec: $crate::codegen::Codec<Req> + $crate::codegen::Codec<Resp>,
            Req: ::core::marker::Send + 'static,
        {
            client
                .inner
                .bidi_streaming::<$codec, Req, Resp, $error, _>(&endpoint.method, endpoint.window, requests.into_streaming_request())
                .await
                .map_err($error)
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::codegen::Code;

    crate::service_error! {
        service "test.v1.Shop";
        code ShopCode;
        error ShopError;
        custom {
            ORDER_EXPIRED => OrderExpired, order_expired, is_order_expired;
            UNRECOGNIZED => UnrecognizedCode, unrecognized, is_unrecognized;
        }
    }

    /// The order users see in the enum and its `CANONICAL` list: the Go
    /// plugin's (built-ins first), pinned here against the runtime's table.
    const GO_ORDER: [&str; 16] = [
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "INTERNAL",
        "UNAVAILABLE",
        "CANCELLED",
        "UNKNOWN",
        "DEADLINE_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "DATA_LOSS",
    ];

    #[test]
    fn canonical_codes_follow_the_go_order_and_the_runtime_table() {
        let names: Vec<&str> = ShopCode::CANONICAL.iter().map(ShopCode::as_str).collect();
        assert_eq!(names, GO_ORDER);
        let mut runtime = Code::CANONICAL_NAMES.to_vec();
        let mut ours = names.clone();
        runtime.sort_unstable();
        ours.sort_unstable();
        assert_eq!(ours, runtime, "the macro knows exactly the runtime's canonical codes");
        for (code, name) in ShopCode::CANONICAL.iter().zip(GO_ORDER) {
            let runtime = Code::from_wire(name);
            assert_eq!(code.to_code(), runtime);
            assert_eq!(&ShopCode::from_code(&runtime), code);
            assert!(ShopError::new(code.clone(), "m").code() == *code);
        }
    }

    #[test]
    fn custom_codes_round_trip_and_others_are_kept_verbatim() {
        let err = ShopError::order_expired("too old");
        assert!(err.is_order_expired() && !err.is_internal());
        assert_eq!((err.code(), err.message()), (ShopCode::OrderExpired, "too old"));
        assert_eq!(ShopCode::ORDER_EXPIRED, "ORDER_EXPIRED");
        assert_eq!(err.code().to_code(), Code::custom("ORDER_EXPIRED"));
        assert_eq!(ShopCode::from_code(&Code::from_wire("TEAPOT")), ShopCode::Unrecognized("TEAPOT".into()));
        assert_eq!(ShopCode::from_code(&Code::from_wire("418")).to_code(), Code::from_wire("418"));
        // A custom code named like the catch-all keeps both apart.
        assert_eq!(ShopCode::from_code(&Code::custom("UNRECOGNIZED")), ShopCode::UnrecognizedCode);
        assert!(ShopError::unrecognized("x").is_unrecognized());
    }

    #[test]
    fn errors_carry_data_and_headers_and_convert_both_ways() {
        let err = ShopError::not_found("gone").with_data(&b"42"[..]).with_header("X-A", "b");
        assert!(err.is_not_found());
        assert_eq!(&err.data()[..], b"42");
        assert_eq!(err.headers().and_then(|h| h.get("X-A")).map(|v| v.as_str()), Some("b"));
        let runtime: crate::Error = err.clone().into();
        assert_eq!(runtime.code(), &Code::NotFound);
        let back: ShopError = runtime.into();
        assert_eq!(back.to_string(), err.to_string());
        assert_eq!(back.into_inner().message(), "gone");
    }
}
