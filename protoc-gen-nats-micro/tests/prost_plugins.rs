//! The protoc path exactly as the README gives it: the real protoc with the
//! real `protoc-gen-prost` 0.5 (and `protoc-gen-prost-serde` 0.4 for
//! `json: true`) beside our plugin binary, their files included the way the
//! README shows, compiled in a scratch crate against the runtime.
//!
//! `scripts/setup` installs both prost plugins into `.tools/bin`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{CRATE_DIR, TempDir, project_root, protoc_path};

const PLUGIN: &str = env!("CARGO_BIN_EXE_protoc-gen-nats-micro");

/// The repository root.
fn repo() -> PathBuf {
    Path::new(CRATE_DIR).join("..")
}

/// A prost plugin from `.tools/bin` (installed by `scripts/setup`).
fn prost_tool(name: &str) -> PathBuf {
    let path = repo().join(".tools/bin").join(name);
    assert!(path.exists(), "{} is missing: run `bash scripts/setup` (it installs {name})", path.display());
    path
}

/// Runs the README's protoc recipes (`examples/protoc/generate.sh`) in
/// `work/plain` and `work/json`, with the vendored protoc, prost's plugins
/// and ours on `PATH`.
fn generate(work: &Path) {
    for part in ["plain", "json"] {
        std::fs::create_dir_all(work.join(part)).expect("work directory");
        std::os::unix::fs::symlink(project_root(), work.join(part).join("proto")).expect("linking proto/");
    }
    prost_tool("protoc-gen-prost");
    prost_tool("protoc-gen-prost-serde");
    let protoc_dir = protoc_path().parent().expect("protoc's directory").to_owned();
    let ours = Path::new(PLUGIN).parent().expect("our binary's directory").to_owned();
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let path =
        std::env::join_paths([protoc_dir, repo().join(".tools/bin"), ours].into_iter().chain(std::env::split_paths(&inherited)))
            .expect("PATH");
    let output = Command::new("bash")
        .arg(repo().join("examples/protoc/generate.sh"))
        .arg(work)
        .env("PATH", path)
        .output()
        .expect("running examples/protoc/generate.sh");
    assert!(output.status.success(), "the README's protoc recipe failed:\n{}", String::from_utf8_lossy(&output.stderr));
}

/// The scratch crate's `lib.rs`: the two generated trees as modules, and a
/// use of each generated client so that the types are checked, not only
/// parsed.
const LIB_RS: &str = r#"
#![deny(warnings)]
#[path = "work/plain/protos.rs"]
pub mod plain;
#[path = "work/json/protos.rs"]
pub mod json;

/// Clients of every generated service, on one connection.
pub fn clients(nats: async_nats::Client) {
    let _ = plain::order::v1::order_service_nats::OrderServiceClient::new(nats.clone());
    let _ = plain::product::v1::product_service_nats::ProductServiceClient::new(nats.clone());
    let _ = json::jsondemo::v1::json_service_nats::JsonServiceClient::new(nats);
}
"#;

/// `work/plain/protos.rs`, as the README has it: one module per package
/// including prost's file only (ours is included from it through protoc's
/// `module` insertion point).
const PLAIN_RS: &str = r#"
// snippet: include
pub mod order { pub mod v1 { include!("gen/order/v1/order.v1.rs"); } }
pub mod product { pub mod v1 { include!("gen/product/v1/product.v1.rs"); } }
// end snippet
"#;

/// `work/json/protos.rs`: prost's file includes prost-serde's and ours.
const JSON_RS: &str = r#"
pub mod jsondemo { pub mod v1 { include!("gen/jsondemo/v1/jsondemo.v1.rs"); } }
"#;

fn scratch_manifest() -> String {
    let runtime = repo().join("runtime").canonicalize().expect("runtime crate");
    let runtime = runtime.to_string_lossy().replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        r#"[package]
name = "prost-recipe"
version = "0.0.0"
edition = "2024"
publish = false

[lib]
path = "lib.rs"

[dependencies]
nats-micro-runtime = {{ path = "{runtime}" }}
async-nats = "0.51"
prost = "0.14"
prost-types = "0.14"
serde = "1"
pbjson = "0.9"
pbjson-types = "0.9"

[workspace]
"#
    )
}

#[test]
fn protoc_gen_prost_layout_and_readme_recipe_compile() {
    let dir = TempDir::new("prost-recipe");
    let work = dir.path().join("work");
    generate(&work);
    for file in [
        "plain/gen/order/v1/order.v1.rs",
        "plain/gen/order/v1/order.v1.nats_micro.rs",
        "plain/gen/product/v1/product.v1.nats_micro.rs",
        "json/gen/jsondemo/v1/jsondemo.v1.serde.rs",
        "json/gen/jsondemo/v1/jsondemo.v1.nats_micro.rs",
    ] {
        assert!(work.join(file).is_file(), "{file} missing: our files must sit beside protoc-gen-prost's");
    }
    let prost_file = std::fs::read_to_string(work.join("plain/gen/order/v1/order.v1.rs")).expect("prost's file");
    assert!(prost_file.contains(r#"include!("order.v1.nats_micro.rs");"#), "no include at the insertion point:\n{prost_file}");

    std::fs::write(dir.path().join("Cargo.toml"), scratch_manifest()).expect("manifest");
    std::fs::write(dir.path().join("lib.rs"), LIB_RS).expect("lib.rs");
    std::fs::write(work.join("plain/protos.rs"), PLAIN_RS).expect("plain/protos.rs");
    std::fs::write(work.join("json/protos.rs"), JSON_RS).expect("json/protos.rs");
    // The workspace's lock file pins the same versions the workspace built,
    // so the scratch crate builds offline from what cargo already has.
    std::fs::copy(repo().join("Cargo.lock"), dir.path().join("Cargo.lock")).expect("Cargo.lock");
    let output = Command::new(env!("CARGO"))
        .args(["build", "--offline", "--quiet", "--manifest-path"])
        .arg(dir.path().join("Cargo.toml"))
        // A target directory of its own (kept between runs): the outer
        // `cargo test` holds the workspace's.
        .env("CARGO_TARGET_DIR", repo().join("target/prost-recipe"))
        .output()
        .expect("running cargo");
    assert!(output.status.success(), "the README's protoc recipe does not compile:\n{}", String::from_utf8_lossy(&output.stderr));
}
