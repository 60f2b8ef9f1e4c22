//! Generated TypeScript or Python for interop tests: messages from a
//! language plugin run by protoc, services from our generator in-process (so
//! a stale plugin binary can never be what is tested).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::python;

/// Files the project's protos import, compiled along so the messages'
/// imports resolve.
const IMPORTS: [&str; 1] = ["natsmicro/options.proto"];

/// Files the corpus's protos import besides [`IMPORTS`] (from its
/// `googleapis/`).
const CORPUS_IMPORTS: [&str; 2] = ["google/api/annotations.proto", "google/api/http.proto"];

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Writes into `out` the messages of `protos` (by `message_args`, e.g.
/// `--python_out=DIR`) and our generated services for `lang` (`ts`, `python`).
/// Include roots: `proto/` and, when present, the shared corpus.
pub fn generate(out: &Path, protos: &[&str], lang: &str, message_args: &[String]) {
    std::fs::create_dir_all(out).expect("output directory");
    let descriptors = out.join("descriptors.binpb");
    let mut includes = vec![repo().join("proto")];
    let mut imports = IMPORTS.to_vec();
    if let Some(corpus) = crate::shared::corpus() {
        includes.extend([corpus.join("anchor-examples"), corpus.join("googleapis")]);
        imports.extend(CORPUS_IMPORTS);
    }
    let protoc = Command::new(python())
        .args(["-m", "grpc_tools.protoc", "--include_imports", "--include_source_info"])
        .args(includes.iter().map(|dir| format!("-I{}", dir.display())))
        .args(message_args)
        .arg(format!("--descriptor_set_out={}", descriptors.display()))
        .args(protos)
        .args(imports)
        .output()
        .expect("running grpc_tools.protoc (run scripts/setup)");
    assert!(protoc.status.success(), "protoc: {}", String::from_utf8_lossy(&protoc.stderr));

    let set = std::fs::read(&descriptors).expect("the descriptor set");
    let pool = prost_reflect::DescriptorPool::decode(set.as_slice()).expect("descriptors decode");
    let files: Vec<String> = protos.iter().map(|p| (*p).to_owned()).collect();
    let params = protoc_gen_nats_micro::params::Params::parse(&format!("lang={lang}")).expect("lang parameter");
    let (generated, _warnings) = protoc_gen_nats_micro::generate_from_pool(&pool, &files, &params).expect("generation");
    for (name, code) in generated {
        let path = out.join(name);
        std::fs::create_dir_all(path.parent().expect("in a directory")).expect("package directory");
        std::fs::write(&path, code).expect("writing generated code");
    }
}
