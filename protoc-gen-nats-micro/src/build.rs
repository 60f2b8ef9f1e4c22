//! `build.rs` integration, in the style of tonic-build: one call compiles
//! protos to prost messages plus our services, into `OUT_DIR`.
//!
//! ```no_run
//! // build.rs
//! fn main() -> std::io::Result<()> {
//!     protoc_gen_nats_micro::build::configure()
//!         .compile_protos(&["proto/order/v1/order.proto"], &["proto"])
//! }
//! ```
//!
//! ```ignore
//! // src/lib.rs: one include per proto package; messages and services together.
//! pub mod order { pub mod v1 { include!(concat!(env!("OUT_DIR"), "/order.v1.rs")); } }
//! ```
//!
//! Protos are compiled by `protox` (pure Rust, no protoc needed), or by the
//! `protoc` named in the `PROTOC` environment variable when it is set.
//! Services with `json: true` need serde impls for their messages: the
//! builder then also runs `pbjson-build` and maps `google.protobuf` to
//! `::pbjson_types` (the crate needs `serde`, `pbjson` and `pbjson-types`).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;

use crate::model;
use crate::rust::{self, RustOptions};

/// Starts a builder with defaults.
pub fn configure() -> Builder {
    Builder::default()
}

/// Compiles `protos` (found under `includes`) with defaults.
pub fn compile_protos(protos: &[impl AsRef<Path>], includes: &[impl AsRef<Path>]) -> io::Result<()> {
    configure().compile_protos(protos, includes)
}

/// Configures code generation from `build.rs`.
#[derive(Debug, Default)]
pub struct Builder {
    out_dir: Option<PathBuf>,
    extern_paths: Vec<(String, String)>,
    runtime_path: Option<String>,
    json: Option<bool>,
    emit_rerun_if_changed: Option<bool>,
}

impl Builder {
    /// Writes into `dir` instead of `OUT_DIR`.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Maps a proto package to a Rust path outside the generated code
    /// (passed to prost-build as well).
    pub fn extern_path(mut self, proto_path: impl Into<String>, rust_path: impl Into<String>) -> Self {
        self.extern_paths.push((proto_path.into(), rust_path.into()));
        self
    }

    /// Where generated code finds the runtime (default
    /// `::nats_micro_runtime::codegen`), for crates that re-export it.
    pub fn runtime_path(mut self, path: impl Into<String>) -> Self {
        self.runtime_path = Some(path.into());
        self
    }

    /// Forces serde (proto3 JSON) impls on or off. By default they are
    /// generated when some service sets `json: true`.
    pub fn json(mut self, enabled: bool) -> Self {
        self.json = Some(enabled);
        self
    }

    /// Prints `cargo:rerun-if-changed` for every proto (default: when run by cargo).
    pub fn emit_rerun_if_changed(mut self, enabled: bool) -> Self {
        self.emit_rerun_if_changed = Some(enabled);
        self
    }

    /// Compiles with a default `prost_build::Config`.
    pub fn compile_protos(self, protos: &[impl AsRef<Path>], includes: &[impl AsRef<Path>]) -> io::Result<()> {
        self.compile_with_config(prost_build::Config::new(), protos, includes)
    }

