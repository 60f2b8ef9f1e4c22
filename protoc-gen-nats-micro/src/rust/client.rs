//! The typed client: the runtime's `service_client!` for the plumbing, and
//! one method per RPC.

use proc_macro2::{Literal, TokenStream};
use quote::quote;

use super::{ServiceItems, docs, names, server};

/// The client struct and its RPC methods.
pub fn generate(items: &ServiceItems) -> TokenStream {
    let (service, client, error) = (items.service, &items.client, &items.error);
    let full_name = &service.full_name;
    let codec = server::codec(service.json);
    let methods = service.methods.iter().zip(&items.rpcs).enumerate().map(|(i, (method, rpc))| {
        let (i, name, input, output) = (Literal::usize_unsuffixed(i), &rpc.names.client, &rpc.input, &rpc.output);
        let comments = docs::comments_paragraph(method.comments.as_deref());
        let call = docs::line(&format!(" Calls `{}` on `{{subject_prefix}}.{}`.", method.proto_name, method.endpoint));
        let deprecated = method.deprecated.then(|| quote! { #[deprecated] });
        let convention = names::breaks_self_convention(name)
            .then(|| quote! { #[allow(clippy::wrong_self_convention, reason = "named after the proto RPC")] });
        quote! {
            #comments
            #call
            #deprecated
            #convention
            pub async fn #name(&self, request: impl rt::IntoRequest<#input>)
                -> ::core::result::Result<rt::Response<#output>, #error>
            {
                call_unary(self, &ENDPOINTS[#i], request).await
            }
        }
    });
    let deprecated = service.deprecated.then(|| quote! { #[deprecated] });
    let allow = items.allow_deprecated();
    quote! {
        rt::service_client! {
            service #full_name; #deprecated client #client; codec #codec; error #error; spec SERVICE, ENDPOINTS;
        }

        #allow
        impl #client {
            #(#methods)*
        }
    }
}
