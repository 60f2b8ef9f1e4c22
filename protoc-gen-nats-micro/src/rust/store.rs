//! PROTOCOL §12 in the generated module: per `kv_store` / `object_store`
//! method its spec constant and key function, per `chunked_io` method its
//! chunk field constant and the handler's helper; the client's handles
//! (`…_kv`, `…_objects`, `…_chunked`). Everything they do is the runtime's:
//! the key function only hands the request's values to the one renderer.

use std::time::Duration;

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::{Rpc, ServiceItems, docs, names::ident, server};
use crate::model::{KeyField, KeyKind, KeySegment, KeyTemplate, KvWriteMode, PersistFailurePolicy, StreamKind};
use crate::naming::rust_snake;

/// The constants and functions of every RPC that persists or chunks.
pub fn items(items: &ServiceItems) -> TokenStream {
    let error = &items.error;
    let generated = items.rpcs.iter().map(|rpc| {
        let (method, input, output) = (rpc.method, &rpc.input, &rpc.output);
        let kv = rpc.method.kv_store.as_ref().zip(rpc.names.kv.as_ref()).map(|(store, (constant, key_fn, _))| {
            let bucket = &store.bucket;
            let (name, description, history) = (&bucket.name, &bucket.description, Literal::u32_unsuffixed(bucket.history));
            let (ttl, compression, limit) =
                (optional_duration(bucket.ttl), bucket.compression, optional_duration(bucket.limit_marker_ttl));
            let metadata = bucket.metadata.iter().map(|(k, v)| quote! { (#k, #v) });
            let template = template_parts(&store.key);
            let (key_ttl, purge_ttl, client_only) =
                (optional_duration(store.key_ttl), optional_duration(store.purge_ttl), store.client_only);
            let write_mode = match store.write_mode {
                KvWriteMode::LastWriteWins => quote! { LastWriteWins },
                KvWriteMode::CompareAndSet => quote! { CompareAndSet },
                KvWriteMode::CreateOnly => quote! { CreateOnly },
            };
            let policy = match store.failure_policy {
                PersistFailurePolicy::BestEffort => quote! { BestEffort },
                PersistFailurePolicy::Required => quote! { Required },
            };
            let spec_doc =
                docs::line(&format!(" What `(natsmicro.kv_store)` of `{}` declares (PROTOCOL §12.2).", method.proto_name));
            let key_doc = docs::line(&format!(
                " The key `{}` keeps its response under in bucket `{}`: `{}` over the request (PROTOCOL §12.1).",
                method.proto_name,
                bucket.name,
                docs_safe(&store.key.text)
            ));
            let (parts, request) = (key_parts(&store.key), request_arg(&store.key));
            quote! {
                #spec_doc
                pub const #constant: rt::KvStoreSpec = rt::KvStoreSpec {
                    bucket: rt::KvBucketSpec {
                        name: #name,
                        description: #description,
                        history: #history,
                        ttl: #ttl,
                        compression: #compression,
                        metadata: &[#(#metadata),*],
                        limit_marker_ttl: #limit,
                    },
                    template: &[#(#template),*],
                    key_ttl: #key_ttl,
                    purge_ttl: #purge_ttl,
                    write_mode: rt::WriteMode::#write_mode,
                    failure_policy: rt::FailurePolicy::#policy,
                    client_only: #client_only,
                };

                #key_doc
                pub fn #key_fn(#request: &#input) -> ::core::result::Result<::std::string::String, rt::KeyError> {
                    rt::render_kv_key(&[#(#parts),*])
                }
            }
        });
        let objects = rpc.method.object_store.as_ref().zip(rpc.names.objects.as_ref()).map(|(store, (constant, name_fn, _))| {
            let bucket = &store.bucket;
            let (name, description, ttl, compression) =
                (&bucket.name, &bucket.description, optional_duration(bucket.ttl), bucket.compression);
            let template = template_parts(&store.key);
            let client_only = store.client_only;
            let spec_doc =
                docs::line(&format!(" What `(natsmicro.object_store)` of `{}` declares (PROTOCOL §12.3).", method.proto_name));
            let name_doc = docs::line(&format!(
                " The object name `{}` keeps its response under in bucket `{}`: `{}` over the request (PROTOCOL §12.1).",
                method.proto_name,
                bucket.name,
                docs_safe(&store.key.text)
            ));
            let (parts, request) = (key_parts(&store.key), request_arg(&store.key));
            quote! {
                #spec_doc
                pub const #constant: rt::ObjectStoreSpec = rt::ObjectStoreSpec {
                    bucket: rt::ObjectBucketSpec { name: #name, description: #description, ttl: #ttl, compression: #compression },
                    template: &[#(#template),*],
                    client_only: #client_only,
                };

                #name_doc
                pub fn #name_fn(#request: &#input) -> ::core::result::Result<::std::string::String, rt::KeyError> {
                    rt::render_object_name(&[#(#parts),*])
                }
            }
        });
        let chunked = chunked_items(rpc, error, input, output);
        quote! { #kv #objects #chunked }
    });
    quote! { #(#generated)* }
}

/// The chunk field constant of a chunked RPC and its handler's helper.
fn chunked_items(rpc: &Rpc, error: &proc_macro2::Ident, input: &TokenStream, output: &TokenStream) -> Option<TokenStream> {
    let (chunked, (constant, helper, _)) = rpc.chunked.zip(rpc.names.chunked.as_ref())?;
    let (message, upload) = match rpc.stream {
        Some(StreamKind::Client) => (input, true),
        Some(StreamKind::Server) => (output, false),
        _ => return None,
    };
    let size = Literal::u32_unsuffixed(chunked.chunk_size);
    let message_name = if upload { &rpc.method.input.full_name } else { &rpc.method.output.full_name };
    // With google.protobuf on prost_types, BytesValue is a bare Vec<u8>.
    let (wrap, unwrap) = if message.to_string().replace(' ', "") == "::std::vec::Vec<u8>" {
        (quote! { |data| data.into() }, quote! { |chunk| chunk.into() })
    } else {
        let field = ident(&rust_snake(&chunked.field));
        (quote! { |data| #message { #field: data.into() } }, quote! { |chunk| chunk.#field.into() })
    };
    let const_doc = docs::line(&format!(
        " The chunks of `{}`: field `{}` of `{message_name}`, {} bytes each unless set per transfer (PROTOCOL §12.5).",
        rpc.method.proto_name, chunked.field, chunked.chunk_size
    ));
    let helper_item = if upload {
        let doc = docs::line(&format!(
            " In a `{}` handler: its request stream as the uploaded payload, in order, size and digest checked at the end.",
            rpc.method.proto_name
        ));
        quote! {
            #doc
            pub fn #helper(requests: rt::Streaming<#message, #error>) -> rt::ChunkReceiver<#message, #error> {
                rt::ChunkReceiver::new(requests, &#constant)
            }
        }
    } else {
        let doc = docs::line(&format!(
            " In a `{}` handler: sends a payload onto its response stream in chunks, with its size and digest on the end.",
            rpc.method.proto_name
        ));
        quote! {
            #doc
            pub fn #helper(ctx: &rt::RequestContext, responses: rt::ResponseSender<#message>) -> rt::ChunkSender<#message> {
                rt::ChunkSender::new(ctx, responses, &#constant)
            }
        }
    };
    Some(quote! {
        #const_doc
        pub const #constant: rt::ChunkField<#message> = rt::ChunkField { wrap: #wrap, unwrap: #unwrap, chunk_size: #size };

        #helper_item
    })
}

/// The client's handles of one RPC: `…_kv()`, `…_objects()`, `…_chunked()`.
pub fn client_methods(items: &ServiceItems) -> TokenStream {
    let error = &items.error;
    let codec = server::codec(items.service.json);
    let methods = items.rpcs.iter().enumerate().map(|(i, rpc)| {
        let (method, input, output) = (rpc.method, &rpc.input, &rpc.output);
        let i = Literal::usize_unsuffixed(i);
        let kv = rpc.method.kv_store.as_ref().zip(rpc.names.kv.as_ref()).map(|(store, (constant, key_fn, handle))| {
            let doc = docs::line(&format!(
                " The key-value bucket `{}` where `{}` keeps its responses: get, put, create, update, delete, purge, watch and keys (PROTOCOL §12.4).",
                store.bucket.name, method.proto_name
            ));
            let creates = store.client_only.then(|| docs::line(" Creates the bucket with the proto's settings when it is missing."));
            quote! {
                #doc
                #creates
                pub async fn #handle(&self) -> ::core::result::Result<rt::KvStore<#codec, #input, #output, #error>, #error> {
                    rt::KvStore::open(self.inner().nats(), &#constant, #key_fn).await
                }
            }
        });
        let objects = rpc.method.object_store.as_ref().zip(rpc.names.objects.as_ref()).map(|(store, (constant, name_fn, handle))| {
            let doc = docs::line(&format!(
                " The object store `{}` where `{}` keeps its responses: get (digest checked), put, delete and info (PROTOCOL §12.4).",
                store.bucket.name, method.proto_name
            ));
            let creates = store.client_only.then(|| docs::line(" Creates the bucket with the proto's settings when it is missing."));
            quote! {
                #doc
                #creates
                pub async fn #handle(&self) -> ::core::result::Result<rt::ObjectStore<#codec, #input, #output, #error>, #error> {
                    rt::ObjectStore::open(self.inner().nats(), &#constant, #name_fn).await
                }
            }
        });
        let chunked = rpc.chunked.zip(rpc.names.chunked.as_ref()).and_then(|(_, (constant, _, handle))| match rpc.stream {
            Some(StreamKind::Client) => {
                let doc = docs::line(&format!(
                    " Uploads one payload through `{}` in chunks: send bytes, an async reader or a file (PROTOCOL §12.5).",
                    method.proto_name
                ));
                Some(quote! {
                    #doc
                    pub fn #handle(&self) -> rt::ChunkedUpload<#codec, #input, #output, #error> {
                        rt::ChunkedUpload::new(self.inner(), &ENDPOINTS[#i], &#constant)
                    }
                })
            }
            Some(StreamKind::Server) => {
                let doc = docs::line(&format!(
                    " Downloads the payload `{}` streams in chunks: into bytes, an async writer or a file, size and digest checked (PROTOCOL §12.5).",
                    method.proto_name
                ));
                Some(quote! {
                    #doc
                    pub fn #handle(&self, request: impl rt::IntoRequest<#input>) -> rt::ChunkedDownload<#codec, #input, #output, #error> {
                        rt::ChunkedDownload::new(self.inner(), &ENDPOINTS[#i], &#constant, request.into_request())
                    }
                })
            }
            _ => None,
        });
        quote! { #kv #objects #chunked }
    });
    quote! { #(#methods)* }
}

/// Whether the server writes this RPC's responses (a store that is not `client_only`).
pub fn persists(rpc: &Rpc) -> bool {
    rpc.stream.is_none()
        && (rpc.method.kv_store.as_ref().is_some_and(|s| !s.client_only)
            || rpc.method.object_store.as_ref().is_some_and(|s| !s.client_only))
}

/// `rt::StoreKeys { kv: .., object: .. }` of a persisting RPC.
pub fn store_keys(rpc: &Rpc) -> TokenStream {
    let kv = match &rpc.names.kv {
        Some((_, key_fn, _)) => quote! { ::core::option::Option::Some(#key_fn) },
        None => quote! { ::core::option::Option::None },
    };
    let object = match &rpc.names.objects {
        Some((_, name_fn, _)) => quote! { ::core::option::Option::Some(#name_fn) },
        None => quote! { ::core::option::Option::None },
    };
    quote! { rt::StoreKeys { kv: #kv, object: #object } }
}

/// The key function's parameter: `_request` when no placeholder reads it.
fn request_arg(template: &KeyTemplate) -> proc_macro2::Ident {
    ident(if template.fields().next().is_some() { "request" } else { "_request" })
}

/// `rt::TemplatePart`s of a template.
fn template_parts(template: &KeyTemplate) -> Vec<TokenStream> {
    template
        .segments
        .iter()
        .map(|segment| match segment {
            KeySegment::Text(text) => quote! { rt::TemplatePart::Text(#text) },
            KeySegment::Field(field) => {
                let placeholder = &field.placeholder;
                quote! { rt::TemplatePart::Field(#placeholder) }
            }
        })
        .collect()
}

/// `rt::KeyPart`s of a template over `request`.
fn key_parts(template: &KeyTemplate) -> Vec<TokenStream> {
    template
        .segments
        .iter()
        .map(|segment| match segment {
            KeySegment::Text(text) => quote! { rt::KeyPart::Text(#text) },
            KeySegment::Field(field) => {
                let (placeholder, value) = (&field.placeholder, field_value(field));
                quote! { rt::KeyPart::Field(#placeholder, #value) }
            }
        })
        .collect()
}

/// The `rt::KeyValue` of one placeholder: down the path through singular
/// messages (unset: missing), then the field (unset explicit presence:
/// missing).
fn field_value(field: &KeyField) -> TokenStream {
    let Some((last, messages)) = field.path.split_last() else { return quote! { rt::KeyValue::Missing } };
    let holder = |depth: usize| if depth == 0 { ident("request") } else { ident(&format!("m{depth}")) };
    let depth = messages.len();
    let leaf_name = ident(&rust_snake(last));
    let at = holder(depth);
    let convert = |value: TokenStream| match &field.kind {
        KeyKind::Enum(e) => {
            let names = e.values.iter().map(|(number, name)| {
                let number = if *number < 0 {
                    let abs = Literal::i64_unsuffixed(-i64::from(*number));
                    quote! { -#abs }
                } else {
                    let n = Literal::i32_unsuffixed(*number);
                    quote! { #n }
                };
                quote! { (#number, #name) }
            });
            quote! { rt::KeyValue::enumeration(#value, &[#(#names),*]) }
        }
        KeyKind::String | KeyKind::Integer | KeyKind::Bool => quote! { rt::KeyValue::of(#value) },
    };
    let mut value = if field.explicit_presence {
        let inner = convert(quote! { value });
        quote! {
            match &#at.#leaf_name {
                ::core::option::Option::Some(value) => #inner,
                ::core::option::Option::None => rt::KeyValue::Missing,
            }
        }
    } else {
        convert(quote! { &#at.#leaf_name })
    };
    for (i, message) in messages.iter().enumerate().rev() {
        let (outer, inner, name) = (holder(i), holder(i + 1), ident(&rust_snake(message)));
        value = quote! {
            match &#outer.#name {
                ::core::option::Option::Some(#inner) => #value,
                ::core::option::Option::None => rt::KeyValue::Missing,
            }
        };
    }
    value
}

fn optional_duration(value: Option<Duration>) -> TokenStream {
    match value {
        Some(d) => {
            let (secs, nanos) = (Literal::u64_unsuffixed(d.as_secs()), Literal::u32_unsuffixed(d.subsec_nanos()));
            quote! { ::core::option::Option::Some(::core::time::Duration::new(#secs, #nanos)) }
        }
        None => quote! { ::core::option::Option::None },
    }
}

/// A template in backticks cannot hold a backtick.
fn docs_safe(text: &str) -> String {
    text.replace('`', "'")
}
