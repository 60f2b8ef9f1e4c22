//! Proto comments become rustdoc that renders as written: no doctests, no
//! intra-doc links, code fences opened and closed.

mod common;

use common::{assert_contains_all, generate_scratch, output_files};

const COMMENTED: &str = r#"
// Service doc with [brackets].
//
// ```
// let v = a[0];
// ```
//
// After the fence.
service BadService {
  // Method doc.
  rpc Get(Req) returns (Resp);
}
"#;

fn generated() -> String {
    let mut files = output_files(&generate_scratch(COMMENTED));
    files.remove("bad.v1.nats_micro.rs").unwrap_or_else(|| panic!("output: {:?}", files.keys()))
}

#[test]
fn comments_become_docs_with_links_escaped() {
    let code = generated();
    assert_contains_all(
        &code,
        &["/// Service doc with \\[brackets\\].", "/// Method doc.", "/// After the fence.", "/// ```text\n"],
    );
}

#[test]
fn code_fences_are_closed_and_kept_verbatim() {
    let code = generated();
    assert_contains_all(&code, &["/// ```text\n/// let v = a[0];\n/// ```\n///\n/// After the fence.\n"]);
}
