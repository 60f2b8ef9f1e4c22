//! Rust output: per service, a module with the server trait, the
//! registration, the typed client and the typed errors, all on the runtime
//! crate's `codegen` path. Messages are prost's, referred to by path.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote};

use crate::model::{BUILTIN_CODES, EXTRA_CANONICAL_CODES, File, MessageRef, Method, Service};
use crate::naming::{rust_snake, rust_upper_camel, sanitize_identifier};

/// The runtime path generated code uses unless configured otherwise.
pub const DEFAULT_RUNTIME_PATH: &str = "::nats_micro_runtime::codegen";

/// How Rust is generated: where the runtime is, and which proto packages
/// map to Rust paths outside the generated tree (like prost's `extern_path`).
/// Paths are kept as validated text, so the options can be shared by the
/// threads that format modules in parallel.
#[derive(Clone, Debug)]
pub struct RustOptions {
    runtime_path: String,
    /// `(".google.protobuf", "::prost_types")` and the like, longest first.
    extern_paths: Vec<(String, String)>,
}

impl Default for RustOptions {
    fn default() -> Self {
        RustOptions {
            runtime_path: DEFAULT_RUNTIME_PATH.to_owned(),
            extern_paths: vec![(".google.protobuf".to_owned(), "::prost_types".to_owned())],
        }
    }
}

impl RustOptions {
    /// Sets the path of the runtime's `codegen` module.
    pub fn runtime_path(&mut self, path: &str) -> Result<(), String> {
        syn::parse_str::<syn::Path>(path).map_err(|err| format!("runtime_path {path:?}: {err}"))?;
        self.runtime_path = path.to_owned();
        Ok(())
    }

    /// Adds an extern path (`.my.pkg` → `::my_crate::pkg`), replacing an
    /// earlier one for the same proto path.
    pub fn extern_path(&mut self, proto_path: &str, rust_path: &str) -> Result<(), String> {
        syn::parse_str::<syn::Path>(rust_path).map_err(|err| format!("extern_path {rust_path:?}: {err}"))?;
        let proto_path = if proto_path.starts_with('.') { proto_path.to_owned() } else { format!(".{proto_path}") };
        self.extern_paths.retain(|(p, _)| p != &proto_path);
        self.extern_paths.push((proto_path, rust_path.to_owned()));
        self.extern_paths.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(())
    }
}

/// [`RustOptions`] parsed into tokens, once per formatting thread
/// (`proc_macro2` values cannot cross threads).
struct Paths {
    runtime: syn::Path,
    externs: Vec<(String, syn::Path)>,
}

impl Paths {
    fn new(options: &RustOptions) -> Paths {
        let parse = |path: &str| syn::parse_str(path).expect("validated when set");
        Paths {
            runtime: parse(&options.runtime_path),
            externs: options.extern_paths.iter().map(|(proto, rust)| (proto.clone(), parse(rust))).collect(),
        }
    }
}

/// The file name for a package's services: `order.v1.nats_micro.rs`
/// (`_.nats_micro.rs` without a package), next to prost's `order.v1.rs`.
pub fn file_name(package: &str) -> String {
    format!("{}.nats_micro.rs", if package.is_empty() { "_" } else { package })
}

/// Generates one formatted file per package, in first-seen order.
pub fn generate(files: &[File], options: &RustOptions) -> Vec<(String, String)> {
    let mut packages: Vec<(String, Vec<&Service>)> = Vec::new();
    for service in files.iter().flat_map(|f| &f.services) {
        match packages.iter_mut().find(|(p, _)| *p == service.package) {
            Some((_, services)) => services.push(service),
            None => packages.push((service.package.clone(), vec![service])),
        }
    }
    packages
        .into_iter()
        .map(|(package, services)| {
            let body = format_modules(&services, &module_names(&services), options);
            (file_name(&package), format!("{GENERATED_HEADER}{}", body.concat()))
        })
        .collect()
}

