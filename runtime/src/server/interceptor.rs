//! Server interceptors and the handler they wrap.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use crate::context::RequestContext;
use crate::error::Error;
use crate::future::BoxFuture;

/// What finally serves a request after the interceptors: decodes the
/// payload, runs the handler, encodes the reply. Generated code builds one
/// per endpoint.
pub trait EndpointHandler: Send + Sync + 'static {
    /// Serves one request.
    fn call(&self, ctx: RequestContext, payload: Bytes) -> BoxFuture<Result<Bytes, Error>>;

    /// Whether this endpoint serves streams (PROTOCOL §9): the service then
    /// admits opens by their `Reply-To` and ends them instead of replying.
    #[doc(hidden)]
    fn is_stream(&self) -> bool {
        false
    }

    /// Binds what the endpoint needs on the connection before it serves
    /// (a persisting endpoint's buckets, PROTOCOL §12.2); run at start and
    /// after a move to a new connection.
    #[doc(hidden)]
    fn prepare(&self, _nats: &async_nats::Client) -> BoxFuture<Result<(), crate::error::StartError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Best-effort persistence failures so far, for a persisting endpoint
    /// (its STATS `data.persist_failures`); `None` for the others.
    #[doc(hidden)]
    fn persist_failures(&self) -> Option<u64> {
        None
    }
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

impl<F> std::fmt::Debug for ServerInterceptorFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerInterceptorFn(..)")
    }
}

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

impl std::fmt::Debug for ServerNext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerNext").field("remaining_interceptors", &(self.chain.len() - self.index)).finish_non_exhaustive()
    }
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
