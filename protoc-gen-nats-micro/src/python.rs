//! Python output (asyncio, nats-py): per proto file with services, a module
//! `<proto path>_nats_pb2.py` next to protoc's `<proto path>_pb2.py`.
//!
//! Everything not specific to a service lives in the `nats-micro-runtime`
//! package (`runtime-py/`), which generated modules import by name and whose
//! version they check at import. Per service a module holds only what
//! differs per service, one submodule per artifact: its errors
//! (`errors`: an exception per code, `new_*_error` constructors and `is_*`
//! checkers as the Go plugin names them), its spec (`spec`), the handler
//! `Protocol` and `register_*` coroutine (`server`) and a typed client
//! (`client`). Module-level `ERROR_CODE_*` constants cover every code of
//! every service in the file.

mod client;
mod errors;
mod names;
mod server;
mod spec;
mod text;

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{File, MessageRef, Method, Service};

pub use errors::CANONICAL_CODES;
use names::{Names, ServiceNames, is_message_keyword};
pub use names::{class_prefix, code_pascal, is_keyword, method_name};
use text::{comment, comment_text};
pub use text::{docstring, string_literal};

/// The plugin's version, named in every generated header and checked against
/// the installed runtime's at import.
pub const PLUGIN_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The runtime's import name.
pub const RUNTIME_MODULE: &str = "nats_micro_runtime";

const RULE: &str = "# ---------------------------------------------------------------------------";

/// Generates one module per proto file with services.
pub fn generate(files: &[File]) -> Result<Vec<(String, String)>, String> {
    Ok(files
        .iter()
        .filter(|file| !file.services.is_empty())
        .map(|file| (module_file_name(&file.name), ModuleWriter::new(file).write()))
        .collect())
}

/// `order/v1/order.proto` → `order/v1/order_nats_pb2.py` (`-` becomes `_`, as
/// protoc does for `_pb2` modules, so the module is importable).
pub fn module_file_name(proto: &str) -> String {
    format!("{}_nats_pb2.py", module_path(proto).replace('.', "/"))
}

/// The dotted module path of a proto file without the `_pb2` suffix: `order.v1.order`.
fn module_path(proto: &str) -> String {
    proto.strip_suffix(".proto").unwrap_or(proto).replace('-', "_").replace('/', ".")
}

/// One `from package import module_pb2 [as alias]` line.
struct Import {
    /// Dotted module path without `_pb2` (`order.v1.order`).
    path: String,
    /// The name the module is bound to.
    alias: String,
}

impl Import {
    /// Whether no import statement can name the module: a package name is a
    /// keyword, or a segment is not a plain identifier (protoc accepts file
    /// names such as `we\u{2028}ird.proto`).
    fn needs_importlib(&self) -> bool {
        self.path.rsplit_once('.').is_some_and(|(package, _)| package.split('.').any(is_keyword))
            || !self.path.split('.').all(is_plain_identifier)
    }

    fn statement(&self) -> String {
        let module = format!("{}_pb2", self.path);
        let (package, base) = module.rsplit_once('.').map_or(("", module.as_str()), |(p, b)| (p, b));
        if self.needs_importlib() {
            // Not expressible as an import statement; protoc does the same.
            return format!("{} = importlib.import_module({})", self.alias, string_literal(&module));
        }
        let alias = if self.alias == base { String::new() } else { format!(" as {}", self.alias) };
        if package.is_empty() { format!("import {base}{alias}") } else { format!("from {package} import {base}{alias}") }
    }
}

/// An ASCII identifier (`[A-Za-z_][A-Za-z0-9_]*`): what an import statement
/// can name without any doubt about Unicode normalisation.
fn is_plain_identifier(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `name` with every character that cannot be in a plain identifier made `_`.
fn to_identifier(name: &str) -> String {
    let out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) { format!("_{out}") } else { out }
}

