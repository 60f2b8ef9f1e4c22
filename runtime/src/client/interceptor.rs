//! Client interceptors: code that runs around every call of a client.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::error::Error;
use crate::future::BoxFuture;

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

/// Runs around every call of a client, and around every stream: there
/// `next.run(call)` opens the stream and resolves when it ends, with its
/// end (body and trailing headers) or its error (`CANCELLED` when the
/// caller drops the stream), and what the interceptor returns is what the
/// caller sees at the end (PROTOCOL §9.7).
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

impl<F> std::fmt::Debug for ClientInterceptorFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientInterceptorFn(..)")
    }
}

impl<F, Fut> ClientInterceptor for ClientInterceptorFn<F>
where
    F: Fn(ClientCall, ClientNext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Reply, Error>> + Send + 'static,
{
    fn intercept(&self, call: ClientCall, next: ClientNext) -> BoxFuture<Result<Reply, Error>> {
        Box::pin((self.0)(call, next))
    }
}

/// What ends a client chain: the NATS request of a unary call, or the open
/// of a stream (whose reply is the stream's end: its body and trailing headers).
#[derive(Clone)]
pub(crate) enum Terminal {
    Request(async_nats::Client),
    Open(Arc<dyn Fn(ClientCall) -> BoxFuture<Result<Reply, Error>> + Send + Sync>),
}

/// The rest of a client chain: further interceptors, then the NATS request
/// (for a stream, its open).
pub struct ClientNext {
    chain: Arc<[Arc<dyn ClientInterceptor>]>,
    index: usize,
    terminal: Terminal,
}

impl std::fmt::Debug for ClientNext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientNext").field("remaining_interceptors", &(self.chain.len() - self.index)).finish_non_exhaustive()
    }
}

impl ClientNext {
    pub(crate) fn start(chain: Arc<[Arc<dyn ClientInterceptor>]>, terminal: Terminal) -> Self {
        ClientNext { chain, index: 0, terminal }
    }

    /// Continues the chain with this call.
    pub fn run(self, call: ClientCall) -> BoxFuture<Result<Reply, Error>> {
        match self.chain.get(self.index).cloned() {
            Some(interceptor) => {
                let next = ClientNext { index: self.index + 1, ..self };
                interceptor.intercept(call, next)
            }
            None => match self.terminal {
                Terminal::Request(nats) => Box::pin(async move { super::send(&nats, call).await }),
                Terminal::Open(open) => open(call),
            },
        }
    }
}
