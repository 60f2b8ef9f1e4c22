//! Rust names for what a service generates, and the text that goes into
//! doc comments. Every identifier is made here, by total functions: any
//! input (`_`, `__`, `_1`, keywords, clashing names) gives a valid, distinct
//! identifier that passes rustc's naming lints; nothing here panics.

use std::collections::HashSet;
use std::sync::OnceLock;

use heck::{ToShoutySnakeCase, ToSnakeCase, ToUpperCamelCase};
use proc_macro2::{Ident, Span};

use crate::model::{CANONICAL_CODE_NAMES, Service};

/// Keywords that can be written raw (`r#type`).
const RAW_KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "else", "enum", "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod",
    "move", "mut", "pub", "ref", "return", "static", "struct", "trait", "true", "type", "unsafe", "use", "where", "while", "dyn",
    "abstract", "become", "box", "do", "final", "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "async",
    "await", "try", "gen",
];

/// Keywords that cannot be raw: they get a trailing `_`.
const NON_RAW_KEYWORDS: &[&str] = &["_", "super", "self", "Self", "extern", "crate"];

/// An identifier from any text: ASCII letters, digits and `_` are kept,
/// anything else becomes `_`; a leading digit or an empty name gets a
/// leading `_`; keywords are raw (`r#type`) or get a trailing `_` (`self_`).
/// Text already in raw form (`r#type`, as prost's naming gives it) is kept.
pub fn ident(text: &str) -> Ident {
    let text = text.strip_prefix("r#").unwrap_or(text);
    let mut name: String = text.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    if NON_RAW_KEYWORDS.contains(&name.as_str()) {
        name.push('_');
    }
    if RAW_KEYWORDS.contains(&name.as_str()) {
        return Ident::new_raw(&name, Span::call_site());
    }
    Ident::new(&name, Span::call_site())
}

/// Hands out names in one namespace: a name already taken (or reserved)
/// gets `suffix`, then a number, until it is free.
#[derive(Clone)]
pub struct Namespace {
    taken: HashSet<String>,
}

impl Namespace {
    /// A namespace where `reserved` are taken already.
    pub fn new(reserved: &[&str]) -> Namespace {
        Namespace { taken: reserved.iter().map(|s| (*s).to_owned()).collect() }
    }

    /// `name` if free, else `name` + `suffix`, else with a number appended.
    pub fn claim(&mut self, name: String, suffix: &str) -> String {
        if self.taken.insert(name.clone()) {
            return name;
        }
        let base = format!("{name}{suffix}");
        let mut candidate = base.clone();
        let mut n = 2;
        while !self.taken.insert(candidate.clone()) {
            candidate = format!("{base}{n}");
            n += 1;
        }
        candidate
    }
}

/// `OrderService` → `OrderService` + `suffix`, valid and UpperCamelCase:
/// a name with no letters left (`_`, `__`) becomes `Service`, a leading
/// digit gets `_`, a keyword (`Self`) gets `Service` appended.
pub fn type_name(proto_name: &str, suffix: &str) -> Ident {
    let camel = proto_name.to_upper_camel_case();
    let base = match camel.as_str() {
        "" => "Service".to_owned(),
        "Self" => "SelfService".to_owned(),
        _ => camel,
    };
    ident(&format!("{base}{suffix}"))
}

/// The module of each service of one package: `order_service_nats`; names
/// that meet after snake_case get a number (`foo_nats`, `foo_nats2`).
pub fn module_names(services: &[&Service]) -> Vec<String> {
    let mut namespace = Namespace::new(&[]);
    services
        .iter()
        .map(|service| {
            let snake = service.proto_name.to_snake_case();
            let snake = if snake.starts_with(|c: char| c.is_ascii_digit()) { format!("_{snake}") } else { snake };
            let base = format!("{snake}_nats");
            namespace.claim(base, "")
        })
        .collect()
}

/// Methods of the generated error type and of the runtime error it derefs
/// to: a custom code's constructor or checker never takes one of these.
const ERROR_METHODS: &[&str] = &[
    "new",
    "code",
    "message",
    "data",
    "headers",
    "with_data",
    "with_header",
    "with_headers",
    "with_method",
    "with_source",
    "into_inner",
    "method",
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
    "deref",
    "from",
    "into",
];

/// A custom code as the generated API names it.
pub struct CustomCode {
    /// `ORDER_EXPIRED` (the wire name, also the associated constant).
    pub wire: Ident,
    /// `OrderExpired`
    pub variant: Ident,
    /// `order_expired`
    pub constructor: Ident,
    /// `is_order_expired`
    pub checker: Ident,
}

