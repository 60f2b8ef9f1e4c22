//! The server side: the trait to implement, `service_builder` and `serve`.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::{ServiceItems, docs, names};
use crate::model::StreamKind;

/// The server trait of a service.
pub fn generate_trait(items: &ServiceItems) -> TokenStream {
    let (service, trait_name, error) = (items.service, &items.trait_name, &items.error);
    let methods = items.rpcs.iter().map(|rpc| {
        let (method, name, input, output) = (rpc.method, &rpc.names.server, &rpc.input, &rpc.output);
        let comments = docs::comments_paragraph(method.comments.as_deref());
        let kind = rpc.stream.map_or(String::new(), |kind| format!(", {kind}"));
        let subject = docs::line(&format!(" Endpoint `{}` on subject `{}` (by default{kind}).", method.endpoint, method.subject));
        let deprecated = method.deprecated.then(|| quote! { #[deprecated] });
        let convention = names::breaks_self_convention(name)
            .then(|| quote! { #[allow(clippy::wrong_self_convention, reason = "named after the proto RPC")] });
        let (arguments, success) = match rpc.stream {
            None => (quote! { request: #input }, output.clone()),
            Some(StreamKind::Server) => (quote! { request: #input, responses: rt::ResponseSender<#output> }, quote! { () }),
            Some(StreamKind::Client) => (quote! { requests: rt::Streaming<#input, #error> }, output.clone()),
            Some(StreamKind::Bidirectional) => {
                (quote! { requests: rt::Streaming<#input, #error>, responses: rt::ResponseSender<#output> }, quote! { () })
            }
        };
        quote! {
            #comments
            #subject
            #deprecated
            #convention
            fn #name(&self, ctx: rt::RequestContext, #arguments)
                -> impl ::core::future::Future<Output = ::core::result::Result<#success, #error>> + ::core::marker::Send;
        }
    });
    let doc = docs::line(&format!(
        " The server side of `{}`: implement it and pass it to [`service_builder`] or [`serve`].",
        service.full_name
    ));
    let comments = docs::comments(service.comments.as_deref());
    let comments = (!comments.is_empty()).then(|| quote! { #[doc = ""] #comments });
    let deprecated = service.deprecated.then(|| quote! { #[deprecated] });
    quote! {
        #doc
        #comments
        #deprecated
        pub trait #trait_name: ::core::marker::Send + ::core::marker::Sync + 'static {
            #(#methods)*
        }
    }
}

/// `service_builder` (every endpoint registered) and `serve`.
pub fn generate_registration(items: &ServiceItems) -> TokenStream {
    let (service, trait_name) = (items.service, &items.trait_name);
    let codec = codec(service.json);
    let endpoints = items.rpcs.iter().enumerate().map(|(i, rpc)| {
        let (i, name, proto_name) = (Literal::usize_unsuffixed(i), &rpc.names.server, &rpc.method.proto_name);
        let handler = match rpc.stream {
            None if super::store::persists(rpc) => {
                let keys = super::store::store_keys(rpc);
                quote! {
                    rt::stored_unary_method(#codec, #proto_name, &service, &ENDPOINTS[#i], #keys, |service, ctx, request| async move {
                        <S as #trait_name>::#name(&service, ctx, request).await
                    })
                }
            }
            None => quote! {
                rt::unary_method(#codec, #proto_name, &service, |service, ctx, request| async move {
                    <S as #trait_name>::#name(&service, ctx, request).await
                })
            },
            Some(StreamKind::Server) => quote! {
                rt::server_streaming_method(#codec, #proto_name, &service, |service, ctx, request, responses| async move {
                    <S as #trait_name>::#name(&service, ctx, request, responses).await
                })
            },
            Some(StreamKind::Client) => quote! {
                rt::client_streaming_method(#codec, #proto_name, &service, |service, ctx, requests| async move {
                    <S as #trait_name>::#name(&service, ctx, requests).await
                })
            },
            Some(StreamKind::Bidirectional) => quote! {
                rt::bidi_streaming_method(#codec, #proto_name, &service, |service, ctx, requests, responses| async move {
                    <S as #trait_name>::#name(&service, ctx, requests, responses).await
                })
            },
        };
        quote! { .endpoint(&ENDPOINTS[#i], #handler) }
    });
    // A service with no RPC registers nothing and only drops the value.
    let share = if items.rpcs.is_empty() {
        quote! { let _ = service; }
    } else {
        quote! { let service = ::std::sync::Arc::new(service); }
    };
    let deprecated = service.deprecated.then(|| quote! { #[deprecated] });
    let allow = items.allow_deprecated();
    quote! {
        /// A service builder with every endpoint and the proto's options; change
        /// any setting, then `start` it.
        #deprecated
        #allow
        pub fn service_builder<S: #trait_name>(service: S) -> rt::ServiceBuilder {
            #share
            rt::ServiceBuilder::new(&SERVICE) #(#endpoints)*
        }

        /// Starts the service with the proto's options.
        #deprecated
        #allow
        pub async fn serve<S: #trait_name>(nats: &rt::async_nats::Client, service: S)
            -> ::core::result::Result<rt::Service, rt::StartError>
        {
            service_builder(service).start(nats).await
        }
    }
}

/// The codec type of a service: binary protobuf, or proto3 JSON.
pub fn codec(json: bool) -> TokenStream {
    if json {
        quote! { rt::Json }
    } else {
        quote! { rt::Protobuf }
    }
}
