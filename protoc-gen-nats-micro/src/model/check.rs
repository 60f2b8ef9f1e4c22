//! Name rules of the model: every descriptor name that reaches a subject or
//! an identifier in some target language is checked here, once, and names
//! that would collide after case conversion or keyword escaping in any
//! language are rejected naming both proto elements.

use std::collections::HashMap;

use prost_reflect::{FileDescriptor, MessageDescriptor};

use super::{BUILTIN_CODES, CANONICAL_CODES, EXTRA_CANONICAL_CODES, Problem};
use crate::limits::{MAX_NAME_LEN, shorten};

/// Code names the generators use for their own items (Rust's
/// `Unrecognized` variant, the `UNRECOGNIZED_CODE` / `Custom` helpers of the
/// other languages): a custom code must not normalize to one of these.
pub const RESERVED_CODE_NAMES: [&str; 3] = ["UNRECOGNIZED", "UNRECOGNIZED_CODE", "CUSTOM"];

/// `[A-Za-z_][A-Za-z0-9_]*`, 1 to `MAX_NAME_LEN` bytes: a proto
/// identifier, which every target language can turn into its own.
pub fn is_identifier(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The form in which two names collide in some language: lower case with
/// `_` removed. It covers Rust's snake_case, Python's snake_case plus a `_`
/// suffix for keywords, and TypeScript's camelCase.
pub fn normalized(name: &str) -> String {
    name.chars().filter(|c| *c != '_').map(|c| c.to_ascii_lowercase()).collect()
}

/// Why `name` (of a service, method or message) cannot become an
/// identifier, if it cannot: it must be a proto identifier with a letter
/// (`_`, `__`, `_1` become empty or digit-led names after case conversion).
fn type_name_problem(name: &str) -> Option<String> {
    if !is_identifier(name) {
        return Some(format!("{:?} is not an identifier ([A-Za-z_][A-Za-z0-9_]*, at most {MAX_NAME_LEN} bytes)", shorten(name)));
    }
    if !name.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Some(format!("{name:?} has no letter; it would give an empty or invalid identifier after case conversion"));
    }
    None
}

/// Checks every name of `file` that generated code uses: the file name,
/// the package, services, methods and their messages, and services whose
/// generated names (one module / class per service in the file) collide.
pub fn file_names(file: &FileDescriptor, problems: &mut Vec<Problem>) {
    let mut push = |element: &str, option: &str, message: String| {
        problems.push(Problem { file: shorten(file.name()), element: shorten(element), option: option.to_owned(), message });
    };
    if file.name().is_empty() || file.name().chars().any(char::is_control) {
        push("(file)", "file name", format!("{:?} is empty or contains a control character", shorten(file.name())));
    }
    if let Some(message) = package_problem(file.package_name()) {
        push(file.package_name(), "package", message);
    }
    let mut services: HashMap<String, String> = HashMap::new();
    for service in file.services() {
        if let Some(message) = type_name_problem(service.name()) {
            push(service.full_name(), "name", message);
            continue;
        }
        if let Some(other) = services.insert(normalized(service.name()), service.name().to_owned()) {
            push(
                service.full_name(),
                "name",
                format!(
                    "services {other} and {} of one file collide: their generated names differ only in case or `_`",
                    service.name()
                ),
            );
        }
        for method in service.methods() {
            if let Some(message) = type_name_problem(method.name()) {
                push(method.full_name(), "name", message);
            }
            for message in [method.input(), method.output()] {
                if let Some(problem) = message_problem(&message) {
                    push(method.full_name(), "message type", problem);
                }
            }
        }
    }
}

/// Why a package name cannot become a module path, if it cannot.
fn package_problem(package: &str) -> Option<String> {
    if package.is_empty() {
        return None;
    }
    let bad = package.split('.').find(|token| !is_identifier(token))?;
    Some(format!("token {:?} of {:?} is not an identifier", shorten(bad), shorten(package)))
}

