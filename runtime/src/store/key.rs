//! Keys and object names rendered from a request (PROTOCOL §12.1): the one
//! renderer every generated key function calls with the template's literal
//! text and the request's field values.

use crate::error::Error;

/// One field value of a key, as the generated key function extracts it.
///
/// ```
/// use nats_micro_runtime::store::KeyValue;
/// assert_eq!(KeyValue::of(&String::from("42")), KeyValue::Text("42"));
/// assert_eq!(KeyValue::of(&-7i64), KeyValue::Int(-7));
/// assert_eq!(KeyValue::of(&u64::MAX), KeyValue::Uint(u64::MAX));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyValue<'a> {
    /// No value: a message on the path is unset, or an explicit-presence field is.
    Missing,
    /// A string field (empty is missing).
    Text(&'a str),
    /// A signed integer field, in decimal.
    Int(i64),
    /// An unsigned integer field, in decimal.
    Uint(u64),
    /// `true` / `false`.
    Bool(bool),
    /// An enum field: its number and the enum's declared `(number, name)` pairs.
    Enum(i32, &'static [(i32, &'static str)]),
}

/// The field types a key placeholder may name (see [`KeyValue::of`]).
pub trait IntoKeyValue<'a> {
    /// The field's key value.
    fn into_key_value(self) -> KeyValue<'a>;
}

impl<'a> IntoKeyValue<'a> for &'a String {
    fn into_key_value(self) -> KeyValue<'a> {
        KeyValue::Text(self)
    }
}

impl<'a> IntoKeyValue<'a> for &'a str {
    fn into_key_value(self) -> KeyValue<'a> {
        KeyValue::Text(self)
    }
}

impl IntoKeyValue<'_> for &bool {
    fn into_key_value(self) -> KeyValue<'static> {
        KeyValue::Bool(*self)
    }
}

macro_rules! integer_key_values {
    ($variant:ident: $($ty:ty),*) => { $(
        impl IntoKeyValue<'_> for &$ty {
            fn into_key_value(self) -> KeyValue<'static> {
                KeyValue::$variant((*self).into())
            }
        }
    )* };
}

integer_key_values!(Int: i32, i64);
integer_key_values!(Uint: u32, u64);

impl<'a> KeyValue<'a> {
    /// The key value of a string, integer or bool field.
    pub fn of(field: impl IntoKeyValue<'a>) -> KeyValue<'a> {
        field.into_key_value()
    }

    /// The key value of an enum field (prost keeps enums as `i32`).
    ///
    /// ```
    /// use nats_micro_runtime::store::KeyValue;
    /// const KINDS: &[(i32, &str)] = &[(0, "KIND_UNSPECIFIED"), (1, "KIND_WEB")];
    /// assert_eq!(KeyValue::enumeration(&1, KINDS), KeyValue::Enum(1, KINDS));
    /// ```
    pub fn enumeration(number: &i32, names: &'static [(i32, &'static str)]) -> KeyValue<'static> {
        KeyValue::Enum(*number, names)
    }

    /// The text the value renders as (§12.1), `None` when missing or empty.
    fn render(&self) -> Option<std::borrow::Cow<'a, str>> {
        use std::borrow::Cow;
        match *self {
            KeyValue::Missing => None,
            KeyValue::Text("") => None,
            KeyValue::Text(text) => Some(Cow::Borrowed(text)),
            KeyValue::Int(n) => Some(Cow::Owned(n.to_string())),
            KeyValue::Uint(n) => Some(Cow::Owned(n.to_string())),
            KeyValue::Bool(b) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
            KeyValue::Enum(number, names) => Some(match names.iter().find(|(n, _)| *n == number) {
                Some((_, name)) => Cow::Borrowed(*name),
                None => Cow::Owned(number.to_string()),
            }),
        }
    }
}

/// A generated key function: the key (or object name) of a request.
pub type KeyFn<Req> = fn(&Req) -> Result<String, KeyError>;

