//! Python output (asyncio, nats-py): per proto file with services, a module
//! `<proto path>_nats_pb2.py` next to protoc's `<proto path>_pb2.py`, plus one
//! shared runtime, `nats_micro_runtime.py`, at the output root.
//!
//! Per service the module holds: an exception per code under the service's
//! base exception (`OrderServiceError`), `new_*_error` constructors and `is_*`
//! checkers as the Go plugin names them, the service spec, a handler
//! `Protocol`, a `register_*` coroutine and a typed client. Module-level
//! `ERROR_CODE_*` constants cover every code of every service in the file.
//! Everything not specific to a service lives in the runtime, which is a real
//! source file (`src/python/nats_micro_runtime.py`) embedded as is.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use crate::model::{BUILTIN_CODES, EXTRA_CANONICAL_CODES, File, MessageRef, Method, Service};
use crate::naming::subject_token;

/// The runtime's file name at the output root (imported as a top-level module).
pub const RUNTIME_FILE: &str = "nats_micro_runtime.py";

/// The runtime, emitted once per output.
pub const RUNTIME: &str = include_str!("python/nats_micro_runtime.py");

/// The built-in codes' ADR-32 numbers, in [`BUILTIN_CODES`] order.
const BUILTIN_NUMBERS: [u16; 7] = [400, 401, 403, 404, 409, 500, 503];

/// Python keywords a snake_case name can be.
const KEYWORDS: &[&str] = &[
    "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del", "elif", "else", "except", "finally",
    "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try",
    "while", "with", "yield",
];

/// Valid names that a method still should not take: soft keywords, and `self`.
const AVOIDED_NAMES: &[&str] = &["match", "case", "type", "_", "self"];

/// Module-level names a generated name must not take: what the module
/// imports, and the built-in exceptions a generated class could shadow
/// (service `Type` would otherwise define `TypeError`).
const RESERVED: &[&str] = &[
    "annotations",
    "nats",
    "nats_micro_runtime",
    "warnings",
    "importlib",
    "Mapping",
    "Sequence",
    "Protocol",
    "Unpack",
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "BlockingIOError",
    "BrokenPipeError",
    "BufferError",
    "ChildProcessError",
    "ConnectionAbortedError",
    "ConnectionError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "EOFError",
    "EnvironmentError",
    "FileExistsError",
    "FileNotFoundError",
    "FloatingPointError",
    "IOError",
    "ImportError",
    "IndentationError",
    "IndexError",
    "InterruptedError",
    "IsADirectoryError",
    "KeyError",
    "LookupError",
    "MemoryError",
    "ModuleNotFoundError",
    "NameError",
    "NotADirectoryError",
    "NotImplementedError",
    "OSError",
    "OverflowError",
    "PermissionError",
    "ProcessLookupError",
    "RecursionError",
    "ReferenceError",
    "RuntimeError",
    "SyntaxError",
    "SystemError",
    "TabError",
    "TimeoutError",
    "TypeError",
    "UnboundLocalError",
    "UnicodeDecodeError",
    "UnicodeEncodeError",
    "UnicodeError",
    "UnicodeTranslateError",
    "ValueError",
    "ZeroDivisionError",
];

const RULE: &str = "# ---------------------------------------------------------------------------";

