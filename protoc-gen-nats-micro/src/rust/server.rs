//! The server side: the trait to implement, `service_builder` and `serve`.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::{ServiceItems, docs, names};

/// The server trait of a service.
pub fn generate_trait(items: &ServiceItems) -> TokenStream {
    let (service, trait_name, error) = (items.service, &items.trait_name, &items.error);
    let methods = service.methods.iter().zip(&items.rpcs).map(|(method, rpc)| {
        let (name, input, output) = (&rpc.names.server, &rpc.input, &rpc.output);
        let comments = docs::comments_paragraph(method.comments.as_deref());
        let subject = docs::line(&format!(" Endpoint `{}` on subject `{}` (by default).", method.endpoint, method.subject));
        let deprecated = method.deprecated.then(|| quote! { #[deprecated] });
        let convention = names::breaks_self_convention(name)
            .then(|| quote! { #[allow(clippy::wrong_self_convention, reason = "named after the proto RPC")] });
        quote! {
            #comments
            #subject
            #deprecated
            #convention
            fn #name(&self, ctx: rt::RequestContext, request: #input)
                -> impl ::core::future::Future<Output = ::core::result::Result<#output, #error>> + ::core::marker::Send;
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
    let endpoints = service.methods.iter().zip(&items.rpcs).enumerate().map(|(i, (method, rpc))| {
        let (i, name, proto_name) = (Literal::usize_unsuffixed(i), &rpc.names.server, &method.proto_name);
        quote! {
            .endpoint(&ENDPOINTS[#i], rt::unary_method(#codec, #proto_name, &service, |service, ctx, request| async move {
                <S as #trait_name>::#name(&service, ctx, request).await
            }))
        }
    });
    // A service with no unary RPC (streaming only) registers nothing and only drops the value.
    let share = if service.methods.is_empty() {
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