/// One piece of a key: literal template text, or a placeholder (its path
/// as written, `tenant.id`) with the request's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPart<'a> {
    /// Literal text of the template.
    Text(&'static str),
    /// A `{path}` placeholder and its value.
    Field(&'static str, KeyValue<'a>),
}

/// A request that gives no valid key: the placeholder path at fault and why.
/// Becomes `INVALID_ARGUMENT` with a `BadRequest` field violation for the
/// path (PROTOCOL §12.1).
///
/// ```
/// use nats_micro_runtime::{Code, Error};
/// use nats_micro_runtime::store::{KeyPart, KeyValue, render_kv_key};
/// let err = render_kv_key(&[KeyPart::Text("user."), KeyPart::Field("id", KeyValue::Text(""))]).unwrap_err();
/// assert_eq!(err.field(), "id");
/// let err = Error::from(err);
/// assert_eq!(err.code(), &Code::InvalidArgument);
/// assert_eq!(err.bad_request().unwrap().field_violations[0].field, "id");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError {
    field: String,
    description: String,
}

impl KeyError {
    /// An error for the placeholder `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> KeyError {
        KeyError { field: field.into(), description: description.into() }
    }

    /// The placeholder path (`tenant.id`).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with its value.
    pub fn description(&self) -> &str {
        &self.description
    }
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key placeholder {{{}}}: {}", self.field, self.description)
    }
}

impl std::error::Error for KeyError {}

impl From<KeyError> for Error {
    fn from(err: KeyError) -> Error {
        Error::invalid_argument(err.to_string()).with_field_violation(err.field.clone(), err.description)
    }
}

impl crate::HandlerError for KeyError {
    fn nats_error_code(&self) -> Option<crate::Code> {
        Some(crate::Code::InvalidArgument)
    }
    fn into_error(self) -> Error {
        self.into()
    }
}

/// Whether `c` may appear in a key-value key (besides `.`).
fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '=')
}

/// Whether `key` is a valid NATS key-value key: characters `A-Z a-z 0-9 - _ / = .`
/// and no empty token.
///
/// ```
/// use nats_micro_runtime::store::is_valid_kv_key;
/// assert!(is_valid_kv_key("user.42") && is_valid_kv_key("a/b=c-d_e"));
/// assert!(!is_valid_kv_key("") && !is_valid_kv_key("user.") && !is_valid_kv_key("a..b") && !is_valid_kv_key("a b"));
/// ```
pub fn is_valid_kv_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| is_key_char(c) || c == '.') && key.split('.').all(|token| !token.is_empty())
}

