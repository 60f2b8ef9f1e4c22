//! Doc attributes from proto comments and from generated text.

use proc_macro2::TokenStream;
use quote::quote;

use super::names::doc_text;

/// One `#[doc = "..."]` line of generated text (names from the proto
/// included), escaped for a doc comment.
pub fn line(text: &str) -> TokenStream {
    let text = doc_text(text);
    quote! { #[doc = #text] }
}

/// `#[doc = "..."]` lines from proto comments, made safe for rustdoc: an
/// unlabelled code fence becomes a `text` block (no doctests); outside
/// fences brackets are escaped (no intra-doc links), bare URLs are put in
/// angle brackets (no `rustdoc::bare_urls` warning) and indentation is
/// dropped (no indented code blocks); inside fences lines stay verbatim.
/// Every line is escaped with [`doc_text`].
pub fn comments(comments: Option<&str>) -> TokenStream {
    let Some(comments) = comments else { return TokenStream::new() };
    let mut in_fence = false;
    // Width of the list marker of the item being continued (`- `, `1. `), if any.
    let mut list_indent: Option<usize> = None;
    let lines: Vec<String> = comments
        .lines()
        .map(|line| {
            let trimmed = line.trim();
            if let Some(label) = trimmed.strip_prefix("```") {
                let opening = !in_fence;
                in_fence = !in_fence;
                list_indent = None;
                return if opening && label.trim().is_empty() { " ```text".to_owned() } else { format!(" {trimmed}") };
            }
            if in_fence {
                return line.to_owned();
            }
            let escaped = link_bare_urls(&trimmed.replace('[', "\\[").replace(']', "\\]"));
            // A line that continues a list item is indented under it (no lazy continuation).
            let indent = match (list_marker_width(trimmed), list_indent) {
                (Some(width), _) => {
                    list_indent = Some(width);
                    0
                }
                (None, _) if trimmed.is_empty() => {
                    list_indent = None;
                    0
                }
                (None, Some(width)) => width,
                (None, None) => 0,
            };
            format!(" {:indent$}{escaped}", "")
        })
        .map(|line| doc_text(&line))
        .collect();
    let closing = in_fence.then(|| quote! { #[doc = " ```"] });
    quote! { #( #[doc = #lines] )* #closing }
}

/// Proto comments followed by a blank doc line, or nothing.
pub fn comments_paragraph(text: Option<&str>) -> TokenStream {
    let docs = comments(text);
    if docs.is_empty() {
        docs
    } else {
        quote! { #docs #[doc = ""] }
    }
}

/// `line` with each bare `http://` or `https://` URL outside inline code
/// put in angle brackets, as rustdoc wants; URLs already in `<…>` or in a
/// Markdown link's `(…)` stay as they are.
fn link_bare_urls(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = ["http://", "https://"].iter().filter_map(|scheme| rest.find(scheme)).min() {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let in_code = out.matches('`').count() % 2 == 1;
        let wrapped = matches!(out.chars().last(), Some('<' | '('));
        let end = from.find(|c: char| c.is_whitespace() || "\"'<>()`\\".contains(c)).unwrap_or(from.len());
        let url = from[..end].trim_end_matches(['.', ',', ';', ':', '!', '?']);
        if in_code || wrapped || url.len() <= "https://".len() {
            out.push_str(&from[..url.len().max(1)]);
            rest = &from[url.len().max(1)..];
        } else {
            out.push('<');
            out.push_str(url);
            out.push('>');
            rest = &from[url.len()..];
        }
    }
    out.push_str(rest);
    out
}

/// The width of a Markdown list marker starting `line` (`- `, `* `, `+ `, `12. `).
fn list_marker_width(line: &str) -> Option<usize> {
    if line.starts_with("- ") || line.starts_with("* ") || line.starts_with("+ ") {
        return Some(2);
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    (digits > 0 && line[digits..].starts_with(". ")).then_some(digits + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_continuations_are_indented_and_other_lines_are_not() {
        let docs = comments(Some("Intro:\n- one\n  more of one\n12. two\nmore of two\n\nAfter.")).to_string();
        for expected in ["\" - one\"", "\"   more of one\"", "\" 12. two\"", "\"     more of two\"", "\" After.\""] {
            assert!(docs.contains(expected), "{expected} in {docs}");
        }
    }

    #[test]
    fn bare_urls_are_linked_and_others_left_alone() {
        for (line, expected) in [
            ("see https://example.com/h.", "see <https://example.com/h>."),
            ("url \"https://example.com/h\"}", "url \"<https://example.com/h>\"}"),
            ("already <https://a.example> and [x](https://b.example)", "already <https://a.example> and [x](https://b.example)"),
            ("in code `curl http://localhost:8222/varz` only", "in code `curl http://localhost:8222/varz` only"),
            ("two: http://a.example, https://b.example/p?q=1", "two: <http://a.example>, <https://b.example/p?q=1>"),
            ("just https:// alone", "just https:// alone"),
        ] {
            assert_eq!(link_bare_urls(line), expected, "{line}");
        }
    }
}
