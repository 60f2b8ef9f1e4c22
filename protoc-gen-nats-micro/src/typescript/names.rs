//! TypeScript names and literals: identifiers as protobuf-es and the Go
//! plugin make them, escaped string literals, JSDoc text, import paths.

use std::collections::HashSet;
use std::time::Duration;

/// Characters that must not appear as themselves in generated source:
/// C0/C1 controls (NUL included), the line terminators U+2028/U+2029 (which
/// end a `//` comment in JavaScript), the byte-order mark, and the bidi
/// controls that can make source read differently from how it runs
/// (U+061C, U+200E/200F, U+202A–202E, U+2066–2069).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{061c}' | '\u{200e}' | '\u{200f}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// A double-quoted TypeScript string literal: quotes, backslashes, controls,
/// line terminators and bidi controls escaped.
///
/// ```
/// use protoc_gen_nats_micro::typescript::names::string_literal;
/// assert_eq!(string_literal("say \"hi\"\n\\"), r#""say \"hi\"\n\\""#);
/// assert_eq!(string_literal("\u{2028}\u{0}\u{202e}"), r#""\u2028\u0000\u202e""#);
/// ```
pub fn string_literal(text: &str) -> String {
    crate::naming::quoted_literal(text, needs_escape, escape_unit)
}

/// `\uXXXX` (or `\u{X…}` beyond the BMP, which never needs it today).
fn escape_unit(out: &mut String, c: char) {
    use std::fmt::Write as _;
    let _ = if (c as u32) <= 0xffff { write!(out, "\\u{:04x}", c as u32) } else { write!(out, "\\u{{{:x}}}", c as u32) };
}

