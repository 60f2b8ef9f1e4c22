//! The typed client: the runtime's `service_client!` for the plumbing, and
//! one method per RPC.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::{ServiceItems, docs, names, server};
use crate::model::StreamKind;

/// The client struct and its RPC methods.
pub fn generate(items: &ServiceItems) -> TokenStream {
    let (service, client, error) = (items.service, &items.client, &items.error);
    let full_name = &service.full_name;
    let codec = server::codec(service.json);
    let methods = items.rpcs.iter().enumerate().map(|(i, rpc)| {
        let (method, name, input, output) = (rpc.method, &rpc.names.client, &rpc.input, &rpc.output);
        let i = Literal::usize_unsuffixed(i);
        let comments = docs::comments_paragraph(method.comments.as_deref());
        let call = docs::line(&format!(" Calls `{}` on `{{subject_prefix}}.{}`.", method.proto_name, method.endpoint));
        let deprecated = method.deprecated.then(|| quote! { #[deprecated] });
        let convention = names::breaks_self_convention(name)
            .then(|| quote! { #[allow(clippy::wrong_self_convention, reason = "named after the proto RPC")] });
        let (argument, success, body) = match rpc.stream {
            None => (
                quote! { request: impl rt::IntoRequest<#input> },
                quote! { rt::Response<#output> },
                quote! { call_unary(self, &ENDPOINTS[#i], request) },
            ),
            Some(StreamKind::Server) => (
                quote! { request: impl rt::IntoRequest<#input> },
                quote! { rt::Streaming<#output, #error> },
                quote! { call_server_streaming(self, &ENDPOINTS[#i], request) },
            ),
            Some(StreamKind::Client) => (
                quote! { requests: impl rt::IntoStreamingRequest<Message = #input> },
                quote! { rt::Response<#output> },
                quote! { call_client_streaming(self, &ENDPOINTS[#i], requests) },
            ),
            Some(StreamKind::Bidirectional) => (
                quote! { requests: impl rt::IntoStreamingRequest<Message = #input> },
                quote! { rt::Streaming<#output, #error> },
                quote! { call_bidi_streaming(self, &ENDPOINTS[#i], requests) },
            ),
        };
        quote! {
            #comments
            #call
            #deprecated
            #convention
            pub async fn #name(&self, #argument) -> ::core::result::Result<#success, #error> {
                #body.await
            }
        }
    });
    let deprecated = service.deprecated.then(|| quote! { #[deprecated] });
    let allow = items.allow_deprecated();
    let store = super::store::client_methods(items);
    quote! {
        rt::service_client! {
            service #full_name; #deprecated client #client; codec #codec; error #error; spec SERVICE, ENDPOINTS;
        }

        #allow
        impl #client {
            #(#methods)*
            #store
        }
    }
}