/// Renders a key-value key (PROTOCOL §12.1): every placeholder must have a
/// value and the whole key must be a valid key; an error names the
/// placeholder at fault.
///
/// ```
/// use nats_micro_runtime::store::{KeyPart, KeyValue, render_kv_key};
/// const KINDS: &[(i32, &str)] = &[(1, "WEB")];
/// let key = render_kv_key(&[
///     KeyPart::Field("tenant.region", KeyValue::Text("eu")),
///     KeyPart::Text("."),
///     KeyPart::Field("number", KeyValue::Uint(18446744073709551615)),
///     KeyPart::Text("."),
///     KeyPart::Field("kind", KeyValue::Enum(1, KINDS)),
///     KeyPart::Text("."),
///     KeyPart::Field("kind", KeyValue::Enum(9, KINDS)),
///     KeyPart::Text("."),
///     KeyPart::Field("active", KeyValue::Bool(false)),
/// ]);
/// assert_eq!(key.unwrap(), "eu.18446744073709551615.WEB.9.false");
/// let bad = render_kv_key(&[KeyPart::Text("user."), KeyPart::Field("id", KeyValue::Text("a b"))]);
/// assert_eq!(bad.unwrap_err().field(), "id");
/// let missing = render_kv_key(&[KeyPart::Field("tenant.id", KeyValue::Missing)]);
/// assert_eq!(missing.unwrap_err().field(), "tenant.id");
/// ```
pub fn render_kv_key(parts: &[KeyPart<'_>]) -> Result<String, KeyError> {
    let (key, spans) = render(parts)?;
    for (field, start, end) in &spans {
        if let Some(bad) = key[*start..*end].chars().find(|c| !is_key_char(*c) && *c != '.') {
            return Err(KeyError::new(*field, format!("{bad:?} cannot be in a key (A-Z a-z 0-9 - _ / = .)")));
        }
    }
    // An empty token next to or inside a value: name the first value that touches it.
    let mut at = 0;
    for token in key.split('.') {
        if token.is_empty() {
            let field = spans.iter().find(|(_, start, end)| *start <= at + 1 && at <= *end).map_or("", |(field, _, _)| field);
            return Err(KeyError::new(
                field,
                format!("gives the key {key:?} an empty token (a leading, trailing or double `.`)"),
            ));
        }
        at += token.len() + 1;
    }
    Ok(key)
}

/// Renders an object name (PROTOCOL §12.1): every placeholder must have a
/// non-empty value; any characters are allowed.
///
/// ```
/// use nats_micro_runtime::store::{KeyPart, KeyValue, render_object_name};
/// let name = render_object_name(&[KeyPart::Text("report "), KeyPart::Field("id", KeyValue::Text("q1/2025")), KeyPart::Text(".bin")]);
/// assert_eq!(name.unwrap(), "report q1/2025.bin");
/// ```
pub fn render_object_name(parts: &[KeyPart<'_>]) -> Result<String, KeyError> {
    render(parts).map(|(name, _)| name)
}

/// The text of `parts`, and where each placeholder's value is in it.
/// Where each placeholder's value is in a rendered key: path, start, end.
type Spans = Vec<(&'static str, usize, usize)>;

fn render(parts: &[KeyPart<'_>]) -> Result<(String, Spans), KeyError> {
    let mut key = String::new();
    let mut spans = Vec::new();
    for part in parts {
        match part {
            KeyPart::Text(text) => key.push_str(text),
            KeyPart::Field(field, value) => {
                let Some(text) = value.render() else {
                    let why = match value {
                        KeyValue::Text(_) => "is empty",
                        _ => "is not set",
                    };
                    return Err(KeyError::new(*field, format!("{why}; a key needs a value")));
                };
                let start = key.len();
                key.push_str(&text);
                spans.push((*field, start, key.len()));
            }
        }
    }
    Ok((key, spans))
}

/// One piece of a key template, as the handles keep it to build keys from
/// parts ([`KvStore::keys`](super::KvStore::keys)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    /// Literal text.
    Text(&'static str),
    /// A `{path}` placeholder.
    Field(&'static str),
}

/// Renders a template from named parts, every placeholder given.
pub(crate) fn render_parts(template: &[TemplatePart], parts: &[(&str, &str)]) -> Result<String, KeyError> {
    check_part_names(template, parts)?;
    let pieces: Vec<KeyPart<'_>> = template
        .iter()
        .map(|piece| match piece {
            TemplatePart::Text(text) => KeyPart::Text(text),
            TemplatePart::Field(field) => match parts.iter().find(|(name, _)| name == field) {
                Some((_, value)) => KeyPart::Field(field, KeyValue::Text(value)),
                None => KeyPart::Field(field, KeyValue::Missing),
            },
        })
        .collect();
    render_kv_key(&pieces)
}

fn check_part_names(template: &[TemplatePart], parts: &[(&str, &str)]) -> Result<(), KeyError> {
    match parts
        .iter()
        .find(|(name, _)| !template.iter().any(|piece| matches!(piece, TemplatePart::Field(field) if field == name)))
    {
        Some((unknown, _)) => Err(KeyError::new(*unknown, "is not a placeholder of the key template")),
        None => Ok(()),
    }
}

/// The keys a template makes with some parts given: literal text and the
/// given values, and any non-empty text for the other placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyPattern(Vec<Option<String>>);

impl KeyPattern {
    /// The pattern of `template` with `parts` (each value checked as a key would be).
    pub(crate) fn new(template: &[TemplatePart], parts: &[(&str, &str)]) -> Result<KeyPattern, KeyError> {
        check_part_names(template, parts)?;
        // The given values must be valid in a key: render with a stand-in for the others.
        let pieces: Vec<KeyPart<'_>> = template
            .iter()
            .map(|piece| match piece {
                TemplatePart::Text(text) => KeyPart::Text(text),
                TemplatePart::Field(field) => {
                    let value = parts.iter().find(|(name, _)| name == field).map_or("x", |(_, value)| value);
                    KeyPart::Field(field, KeyValue::Text(value))
                }
            })
            .collect();
        render_kv_key(&pieces)?;
        let mut pattern: Vec<Option<String>> = Vec::new();
        for piece in template {
            let literal = match piece {
                TemplatePart::Text(text) => Some((*text).to_owned()),
                TemplatePart::Field(field) => parts.iter().find(|(name, _)| name == field).map(|(_, value)| (*value).to_owned()),
            };
            match (literal, pattern.last_mut()) {
                (Some(text), Some(Some(last))) => last.push_str(&text),
                (literal, _) => pattern.push(literal),
            }
        }
        Ok(KeyPattern(pattern))
    }

    /// Whether `key` is one the pattern describes.
    pub(crate) fn matches(&self, key: &str) -> bool {
        fn matches_from(pattern: &[Option<String>], key: &str) -> bool {
            match pattern.split_first() {
                None => key.is_empty(),
                Some((Some(text), rest)) => key.strip_prefix(text.as_str()).is_some_and(|key| matches_from(rest, key)),
                // Any non-empty text: try every split (patterns are short).
                Some((None, rest)) => {
                    key.char_indices().skip(1).map(|(i, _)| i).chain([key.len()]).any(|i| i > 0 && matches_from(rest, &key[i..]))
                }
            }
        }
        matches_from(&self.0, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_tokens_name_the_value_that_makes_them() {
        let key = |v| render_kv_key(&[KeyPart::Text("a."), KeyPart::Field("x", KeyValue::Text(v)), KeyPart::Text(".b")]);
        for bad in [".c", "c.", "c..d", "."] {
            assert_eq!(key(bad).unwrap_err().field(), "x", "{bad:?}");
        }
        assert_eq!(key("c.d").unwrap(), "a.c.d.b");
        let leading = render_kv_key(&[KeyPart::Field("y", KeyValue::Text(".c"))]);
        assert_eq!(leading.unwrap_err().field(), "y");
    }

    #[test]
    fn integers_render_exactly_and_unknown_enums_in_decimal() {
        let key = render_kv_key(&[
            KeyPart::Field("a", KeyValue::Int(i64::MIN)),
            KeyPart::Text("."),
            KeyPart::Field("b", KeyValue::Enum(-3, &[(0, "ZERO")])),
        ]);
        assert_eq!(key.unwrap(), "-9223372036854775808.-3");
    }

    #[test]
    fn parts_render_and_patterns_match_what_the_template_makes() {
        let template =
            [TemplatePart::Text("user."), TemplatePart::Field("id"), TemplatePart::Text(".n"), TemplatePart::Field("n")];
        assert_eq!(render_parts(&template, &[("id", "7"), ("n", "1")]).unwrap(), "user.7.n1");
        assert_eq!(render_parts(&template, &[("nope", "7")]).unwrap_err().field(), "nope");
        assert_eq!(render_parts(&template, &[("id", "7")]).unwrap_err().field(), "n");
        let any = KeyPattern::new(&template, &[]).unwrap();
        assert!(any.matches("user.7.n1") && any.matches("user.a.b.n22"));
        assert!(!any.matches("user.7.x1") && !any.matches("user..n1") && !any.matches("user.7.n"));
        let seven = KeyPattern::new(&template, &[("id", "7")]).unwrap();
        assert!(seven.matches("user.7.n1") && !seven.matches("user.8.n1"));
        assert_eq!(KeyPattern::new(&template, &[("id", "a b")]).unwrap_err().field(), "id");
    }
}