/// Text for one line of a comment (`//` or inside `/** */`): every character
/// that could end the line or the comment, or hide what follows (controls,
/// U+2028/2029, bidi controls, `*/`), written as a visible escape instead.
///
/// ```
/// use protoc_gen_nats_micro::typescript::names::comment_text;
/// assert_eq!(comment_text("a\u{2028}b */ c\nd"), "a\\u2028b *\\/ c\\u000ad");
/// ```
pub fn comment_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if needs_escape(c) && c != '\t' {
            escape_unit(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out.replace("*/", "*\\/")
}

/// A JSDoc block at `indent` from paragraphs of text (each may span lines;
/// an empty paragraph is skipped). Nothing in the text can end the comment
/// or a line early (see [`comment_text`]).
pub fn jsdoc(indent: &str, paragraphs: &[String]) -> String {
    let paragraphs: Vec<&String> = paragraphs.iter().filter(|p| !p.trim().is_empty()).collect();
    if paragraphs.is_empty() {
        return String::new();
    }
    if let [only] = paragraphs.as_slice()
        && !only.contains('\n')
    {
        return format!("{indent}/** {} */\n", comment_text(only.trim_end()));
    }
    let mut out = format!("{indent}/**\n");
    for (i, paragraph) in paragraphs.iter().enumerate() {
        if i > 0 {
            out.push_str(&format!("{indent} *\n"));
        }
        for line in paragraph.lines() {
            let line = comment_text(line.trim_end());
            if line.is_empty() {
                out.push_str(&format!("{indent} *\n"));
            } else {
                out.push_str(&format!("{indent} * {line}\n"));
            }
        }
    }
    out.push_str(&format!("{indent} */\n"));
    out
}

/// Generated prose wrapped at 100 columns, for JSDoc.
pub fn wrap(text: &str) -> String {
    const WIDTH: usize = 100;
    // `{@link Name}` stays on one line.
    let mut words: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match words.last_mut() {
            Some(last) if last.starts_with("{@link") && !last.contains('}') => {
                last.push(' ');
                last.push_str(word);
            }
            _ => words.push(word.to_owned()),
        }
    }
    let mut out = String::new();
    let mut line_len = 0;
    for word in &words {
        if line_len > 0 && line_len + 1 + word.len() > WIDTH {
            out.push('\n');
            line_len = 0;
        } else if line_len > 0 {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.len();
    }
    out
}

/// Proto comment text as a JSDoc paragraph: the one space after `//` dropped.
pub fn comment_paragraph(comments: Option<&str>) -> String {
    comments
        .map(|text| text.lines().map(|line| line.strip_prefix(' ').unwrap_or(line)).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

/// Names JavaScript reserves on every object: a method named so gets a `$`,
/// as protobuf-es does (`__proto__` too, which an object literal cannot hold).
const RESERVED_PROPERTIES: [&str; 5] = ["constructor", "toString", "toJSON", "valueOf", "__proto__"];

/// The TypeScript method name of an RPC: the proto name with its first
/// letter lower-cased (as protobuf-es and the Go plugin name it), `$`
/// appended when it is reserved on objects or in `taken`.
///
/// ```
/// use protoc_gen_nats_micro::typescript::names::method_name;
/// assert_eq!(method_name("CreateOrder", &[]), "createOrder");
/// assert_eq!(method_name("HTTPServer", &[]), "hTTPServer");
/// assert_eq!(method_name("Constructor", &[]), "constructor$");
/// assert_eq!(method_name("Endpoints", &["endpoints"]), "endpoints$");
/// ```
pub fn method_name(proto_name: &str, taken: &[&str]) -> String {
    let mut chars = proto_name.chars();
    let name = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect::<String>(),
        None => String::new(),
    };
    if RESERVED_PROPERTIES.contains(&name.as_str()) || taken.contains(&name.as_str()) { format!("{name}$") } else { name }
}

/// Words protobuf-es will not use as a declaration name (it appends `$`):
/// ECMAScript keywords, reserved words, TypeScript type keywords, and a few
/// runtime names.
const RESERVED_IDENTIFIERS: &[&str] = &[
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "import",
    "in",
    "instanceof",
    "new",
    "null",
    "return",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
    "yield",
    "enum",
    "implements",
    "interface",
    "let",
    "package",
    "private",
    "protected",
    "public",
    "static",
    "Object",
    "bigint",
    "number",
    "boolean",
    "string",
    "object",
    "globalThis",
    "Uint8Array",
    "Partial",
];

/// protobuf-es's `safeIdentifier`: a reserved word gets a `$`.
pub fn safe_identifier(name: &str) -> String {
    if RESERVED_IDENTIFIERS.contains(&name) { format!("{name}$") } else { name.to_owned() }
}

/// The name protobuf-es gives a message (`Outer.Inner` → `Outer_Inner`)
/// and its schema (`Outer_InnerSchema`).
///
/// ```
/// use protoc_gen_nats_micro::typescript::names::message_names;
/// let path = ["Outer".to_string(), "Inner".to_string()];
/// assert_eq!(message_names(&path), ("Outer_Inner".to_string(), "Outer_InnerSchema".to_string()));
/// assert_eq!(message_names(&["Object".to_string()]).0, "Object$");
/// ```
pub fn message_names(path: &[String]) -> (String, String) {
    let base = path.join("_");
    (safe_identifier(&base), safe_identifier(&format!("{base}Schema")))
}

/// The Go plugin's `ToPascalCase` for code names: lower-case, split on `_`,
/// capitalise each part (`ORDER_EXPIRED` → `OrderExpired`, `HTTP_2_FAIL` → `Http2Fail`).
pub fn code_pascal(code: &str) -> String {
    code.to_ascii_lowercase()
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

/// An import path from the file generated for `from_proto` to `target`
/// (a path relative to the output root), always starting with `./` or `../`.
///
/// ```
/// use protoc_gen_nats_micro::typescript::names::relative_import;
/// assert_eq!(relative_import("order/v1/order.proto", "order/v1/order_pb.js"), "./order_pb.js");
/// assert_eq!(relative_import("order/v1/order.proto", "common/v1/money_pb.js"), "../../common/v1/money_pb.js");
/// assert_eq!(relative_import("top.proto", "nats_micro_runtime.js"), "./nats_micro_runtime.js");
/// ```
pub fn relative_import(from_proto: &str, target: &str) -> String {
    let from: Vec<&str> = from_proto.split('/').collect();
    let from_dirs = &from[..from.len() - 1];
    let to: Vec<&str> = target.split('/').collect();
    let (to_dirs, to_file) = to.split_at(to.len() - 1);
    let common = from_dirs.iter().zip(to_dirs).take_while(|(a, b)| a == b).count();
    let ups = from_dirs.len() - common;
    let mut parts: Vec<&str> = std::iter::repeat_n("..", ups).collect();
    if parts.is_empty() {
        parts.push(".");
    }
    parts.extend(&to_dirs[common..]);
    parts.extend(to_file);
    parts.join("/")
}

/// Milliseconds as a TypeScript number literal (`750`, `1500`, `0.5`).
pub fn milliseconds(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    let (whole, rest) = (nanos / 1_000_000, nanos % 1_000_000);
    if rest == 0 { whole.to_string() } else { format!("{whole}.{:06}", rest).trim_end_matches('0').to_owned() }
}

/// The exported names of one generated file: a name asked for twice gets
/// `_` appended until it is free.
#[derive(Debug, Default)]
pub struct Names {
    taken: HashSet<String>,
}

impl Names {
    /// A registry in which `reserved` (import aliases) are already taken.
    pub fn with_reserved<'a>(reserved: impl IntoIterator<Item = &'a str>) -> Names {
        Names { taken: reserved.into_iter().map(str::to_owned).collect() }
    }

    /// `name`, or `name_`, `name__`, … if it is taken.
    pub fn claim(&mut self, name: String) -> String {
        let mut name = name;
        while !self.taken.insert(name.clone()) {
            name.push('_');
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_follow_the_go_plugin() {
        assert_eq!(code_pascal("ORDER_EXPIRED"), "OrderExpired");
        assert_eq!(code_pascal("HTTP_2_FAIL"), "Http2Fail");
        assert_eq!(code_pascal("NEW"), "New");
    }

    #[test]
    fn milliseconds_keep_fractions() {
        assert_eq!(milliseconds(Duration::from_millis(750)), "750");
        assert_eq!(milliseconds(Duration::from_secs(5)), "5000");
        assert_eq!(milliseconds(Duration::from_micros(1500)), "1.5");
        assert_eq!(milliseconds(Duration::from_nanos(1)), "0.000001");
    }

    #[test]
    fn jsdoc_cannot_be_closed_by_its_text() {
        let doc = jsdoc("  ", &["ends */ here\n\nnext".to_owned(), String::new(), "second".to_owned()]);
        assert_eq!(doc, "  /**\n   * ends *\\/ here\n   *\n   * next\n   *\n   * second\n   */\n");
        assert_eq!(jsdoc("", &[String::new()]), "");
        assert_eq!(jsdoc(" ", &["one */ line".to_owned()]), " /** one *\\/ line */\n");
    }

    #[test]
    fn wrapping_keeps_links_whole() {
        let text = format!("{} see {{@link registerTypeHandlers}} now", "word ".repeat(18));
        let wrapped = wrap(&text);
        assert!(wrapped.lines().all(|l| l.len() <= 100), "{wrapped}");
        assert!(wrapped.contains("{@link registerTypeHandlers}"), "{wrapped}");
    }

    #[test]
    fn clashing_names_get_underscores() {
        let mut names = Names::with_reserved(["pb"]);
        assert_eq!(names.claim("pb".into()), "pb_");
        assert_eq!(names.claim("isTypeError".into()), "isTypeError");
        assert_eq!(names.claim("isTypeError".into()), "isTypeError_");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(string_literal("a\u{0}b\u{7f}"), "\"a\\u0000b\\u007f\"");
    }
}