/// Every RPC of a service as an endpoint, in proto order (the order of INFO).
fn generated_methods(service: &Service) -> impl Iterator<Item = &Method> {
    service.rpcs().into_iter().map(|rpc| rpc.method())
}

/// Writes one generated module.
struct ModuleWriter<'a> {
    file: &'a File,
    imports: Vec<Import>,
    services: Vec<ServiceNames>,
    out: String,
}

impl<'a> ModuleWriter<'a> {
    fn new(file: &'a File) -> ModuleWriter<'a> {
        let mut names = Names::module();
        let imports = Self::imports(file, &mut names);
        let mut services: Vec<ServiceNames> = file.services.iter().map(|s| ServiceNames::main(s, &mut names)).collect();
        for (service, service_names) in file.services.iter().zip(&mut services) {
            service_names.claim_codes(service, &mut names);
        }
        ModuleWriter { file, imports, services, out: String::new() }
    }

    /// The `_pb2` modules of every request and response message, bound to
    /// their base name (`order_pb2`) unless two share one.
    fn imports(file: &File, names: &mut Names) -> Vec<Import> {
        let paths: BTreeSet<String> = file
            .services
            .iter()
            .flat_map(generated_methods)
            .flat_map(|m| [&m.input.file, &m.output.file])
            .map(|proto| module_path(proto))
            .collect();
        let base = |path: &str| format!("{}_pb2", path.rsplit('.').next().unwrap_or(path));
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for path in &paths {
            *count.entry(base(path)).or_default() += 1;
        }
        paths
            .into_iter()
            .map(|path| {
                let wanted = if count[&base(&path)] == 1 { base(&path) } else { format!("{}_pb2", path.replace('.', "_")) };
                Import { alias: names.claim(to_identifier(&wanted)), path }
            })
            .collect()
    }

    /// The alias of the module that declares `message`.
    fn module_alias(&self, message: &MessageRef) -> &str {
        let path = module_path(&message.file);
        self.imports.iter().find(|i| i.path == path).map_or("", |i| i.alias.as_str())
    }

    /// A message type for annotations: `order_pb2.Order.Item`; a keyword
    /// segment as mypy-protobuf's stubs name it (`def` → `_r_def`), which
    /// is fine at run time too since annotations are not evaluated.
    fn message_type(&self, message: &MessageRef) -> String {
        let segments: Vec<String> =
            message.path.iter().map(|s| if is_message_keyword(s) { format!("_r_{s}") } else { s.clone() }).collect();
        format!("{}.{}", self.module_alias(message), segments.join("."))
    }

    /// A message class as a run-time value: `order_pb2.Order.Item`, or, when a
    /// segment is a keyword, the `getattr` chain protobuf's Python API asks
    /// for, cast to the annotated type.
    fn message_value(&self, message: &MessageRef) -> String {
        if !Self::needs_getattr(message) {
            return self.message_type(message);
        }
        let mut value = self.module_alias(message).to_owned();
        for segment in &message.path {
            value = format!("getattr({value}, {})", string_literal(segment));
        }
        format!("cast({}, {value})", string_literal(&format!("type[{}]", self.message_type(message))))
    }

    fn needs_getattr(message: &MessageRef) -> bool {
        message.path.iter().any(|s| is_message_keyword(s))
    }

    fn push(&mut self, text: &str) {
        self.out.push_str(text);
    }

    fn line(&mut self, text: &str) {
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn write(mut self) -> String {
        self.header();
        let file = self.file;
        self.code_constants(file);
        for (service, names) in file.services.iter().zip(std::mem::take(&mut self.services)) {
            self.line("");
            self.line("");
            self.line(RULE);
            self.line(&format!("# {}", comment(&service.full_name)));
            self.line(RULE);
            self.errors(service, &names);
            self.spec(service, &names);
            self.handler(service, &names);
            self.register(service, &names);
            self.client(service, &names);
        }
        self.out
    }

    /// Header comment, module docstring, imports and the runtime version check.
    fn header(&mut self) {
        let file = self.file;
        self.line(&format!("# @generated by protoc-gen-nats-micro {PLUGIN_VERSION}. Do not edit."));
        self.line(&format!("# source: {}", comment(&file.name)));
        let doc = format!(
            "NATS microservices (ADR-32) for ``{}``: per service a handler protocol,\n\
             a ``register_*`` coroutine, a typed client and its errors. Needs the\n\
             ``nats-micro-runtime`` package ({PLUGIN_VERSION} or a compatible version).",
            file.name
        );
        self.push(&docstring("", &doc));
        self.imports_block();
        self.line("");
        self.line(&format!("{RUNTIME_MODULE}.require_compatible({}, __name__)", string_literal(PLUGIN_VERSION)));
    }

    fn imports_block(&mut self) {
        let file = self.file;
        self.line("");
        self.line("from __future__ import annotations");
        self.line("");
        if self.imports.iter().any(Import::needs_importlib) {
            self.line("import importlib");
        }
        if file.services.iter().any(|s| s.streaming.iter().any(|m| m.chunked_io.is_some())) {
            self.line("import os");
        }
        if file.services.iter().any(|s| s.deprecated || generated_methods(s).any(|m| m.deprecated)) {
            self.line("import warnings");
        }
        let any_stream = file.services.iter().any(|s| !s.streaming.is_empty());
        self.line(if any_stream {
            "from collections.abc import AsyncIterator, Mapping"
        } else {
            "from collections.abc import Mapping"
        });
        let any_getattr = file
            .services
            .iter()
            .flat_map(generated_methods)
            .any(|m| Self::needs_getattr(&m.input) || Self::needs_getattr(&m.output));
        self.line(if any_getattr { "from typing import Protocol, Unpack, cast" } else { "from typing import Protocol, Unpack" });
        self.line("");
        self.line("import nats.aio.client");
        self.line("");
        self.line(&format!("import {RUNTIME_MODULE}"));
        let statements: Vec<String> = self.imports.iter().map(Import::statement).collect();
        for statement in statements {
            self.line(&statement);
        }
    }
}

/// A method's docstring: its proto comments, then `what`, then a deprecation note.
fn method_doc(method: &Method, what: &str) -> String {
    let mut doc = match comment_text(method.comments.as_deref()) {
        Some(comments) => format!("{comments}\n\n{what}"),
        None => what.to_owned(),
    };
    if method.deprecated {
        doc.push_str("\n\n.. deprecated:: The proto marks this RPC deprecated.");
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_files_sit_next_to_protocs() {
        assert_eq!(module_file_name("order/v1/order.proto"), "order/v1/order_nats_pb2.py");
        assert_eq!(module_file_name("my-dir/a-b.proto"), "my_dir/a_b_nats_pb2.py");
    }

    #[test]
    fn imports_name_modules_by_base_name_unless_two_share_one() {
        let import = |path: &str, alias: &str| Import { path: path.into(), alias: alias.into() }.statement();
        assert_eq!(import("order.v1.order", "order_pb2"), "from order.v1 import order_pb2");
        assert_eq!(
            import("order.v1.service", "order_v1_service_pb2"),
            "from order.v1 import service_pb2 as order_v1_service_pb2"
        );
        assert_eq!(import("root", "root_pb2"), "import root_pb2");
        assert_eq!(import("class.v1.x", "x_pb2"), "x_pb2 = importlib.import_module(\"class.v1.x_pb2\")");
        assert_eq!(import("type.v1.x", "x_pb2"), "from type.v1 import x_pb2", "soft keywords are valid names");
        assert_eq!(
            import("a.v1.we\u{2028}ird", &to_identifier("we\u{2028}ird_pb2")),
            "we_ird_pb2 = importlib.import_module(\"a.v1.we\\u2028ird_pb2\")"
        );
    }
}
