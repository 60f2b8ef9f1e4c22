//! The code enum and the error type: one invocation of the runtime's
//! `service_error!` with the service's custom codes.

use proc_macro2::TokenStream;
use quote::quote;

use super::ServiceItems;
use super::names::custom_codes;

/// The `service_error!` invocation of a service.
pub fn generate(items: &ServiceItems) -> TokenStream {
    let (full_name, code, error) = (&items.service.full_name, &items.code, &items.error);
    let custom = custom_codes(items.service).into_iter().map(|c| {
        let (wire, variant, constructor, checker) = (c.wire, c.variant, c.constructor, c.checker);
        quote! { #wire => #variant, #constructor, #checker; }
    });
    quote! {
        rt::service_error! {
            service #full_name;
            code #code;
            error #error;
            custom { #(#custom)* }
        }
    }
}
