//! Compiles every proto of the shared corpus and of the project through the
//! build.rs integration, so that `cargo test` proves the generated code builds.

use std::path::{Path, PathBuf};

fn protos_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|err| panic!("reading {}: {err}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "proto") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let proto = root.join("proto");
    let shared = root.join("../shared/corpus");
    let corpus = shared.join("anchor-examples");
    let googleapis = shared.join("googleapis");
    println!("cargo::rustc-check-cfg=cfg(shared_corpus)");

    // The shared corpus (written for the Go plugin), unchanged, when it is
    // beside the repository; a plain clone has none.
    println!("cargo:rerun-if-changed={}", shared.display());
    if corpus.is_dir() {
        std::fs::create_dir_all(out.join("corpus"))?;
        protoc_gen_nats_micro::build::configure()
            .out_dir(out.join("corpus"))
            .compile_protos(&protos_under(&corpus), &[&corpus, &googleapis, &proto])?;
        println!("cargo:rerun-if-changed={}", corpus.display());
        println!("cargo::rustc-cfg=shared_corpus");
    } else {
        println!("cargo::warning=skipped: no ../shared/corpus beside the repository; the corpus compile tests do not run");
    }

    // The project's own protos (examples, JSON service and edge cases).
    std::fs::create_dir_all(out.join("project"))?;
    let project: Vec<PathBuf> = ["order", "product", "jsondemo", "streams", "details", "trace", "edge", "chaos", "store"]
        .iter()
        .flat_map(|d| protos_under(&proto.join(d)))
        .collect();
    protoc_gen_nats_micro::build::configure().out_dir(out.join("project")).compile_protos(&project, &[&proto])?;
    println!("cargo:rerun-if-changed={}", proto.display());
    Ok(())
}
