//! The handler of a unary endpoint: decode, call, encode.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;

use super::interceptor::EndpointHandler;
use crate::codec::Codec;
use crate::context::RequestContext;
use crate::error::{Error, StartError};
use crate::future::BoxFuture;
use crate::spec::EndpointSpec;
use crate::store::StoreKeys;
use crate::store::persist::Persister;

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
    Arc::new(Unary::<C, Req, Resp, F> { handler: Arc::new(handler), persist: None, types: PhantomData })
}

/// [`unary_handler`] of a method that persists its responses (PROTOCOL
/// §12.2, §12.3): `spec` names its stores and `keys` renders its keys; the
/// encoded response is written after the handler succeeds and before the
/// reply is sent. A `client_only` store is not written.
pub fn stored_unary_handler<C, Req, Resp, E, F, Fut>(
    spec: &'static EndpointSpec,
    keys: StoreKeys<Req>,
    handler: F,
) -> Arc<dyn EndpointHandler>
where
    C: Codec<Req> + Codec<Resp>,
    Req: Send + 'static,
    Resp: Send + 'static,
    E: Into<Error> + Send + 'static,
    F: Fn(RequestContext, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, E>> + Send + 'static,
{
    let persist = Persister::new(spec.kv_store, spec.object_store, keys).map(Arc::new);
    Arc::new(Unary::<C, Req, Resp, F> { handler: Arc::new(handler), persist, types: PhantomData })
}

struct Unary<C, Req, Resp, F> {
    handler: Arc<F>,
    /// What the endpoint persists (`None` for most).
    persist: Option<Arc<Persister<Req>>>,
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
        if let Some(persist) = &self.persist {
            return self.call_persisting(persist.clone(), ctx, request);
        }
        let response = (*self.handler)(ctx, request);
        Box::pin(async move {
            let response = response.await.map_err(Into::into)?;
            encode::<C, Resp>(&response)
        })
    }

    fn prepare(&self, nats: &async_nats::Client) -> BoxFuture<Result<(), StartError>> {
        match &self.persist {
            Some(persist) => {
                let (persist, nats) = (persist.clone(), nats.clone());
                Box::pin(async move { persist.prepare(&nats).await })
            }
            None => Box::pin(std::future::ready(Ok(()))),
        }
    }

    fn persist_failures(&self) -> Option<u64> {
        self.persist.as_ref().map(|persist| persist.failures())
    }
}

impl<C, Req, Resp, E, F, Fut> Unary<C, Req, Resp, F>
where
    C: Codec<Req> + Codec<Resp>,
    Req: Send + 'static,
    Resp: Send + 'static,
    E: Into<Error> + Send + 'static,
    F: Fn(RequestContext, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, E>> + Send + 'static,
{
    /// Keys (and a compare-and-set's expected revision) before the handler,
    /// the write between the handler and the reply.
    fn call_persisting(
        &self,
        persist: Arc<Persister<Req>>,
        ctx: RequestContext,
        request: Req,
    ) -> BoxFuture<Result<Bytes, Error>> {
        let handler = self.handler.clone();
        let keys = match persist.keys(&ctx, &request) {
            Ok(keys) => keys,
            Err(err) => return Box::pin(std::future::ready(Err(err))),
        };
        Box::pin(async move {
            let pending = persist.before(keys).await;
            let reply_ctx = ctx.clone();
            let response = (*handler)(ctx, request).await.map_err(Into::into)?;
            let body = encode::<C, Resp>(&response)?;
            persist.after(&reply_ctx, pending, &body).await?;
            Ok(body)
        })
    }
}

fn encode<C: Codec<Resp>, Resp>(response: &Resp) -> Result<Bytes, Error> {
    <C as Codec<Resp>>::encode(response)
        .map_err(|err| Error::from_internal(std::io::Error::other(format!("encoding the response: {err}"))))
}