/// Generates one module per proto file with services, and the runtime.
pub fn generate(files: &[File]) -> Result<Vec<(String, String)>, String> {
    let modules: Vec<(String, String)> = files
        .iter()
        .filter(|file| !file.services.is_empty())
        .map(|file| (module_file_name(&file.name), ModuleWriter::new(file).write()))
        .collect();
    if modules.is_empty() {
        return Ok(modules);
    }
    let mut out = vec![(RUNTIME_FILE.to_owned(), RUNTIME.to_owned())];
    out.extend(modules);
    Ok(out)
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

/// Whether `name` is a Python keyword (not usable as a name at all).
pub fn is_keyword(name: &str) -> bool {
    KEYWORDS.contains(&name)
}

/// The Python name of an RPC: its snake_case endpoint token, with a trailing
/// `_` when that is a keyword, a soft keyword or `self` (`Async` → `async_`,
/// `Match` → `match_`, `Self` → `self_`).
pub fn method_name(proto_name: &str) -> String {
    let name = subject_token(proto_name);
    if is_keyword(&name) || AVOIDED_NAMES.contains(&name.as_str()) { format!("{name}_") } else { name }
}

/// A proto name as the Go plugin's `GoCamelCase` makes it, for class names:
/// the first letter upper-cased, `_x` becomes `X`, a leading `_` becomes `X`.
pub fn class_prefix(proto_name: &str) -> String {
    let mut out = String::with_capacity(proto_name.len() + 1);
    let mut upper = true;
    let mut chars = proto_name.chars().peekable();
    if chars.peek() == Some(&'_') {
        out.push('X');
        chars.next();
    }
    while let Some(c) = chars.next() {
        if c == '_' && chars.peek().is_some_and(char::is_ascii_lowercase) {
            upper = true;
            continue;
        }
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = false;
    }
    out
}

/// The Go plugin's `ToPascalCase` for codes: `HTTP_2_FAIL` → `Http2Fail`.
pub fn code_pascal(code: &str) -> String {
    code.split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let lower = part.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

/// A Python string literal (double-quoted) holding exactly `text`.
pub use crate::naming::quoted_string_literal as string_literal;

fn push_char(out: &mut String, c: char) {
    if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
        let code = u32::from(c);
        let _ = if code <= 0xff { write!(out, "\\x{code:02x}") } else { write!(out, "\\u{code:04x}") };
    } else {
        out.push(c);
    }
}

/// A docstring at `indent` holding `text`: backslashes and control
/// characters escaped, and no run of quotes that could end it early.
pub fn docstring(indent: &str, text: &str) -> String {
    let chars: Vec<char> = text.trim_end().chars().collect();
    let mut body = String::with_capacity(text.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '\\' => body.push_str("\\\\"),
            '"' if i + 1 == chars.len() || chars[i + 1] == '"' => body.push_str("\\\""),
            '\n' | '\t' => body.push(c),
            c => push_char(&mut body, c),
        }
    }
    let mut lines = body.lines();
    let first = lines.next().unwrap_or_default();
    let rest: Vec<&str> = lines.collect();
    if rest.is_empty() {
        return format!("{indent}\"\"\"{first}\"\"\"\n");
    }
    let mut out = format!("{indent}\"\"\"{first}\n");
    for line in rest {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "{indent}{line}");
        }
    }
    let _ = writeln!(out, "{indent}\"\"\"");
    out
}

/// Proto comments as docstring text: common indentation and trailing
/// whitespace removed.
fn comment_text(comments: Option<&str>) -> Option<String> {
    let comments = comments?;
    let indent = comments
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.len() - line.trim_start().len())
        .min()
        .unwrap_or(0);
    let text: Vec<&str> =
        comments.lines().map(|line| if line.trim().is_empty() { "" } else { line[indent..].trim_end() }).collect();
    let text = text.join("\n").trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// A duration as a Python float of seconds (`5.0`, `0.75`).
fn seconds(duration: Option<Duration>) -> String {
    match duration {
        Some(d) => format!("{:?}", d.as_secs_f64()),
        None => "None".to_owned(),
    }
}

fn dict_literal(map: &BTreeMap<String, String>) -> String {
    let entries: Vec<String> = map.iter().map(|(k, v)| format!("{}: {}", string_literal(k), string_literal(v))).collect();
    format!("{{{}}}", entries.join(", "))
}

fn optional_int(value: Option<u32>) -> String {
    value.map_or_else(|| "None".to_owned(), |v| v.to_string())
}

