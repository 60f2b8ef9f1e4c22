//! Generated Rust under the strictest settings we claim: every warning is
//! an error here, and `cargo clippy -p nats-micro-strict -- -D warnings`
//! must pass without a blanket allow. The module tree (one module per proto
//! package, in the groups `project`, `shapes` and, when `../shared/corpus`
//! is present, `corpus`) is written by `build.rs`.

#![deny(warnings)]

include!(concat!(env!("OUT_DIR"), "/modules.rs"));
