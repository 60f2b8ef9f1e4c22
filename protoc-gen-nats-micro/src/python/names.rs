//! Python names for proto elements: keywords escaped, built-ins and the
//! module's imports avoided, and every name claimed once per namespace so
//! that two proto elements never share one (`Match` + `Match_` give
//! `match_` and `match__`, never one method serving both).

use std::collections::HashSet;

use crate::model::Service;
use crate::naming::subject_token;

use super::errors::service_codes;

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
    "os",
    "Mapping",
    "Sequence",
    "Protocol",
    "cast",
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

/// Whether `name` is a Python keyword (not usable as a name at all).
pub fn is_keyword(name: &str) -> bool {
    KEYWORDS.contains(&name)
}

/// Whether a proto name (a message's, which keeps its case) is a Python
/// keyword: protobuf's Python API reaches such a message only by
/// `getattr(module, "def")`, and mypy-protobuf names it `_r_def`.
pub fn is_message_keyword(name: &str) -> bool {
    is_keyword(name) || matches!(name, "False" | "None" | "True")
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

/// Names already taken in one namespace; a clash gets trailing `_`s.
pub struct Names(HashSet<String>);

impl Names {
    /// The module namespace: what the module imports and the built-in
    /// exceptions a generated class could shadow are taken.
    pub fn module() -> Names {
        Names(RESERVED.iter().map(|name| (*name).to_owned()).collect())
    }

    /// A class namespace with `taken` already in use.
    pub fn class(taken: &[&str]) -> Names {
        Names(taken.iter().map(|name| (*name).to_owned()).collect())
    }

    /// `wanted`, or `wanted` with as many trailing `_` as it takes to be new.
    pub fn claim(&mut self, wanted: String) -> String {
        let mut name = wanted;
        while !self.0.insert(name.clone()) {
            name.push('_');
        }
        name
    }
}

/// How a code's class and helpers are named.
pub struct CodeNames {
    /// `ORDER_EXPIRED`
    pub wire: String,
    /// `OrderServiceOrderExpiredError`
    pub class: String,
    /// `new_order_service_order_expired_error`
    pub constructor: String,
    /// `is_order_service_order_expired`
    pub checker: String,
}

/// Every name of one service: module-level items and its methods.
pub struct ServiceNames {
    pub error: String,
    pub client: String,
    pub handler: String,
    pub register: String,
    pub spec: String,
    pub codes: Vec<CodeNames>,
    /// Python method names, in the order of `Service::methods`, distinct.
    pub methods: Vec<String>,
    /// Python method names of the streaming RPCs, in the order of
    /// `Service::streaming`, distinct from `methods`.
    pub streams: Vec<String>,
    /// Per unary RPC, the client's store handle opener (`save_profile_kv`,
    /// `generate_report_objects`), for a method with `kv_store` or `object_store`.
    pub store_handles: Vec<Option<String>>,
    /// Per streaming RPC with `chunked_io`, the client's three helpers:
    /// `upload_send_bytes`/`_send_reader`/`_send_file`, or
    /// `download_receive_bytes`/`_receive_to_writer`/`_receive_to_file`.
    pub chunked: Vec<Option<[String; 3]>>,
}

impl ServiceNames {
    /// The service's main names, claimed in `names`.
    pub fn main(service: &Service, names: &mut Names) -> ServiceNames {
        let (class, snake) = (class_prefix(&service.proto_name), subject_token(&service.proto_name));
        // Methods live in the handler's and the client's namespace, where
        // `_client` is taken.
        let mut methods = Names::class(&["_client"]);
        let rpc_names: Vec<String> = service.methods.iter().map(|m| methods.claim(method_name(&m.proto_name))).collect();
        let stream_names: Vec<String> =
            service.streaming.iter().map(|m| methods.claim(method_name(&m.method.proto_name))).collect();
        // Helpers come after every RPC's name, so that a clash renames the helper, never an RPC.
        let store_handles = service
            .methods
            .iter()
            .zip(&rpc_names)
            .map(|(m, name)| {
                let suffix = if m.kv_store.is_some() {
                    "kv"
                } else if m.object_store.is_some() {
                    "objects"
                } else {
                    return None;
                };
                Some(methods.claim(format!("{}_{suffix}", name.trim_end_matches('_'))))
            })
            .collect();
        let chunked = service
            .streaming
            .iter()
            .zip(&stream_names)
            .map(|(m, name)| {
                m.chunked_io.as_ref()?;
                let base = name.trim_end_matches('_');
                let suffixes = if m.kind.client_streams() {
                    ["send_bytes", "send_reader", "send_file"]
                } else {
                    ["receive_bytes", "receive_to_writer", "receive_to_file"]
                };
                Some(suffixes.map(|suffix| methods.claim(format!("{base}_{suffix}"))))
            })
            .collect();
        ServiceNames {
            error: names.claim(format!("{class}Error")),
            client: names.claim(format!("{class}Client")),
            handler: names.claim(format!("{class}Handler")),
            register: names.claim(format!("register_{snake}")),
            spec: names.claim(format!("_{}", snake.to_ascii_uppercase())),
            codes: Vec::new(),
            methods: rpc_names,
            streams: stream_names,
            store_handles,
            chunked,
        }
    }

    /// Claims the per-code names (after every service's main names, so that
    /// a clash never renames a service's main names).
    pub fn claim_codes(&mut self, service: &Service, names: &mut Names) {
        let (class, snake) = (class_prefix(&service.proto_name), subject_token(&service.proto_name));
        self.codes = service_codes(service)
            .map(|code| {
                let pascal = code_pascal(code);
                let suffix = subject_token(&pascal);
                CodeNames {
                    wire: code.to_owned(),
                    class: names.claim(format!("{class}{pascal}Error")),
                    constructor: names.claim(format!("new_{snake}_{suffix}_error")),
                    checker: names.claim(format!("is_{snake}_{suffix}")),
                }
            })
            .collect();
    }
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
    }

    #[test]
    fn clashing_names_get_trailing_underscores() {
        let mut names = Names::module();
        assert_eq!(names.claim("TypeError".into()), "TypeError_");
        assert_eq!(names.claim("OrderClient".into()), "OrderClient");
        assert_eq!(names.claim("OrderClient".into()), "OrderClient_");
        // `Match` and `Match_` both escape to `match_`: the second one must not share it.
        let mut methods = Names::class(&["_client"]);
        assert_eq!(methods.claim(method_name("Match")), "match_");
        assert_eq!(methods.claim(method_name("Match_")), "match__");
    }
}