/// Each service module is parsed and formatted on its own (the same text as
/// formatting the file whole), spread over the available cores: parsing and
/// pretty-printing are most of the plugin's time on large inputs.
fn format_modules(services: &[&Service], modules: &[String], options: &RustOptions) -> Vec<String> {
    let format_chunk = |services: &[&Service], modules: &[String]| -> Vec<String> {
        let paths = Paths::new(options);
        services
            .iter()
            .zip(modules)
            .map(|(service, module)| format_items(service_module(service, &ident(module), &paths)))
            .collect()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(services.len().div_ceil(8));
    if threads <= 1 {
        return format_chunk(services, modules);
    }
    let chunk = services.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = services
            .chunks(chunk)
            .zip(modules.chunks(chunk))
            .map(|(services, modules)| scope.spawn(move || format_chunk(services, modules)))
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

/// One service's module, formatted, for appending into prost's package file.
pub fn generate_service(service: &Service, options: &RustOptions) -> String {
    let module = module_names(&[service]).remove(0);
    format!("{GENERATED_HEADER}{}", format_items(service_module(service, &ident(&module), &Paths::new(options))))
}

const GENERATED_HEADER: &str = "// @generated by protoc-gen-nats-micro. Do not edit.\n";

/// Pretty-prints generated items (they always parse: they come from `quote!`).
fn format_items(items: TokenStream) -> String {
    let file: syn::File = syn::parse2(items).expect("generated Rust parses");
    prettyplease::unparse(&file)
}

/// `order_service_nats`; services whose names differ only in case get a number.
fn module_names(services: &[&Service]) -> Vec<String> {
    let mut taken = HashSet::new();
    services
        .iter()
        .map(|service| {
            let base = format!("{}_nats", heck::ToSnakeCase::to_snake_case(service.proto_name.as_str()));
            let mut name = base.clone();
            let mut n = 2;
            while !taken.insert(name.clone()) {
                name = format!("{base}{n}");
                n += 1;
            }
            name
        })
        .collect()
}

fn ident(name: &str) -> Ident {
    match name.strip_prefix("r#") {
        Some(raw) => Ident::new_raw(raw, Span::call_site()),
        None => Ident::new(name, Span::call_site()),
    }
}

/// `#[doc = "..."]` lines from proto comments, made safe for rustdoc: an
/// unlabelled code fence becomes a `text` block (no doctests); outside
/// fences brackets are escaped (no intra-doc links) and indentation is
/// dropped (no indented code blocks); inside fences lines stay verbatim.
fn doc(comments: Option<&str>) -> TokenStream {
    let Some(comments) = comments else { return TokenStream::new() };
    let mut in_fence = false;
    let lines = comments.lines().map(|line| {
        let trimmed = line.trim();
        if let Some(label) = trimmed.strip_prefix("```") {
            let opening = !in_fence;
            in_fence = !in_fence;
            return if opening && label.trim().is_empty() { " ```text".to_owned() } else { format!(" {trimmed}") };
        }
        if in_fence {
            return line.to_owned();
        }
        format!(" {}", trimmed.replace('[', "\\[").replace(']', "\\]"))
    });
    let lines: Vec<String> = lines.collect();
    let closing = in_fence.then(|| quote! { #[doc = " ```"] });
    quote! { #( #[doc = #lines] )* #closing }
}

fn duration(value: Option<Duration>) -> TokenStream {
    match value {
        Some(d) => {
            let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
            quote! { ::core::option::Option::Some(::core::time::Duration::new(#secs, #nanos)) }
        }
        None => quote! { ::core::option::Option::None },
    }
}

fn pairs(map: &BTreeMap<String, String>) -> TokenStream {
    let entries = map.iter().map(|(k, v)| quote! { (#k, #v) });
    quote! { &[#(#entries),*] }
}

fn limit(value: Option<u32>) -> TokenStream {
    match value {
        Some(v) => {
            let v = Literal::usize_unsuffixed(v as usize);
            quote! { ::core::option::Option::Some(#v) }
        }
        None => quote! { ::core::option::Option::None },
    }
}

/// The Rust path of a message, relative to a service module in `package`.
fn message_path(message: &MessageRef, package: &str, paths: &Paths) -> TokenStream {
    let dotted = format!(".{}", message.full_name);
    if let Some(primitive) = prost_primitive(&dotted, paths) {
        return primitive;
    }
    for (proto, rust) in &paths.externs {
        if dotted == *proto || dotted.starts_with(&format!("{proto}.")) {
            // Package segments past the extern prefix become modules, then the message path.
            let prefix_segments = proto.trim_start_matches('.').split('.').filter(|s| !s.is_empty()).count();
            let package_segments: Vec<&str> = message.package.split('.').filter(|s| !s.is_empty()).collect();
            let rest = package_segments.iter().skip(prefix_segments).map(|s| ident(&rust_snake(s)));
            let tail = type_tail(&message.path);
            return quote! { #rust #(:: #rest)* :: #tail };
        }
    }
    let depth = package.split('.').filter(|s| !s.is_empty()).count() + 1;
    let supers = std::iter::repeat_n(quote! { super }, depth);
    let tail = type_tail(&message.path);
    if message.package == package {
        return quote! { super :: #tail };
    }
    let modules = message.package.split('.').filter(|s| !s.is_empty()).map(|s| ident(&rust_snake(s)));
    quote! { #(#supers ::)* #(#modules ::)* #tail }
}

/// With `google.protobuf` on `prost_types`, prost maps `Empty` to `()` and
/// the wrapper messages to primitives, which prost encodes as those messages.
fn prost_primitive(dotted: &str, paths: &Paths) -> Option<TokenStream> {
    let name = dotted.strip_prefix(".google.protobuf.")?;
    let (_, rust) = paths.externs.iter().find(|(proto, _)| proto == ".google.protobuf")?;
    if quote!(#rust).to_string().replace(' ', "") != "::prost_types" {
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
    let (last, outer) = path.split_last().expect("a message has a name");
    let modules = outer.iter().map(|m| ident(&rust_snake(m)));
    let name = ident(&rust_upper_camel(last));
    quote! { #(#modules ::)* #name }
}

/// A code as the generated API names it.
struct CodeItem {
    /// `ORDER_EXPIRED`
    wire: String,
    /// `OrderExpired`
    variant: Ident,
    /// `order_expired`
    constructor: Ident,
    /// `is_order_expired`
    checker: Ident,
    /// `::nats_micro_runtime::codegen::Code::NotFound` or `Code::Custom(..)`
    runtime: TokenStream,
    /// One of the canonical codes (a `Code` variant of its own in the runtime).
    is_canonical: bool,
    doc: String,
}

/// Names taken by the generated error type's own methods (and those it
/// reaches through `Deref` to the runtime error): a code whose name would
/// clash gets a trailing `_`.
const ERROR_METHODS: &[&str] = &[
    "new",
    "code",
    "with_data",
    "with_header",
    "into_inner",
    "message",
    "method",
    "data",
    "headers",
    "kind",
    "detail",
    "is_timeout",
    "is_no_responders",
    "is_transport",
    "has_code",
    "clone",
    "fmt",
    "source",
    "to_string",
];

fn codes(service: &Service, rt: &syn::Path) -> Vec<CodeItem> {
    let canonical = BUILTIN_CODES.iter().chain(EXTRA_CANONICAL_CODES.iter()).map(|c| (c.to_string(), true));
    let custom = service.error_codes.iter().map(|c| (c.clone(), false));
    canonical
        .chain(custom)
        .map(|(wire, is_canonical)| {
            let snake = heck::ToSnakeCase::to_snake_case(wire.as_str());
            let constructor = if ERROR_METHODS.contains(&snake.as_str()) { format!("{snake}_") } else { snake.clone() };
            let checker = format!("is_{snake}");
            let checker = if ERROR_METHODS.contains(&checker.as_str()) { format!("{checker}_") } else { checker };
            let mut variant = rust_upper_camel(&wire);
            if variant == "Unrecognized" {
                variant.push_str("Code");
            }
            let runtime = if is_canonical {
                let v = ident(&rust_upper_camel(&wire));
                quote! { #rt::Code::#v }
            } else {
                quote! { #rt::Code::Custom(::std::borrow::Cow::Borrowed(#wire)) }
            };
            let doc = if is_canonical {
                match BUILTIN_CODES.iter().position(|c| *c == wire) {
                    Some(_) => format!(" Built-in code `{wire}` (sent as its ADR-32 number by default)."),
                    None => format!(" Canonical code `{wire}` (sent by name)."),
                }
            } else {
                format!(" Custom code `{wire}`, declared in `error_codes` (sent by name).")
            };
            CodeItem {
                variant: ident(&variant),
                constructor: ident(&sanitize_identifier(&constructor)),
                checker: ident(&sanitize_identifier(&checker)),
                runtime,
                is_canonical,
                doc,
                wire,
            }
        })
        .collect()
}

/// Names taken by the generated client's own methods: an RPC whose Rust name
/// would clash gets a trailing `_`.
const CLIENT_METHODS: &[&str] = &[
    "new",
    "from_client",
    "with_subject_prefix",
    "with_timeout",
    "with_header",
    "with_interceptor",
    "inner",
    "into_inner",
    "endpoints",
    "clone",
    "fmt",
    "to_owned",
];

fn rpc_ident(method: &Method, reserved: &[&str]) -> Ident {
    let name = rust_snake(&method.proto_name);
    if reserved.contains(&name.as_str()) { ident(&format!("{name}_")) } else { ident(&name) }
}

fn service_module(service: &Service, module: &Ident, paths: &Paths) -> TokenStream {
    let rt = &paths.runtime;
    let trait_name = ident(&rust_upper_camel(&service.proto_name));
    let error = format_ident!("{}Error", trait_name.to_string().trim_start_matches("r#"));
    let code = format_ident!("{}ErrorCode", trait_name.to_string().trim_start_matches("r#"));
    let client = format_ident!("{}Client", trait_name.to_string().trim_start_matches("r#"));
    let codec = if service.json {
        quote! { #rt::Json }
    } else {
        quote! { #rt::Protobuf }
    };
    let full_name = &service.full_name;
    let service_doc = doc(service.comments.as_deref());
    let service_doc = (!service_doc.is_empty()).then(|| quote! { #[doc = ""] #service_doc });
    let deprecated = service.deprecated.then(|| quote! { #[deprecated] });

    // Static description.
    let (name, version, description, prefix) = (&service.name, &service.version, &service.description, &service.subject_prefix);
    let service_metadata = pairs(&service.metadata);
    let service_timeout = duration(service.timeout);
    let queue_group_disabled = service.queue_group_disabled;
    let endpoint_count = Literal::usize_unsuffixed(service.methods.len());
    let endpoint_specs = service.methods.iter().map(|m| {
        let (method_name, endpoint) = (&m.proto_name, &m.endpoint);
        let timeout = duration(m.timeout.or(service.timeout));
        let metadata = pairs(&m.metadata);
        let queue_disabled = m.queue_group_disabled;
        let (msgs, bytes) = (limit(m.pending_msg_limit), limit(m.pending_bytes_limit));
        quote! {
            #rt::EndpointSpec {
                method: #rt::MethodSpec { method: #method_name, endpoint: #endpoint, timeout: #timeout },
                metadata: #metadata,
                queue_group_disabled: #queue_disabled,
                pending_msg_limit: #msgs,
                pending_bytes_limit: #bytes,
            }
        }
    });

    // Server trait and registration.
    let trait_methods = service.methods.iter().map(|m| {
        let name = rpc_ident(m, &[]);
        let input = message_path(&m.input, &service.package, paths);
        let output = message_path(&m.output, &service.package, paths);
        let docs = doc(m.comments.as_deref());
        let deprecated = m.deprecated.then(|| quote! { #[deprecated] });
        let subject_doc = format!(" Endpoint `{}` on subject `{}` (by default).", m.endpoint, m.subject);
        let separator = m.comments.is_some().then(|| quote! { #[doc = ""] });
        quote! {
            #docs
            #separator
            #[doc = #subject_doc]
            #deprecated
            fn #name(&self, ctx: #rt::RequestContext, request: #input)
                -> impl ::core::future::Future<Output = ::core::result::Result<#output, #error>> + ::core::marker::Send;
        }
    });
    let registrations = service.methods.iter().enumerate().map(|(i, m)| {
        let name = rpc_ident(m, &[]);
        let i = Literal::usize_unsuffixed(i);
        quote! {
            .endpoint(&ENDPOINTS[#i], {
                let service = service.clone();
                #rt::unary_handler::<#codec, _, _, _, _, _>(move |ctx, request| {
                    let service = service.clone();
                    async move { #trait_name::#name(&*service, ctx, request).await }
                })
            })
        }
    });

    // Client.
    let client_methods = service.methods.iter().enumerate().map(|(i, m)| {
        let name = rpc_ident(m, CLIENT_METHODS);
        let i = Literal::usize_unsuffixed(i);
        let input = message_path(&m.input, &service.package, paths);
        let output = message_path(&m.output, &service.package, paths);
        let docs = doc(m.comments.as_deref());
        let deprecated = m.deprecated.then(|| quote! { #[deprecated] });
        let call_doc = format!(" Calls `{}` on `{{subject_prefix}}.{}`.", m.proto_name, m.endpoint);
        let separator = m.comments.is_some().then(|| quote! { #[doc = ""] });
        quote! {
            #docs
            #separator
            #[doc = #call_doc]
            #deprecated
            pub async fn #name(&self, request: impl #rt::IntoRequest<#input>)
                -> ::core::result::Result<#rt::Response<#output>, #error>
            {
                self.inner.unary::<#codec, _, _>(&ENDPOINTS[#i].method, request.into_request()).await.map_err(#error)
            }
        }
    });

    // Errors.
    let codes = codes(service, rt);
    let variants = codes.iter().map(|c| {
        let (variant, doc) = (&c.variant, &c.doc);
        quote! { #[doc = #doc] #variant, }
    });
    let consts = codes.iter().map(|c| {
        let (wire, konst) = (&c.wire, ident(&c.wire));
        let doc = format!(" `{wire}` as a string.");
        quote! { #[doc = #doc] pub const #konst: &'static str = #wire; }
    });
    let as_str_arms = codes.iter().map(|c| {
        let (variant, wire) = (&c.variant, &c.wire);
        quote! { #code::#variant => #wire, }
    });
    let from_code_arms = codes.iter().map(|c| {
        let (variant, runtime, wire) = (&c.variant, &c.runtime, &c.wire);
        if c.is_canonical {
            quote! { #runtime => #code::#variant, }
        } else {
            quote! { #rt::Code::Custom(name) if name == #wire => #code::#variant, }
        }
    });
    let to_code_arms = codes.iter().map(|c| {
        let (variant, runtime) = (&c.variant, &c.runtime);
        quote! { #code::#variant => #runtime, }
    });
    let constructors = codes.iter().map(|c| {
        let (constructor, runtime, wire) = (&c.constructor, &c.runtime, &c.wire);
        let doc = format!(" A `{wire}` error raised in `method` (the proto method name, e.g. `\"CreateOrder\"`).");
        quote! {
            #[doc = #doc]
            pub fn #constructor(method: &'static str, message: impl ::core::convert::Into<::std::string::String>) -> Self {
                #error(#rt::Error::new(#runtime, message).with_method(method))
            }
        }
    });
    let checkers = codes.iter().map(|c| {
        let (checker, runtime, wire) = (&c.checker, &c.runtime, &c.wire);
        let doc = format!(" Whether the code is `{wire}`.");
        quote! {
            #[doc = #doc]
            pub fn #checker(&self) -> bool {
                *self.0.code() == #runtime
            }
        }
    });

    let client_doc = format!(" Typed client for `{full_name}`.");
    let trait_doc = format!(" The server side of `{full_name}`: implement it and pass it to [`service_builder`] or [`serve`].");
    let module_doc = format!(" NATS micro service `{full_name}`: server trait, registration, client and errors.");
    let streaming_note = (!service.streaming.is_empty()).then(|| {
        let names: Vec<String> = service.streaming.iter().map(|s| format!("`{}` ({})", s.proto_name, s.kind)).collect();
        let note = format!(" Streaming RPCs are not generated yet and are left out: {}.", names.join(", "));
        quote! { #![doc = ""] #![doc = #note] }
    });
    let error_doc = format!(" An error of `{full_name}`: a [`{code}`], a message, the method, optional data.");
    let code_doc = format!(
        " The codes `{full_name}` can return: the built-in and canonical codes, the custom codes from `error_codes`, and any other code kept verbatim."
    );

    quote! {
        #[doc = #module_doc]
        #service_doc
        pub mod #module {
            #streaming_note
            #![allow(deprecated, unused_imports, clippy::all)]

            /// What the proto declares for the service.
            pub const SERVICE: #rt::ServiceSpec = #rt::ServiceSpec {
                proto_name: #full_name,
                name: #name,
                version: #version,
                description: #description,
                subject_prefix: #prefix,
                metadata: #service_metadata,
                timeout: #service_timeout,
                queue_group_disabled: #queue_group_disabled,
            };

            /// The endpoints, in proto order.
            pub const ENDPOINTS: [#rt::EndpointSpec; #endpoint_count] = [#(#endpoint_specs),*];

            #[doc = #trait_doc]
            #service_doc
            #deprecated
            pub trait #trait_name: ::core::marker::Send + ::core::marker::Sync + 'static {
                #(#trait_methods)*
            }

            /// A service builder with every endpoint and the proto's options; change
            /// any setting, then `start` it.
            #deprecated
            pub fn service_builder<S: #trait_name>(service: S) -> #rt::ServiceBuilder {
                let service = ::std::sync::Arc::new(service);
                #rt::ServiceBuilder::new(&SERVICE) #(#registrations)*
            }

            /// Starts the service with the proto's options.
            #deprecated
            pub async fn serve<S: #trait_name>(
                nats: &#rt::async_nats::Client,
                service: S,
            ) -> ::core::result::Result<#rt::Service, #rt::Error> {
                #[allow(deprecated)]
                service_builder(service).start(nats).await
            }

            #[doc = #client_doc]
            #deprecated
            #[derive(Clone, Debug)]
            pub struct #client {
                inner: #rt::Client,
            }

            impl #client {
                /// A client with the proto's subject prefix and timeouts.
                pub fn new(nats: #rt::async_nats::Client) -> Self {
                    #client { inner: #rt::Client::new(nats, SERVICE.subject_prefix) }
                }

                /// A client over a configured runtime client (interceptors, headers, timeout).
                pub fn from_client(inner: #rt::Client) -> Self {
                    #client { inner }
                }

                /// Sends to another subject prefix.
                pub fn with_subject_prefix(self, prefix: &str) -> Self {
                    #client { inner: self.inner.with_subject_prefix(prefix) }
                }

                /// Sets a timeout for every call, over the proto's.
                pub fn with_timeout(self, timeout: ::core::time::Duration) -> Self {
                    #client { inner: self.inner.with_timeout(timeout) }
                }

                /// Adds a header to every call.
                pub fn with_header(self, name: &str, value: &str) -> Self {
                    #client { inner: self.inner.with_header(name, value) }
                }

                /// Adds an interceptor; the first added runs outermost.
                pub fn with_interceptor(self, interceptor: impl #rt::ClientInterceptor) -> Self {
                    #client { inner: self.inner.with_interceptor(interceptor) }
                }

                /// The runtime client underneath.
                pub fn inner(&self) -> &#rt::Client {
                    &self.inner
                }

                /// Endpoint names and the subjects this client sends to, in proto order.
                pub fn endpoints(&self) -> ::std::vec::Vec<#rt::EndpointInfo> {
                    ENDPOINTS
                        .iter()
                        .map(|spec| #rt::EndpointInfo {
                            name: spec.method.endpoint.into(),
                            subject: self.inner.subject(spec.method.endpoint),
                            queue_group: ::core::option::Option::None,
                            metadata: spec.metadata.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
                        })
                        .collect()
                }

                #(#client_methods)*
            }

            #[doc = #code_doc]
            #[derive(Clone, Debug, PartialEq, Eq, Hash)]
            pub enum #code {
                #(#variants)*
                /// A code this service does not declare, kept verbatim.
                Unrecognized(::std::string::String),
            }

            impl #code {
                #(#consts)*

                /// The code's name (or the verbatim value of an unrecognised code).
                pub fn as_str(&self) -> &str {
                    match self {
                        #(#as_str_arms)*
                        #code::Unrecognized(raw) => raw,
                    }
                }

                /// Classifies a runtime code.
                pub fn from_code(code: &#rt::Code) -> Self {
                    match code {
                        #(#from_code_arms)*
                        other => #code::Unrecognized(other.as_str().into()),
                    }
                }

                /// The runtime code.
                pub fn to_code(&self) -> #rt::Code {
                    match self {
                        #(#to_code_arms)*
                        #code::Unrecognized(raw) => #rt::Code::from_wire(raw),
                    }
                }
            }

            impl ::core::fmt::Display for #code {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.write_str(self.as_str())
                }
            }

            #[doc = #error_doc]
            ///
            /// Derefs to the runtime error for the message, data, headers and
            /// transport checks (`is_timeout`, `is_no_responders`).
            #[derive(Clone, Debug)]
            pub struct #error(pub #rt::Error);

            impl #error {
                /// An error with any code.
                pub fn new(code: #code, method: &'static str, message: impl ::core::convert::Into<::std::string::String>) -> Self {
                    #error(#rt::Error::new(code.to_code(), message).with_method(method))
                }

                #(#constructors)*

                /// The code, classified for this service.
                pub fn code(&self) -> #code {
                    #code::from_code(self.0.code())
                }

                #(#checkers)*

                /// Sets the error data (sent as the reply body).
                pub fn with_data(self, data: impl ::core::convert::Into<#rt::Bytes>) -> Self {
                    #error(self.0.with_data(data))
                }

                /// Adds a header to the error reply.
                pub fn with_header(self, name: &str, value: &str) -> Self {
                    #error(self.0.with_header(name, value))
                }

                /// The runtime error.
                pub fn into_inner(self) -> #rt::Error {
                    self.0
                }
            }

            impl ::core::ops::Deref for #error {
                type Target = #rt::Error;
                fn deref(&self) -> &#rt::Error {
                    &self.0
                }
            }

            impl ::core::fmt::Display for #error {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    ::core::fmt::Display::fmt(&self.0, f)
                }
            }

            impl ::std::error::Error for #error {
                fn source(&self) -> ::core::option::Option<&(dyn ::std::error::Error + 'static)> {
                    ::std::error::Error::source(&self.0)
                }
            }

            impl ::core::convert::From<#error> for #rt::Error {
                fn from(error: #error) -> #rt::Error {
                    error.0
                }
            }

            /// Any `HandlerError` (including the runtime error) converts with `?`.
            impl<E: #rt::HandlerError> ::core::convert::From<E> for #error {
                fn from(error: E) -> Self {
                    #error(error.into_error())
                }
            }
        }
    }
}
