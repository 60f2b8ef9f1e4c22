//! Server and client interceptors: code that runs around every call.
//!
//! Interceptors are chained in registration order: the first registered runs
//! outermost, sees the request first and the result last. Each gets the call
//! and a `next` to continue the chain; returning without calling `next`
//! short-circuits the call with that result.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::context::RequestContext;
use crate::error::Error;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What finally serves a request after the interceptors: decodes the
/// payload, runs the handler, encodes the reply. Generated code builds one
/// per endpoint.
pub trait EndpointHandler: Send + Sync + 'static {
    /// Serves one request.
    fn call(&self, ctx: RequestContext, payload: Bytes) -> BoxFuture<Result<Bytes, Error>>;
}

/// Runs around every request of a service.
///
/// ```
/// use nats_micro_runtime::{Error, RequestContext};
/// use nats_micro_runtime::interceptor::{BoxFuture, ServerInterceptor, ServerNext};
///
/// /// Rejects requests without an `Authorization` header.
/// struct RequireAuth;
///
/// impl ServerInterceptor for RequireAuth {
///     fn intercept(&self, ctx: RequestContext, payload: bytes::Bytes, next: ServerNext) -> BoxFuture<Result<bytes::Bytes, Error>> {
///         if ctx.header("Authorization").is_none() {
///             return Box::pin(async { Err(Error::unauthenticated("missing Authorization")) });
///         }
///         next.run(ctx, payload)
///     }
/// }
/// ```
pub trait ServerInterceptor: Send + Sync + 'static {
    /// Handles one request: inspect or change `ctx`, call `next.run(ctx,
    /// payload)` to continue, or return an error to short-circuit.
    fn intercept(&self, ctx: RequestContext, payload: Bytes, next: ServerNext) -> BoxFuture<Result<Bytes, Error>>;
}

/// A server interceptor from an async closure (see [`crate::ServiceBuilder::interceptor_fn`]).
pub struct ServerInterceptorFn<F>(pub F);

impl<F, Fut> ServerInterceptor for ServerInterceptorFn<F>
where
    F: Fn(RequestContext, Bytes, ServerNext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, Error>> + Send + 'static,
{
    fn intercept(&self, ctx: RequestContext, payload: Bytes, next: ServerNext) -> BoxFuture<Result<Bytes, Error>> {
        Box::pin((self.0)(ctx, payload, next))
    }
}

/// The rest of a server chain: further interceptors, then the handler.
pub struct ServerNext {
    chain: Arc<[Arc<dyn ServerInterceptor>]>,
    index: usize,
    handler: Arc<dyn EndpointHandler>,
}

impl ServerNext {
    pub(crate) fn start(chain: Arc<[Arc<dyn ServerInterceptor>]>, handler: Arc<dyn EndpointHandler>) -> Self {
        ServerNext { chain, index: 0, handler }
    }

    /// Continues the chain with this context and payload.
    pub fn run(self, ctx: RequestContext, payload: Bytes) -> BoxFuture<Result<Bytes, Error>> {
        match self.chain.get(self.index).cloned() {
            Some(interceptor) => {
                let next = ServerNext { index: self.index + 1, ..self };
                interceptor.intercept(ctx, payload, next)
            }
            None => self.handler.call(ctx, payload),
        }
    }
}

/// One outgoing call as client interceptors see it.
#[derive(Clone, Debug)]
pub struct ClientCall {
    /// The RPC method's proto name (`CreateOrder`).
    pub method: &'static str,
    /// The subject the request goes to.
    pub subject: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// How long to wait for the reply.
    pub timeout: Option<Duration>,
    /// The encoded request.
    pub payload: Bytes,
}

/// A successful reply as client interceptors see it.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The encoded response.
    pub payload: Bytes,
    /// Reply headers.
    pub headers: HeaderMap,
}

/// Runs around every call of a client.
///
/// ```
/// use nats_micro_runtime::Error;
/// use nats_micro_runtime::interceptor::{BoxFuture, ClientCall, ClientInterceptor, ClientNext, Reply};
///
/// /// Adds a bearer token to every call.
/// struct Bearer(String);
///
/// impl ClientInterceptor for Bearer {
///     fn intercept(&self, mut call: ClientCall, next: ClientNext) -> BoxFuture<Result<Reply, Error>> {
///         call.headers.insert("Authorization", format!("Bearer {}", self.0).as_str());
///         next.run(call)
///     }
/// }
/// ```
pub trait ClientInterceptor: Send + Sync + 'static {
    /// Handles one call: inspect or change it, call `next.run(call)` to
    /// continue, or return an error to short-circuit.
    fn intercept(&self, call: ClientCall, next: ClientNext) -> BoxFuture<Result<Reply, Error>>;
}

/// A client interceptor from an async closure (see [`crate::Client::interceptor_fn`]).
pub struct ClientInterceptorFn<F>(pub F);

impl<F, Fut> ClientInterceptor for ClientInterceptorFn<F>
where
    F: Fn(ClientCall, ClientNext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Reply, Error>> + Send + 'static,
{
    fn intercept(&self, call: ClientCall, next: ClientNext) -> BoxFuture<Result<Reply, Error>> {
        Box::pin((self.0)(call, next))
    }
}

/// The rest of a client chain: further interceptors, then the NATS request.
pub struct ClientNext {
    chain: Arc<[Arc<dyn ClientInterceptor>]>,
    index: usize,
    nats: async_nats::Client,
}

impl ClientNext {
    pub(crate) fn start(chain: Arc<[Arc<dyn ClientInterceptor>]>, nats: async_nats::Client) -> Self {
        ClientNext { chain, index: 0, nats }
    }

    /// Continues the chain with this call.
    pub fn run(self, call: ClientCall) -> BoxFuture<Result<Reply, Error>> {
        match self.chain.get(self.index).cloned() {
            Some(interceptor) => {
                let next = ClientNext { index: self.index + 1, ..self };
                interceptor.intercept(call, next)
            }
            None => Box::pin(async move { crate::client::send(&self.nats, call).await }),
        }
    }
}