/// Why a request or response message cannot be named in generated code.
fn message_problem(message: &MessageDescriptor) -> Option<String> {
    if let Some(problem) = package_problem(message.package_name()) {
        return Some(format!("{}: package {problem}", shorten(message.full_name())));
    }
    let mut current = Some(message.clone());
    while let Some(m) = current {
        if let Some(problem) = type_name_problem(m.name()) {
            return Some(format!("{}: {problem}", shorten(message.full_name())));
        }
        current = m.parent_message();
    }
    None
}

/// Method names of one service, so that two that collide are rejected.
#[derive(Default)]
pub struct NameClashes {
    normalized: HashMap<String, String>,
    endpoints: HashMap<String, String>,
}

impl NameClashes {
    /// Adds a method name; the problem if it collides with an earlier one.
    pub fn add(&mut self, name: &str) -> Option<String> {
        let endpoint = crate::naming::subject_token(name);
        if let Some(other) = self.endpoints.insert(endpoint.clone(), name.to_owned()) {
            return Some(format!("methods {other} and {name} both map to endpoint {endpoint:?}"));
        }
        let key = normalized(name);
        let other = self.normalized.insert(key.clone(), name.to_owned())?;
        Some(format!(
            "methods {other} and {name} collide: both become {key:?} after case conversion or keyword escaping \
             (Rust snake_case, Python snake_case, TypeScript camelCase)"
        ))
    }
}

/// Why custom code `code` is refused, given the codes `seen` before it in
/// the same service: not UPPER_SNAKE, a built-in, declared twice, or equal
/// after case conversion (`A_1` and `A1` are both `A1` in PascalCase) to
/// another code, to a canonical code or to a reserved name
/// ([`RESERVED_CODE_NAMES`]). Naming a further canonical code exactly
/// (`DEADLINE_EXCEEDED`) is allowed: it is that canonical code.
pub fn code_problem(code: &str, seen: &[&str]) -> Option<String> {
    if !is_upper_snake(code) || code.len() > MAX_NAME_LEN {
        return Some(format!("{:?} is not an UPPER_SNAKE name (like ORDER_EXPIRED)", shorten(code)));
    }
    if BUILTIN_CODES.contains(&code) {
        return Some(format!("{code:?} repeats a built-in code; it is always available"));
    }
    if seen.contains(&code) {
        return Some(format!("{code:?} is declared twice"));
    }
    if EXTRA_CANONICAL_CODES.contains(&code) {
        return None;
    }
    let key = normalized(code);
    if let Some(other) = seen.iter().find(|other| normalized(other) == key) {
        return Some(format!("{code:?} and {other:?} collide: they differ only in `_` and give the same generated names"));
    }
    if let Some(canonical) = CANONICAL_CODES.iter().map(|c| c.name).find(|name| normalized(name) == key) {
        return Some(format!("{code:?} collides with the canonical code {canonical:?} after case conversion"));
    }
    if let Some(reserved) = RESERVED_CODE_NAMES.iter().find(|name| normalized(name) == key) {
        return Some(format!(
            "{code:?} is reserved ({reserved:?}): the generated code uses it; reserved: {}",
            RESERVED_CODE_NAMES.join(", ")
        ));
    }
    None
}

/// `[A-Za-z0-9_-]+`
pub fn valid_service_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Why a subject is invalid, if it is: no empty token, no whitespace or
/// control character, no wildcard.
pub fn invalid_subject(subject: &str) -> Option<&'static str> {
    for token in subject.split('.') {
        if token.is_empty() {
            return Some("has an empty token");
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Some("contains whitespace or a control character");
        }
        if token.contains(['*', '>']) {
            return Some("contains a wildcard (`*` or `>`)");
        }
    }
    None
}

/// `[A-Z][A-Z0-9]*(_[A-Z0-9]+)*`
pub fn is_upper_snake(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.split('_').all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
}
