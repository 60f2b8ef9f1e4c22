//! The one path by which generated code reaches the runtime.
//!
//! Generated code names nothing outside `::nats_micro_runtime::codegen`
//! (and `::core`/`::std`), so a crate that re-exports the runtime under
//! another name only has to point the generator's `runtime_path` here.
//! Nothing in this module is meant to be called by hand.

pub use async_nats;
pub use bytes::Bytes;
pub use prost;

pub use crate::chunked::{ChunkField, ChunkReceiver, ChunkSender, ChunkedDownload, ChunkedUpload};
pub use crate::client::{Client, IntoRequest, IntoStreamingRequest, MethodSpec, Request, Response};
pub use crate::code::Code;
pub use crate::codec::{Codec, Json, Protobuf};
pub use crate::context::RequestContext;
pub use crate::error::{Error, ErrorKind, HandlerError, StartError};
pub use crate::future::BoxFuture;
pub use crate::interceptor::{ClientInterceptor, EndpointHandler};
pub use crate::per_service::{
    bidi_streaming_method, client_streaming_method, endpoint_infos, server_streaming_method, stored_unary_method, unary_method,
};
pub use crate::server::discovery::EndpointInfo;
pub use crate::server::unary_handler;
pub use crate::server::{Service, ServiceBuilder};
pub use crate::spec::{EndpointSpec, ServiceSpec};
pub use crate::store::{
    FailurePolicy, KeyError, KeyPart, KeyValue, KvBucketSpec, KvStore, KvStoreSpec, ObjectBucketSpec, ObjectStore,
    ObjectStoreSpec, StoreKeys, TemplatePart, WriteMode, render_kv_key, render_object_name,
};
pub use crate::stream::{DEFAULT_WINDOW, ResponseSender, StreamKind, Streaming};
pub use crate::{service_client, service_error};
