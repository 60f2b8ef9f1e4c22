//! The handler of a unary endpoint: decode, call, encode.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;

use super::interceptor::EndpointHandler;
use crate::codec::Codec;
use crate::context::RequestContext;
use crate::error::Error;
use crate::future::BoxFuture;

/// Builds the handler of one unary endpoint: decodes the request with codec
/// `C` (a malformed payload is `INVALID_ARGUMENT`), calls `handler`, encodes
/// its response (a failure is `INTERNAL`).
pub fn unary_handler<C, Req, Resp, E, F, Fut>(handler: F) -> Arc<dyn EndpointHandler>
where
    C: Codec<Req> + Codec<Resp>,
    Req: Send + 'static,
    Resp: Send + 'static,
    E: Into<Error> + Send + 'static,
    F: Fn(RequestContext, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, E>> + Send + 'static,
{
    Arc::new(Unary::<C, Req, Resp, F> { handler, types: PhantomData })
}

struct Unary<C, Req, Resp, F> {
    handler: F,
    types: PhantomData<fn(C, Req) -> Resp>,
}

impl<C, Req, Resp, E, F, Fut> EndpointHandler for Unary<C, Req, Resp, F>
where
    C: Codec<Req> + Codec<Resp>,
    Req: Send + 'static,
    Resp: Send + 'static,
    E: Into<Error> + Send + 'static,
    F: Fn(RequestContext, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, E>> + Send + 'static,
{
    fn call(&self, ctx: RequestContext, payload: Bytes) -> BoxFuture<Result<Bytes, Error>> {
        let request = match <C as Codec<Req>>::decode(payload) {
            Ok(request) => request,
            Err(err) => {
                let at = crate::telemetry::event::At { service: ctx.service(), endpoint: ctx.endpoint(), subject: ctx.subject() };
                crate::telemetry::event::request_malformed(at, &err);
                let err = Error::malformed_request(ctx.method(), &err);
                return Box::pin(std::future::ready(Err(err)));
            }
        };
        let response = (self.handler)(ctx, request);
        Box::pin(async move {
            let response = response.await.map_err(Into::into)?;
            <C as Codec<Resp>>::encode(&response)
                .map_err(|err| Error::from_internal(std::io::Error::other(format!("encoding the response: {err}"))))
        })
    }
}
