//! The protoc path exactly as the README gives it: the real protoc with the
//! real `protoc-gen-prost` 0.5 (and `protoc-gen-prost-serde` 0.4 for
//! `json: true`) beside our plugin binary, their files included the way the
//! README shows, compiled in a scratch crate against the runtime.
//!
//! `scripts/setup` installs both prost plugins into `.tools/bin`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{CRATE_DIR, TempDir, project_root, protoc_include, protoc_path};

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

/// Runs protoc on `protos` under `proto/` with `args`, into `out`.
fn protoc(out: &Path, args: &[String], protos: &[&str]) {
    std::fs::create_dir_all(out).expect("output directory");
    let output = Command::new(protoc_path())
        .arg(format!("-I{}", project_root().display()))
        .arg(format!("-I{}", protoc_include().display()))
        .args(args)
        .args(protos)
        .output()
        .expect("running protoc");
    assert!(output.status.success(), "protoc failed:\n{}", String::from_utf8_lossy(&output.stderr));
}

/// `--plugin=` arguments for prost, prost-serde and ours.
fn plugins() -> Vec<String> {
    vec![
        format!("--plugin=protoc-gen-prost={}", prost_tool("protoc-gen-prost").display()),
        format!("--plugin=protoc-gen-prost-serde={}", prost_tool("protoc-gen-prost-serde").display()),
        format!("--plugin=protoc-gen-nats-micro={PLUGIN}"),
    ]
}

/// The README's protoc recipes: binary services (`gen/plain`) and a
/// `json: true` service with proto3-JSON serde impls (`gen/json`). Our
/// files must land where protoc-gen-prost puts its own, by default.
fn generate(gen: &Path) {
    let plain = gen.join("plain");
    let mut args = plugins();
    args.extend([format!("--prost_out={}", plain.display()), format!("--nats-micro_out={}", plain.display())]);
    protoc(&plain, &args, &["order/v1/order.proto", "product/v1/product.proto"]);

    let json = gen.join("json");
    let wkt = "extern_path=.google.protobuf=::pbjson_types";
    let mut args = plugins();
    args.extend([
        format!("--prost_out={}", json.display()),
        format!("--prost_opt=compile_well_known_types,{wkt}"),
        format!("--prost-serde_out={}", json.display()),
        format!("--nats-micro_out={}", json.display()),
        format!("--nats-micro_opt={wkt}"),
    ]);
    protoc(&json, &args, &["jsondemo/v1/jsondemo.proto"]);
}

/// The scratch crate's `lib.rs`, as the README has it: one module per
/// package including prost's file only (ours and prost-serde's are included
/// from it through protoc's `module` insertion point), and a use of each
/// generated client so that the types are checked, not only parsed.
const LIB_RS: &str = r#"
#![deny(warnings)]
pub mod plain {
    pub mod order { pub mod v1 { include!("gen/plain/order/v1/order.v1.rs"); } }
    pub mod product { pub mod v1 { include!("gen/plain/product/v1/product.v1.rs"); } }
}
pub mod json {
    pub mod jsondemo { pub mod v1 { include!("gen/json/jsondemo/v1/jsondemo.v1.rs"); } }
}

/// Clients of every generated service, on one connection.
pub fn clients(nats: async_nats::Client) {
    let _ = plain::order::v1::order_service_nats::OrderServiceClient::new(nats.clone());
    let _ = plain::product::v1::product_service_nats::ProductServiceClient::new(nats.clone());
    let _ = json::jsondemo::v1::json_service_nats::JsonServiceClient::new(nats);
}
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
    let gen = dir.path().join("gen");
    generate(&gen);
    for file in [
        "plain/order/v1/order.v1.rs",
        "plain/order/v1/order.v1.nats_micro.rs",
        "plain/product/v1/product.v1.nats_micro.rs",
        "json/jsondemo/v1/jsondemo.v1.serde.rs",
        "json/jsondemo/v1/jsondemo.v1.nats_micro.rs",
    ] {
        assert!(gen.join(file).is_file(), "{file} missing: our files must sit beside protoc-gen-prost's");
    }
    let prost_file = std::fs::read_to_string(gen.join("plain/order/v1/order.v1.rs")).expect("prost's file");
    assert!(prost_file.contains(r#"include!("order.v1.nats_micro.rs");"#), "no include at the insertion point:\n{prost_file}");

    std::fs::write(dir.path().join("Cargo.toml"), scratch_manifest()).expect("manifest");
    std::fs::write(dir.path().join("lib.rs"), LIB_RS).expect("lib.rs");
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
    assert!(
        output.status.success(),
        "the README's protoc recipe does not compile:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