    /// Compiles with a caller's `prost_build::Config` (attributes, boxing, ...).
    pub fn compile_with_config(
        self,
        mut config: prost_build::Config,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> io::Result<()> {
        let out_dir = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => std::env::var_os("OUT_DIR")
                .map(PathBuf::from)
                .ok_or_else(|| io::Error::other("OUT_DIR is not set: call from build.rs or set out_dir"))?,
        };
        let rerun = self.emit_rerun_if_changed.unwrap_or_else(|| std::env::var_os("CARGO").is_some());
        if rerun {
            for proto in protos {
                println!("cargo:rerun-if-changed={}", proto.as_ref().display());
            }
            println!("cargo:rerun-if-env-changed=PROTOC");
        }

        let (descriptor_bytes, files_to_generate) = descriptor_set(protos, includes)?;
        let pool = crate::decode_pool(&descriptor_bytes)?;
        let (model, warnings) = model::build(&pool, &files_to_generate).map_err(crate::Error::from)?;
        for warning in warnings {
            println!("cargo:warning=protoc-gen-nats-micro: {warning}");
        }

        let json = self.json.unwrap_or_else(|| model.files.iter().flat_map(|f| &f.services).any(|s| s.json));
        let mut options = RustOptions::default();
        if json {
            options.extern_path(".google.protobuf", "::pbjson_types").map_err(io::Error::other)?;
            // prost maps google.protobuf to prost_types itself unless told it compiles them.
            config.compile_well_known_types().extern_path(".google.protobuf", "::pbjson_types");
        }
        for (proto, rust_path) in &self.extern_paths {
            options.extern_path(proto, rust_path).map_err(io::Error::other)?;
            config.extern_path(proto, rust_path);
        }
        if let Some(path) = &self.runtime_path {
            options.runtime_path(path).map_err(io::Error::other)?;
        }
        let services: HashMap<String, String> = model
            .files
            .iter()
            .flat_map(|f| &f.services)
            .map(|service| (service.full_name.clone(), rust::generate_service(service, &options)))
            .collect();

        let fds = prost_types::FileDescriptorSet::decode(descriptor_bytes.as_slice()).map_err(io::Error::other)?;
        let mut packages: Vec<String> = fds
            .file
            .iter()
            .map(|f| f.package().to_owned())
            .filter(|p| p != "google.protobuf" && !p.starts_with("google.protobuf."))
            .collect();
        packages.sort();
        packages.dedup();
        config.out_dir(&out_dir);
        config.service_generator(Box::new(AppendServices { services }));
        config.compile_fds(fds)?;

        if json {
            pbjson_build::Builder::new()
                .register_descriptors(&descriptor_bytes)?
                .out_dir(&out_dir)
                .build(&packages.iter().map(|p| format!(".{p}")).collect::<Vec<_>>())?;
            // One include per package: fold `pkg.serde.rs` into `pkg.rs`.
            for package in packages {
                let stem = if package.is_empty() { "_".to_owned() } else { package };
                let serde_file = out_dir.join(format!("{stem}.serde.rs"));
                let messages_file = out_dir.join(format!("{stem}.rs"));
                if let (Ok(serde_code), true) = (std::fs::read_to_string(&serde_file), messages_file.exists()) {
                    let mut code = std::fs::read_to_string(&messages_file)?;
                    code.push_str("\n// Proto3 JSON (serde) impls, generated by pbjson-build.\n");
                    code.push_str(&serde_code);
                    std::fs::write(&messages_file, code)?;
                    std::fs::remove_file(&serde_file)?;
                }
            }
        }
        Ok(())
    }
}

/// Appends each generated service module into prost's file for its package.
struct AppendServices {
    services: HashMap<String, String>,
}

impl prost_build::ServiceGenerator for AppendServices {
    fn generate(&mut self, service: prost_build::Service, buf: &mut String) {
        let full_name = if service.package.is_empty() {
            service.proto_name.clone()
        } else {
            format!("{}.{}", service.package, service.proto_name)
        };
        if let Some(code) = self.services.get(&full_name) {
            buf.push('\n');
            buf.push_str(code);
        }
    }
}

/// Compiles the protos into an encoded `FileDescriptorSet` (with imports,
/// source info and every option) and names the files to generate.
fn descriptor_set(protos: &[impl AsRef<Path>], includes: &[impl AsRef<Path>]) -> io::Result<(Vec<u8>, Vec<String>)> {
    let includes: Vec<&Path> = includes.iter().map(AsRef::as_ref).collect();
    if let Some(protoc) = std::env::var_os("PROTOC") {
        let out = tempfile_path();
        let mut command = Command::new(&protoc);
        command.arg("--include_imports").arg("--include_source_info").arg(format!("--descriptor_set_out={}", out.display()));
        for include in &includes {
            command.arg(format!("-I{}", include.display()));
        }
        for proto in protos {
            command.arg(proto.as_ref());
        }
        let result = command
            .output()
            .map_err(|err| io::Error::other(format!("running PROTOC={}: {err}", Path::new(&protoc).display())))?;
        if !result.status.success() {
            return Err(io::Error::other(format!("protoc failed:\n{}", String::from_utf8_lossy(&result.stderr))));
        }
        let bytes = std::fs::read(&out)?;
        let _ = std::fs::remove_file(&out);
        let names = protos.iter().map(|p| proto_name(p.as_ref(), &includes)).collect();
        return Ok((bytes, names));
    }
    let mut compiler = protox::Compiler::new(includes.iter().copied()).map_err(io::Error::other)?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(protos.iter().map(AsRef::as_ref)).map_err(|err| io::Error::other(format!("{err:?}")))?;
    let names = compiler.files().filter(|f| !f.is_import()).map(|f| f.name().to_owned()).collect();
    Ok((compiler.encode_file_descriptor_set(), names))
}

/// A proto's import name: its path relative to the include it is under.
fn proto_name(proto: &Path, includes: &[&Path]) -> String {
    let relative = includes
        .iter()
        .filter_map(|include| proto.strip_prefix(include).ok())
        .min_by_key(|rest| rest.components().count())
        .unwrap_or(proto);
    relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// A fresh path in the temp directory for protoc's descriptor set.
fn tempfile_path() -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    std::env::temp_dir().join(format!("nats-micro-{}-{nanos}.fds", std::process::id()))
}