/// Names for the service's custom codes, clashing with nothing the macro
/// generates: canonical variants, constructors and checkers, the error's
/// own methods, `Unrecognized`, or each other.
pub fn custom_codes(service: &Service) -> Vec<CustomCode> {
    if service.error_codes.is_empty() {
        return Vec::new();
    }
    let (variants, methods) = reserved_code_names();
    let (mut variants, mut methods) = (variants.clone(), methods.clone());
    service
        .error_codes
        .iter()
        .map(|wire| {
            let snake = wire.to_snake_case();
            // The constructor escapes keywords (`r#type`, `self_`); the checker needs no escape (`is_self`).
            let constructor = ident(&snake).to_string();
            CustomCode {
                wire: ident(wire),
                variant: ident(&variants.claim(wire.to_upper_camel_case(), "Code")),
                constructor: ident(&methods.claim(constructor.trim_start_matches("r#").to_owned(), "_")),
                checker: ident(&methods.claim(format!("is_{snake}"), "_")),
            }
        })
        .collect()
}

/// The namespaces of code variants and of error methods before any custom
/// code takes a name: what the macro and the runtime error define.
/// Computed once (they are the same for every service).
fn reserved_code_names() -> &'static (Namespace, Namespace) {
    static RESERVED: OnceLock<(Namespace, Namespace)> = OnceLock::new();
    RESERVED.get_or_init(|| {
        let canonical_variants: Vec<String> = CANONICAL_CODE_NAMES.iter().map(|c| c.to_upper_camel_case()).collect();
        let canonical_methods: Vec<String> =
            CANONICAL_CODE_NAMES.iter().flat_map(|c| [c.to_snake_case(), format!("is_{}", c.to_snake_case())]).collect();
        let variants =
            Namespace::new(&canonical_variants.iter().map(String::as_str).chain(["Unrecognized", "Self"]).collect::<Vec<_>>());
        let methods = Namespace::new(
            &canonical_methods.iter().map(String::as_str).chain(ERROR_METHODS.iter().copied()).collect::<Vec<_>>(),
        );
        (variants, methods)
    })
}

/// Methods of the generated client besides the RPCs: an RPC named like
/// one of them gets a trailing `_`.
const CLIENT_METHODS: &[&str] = &[
    "new",
    "from_client",
    "with_subject_prefix",
    "with_timeout",
    "with_header",
    "with_interceptor",
    "with_retry_policy",
    "with_method_retry_policy",
    "with_retry_budget",
    "with_circuit_breaker",
    "inner",
    "into_inner",
    "endpoints",
    "clone",
    "fmt",
    "to_owned",
];

/// The Rust names of one RPC: the server trait's method and the client's,
/// and those of its persistence and chunked helpers (PROTOCOL §12).
pub struct RpcNames {
    /// `create_order` in the server trait.
    pub server: Ident,
    /// `create_order` on the client (`new_` for an RPC named `New`).
    pub client: Ident,
    /// `kv_store`: the spec constant (`SAVE_PROFILE_KV`), the key function
    /// (`save_profile_key`) and the client's handle (`save_profile_kv`).
    pub kv: Option<(Ident, Ident, Ident)>,
    /// `object_store`: the spec constant (`GENERATE_REPORT_OBJECTS`), the
    /// name function (`generate_report_object_name`) and the client's handle
    /// (`generate_report_objects`).
    pub objects: Option<(Ident, Ident, Ident)>,
    /// `chunked_io`: the chunk field constant (`UPLOAD_CHUNKS`), the
    /// handler's helper (`upload_chunks`) and the client's (`upload_chunked`).
    pub chunked: Option<(Ident, Ident, Ident)>,
}

/// Items of a service module besides the per-RPC helpers: a helper never
/// takes one of these names.
const MODULE_ITEMS: &[&str] = &[
    "SERVICE",
    "ENDPOINTS",
    "service_builder",
    "serve",
    "call_unary",
    "call_server_streaming",
    "call_client_streaming",
    "call_bidi_streaming",
    "rt",
    "super",
];

