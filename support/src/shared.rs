//! What the project's CI keeps beside the repository in `../shared/`: the
//! corpus of protos written for the Go plugin and the ADR-32 JSON schemas.
//! A plain clone has neither; tests that need them call these and skip,
//! saying so in one line, when they return `None`.

use std::path::PathBuf;

use crate::codegen::repo;

/// `../shared/corpus` (with `anchor-examples/` and `googleapis/`), if present.
pub fn corpus() -> Option<PathBuf> {
    let corpus = repo().join("../shared/corpus");
    corpus.join("anchor-examples").is_dir().then_some(corpus)
}

/// `../shared/schemas/micro/v1` (the ADR-32 response schemas), if present.
pub fn schemas() -> Option<PathBuf> {
    let schemas = repo().join("../shared/schemas/micro/v1");
    schemas.is_dir().then_some(schemas)
}

/// Prints the one line a test prints when it skips for want of `what`.
pub fn skip(test: &str, what: &str) {
    eprintln!("skipped: {test}: no ../shared/{what} beside the repository");
}
