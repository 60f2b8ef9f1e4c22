//! `SERVICE` and `ENDPOINTS`: what the proto declares, as runtime specs.
//!
//! `Some` and `None` are written bare: a service module's own items are
//! types, functions and constants in UpperCamel or SCREAMING case, so the
//! prelude's variants cannot be shadowed there.

use std::collections::BTreeMap;
use std::time::Duration;

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use crate::model::{Method, Service};

/// The `SERVICE` and `ENDPOINTS` constants of a service module.
pub fn generate(service: &Service) -> TokenStream {
    let (full_name, name, version, description, prefix) =
        (&service.full_name, &service.name, &service.version, &service.description, &service.subject_prefix);
    let metadata = pairs(&service.metadata);
    let timeout = duration(service.timeout);
    let queue_group_disabled = service.queue_group_disabled;
    let count = Literal::usize_unsuffixed(service.methods.len());
    let endpoints = service.methods.iter().map(|method| endpoint(method, service.timeout));
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

fn endpoint(method: &Method, service_timeout: Option<Duration>) -> TokenStream {
    let (name, endpoint) = (&method.proto_name, &method.endpoint);
    let timeout = duration(method.timeout.or(service_timeout));
    let metadata = pairs(&method.metadata);
    let queue_group_disabled = method.queue_group_disabled;
    let (msgs, bytes) = (limit(method.pending_msg_limit), limit(method.pending_bytes_limit));
    quote! {
        rt::EndpointSpec {
            method: rt::MethodSpec { method: #name, endpoint: #endpoint, timeout: #timeout },
            metadata: #metadata,
            queue_group_disabled: #queue_group_disabled,
            pending_msg_limit: #msgs,
            pending_bytes_limit: #bytes,
        }
    }
}

fn duration(value: Option<Duration>) -> TokenStream {
    match value {
        Some(d) => {
            let (secs, nanos) = (Literal::u64_unsuffixed(d.as_secs()), Literal::u32_unsuffixed(d.subsec_nanos()));
            quote! { Some(::core::time::Duration::new(#secs, #nanos)) }
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