fn bool_literal(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// Module-level names already taken; a clash gets trailing `_`s.
struct Names(HashSet<String>);

impl Names {
    fn new() -> Names {
        Names(RESERVED.iter().map(|name| (*name).to_owned()).collect())
    }

    fn claim(&mut self, wanted: String) -> String {
        let mut name = wanted;
        while !self.0.insert(name.clone()) {
            name.push('_');
        }
        name
    }
}

/// How a code's class and helpers are named.
struct CodeNames {
    /// `ORDER_EXPIRED`
    wire: String,
    /// `OrderServiceOrderExpiredError`
    class: String,
    /// `nats_micro_runtime.NotFoundError`, or `CodedServiceError` for custom codes.
    runtime_base: String,
    /// `new_order_service_order_expired_error`
    constructor: String,
    /// `is_order_service_order_expired`
    checker: String,
    /// What the code is, for its docstring.
    doc: String,
}

/// Every module-level name of one service.
struct ServiceNames {
    error: String,
    client: String,
    handler: String,
    register: String,
    spec: String,
    table: String,
    codes: Vec<CodeNames>,
}

/// The runtime class of a canonical code: `NOT_FOUND` → `NotFoundError`.
fn runtime_code_class(code: &str) -> String {
    format!("nats_micro_runtime.{}Error", code_pascal(code))
}

fn code_doc(code: &str) -> String {
    if let Some(i) = BUILTIN_CODES.iter().position(|c| *c == code) {
        format!("Built-in code ``{code}`` (sent as {} by default).", BUILTIN_NUMBERS[i])
    } else if EXTRA_CANONICAL_CODES.contains(&code) {
        format!("Canonical code ``{code}`` (sent by name).")
    } else {
        format!("Custom code ``{code}``, declared in ``error_codes`` (sent by name).")
    }
}

/// The codes of a service: built-ins, the canonical extras, then its custom codes.
fn service_codes(service: &Service) -> impl Iterator<Item = &str> {
    BUILTIN_CODES.iter().chain(EXTRA_CANONICAL_CODES.iter()).copied().chain(service.error_codes.iter().map(String::as_str))
}

/// One `from package import module_pb2 [as alias]` line.
struct Import {
    /// Dotted module path without `_pb2` (`order.v1.order`).
    path: String,
    /// The name the module is bound to.
    alias: String,
}

impl Import {
    /// Whether a package name is a keyword, so that no import statement can name it.
    fn needs_importlib(&self) -> bool {
        self.path.rsplit_once('.').is_some_and(|(package, _)| package.split('.').any(is_keyword))
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

/// Writes one generated module.
struct ModuleWriter<'a> {
    file: &'a File,
    imports: Vec<Import>,
    services: Vec<ServiceNames>,
    out: String,
}

impl<'a> ModuleWriter<'a> {
    fn new(file: &'a File) -> ModuleWriter<'a> {
        let mut names = Names::new();
        let imports = Self::imports(file, &mut names);
        let mut services: Vec<ServiceNames> = file
            .services
            .iter()
            .map(|service| {
                let (class, snake) = (class_prefix(&service.proto_name), subject_token(&service.proto_name));
                ServiceNames {
                    error: names.claim(format!("{class}Error")),
                    client: names.claim(format!("{class}Client")),
                    handler: names.claim(format!("{class}Handler")),
                    register: names.claim(format!("register_{snake}")),
                    spec: names.claim(format!("_{}", snake.to_ascii_uppercase())),
                    table: names.claim(format!("_{}_ERRORS", snake.to_ascii_uppercase())),
                    codes: Vec::new(),
                }
            })
            .collect();
        // Per-code names come second, so that a clash never renames a service's main names.
        for (service, service_names) in file.services.iter().zip(&mut services) {
            let (class, snake) = (class_prefix(&service.proto_name), subject_token(&service.proto_name));
            service_names.codes = service_codes(service)
                .map(|code| {
                    let pascal = code_pascal(code);
                    let suffix = subject_token(&pascal);
                    let canonical = BUILTIN_CODES.contains(&code) || EXTRA_CANONICAL_CODES.contains(&code);
                    CodeNames {
                        wire: code.to_owned(),
                        class: names.claim(format!("{class}{pascal}Error")),
                        runtime_base: if canonical {
                            runtime_code_class(code)
                        } else {
                            "nats_micro_runtime.CodedServiceError".to_owned()
                        },
                        constructor: names.claim(format!("new_{snake}_{suffix}_error")),
                        checker: names.claim(format!("is_{snake}_{suffix}")),
                        doc: code_doc(code),
                    }
                })
                .collect();
        }
        ModuleWriter { file, imports, services, out: String::new() }
    }

    /// The `_pb2` modules of every request and response message, bound to
    /// their base name (`order_pb2`) unless two share one.
    fn imports(file: &File, names: &mut Names) -> Vec<Import> {
        let paths: BTreeSet<String> = file
            .services
            .iter()
            .flat_map(|s| &s.methods)
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
                Import { alias: names.claim(wanted), path }
            })
            .collect()
    }

    /// `order_pb2.Order.Item`
    fn message(&self, message: &MessageRef) -> String {
        let path = module_path(&message.file);
        let alias = self.imports.iter().find(|i| i.path == path).map_or("", |i| i.alias.as_str());
        format!("{alias}.{}", message.path.join("."))
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
        for (service, names) in file.services.iter().zip(std::mem::take(&mut self.services)) {
            self.line("");
            self.line("");
            self.line(RULE);
            self.line(&format!("# {}", service.full_name));
            self.line(RULE);
            self.errors(service, &names);
            self.spec(service, &names);
            self.handler(service, &names);
            self.register(service, &names);
            self.client(service, &names);
        }
        self.out
    }

    fn header(&mut self) {
        let file = self.file;
        self.line("# @generated by protoc-gen-nats-micro. Do not edit.");
        self.line(&format!("# source: {}", file.name.replace(['\n', '\r'], " ")));
        let mut doc = format!(
            "NATS microservices (ADR-32) for ``{}``.\n\n\
             Per service: a handler protocol to implement and a ``register_*`` coroutine\n\
             that serves it, a typed client, and errors: one exception class per code\n\
             under the service's base exception, ``new_*_error`` constructors and\n\
             ``is_*`` checkers. ``ERROR_CODE_*`` holds every code's name.\n\n\
             Messages come from protoc's ``--python_out`` (``*_pb2``); the shared\n\
             runtime is the top-level module ``nats_micro_runtime``.",
            file.name
        );
        let streaming: Vec<String> = file
            .services
            .iter()
            .flat_map(|s| s.streaming.iter().map(move |m| format!("``{}.{}`` ({})", s.proto_name, m.proto_name, m.kind)))
            .collect();
        if !streaming.is_empty() {
            let _ = write!(doc, "\n\nStreaming RPCs are not generated yet and are left out: {}.", streaming.join(", "));
        }
        self.push(&docstring("", &doc));
        self.line("");
        self.line("from __future__ import annotations");
        self.line("");
        let needs_importlib = self.imports.iter().any(Import::needs_importlib);
        let deprecated = file.services.iter().any(|s| s.deprecated || s.methods.iter().any(|m| m.deprecated));
        if needs_importlib {
            self.line("import importlib");
        }
        if deprecated {
            self.line("import warnings");
        }
        self.line("from collections.abc import Mapping, Sequence");
        self.line("from typing import Protocol, Unpack");
        self.line("");
        self.line("import nats.aio.client");
        self.line("");
        self.line("import nats_micro_runtime");
        let statements: Vec<String> = self.imports.iter().map(Import::statement).collect();
        for statement in statements {
            self.line(&statement);
        }
        self.line("");
        let mut seen = HashSet::new();
        let codes: Vec<String> = file
            .services
            .iter()
            .flat_map(service_codes)
            .filter(|code| seen.insert(*code))
            .map(|code| format!("ERROR_CODE_{code} = {}", string_literal(code)))
            .collect();
        for code in codes {
            self.line(&code);
        }
    }

    fn errors(&mut self, service: &Service, names: &ServiceNames) {
        let full = &service.full_name;
        self.line("");
        self.line("");
        self.line(&format!("class {}(nats_micro_runtime.ServiceError):", names.error));
        self.push(&docstring(
            "    ",
            &format!(
                "An error reply of ``{full}``: ``{error}(code, method, message, data)``.\n\n\
                 ``{client}`` raises the subclass for the code (``{first}``, ...), or\n\
                 this class for a code the service does not declare. Handlers raise them to\n\
                 reply with that code, message and data.",
                error = names.error,
                client = names.client,
                first = names.codes.iter().find(|c| c.wire == "NOT_FOUND").map_or("", |c| c.class.as_str()),
            ),
        ));
        for code in &names.codes {
            self.line("");
            self.line("");
            self.line(&format!("class {}({}, {}):", code.class, names.error, code.runtime_base));
            self.push(&docstring("    ", &code.doc));
            self.line("");
            self.line(&format!("    CODE = ERROR_CODE_{}", code.wire));
        }
        for code in &names.codes {
            self.line("");
            self.line("");
            self.line(&format!("def {}(method: str, message: str, data: bytes = b\"\") -> {}:", code.constructor, code.class));
            self.push(&docstring(
                "    ",
                &format!(
                    "An error reply of ``{full}`` with code ``{}``, raised in ``method`` (e.g. ``\"CreateOrder\"``).",
                    code.wire
                ),
            ));
            self.line(&format!("    return {}(method, message, data)", code.class));
            self.line("");
            self.line("");
            self.line(&format!("def {}(err: BaseException | None) -> bool:", code.checker));
            self.push(&docstring(
                "    ",
                &format!("Whether ``err`` is an error reply of ``{full}`` with code ``{}``.", code.wire),
            ));
            self.line(&format!("    return isinstance(err, {}) and err.code == ERROR_CODE_{}", names.error, code.wire));
        }
        self.line("");
        self.line("");
        self.line(&format!("{} = nats_micro_runtime.ErrorTable(", names.table));
        self.line(&format!("    {},", names.error));
        self.line("    {");
        for code in &names.codes {
            self.line(&format!("        ERROR_CODE_{}: {},", code.wire, code.class));
        }
        self.line("    },");
        self.line(")");
    }

    fn spec(&mut self, service: &Service, names: &ServiceNames) {
        self.line("");
        self.line(&format!("{} = nats_micro_runtime.ServiceSpec(", names.spec));
        for (key, value) in [
            ("proto_name", string_literal(&service.full_name)),
            ("name", string_literal(&service.name)),
            ("version", string_literal(&service.version)),
            ("description", string_literal(&service.description)),
            ("subject_prefix", string_literal(&service.subject_prefix)),
            ("metadata", dict_literal(&service.metadata)),
            ("timeout", seconds(service.timeout)),
            ("queue_group_disabled", bool_literal(service.queue_group_disabled).to_owned()),
            ("json", bool_literal(service.json).to_owned()),
        ] {
            self.line(&format!("    {key}={value},"));
        }
        self.line("    endpoints=(");
        for method in &service.methods {
            self.line("        nats_micro_runtime.EndpointSpec(");
            for (key, value) in [
                ("method", string_literal(&method.proto_name)),
                ("endpoint", string_literal(&method.endpoint)),
                ("timeout", seconds(method.timeout.or(service.timeout))),
                ("metadata", dict_literal(&method.metadata)),
                ("queue_group_disabled", bool_literal(method.queue_group_disabled).to_owned()),
                ("pending_msg_limit", optional_int(method.pending_msg_limit)),
                ("pending_bytes_limit", optional_int(method.pending_bytes_limit)),
            ] {
                self.line(&format!("            {key}={value},"));
            }
            self.line("        ),");
        }
        self.line("    ),");
        self.line(")");
    }

    fn handler(&mut self, service: &Service, names: &ServiceNames) {
        self.line("");
        self.line("");
        self.line(&format!("class {}(Protocol):", names.handler));
        let mut doc = format!(
            "The server side of ``{}``: implement these coroutines and pass the\nobject to ``{}``.",
            service.full_name, names.register
        );
        if let Some(comments) = comment_text(service.comments.as_deref()) {
            let _ = write!(doc, "\n\n{comments}");
        }
        if service.deprecated {
            doc.push_str("\n\n.. deprecated:: The proto marks this service deprecated.");
        }
        if !service.streaming.is_empty() {
            let left_out: Vec<String> = service.streaming.iter().map(|m| format!("``{}`` ({})", m.proto_name, m.kind)).collect();
            let _ = write!(doc, "\n\nStreaming RPCs are not generated yet and are left out: {}.", left_out.join(", "));
        }
        self.push(&docstring("    ", &doc));
        for method in &service.methods {
            self.line("");
            self.line(&format!(
                "    async def {}(self, request: {}, ctx: nats_micro_runtime.RequestContext) -> {}:",
                method_name(&method.proto_name),
                self.message(&method.input),
                self.message(&method.output)
            ));
            let doc = method_doc(
                method,
                &format!(
                    "Serves endpoint ``{}`` (subject ``{}`` by default). A raised\n``{}`` (or any ``nats_micro_runtime.NatsMicroError``) replies with its code.",
                    method.endpoint, method.subject, names.error
                ),
            );
            self.push(&docstring("        ", &doc));
            self.line("        ...");
        }
    }

    fn register(&mut self, service: &Service, names: &ServiceNames) {
        self.line("");
        self.line("");
        self.line(&format!("async def {}(", names.register));
        self.line("    nc: nats.aio.client.Client,");
        self.line(&format!("    handler: {},", names.handler));
        self.line("    **overrides: Unpack[nats_micro_runtime.ServiceOverrides],");
        self.line(") -> nats_micro_runtime.Service:");
        self.push(&docstring(
            "    ",
            &format!(
                "Serves ``{}`` on ``nc`` with ``handler`` until the returned service stops.\n\n\
                 The proto's options (name, version, description, metadata, subject prefix,\n\
                 timeouts, queue group) apply unless ``overrides`` say otherwise; see\n\
                 ``nats_micro_runtime.ServiceOverrides``. The service answers ADR-32 discovery\n\
                 (``$SRV.PING``, ``$SRV.INFO``, ``$SRV.STATS``).",
                service.full_name
            ),
        ));
        if service.deprecated {
            self.line(&format!(
                "    warnings.warn({}, DeprecationWarning, stacklevel=2)",
                string_literal(&format!("{} is deprecated", service.full_name))
            ));
        }
        self.line("    return await nats_micro_runtime.start_service(");
        self.line("        nc,");
        self.line(&format!("        {},", names.spec));
        self.line("        {");
        for method in &service.methods {
            self.line(&format!(
                "            {}: nats_micro_runtime.UnaryEndpoint(handler.{}, {}),",
                string_literal(&method.endpoint),
                method_name(&method.proto_name),
                self.message(&method.input)
            ));
        }
        self.line("        },");
        self.line("        overrides,");
        self.line("    )");
    }

    fn client(&mut self, service: &Service, names: &ServiceNames) {
        self.line("");
        self.line("");
        self.line(&format!("class {}:", names.client));
        let mut doc = format!(
            "Typed client for ``{}``.\n\n\
             Each call returns ``(message, headers)`` (a ``nats_micro_runtime.Response``),\n\
             raises ``{}`` subclasses for error replies and\n\
             ``nats_micro_runtime.TransportError`` subclasses when no reply came back.\n\
             Timeout of a call, first set wins: the call's ``timeout``, the client's,\n\
             the endpoint's proto timeout, the service's, 10 s.",
            service.full_name, names.error
        );
        if let Some(comments) = comment_text(service.comments.as_deref()) {
            let _ = write!(doc, "\n\n{comments}");
        }
        if service.deprecated {
            doc.push_str("\n\n.. deprecated:: The proto marks this service deprecated.");
        }
        self.push(&docstring("    ", &doc));
        self.line("");
        self.line("    def __init__(");
        self.line("        self,");
        self.line("        nc: nats.aio.client.Client,");
        self.line("        *,");
        self.line("        subject_prefix: str | None = None,");
        self.line("        timeout: float | None = None,");
        self.line("        headers: Mapping[str, str] | None = None,");
        self.line("        interceptors: Sequence[nats_micro_runtime.ClientInterceptor] = (),");
        self.line("    ) -> None:");
        self.push(&docstring(
            "        ",
            "A client on ``nc``. ``subject_prefix`` replaces the proto's, ``timeout``\n\
             (seconds) applies to every call, ``headers`` go with every call (a call's\n\
             own win), ``interceptors`` run around every call, the first outermost.",
        ));
        if service.deprecated {
            self.line(&format!(
                "        warnings.warn({}, DeprecationWarning, stacklevel=2)",
                string_literal(&format!("{} is deprecated", service.full_name))
            ));
        }
        self.line("        self._client = nats_micro_runtime.Client(");
        self.line("            nc,");
        self.line(&format!("            {},", names.spec));
        self.line(&format!("            {},", names.table));
        self.line("            subject_prefix=subject_prefix,");
        self.line("            timeout=timeout,");
        self.line("            headers=headers,");
        self.line("            interceptors=interceptors,");
        self.line("        )");
        for method in &service.methods {
            let output = self.message(&method.output);
            self.line("");
            self.line(&format!("    async def {}(", method_name(&method.proto_name)));
            self.line("        self,");
            self.line(&format!("        request: {},", self.message(&method.input)));
            self.line("        *,");
            self.line("        timeout: float | None = None,");
            self.line("        headers: Mapping[str, str] | None = None,");
            self.line(&format!("    ) -> nats_micro_runtime.Response[{output}]:"));
            let doc = method_doc(
                method,
                &format!(
                    "Calls ``{}`` on ``{{subject_prefix}}.{}``; ``timeout`` (seconds) and\n``headers`` apply to this call only.",
                    method.proto_name, method.endpoint
                ),
            );
            self.push(&docstring("        ", &doc));
            if method.deprecated {
                self.line(&format!(
                    "        warnings.warn({}, DeprecationWarning, stacklevel=2)",
                    string_literal(&format!("{}.{} is deprecated", service.full_name, method.proto_name))
                ));
            }
            self.line("        return await self._client.unary(");
            self.line(&format!(
                "            {}, request, {output}, timeout=timeout, headers=headers",
                string_literal(&method.endpoint)
            ));
            self.line("        )");
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
    fn names_follow_the_go_plugin_and_escape_keywords() {
        assert_eq!(method_name("CreateOrder"), "create_order");
        assert_eq!(method_name("Match"), "match_");
        assert_eq!(method_name("Self"), "self_");
        assert_eq!(method_name("Async"), "async_");
        assert_eq!(method_name("Type"), "type_");
        assert_eq!(method_name("HTTPServer"), "http_server");
        assert_eq!(class_prefix("OrderService"), "OrderService");
        assert_eq!(class_prefix("HTTPServer"), "HTTPServer");
        assert_eq!(class_prefix("my_service"), "MyService");
        assert_eq!(class_prefix("_hidden"), "XHidden");
        assert_eq!(class_prefix("Order_V2"), "Order_V2");
        assert_eq!(code_pascal("ORDER_EXPIRED"), "OrderExpired");
        assert_eq!(code_pascal("HTTP_2_FAIL"), "Http2Fail");
        assert_eq!(subject_token(&code_pascal("HTTP_2_FAIL")), "http2_fail");
        assert_eq!(module_file_name("order/v1/order.proto"), "order/v1/order_nats_pb2.py");
        assert_eq!(module_file_name("my-dir/a-b.proto"), "my_dir/a_b_nats_pb2.py");
    }

    #[test]
    fn string_literals_escape_everything_that_could_break_them() {
        assert_eq!(string_literal("plain"), "\"plain\"");
        assert_eq!(string_literal("say \"hi\" \\ now"), r#""say \"hi\" \\ now""#);
        assert_eq!(string_literal("line\nbreak\r\ttab"), r#""line\nbreak\r\ttab""#);
        assert_eq!(string_literal("nul\0 sep\u{2028}"), r#""nul\u0000 sep\u2028""#);
        assert_eq!(string_literal("naïve"), "\"naïve\"");
    }

    #[test]
    fn docstrings_cannot_be_closed_early() {
        assert_eq!(docstring("", "one line"), "\"\"\"one line\"\"\"\n");
        assert_eq!(docstring("", r#"ends with a quote""#), "\"\"\"ends with a quote\\\"\"\"\"\n");
        assert_eq!(docstring("", r#"a """ b"#), "\"\"\"a \\\"\\\"\" b\"\"\"\n");
        assert_eq!(docstring("", r"back\slash"), "\"\"\"back\\\\slash\"\"\"\n");
        assert_eq!(docstring("  ", "a\n\nb"), "  \"\"\"a\n\n  b\n  \"\"\"\n");
    }

    #[test]
    fn comments_lose_their_common_indentation() {
        assert_eq!(comment_text(Some(" Places an order.\n   Indented.\n")).as_deref(), Some("Places an order.\n  Indented."));
        assert_eq!(comment_text(Some("  \n ")), None);
    }

    #[test]
    fn clashing_names_get_trailing_underscores() {
        let mut names = Names::new();
        assert_eq!(names.claim("TypeError".into()), "TypeError_");
        assert_eq!(names.claim("OrderClient".into()), "OrderClient");
        assert_eq!(names.claim("OrderClient".into()), "OrderClient_");
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
    }
}
