//! `SERVICE` and `ENDPOINTS`: what the proto declares, as runtime specs.
//!
//! `Some` and `None` are written bare: a service module's own items are
//! types, functions and constants in UpperCamel or SCREAMING case, so the
//! prelude's variants cannot be shadowed there.

use std::collections::BTreeMap;
use std::time::Duration;

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::ServiceItems;
use crate::model::{Method, Rpc, StreamKind};

/// The `SERVICE` and `ENDPOINTS` constants of a service module.
pub fn generate(items: &ServiceItems) -> TokenStream {
    let service = items.service;
    let (full_name, name, version, description, prefix) =
        (&service.full_name, &service.name, &service.version, &service.description, &service.subject_prefix);
    let metadata = pairs(&service.metadata);
    let timeout = optional_duration(service.timeout);
    let queue_group_disabled = service.queue_group_disabled;
    let rpcs = service.rpcs();
    let count = Literal::usize_unsuffixed(rpcs.len());
    let endpoints = rpcs.iter().zip(&items.rpcs).map(|(rpc, generated)| {
        let stream = match rpc {
            Rpc::Streaming(streaming) => Some((streaming.kind, streaming.max_inflight)),
            Rpc::Unary(_) => None,
        };
        let endpoint = endpoint(rpc.method(), service.timeout, stream);
        let kv = generated.names.kv.as_ref().map(|(constant, _, _)| quote! { .with_kv_store(&#constant) });
        let objects = generated.names.objects.as_ref().map(|(constant, _, _)| quote! { .with_object_store(&#constant) });
        quote! { #endpoint #kv #objects }
    });
    quote! {
        /// What the proto declares for the service.
        pub const SERVICE: rt::ServiceSpec = rt::ServiceSpec {
            proto_name: #full_name,
            name: #name,
            version: #version,
            description: #description,
            subject_prefix: #prefix,
            metadata: #metadata,
            timeout: #timeout,
            queue_group_disabled: #queue_group_disabled,
        };

        /// The endpoints, in proto order.
        pub const ENDPOINTS: [rt::EndpointSpec; #count] = [#(#endpoints),*];
    }
}

/// `rt::EndpointSpec::new(..)`, then one call per option the proto sets.
fn endpoint(method: &Method, service_timeout: Option<Duration>, stream: Option<(StreamKind, Option<u32>)>) -> TokenStream {
    let (name, endpoint) = (&method.proto_name, &method.endpoint);
    let timeout = method.timeout.or(service_timeout).map(|d| {
        let d = duration(d);
        quote! { .with_timeout(#d) }
    });
    let metadata = (!method.metadata.is_empty()).then(|| {
        let metadata = pairs(&method.metadata);
        quote! { .with_metadata(#metadata) }
    });
    let queue_group = method.queue_group_disabled.then(|| quote! { .without_queue_group() });
    let idempotent = method.idempotent.then(|| quote! { .idempotent() });
    let limits = (method.pending_msg_limit.is_some() || method.pending_bytes_limit.is_some()).then(|| {
        let (msgs, bytes) = (limit(method.pending_msg_limit), limit(method.pending_bytes_limit));
        quote! { .with_pending_limits(#msgs, #bytes) }
    });
    let stream = stream.map(|(kind, window)| {
        let kind = match kind {
            StreamKind::Server => quote! { Server },
            StreamKind::Client => quote! { Client },
            StreamKind::Bidirectional => quote! { Bidirectional },
        };
        let window = window.map(|window| {
            let window = Literal::u32_unsuffixed(window);
            quote! { .with_window(#window) }
        });
        quote! { .streaming(rt::StreamKind::#kind) #window }
    });
    quote! { rt::EndpointSpec::new(#name, #endpoint) #timeout #metadata #queue_group #idempotent #limits #stream }
}

fn duration(d: Duration) -> TokenStream {
    let (secs, nanos) = (Literal::u64_unsuffixed(d.as_secs()), Literal::u32_unsuffixed(d.subsec_nanos()));
    quote! { ::core::time::Duration::new(#secs, #nanos) }
}

fn optional_duration(value: Option<Duration>) -> TokenStream {
    match value {
        Some(d) => {
            let d = duration(d);
            quote! { Some(#d) }
        }
        None => quote! { None },
    }
}

fn pairs(map: &BTreeMap<String, String>) -> TokenStream {
    let entries = map.iter().map(|(k, v)| quote! { (#k, #v) });
    quote! { &[#(#entries),*] }
}

fn limit(value: Option<u32>) -> TokenStream {
    match value {
        Some(v) => {
            let v = Literal::u32_unsuffixed(v);
            quote! { Some(#v) }
        }
        None => quote! { None },
    }
}
