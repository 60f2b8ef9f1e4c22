//! Rust paths of message types, as prost names them.

use proc_macro2::TokenStream;
use quote::quote;

use super::Paths;
use super::names::ident;
use crate::model::MessageRef;
use crate::naming::{rust_snake, rust_upper_camel};

/// The Rust path of a message, relative to a service module in `package`.
pub fn message_path(message: &MessageRef, package: &str, paths: &Paths) -> TokenStream {
    let dotted = format!(".{}", message.full_name);
    if let Some(primitive) = prost_primitive(&dotted, paths) {
        return primitive;
    }
    let tail = type_tail(&message.path);
    for (proto, rust) in &paths.externs {
        if dotted == *proto || dotted.starts_with(&format!("{proto}.")) {
            // Package segments past the extern prefix become modules, then the message path.
            let prefix_segments = segments(proto).count();
            let rest = segments(&message.package).skip(prefix_segments).map(|s| ident(&rust_snake(s)));
            return quote! { #rust #(:: #rest)* :: #tail };
        }
    }
    if message.package == package {
        return quote! { super :: #tail };
    }
    let supers = std::iter::repeat_n(quote! { super }, segments(package).count() + 1);
    let modules = segments(&message.package).map(|s| ident(&rust_snake(s)));
    quote! { #(#supers ::)* #(#modules ::)* #tail }
}

fn segments(dotted: &str) -> impl Iterator<Item = &str> {
    dotted.split('.').filter(|s| !s.is_empty())
}

/// With `google.protobuf` on `prost_types`, prost maps `Empty` to `()` and
/// the wrapper messages to primitives, which prost encodes as those messages.
fn prost_primitive(dotted: &str, paths: &Paths) -> Option<TokenStream> {
    let name = dotted.strip_prefix(".google.protobuf.")?;
    if !paths.well_known_on_prost_types {
        return None;
    }
    Some(match name {
        "Empty" => quote! { () },
        "BoolValue" => quote! { bool },
        "BytesValue" => quote! { ::std::vec::Vec<u8> },
        "DoubleValue" => quote! { f64 },
        "FloatValue" => quote! { f32 },
        "Int32Value" => quote! { i32 },
        "Int64Value" => quote! { i64 },
        "StringValue" => quote! { ::std::string::String },
        "UInt32Value" => quote! { u32 },
        "UInt64Value" => quote! { u64 },
        _ => return None,
    })
}

/// `outer::Inner` for a nested message, `Message` otherwise.
fn type_tail(path: &[String]) -> TokenStream {
    let Some((last, outer)) = path.split_last() else { return quote! { () } };
    let modules = outer.iter().map(|m| ident(&rust_snake(m)));
    let name = ident(&rust_upper_camel(last));
    quote! { #(#modules ::)* #name }
}
