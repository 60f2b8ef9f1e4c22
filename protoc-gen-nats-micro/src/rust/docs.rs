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
/// fences brackets are escaped (no intra-doc links) and indentation is
/// dropped (no indented code blocks); inside fences lines stay verbatim.
/// Every line is escaped with [`doc_text`].
pub fn comments(comments: Option<&str>) -> TokenStream {
    let Some(comments) = comments else { return TokenStream::new() };
    let mut in_fence = false;
    let lines: Vec<String> = comments
        .lines()
        .map(|line| {
            let trimmed = line.trim();
            if let Some(label) = trimmed.strip_prefix("```") {
                let opening = !in_fence;
                in_fence = !in_fence;
                return if opening && label.trim().is_empty() { " ```text".to_owned() } else { format!(" {trimmed}") };
            }
            if in_fence {
                return line.to_owned();
            }
            format!(" {}", trimmed.replace('[', "\\[").replace(']', "\\]"))
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
