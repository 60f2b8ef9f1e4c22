//! The README's buf recipe, verbatim: `buf generate` with the fixture's
//! `buf.yaml` and `buf.gen.yaml` (the files the README shows), the real buf
//! CLI (npm `@bufbuild/buf`), protoc-gen-prost and our binary on `PATH`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{CRATE_DIR, TempDir, project_root};

fn repo() -> PathBuf {
    Path::new(CRATE_DIR).join("..")
}

fn copy_proto(from_root: &Path, to_root: &Path, name: &str) {
    let to = to_root.join(name);
    std::fs::create_dir_all(to.parent().expect("in a directory")).expect("proto directory");
    std::fs::copy(from_root.join(name), to).expect("copying a proto");
}

#[test]
fn buf_generate_with_the_readme_config_puts_our_files_beside_prosts() {
    let buf = repo().join("node_modules/.bin/buf");
    assert!(buf.exists(), "{} is missing: run `bash scripts/setup`", buf.display());
    let prost = repo().join(".tools/bin");
    assert!(prost.join("protoc-gen-prost").exists(), "protoc-gen-prost is missing: run `bash scripts/setup`");

    let dir = TempDir::new("buf");
    let fixture = Path::new(CRATE_DIR).join("tests/fixtures/buf");
    for file in ["buf.yaml", "buf.gen.yaml"] {
        std::fs::copy(fixture.join(file), dir.path().join(file)).expect("buf config");
    }
    for proto in ["order/v1/order.proto", "natsmicro/options.proto"] {
        copy_proto(&project_root(), &dir.path().join("proto"), proto);
    }
    let ours = Path::new(env!("CARGO_BIN_EXE_protoc-gen-nats-micro")).parent().expect("bin dir").to_owned();
    let path = std::env::join_paths(
        [ours, prost].into_iter().chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .expect("PATH");
    let output = Command::new(&buf)
        .args(["generate", "--path", "proto/order"])
        .current_dir(dir.path())
        .env("PATH", path)
        // No network: buf must not try to reach its registry or send telemetry.
        .env("BUF_CACHE_DIR", dir.path().join(".cache"))
        .output()
        .expect("running buf");
    assert!(output.status.success(), "buf generate failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let generated = dir.path().join("gen/order/v1");
    assert!(generated.join("order.v1.nats_micro.rs").is_file(), "our file must sit beside prost's in gen/order/v1");
    let prost_file = std::fs::read_to_string(generated.join("order.v1.rs")).expect("prost's file");
    assert!(prost_file.contains(r#"include!("order.v1.nats_micro.rs");"#), "prost's file must include ours:\n{prost_file}");
}
