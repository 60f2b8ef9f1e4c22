//! Strings in generated Python, escaped for where they land: string
//! literals, docstrings and `#` comments. Whatever a proto puts in a name,
//! an option or a comment can neither end its literal, docstring or comment
//! line nor reorder how the code reads (bidi controls).

use std::fmt::Write as _;

/// Whether `c` must never appear raw in generated Python: control
/// characters (which include every line end `str.splitlines` knows besides
/// U+2028/2029: `\x0b`, `\x0c`, `\x1c`–`\x1e`, `\x85`), the two Unicode line
/// and paragraph separators, bidi controls (Trojan Source) and BOM.
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{feff}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Appends `c` as a Python escape (`\x00`, `\u2028`).
fn push_escape(out: &mut String, c: char) {
    let code = u32::from(c);
    let _ = if code <= 0xff { write!(out, "\\x{code:02x}") } else { write!(out, "\\u{code:04x}") };
}

/// A Python string literal (double-quoted) holding exactly `text`.
pub fn string_literal(text: &str) -> String {
    crate::naming::quoted_literal(text, must_escape, push_escape)
}

/// Text for the rest of a `#` comment line: a comment cannot hold escapes,
/// so what could end the line or hide code is written as its escape, visibly.
pub fn comment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if must_escape(c) { push_escape(&mut out, c) } else { out.push(c) }
    }
    out
}

/// A docstring at `indent` holding `text`: backslashes and every character
/// of `must_escape` escaped (`\n` and tab excepted), and no run of quotes
/// that could end it early.
pub fn docstring(indent: &str, text: &str) -> String {
    let chars: Vec<char> = text.trim_end().chars().collect();
    let mut body = String::with_capacity(text.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        match c {
            '\\' => body.push_str("\\\\"),
            '"' if i + 1 == chars.len() || chars[i + 1] == '"' => body.push_str("\\\""),
            '\n' | '\t' => body.push(c),
            c if must_escape(c) => push_escape(&mut body, c),
            c => body.push(c),
        }
    }
    let mut lines = body.split('\n');
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

/// Proto comments as docstring text: the common indentation (ASCII spaces
/// and tabs, so that cutting it never splits a character) and trailing
/// whitespace removed.
pub fn comment_text(comments: Option<&str>) -> Option<String> {
    let comments = comments?;
    let leading = |line: &str| line.len() - line.trim_start_matches([' ', '\t']).len();
    let indent = comments.lines().filter(|line| !line.trim().is_empty()).map(leading).min().unwrap_or(0);
    let text: Vec<&str> = comments
        .lines()
        .map(|line| if line.trim().is_empty() { "" } else { line[indent.min(leading(line))..].trim_end() })
        .collect();
    let text = text.join("\n").trim_matches(|c: char| c.is_ascii_whitespace()).to_owned();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals_escape_everything_that_could_break_them() {
        assert_eq!(string_literal("plain"), "\"plain\"");
        assert_eq!(string_literal("say \"hi\" \\ now"), r#""say \"hi\" \\ now""#);
        assert_eq!(string_literal("line\nbreak\r\ttab"), r#""line\nbreak\r\ttab""#);
        assert_eq!(string_literal("nul\0 sep\u{2028}"), r#""nul\x00 sep\u2028""#);
        assert_eq!(string_literal("bidi\u{202e}\u{2066}\u{85}"), r#""bidi\u202e\u2066\x85""#);
        assert_eq!(string_literal("naïve"), "\"naïve\"");
    }

    #[test]
    fn comments_cannot_end_their_line() {
        assert_eq!(comment("a\u{2028}b\nc\rd\u{c}e\u{202e}"), r"a\u2028b\x0ac\x0dd\x0ce\u202e");
        assert_eq!(comment("order/v1/ö.proto"), "order/v1/ö.proto");
    }

    #[test]
    fn docstrings_cannot_be_closed_early() {
        assert_eq!(docstring("", "one line"), "\"\"\"one line\"\"\"\n");
        assert_eq!(docstring("", r#"ends with a quote""#), "\"\"\"ends with a quote\\\"\"\"\"\n");
        assert_eq!(docstring("", r#"a """ b"#), "\"\"\"a \\\"\\\"\" b\"\"\"\n");
        assert_eq!(docstring("", r"back\slash"), "\"\"\"back\\\\slash\"\"\"\n");
        assert_eq!(docstring("  ", "a\n\nb"), "  \"\"\"a\n\n  b\n  \"\"\"\n");
        assert_eq!(docstring("", "a\u{2029}b\u{b}c\u{1c}d"), "\"\"\"a\\u2029b\\x0bc\\x1cd\"\"\"\n");
    }

    #[test]
    fn comments_lose_their_common_indentation() {
        assert_eq!(comment_text(Some(" Places an order.\n   Indented.\n")).as_deref(), Some("Places an order.\n  Indented."));
        assert_eq!(comment_text(Some("  \n ")), None);
    }

    #[test]
    fn non_ascii_whitespace_in_comments_is_text_not_indentation() {
        // A non-breaking space is two bytes: cutting by a byte count taken
        // from another line used to panic.
        assert_eq!(comment_text(Some("  a\n\u{a0}b\n")).as_deref(), Some("a\n\u{a0}b"));
        assert_eq!(comment_text(Some("\u{a0}\u{a0}x\n  y")).as_deref(), Some("\u{a0}\u{a0}x\n  y"));
        assert_eq!(comment_text(Some(" é\n  ü")).as_deref(), Some("é\n ü"));
    }
}
