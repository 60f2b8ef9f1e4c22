//! Rust output: per service, a module with the spec, the server trait and
//! its registration, the typed client and the typed errors, all on the
//! runtime crate's `codegen` path. Messages are prost's, referred to by path.
//!
//! One function per artifact (`spec`, `server`, `client`,
//! `errors`), composed by `service_module`; what does not vary per
//! service lives in the runtime (`service_error!`, `service_client!`,
//! `unary_method` and its streaming siblings), so a module carries only
//! what the proto declares. Streaming RPCs (PROTOCOL §9) sit beside unary
//! ones in proto order: a handler gets a `Streaming` of requests and/or a
//! `ResponseSender`, a client method returns a `Streaming` of responses
//! and/or takes a stream of requests.

mod client;
mod docs;
mod errors;
mod names;
mod server;
mod spec;
mod store;
mod types;

use proc_macro2::{Ident, TokenStream};
use quote::quote;

use crate::model::{ChunkedIo, File, Method, Service, StreamKind};
use names::{RpcNames, ident, module_names, rpc_names, type_name};

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
    /// `google.protobuf` maps to `::prost_types`, whose wrappers are primitives.
    well_known_on_prost_types: bool,
}

impl Paths {
    fn new(options: &RustOptions) -> Paths {
        // Both were parsed when set; a default path stands in should one not parse.
        let parse = |path: &str| syn::parse_str(path).unwrap_or_else(|_| syn::parse_quote!(::nats_micro_runtime::codegen));
        Paths {
            runtime: parse(&options.runtime_path),
            externs: options.extern_paths.iter().map(|(proto, rust)| (proto.clone(), parse(rust))).collect(),
            well_known_on_prost_types: options
                .extern_paths
                .iter()
                .any(|(proto, rust)| proto == ".google.protobuf" && rust.replace(' ', "") == "::prost_types"),
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

/// One service's module, formatted, for appending into prost's package file.
pub fn generate_service(service: &Service, options: &RustOptions) -> String {
    let modules = module_names(&[service]);
    let module = modules.first().map_or("service_nats", String::as_str);
    format!("{GENERATED_HEADER}{}", format_items(service_module(service, &ident(module), &Paths::new(options))))
}

const GENERATED_HEADER: &str = "// @generated by protoc-gen-nats-micro. Do not edit.\n";

/// Each service module is formatted on its own (the same text as formatting
/// the file whole), spread over the available cores: pretty-printing is
/// most of the plugin's time on large inputs.
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

/// Pretty-prints generated items. They come from `quote!` over valid
/// identifiers and literals, so they parse; should they not, the raw
/// tokens are written and the compiler names the problem.
fn format_items(items: TokenStream) -> String {
    match syn::parse2::<syn::File>(items.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(_) => format!("{items}\n"),
    }
}

/// What the artifact generators share about one service: its names and
/// the Rust types of its RPCs.
struct ServiceItems<'a> {
    service: &'a Service,
    trait_name: Ident,
    error: Ident,
    code: Ident,
    client: Ident,
    rpcs: Vec<Rpc<'a>>,
}

/// One RPC (unary or streaming) with its names and message types, in proto order.
struct Rpc<'a> {
    method: &'a Method,
    /// How it streams (`None`: unary).
    stream: Option<StreamKind>,
    names: RpcNames,
    input: TokenStream,
    output: TokenStream,
    /// `(natsmicro.chunked_io)` of a client- or server-streaming RPC.
    chunked: Option<&'a ChunkedIo>,
}

impl<'a> ServiceItems<'a> {
    fn new(service: &'a Service, paths: &Paths) -> ServiceItems<'a> {
        let rpcs = service
            .rpcs()
            .into_iter()
            .zip(rpc_names(service))
            .map(|(rpc, names)| Rpc {
                method: rpc.method(),
                stream: rpc.stream_kind(),
                names,
                input: types::message_path(&rpc.method().input, &service.package, paths),
                output: types::message_path(&rpc.method().output, &service.package, paths),
                chunked: match rpc {
                    crate::model::Rpc::Streaming(streaming) => streaming.chunked_io.as_ref(),
                    crate::model::Rpc::Unary(_) => None,
                },
            })
            .collect();
        ServiceItems {
            service,
            trait_name: type_name(&service.proto_name, ""),
            error: type_name(&service.proto_name, "Error"),
            code: type_name(&service.proto_name, "ErrorCode"),
            client: type_name(&service.proto_name, "Client"),
            rpcs,
        }
    }

    /// `#[allow(deprecated)]` for items that register or call deprecated
    /// RPCs (or the deprecated service's trait), which are still served.
    fn allow_deprecated(&self) -> Option<TokenStream> {
        let any = self.service.deprecated || self.rpcs.iter().any(|rpc| rpc.method.deprecated);
        any.then(|| quote! { #[allow(deprecated, reason = "deprecated in the proto, still served and callable")] })
    }
}

/// The module of one service: spec, server, client and errors.
fn service_module(service: &Service, module: &Ident, paths: &Paths) -> TokenStream {
    let items = ServiceItems::new(service, paths);
    let runtime = &paths.runtime;
    let spec = spec::generate(&items);
    let store = store::items(&items);
    let server_trait = server::generate_trait(&items);
    let registration = server::generate_registration(&items);
    let client = client::generate(&items);
    let errors = errors::generate(&items);
    let doc = docs::line(&format!(" NATS micro service `{}`: server trait, registration, client and errors.", service.full_name));
    let comments = docs::comments(service.comments.as_deref());
    let comments = (!comments.is_empty()).then(|| quote! { #[doc = ""] #comments });
    quote! {
        #doc
        #comments
        pub mod #module {
            use #runtime as rt;

            #spec
            #store
            #server_trait
            #registration
            #client
            #errors
        }
    }
}
