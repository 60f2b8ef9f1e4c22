//! Server and client interceptors: code that runs around every call.
//!
//! Interceptors are chained in registration order: the first registered runs
//! outermost, sees the request first and the result last. Each gets the call
//! and a `next` to continue the chain; returning without calling `next`
//! short-circuits the call with that result.

pub use crate::client::interceptor::{ClientCall, ClientInterceptor, ClientInterceptorFn, ClientNext, Reply};
pub use crate::future::BoxFuture;
pub use crate::server::interceptor::{EndpointHandler, ServerInterceptor, ServerInterceptorFn, ServerNext};