/// Names for the service's RPCs, distinct within the trait and within the
/// client even for methods that meet after snake_case (`GetX`, `Get_X`);
/// the helpers of §12 get theirs after every RPC has its own.
pub fn rpc_names(service: &Service) -> Vec<RpcNames> {
    let (mut server, mut client) = (Namespace::new(&[]), Namespace::new(CLIENT_METHODS));
    let rpcs = service.rpcs();
    let mut names: Vec<RpcNames> = rpcs
        .iter()
        .map(|rpc| {
            let method = rpc.method();
            let snake = ident(&method.proto_name.to_snake_case()).to_string();
            let snake = snake.trim_start_matches("r#");
            RpcNames {
                server: ident(&server.claim(snake.to_owned(), "_")),
                client: ident(&client.claim(snake.to_owned(), "_")),
                kv: None,
                objects: None,
                chunked: None,
            }
        })
        .collect();
    let mut module = Namespace::new(MODULE_ITEMS);
    for (rpc, names) in rpcs.iter().zip(&mut names) {
        let method = rpc.method();
        let snake = method.proto_name.to_snake_case();
        let shouty = method.proto_name.to_shouty_snake_case();
        let mut claim = |constant: &str, function: &str, handle: &str| {
            (
                ident(&module.claim(format!("{shouty}_{constant}"), "_")),
                ident(&module.claim(format!("{snake}_{function}"), "_")),
                ident(&client.claim(format!("{snake}_{handle}"), "_")),
            )
        };
        if method.kv_store.is_some() {
            names.kv = Some(claim("KV", "key", "kv"));
        }
        if method.object_store.is_some() {
            names.objects = Some(claim("OBJECTS", "object_name", "objects"));
        }
        if let crate::model::Rpc::Streaming(streaming) = rpc
            && streaming.chunked_io.is_some()
        {
            names.chunked = Some(claim("CHUNKS", "chunks", "chunked"));
        }
    }
    names
}

/// Whether clippy's `wrong_self_convention` expects no `&self` for a
/// method of this name (`new`, `from_*`, `into_*`): an RPC named so still
/// takes `&self`, with a narrow allow.
pub fn breaks_self_convention(name: &Ident) -> bool {
    let name = name.to_string();
    let name = name.trim_start_matches("r#");
    name == "new" || name.starts_with("from_") || name.starts_with("into_")
}

/// Characters that may not appear literally in a doc comment: control
/// characters (a bare CR is an error in `///`), line and paragraph
/// separators, and the bidirectional controls rustc rejects.
fn needs_escape_in_doc(c: char) -> bool {
    c.is_control() && c != '\t'
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// One line of doc text made safe for a doc comment: the characters above
/// are written as visible `\u{..}` escapes, and `*/` cannot end a block
/// comment should the line ever be printed as one.
pub fn doc_text(text: &str) -> String {
    // Printable ASCII (the common case) needs no escape.
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) && !text.contains("*/") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if needs_escape_in_doc(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out.replace("*/", "*\\/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_text_gives_a_valid_identifier() {
        for (text, expected) in [
            ("", "__"),
            ("_", "__"),
            ("__", "__"),
            ("_1", "_1"),
            ("1a", "_1a"),
            ("type", "r#type"),
            ("r#type", "r#type"),
            ("self", "self_"),
            ("Self", "Self_"),
            ("crate", "crate_"),
            ("a-b c", "a_b_c"),
            ("naïve", "na_ve"),
        ] {
            assert_eq!(ident(text).to_string(), expected, "{text:?}");
        }
    }

    #[test]
    fn service_type_names_are_upper_camel_and_never_empty() {
        for (proto, suffix, expected) in [
            ("_", "", "Service"),
            ("__", "Error", "ServiceError"),
            ("_1", "Client", "_1Client"),
            ("Self", "", "SelfService"),
            ("type", "", "Type"),
            ("order_service", "ErrorCode", "OrderServiceErrorCode"),
        ] {
            assert_eq!(type_name(proto, suffix).to_string(), expected, "{proto:?} {suffix:?}");
        }
    }

    #[test]
    fn namespaces_never_hand_out_a_name_twice() {
        let mut ns = Namespace::new(&["new"]);
        assert_eq!(ns.claim("new".into(), "_"), "new_");
        assert_eq!(ns.claim("new".into(), "_"), "new_2");
        assert_eq!(ns.claim("a1".into(), "Code"), "a1");
        assert_eq!(ns.claim("a1".into(), "Code"), "a1Code");
    }

    #[test]
    fn doc_text_escapes_what_rustc_rejects() {
        assert_eq!(doc_text("a\u{202E}b\u{2028}c\0d\re*/"), "a\\u{202e}b\\u{2028}c\\u{0}d\\u{d}e*\\/");
        assert_eq!(doc_text("tab\tkept"), "tab\tkept");
    }
}
