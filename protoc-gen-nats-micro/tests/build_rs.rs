//! The `build.rs` integration: prost messages plus our services in one file
//! per package, compiled by protox or by the `PROTOC` named in the environment.

mod common;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use common::{
    SCRATCH_PROTO, TempDir, assert_contains_all, project_includes, project_root, protoc_path, read_dir_files, scratch_dir,
    service_with_options,
};
use protoc_gen_nats_micro::build::{self, Builder};

/// `PROTOC` is process-global and read by the builder. Every test here
/// holds this lock for its whole run (through [`Env`]), so a test changing
/// `PROTOC` never runs alongside another.
static ENV_LOCK: Mutex<()> = Mutex::new(());

/// Exclusive use of the environment for one test: starts with `PROTOC`
/// unset (so protox compiles), puts the original value back on drop.
struct Env {
    original: Option<OsString>,
    _lock: MutexGuard<'static, ()>,
}

impl Env {
    fn lock() -> Env {
        let lock = ENV_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let env = Env { original: std::env::var_os("PROTOC"), _lock: lock };
        env.set_protoc(None);
        env
    }

    /// Sets `PROTOC` (removes it for `None`).
    fn set_protoc(&self, value: Option<&OsStr>) {
        // SAFETY: `self` holds ENV_LOCK, and every test of this binary holds
        // it for its whole run: no other thread of ours reads the environment
        // meanwhile.
        unsafe {
            match value {
                Some(value) => std::env::set_var("PROTOC", value),
                None => std::env::remove_var("PROTOC"),
            }
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.set_protoc(self.original.clone().as_deref());
    }
}

fn order_proto() -> PathBuf {
    project_root().join("order/v1/order.proto")
}

/// Runs `compile_protos` on a builder (set up by `configure`) writing into
/// a fresh directory, with `PROTOC` set to `protoc` (protox when `None`).
/// Returns the result and the files written.
fn compile(
    env: &Env,
    protoc: Option<&Path>,
    configure: impl FnOnce(Builder) -> Builder,
    protos: &[PathBuf],
    includes: &[PathBuf],
) -> (io::Result<()>, BTreeMap<String, String>) {
    env.set_protoc(protoc.map(Path::as_os_str));
    let out = TempDir::new("build-rs");
    let builder = build::configure().out_dir(out.path()).emit_rerun_if_changed(false);
    let result = configure(builder).compile_protos(protos, includes);
    (result, read_dir_files(out.path()))
}

/// The files written for `order/v1/order.proto`; panics on failure.
fn compile_order(env: &Env, protoc: Option<&Path>, configure: impl FnOnce(Builder) -> Builder) -> BTreeMap<String, String> {
    let (result, files) = compile(env, protoc, configure, &[order_proto()], &project_includes());
    result.expect("compile_protos");
    files
}

#[test]
fn messages_and_services_in_one_file_with_protox_and_protoc() {
    let env = Env::lock();
    let with_protox = compile_order(&env, None, |b| b);
    let code = with_protox.get("order.v1.rs").unwrap_or_else(|| panic!("order.v1.rs missing: {:?}", with_protox.keys()));
    assert_contains_all(code, &["pub struct CreateOrderRequest", "pub mod order_service_nats", "pub trait OrderService"]);
    assert_eq!(code.matches("pub mod order_service_nats").count(), 1, "the service module is appended once");
    assert!(!code.contains("impl serde::Serialize"), "no serde impls unless a service asks for JSON");

    let with_protoc = compile_order(&env, Some(&protoc_path()), |b| b);
    assert!(with_protoc == with_protox, "PROTOC={} gives different output than protox", protoc_path().display());

    // The setting is really used: a missing PROTOC is an error naming it.
    let missing = Path::new("/nonexistent/protoc");
    let (result, _) = compile(&env, Some(missing), |b| b, &[order_proto()], &project_includes());
    let error = result.expect_err("a missing PROTOC must fail").to_string();
    assert_contains_all(&error, &["PROTOC", "/nonexistent/protoc"]);
}

#[test]
fn json_services_get_serde_impls_folded_in() {
    let env = Env::lock();
    let json = project_root().join("jsondemo/v1/jsondemo.proto");
    let (result, files) = compile(&env, None, |b| b, &[json], &[project_root()]);
    result.expect("compile_protos");
    assert!(files.keys().all(|name| !name.ends_with(".serde.rs")), "serde files must be folded in: {:?}", files.keys());
    assert_contains_all(
        &files["jsondemo.v1.rs"],
        &["pub mod json_service_nats", "rt::Json", "impl serde::Serialize for GetUserRequest"],
    );
}

#[test]
fn json_can_be_forced_on() {
    let env = Env::lock();
    let files = compile_order(&env, None, |b| b.json(true));
    assert_contains_all(&files["order.v1.rs"], &["impl serde::Serialize for CreateOrderRequest", "pub mod order_service_nats"]);
}

#[test]
fn invalid_option_is_an_error_naming_it() {
    let env = Env::lock();
    let (dir, includes) = scratch_dir(&service_with_options(r#"subject_prefix: "api.>""#));
    let (result, files) = compile(&env, None, |b| b, &[dir.path().join(SCRATCH_PROTO)], &includes);
    let error = result.expect_err("an invalid option must fail");
    assert_contains_all(&error.to_string(), &[SCRATCH_PROTO, "bad.v1.BadService", "(natsmicro.service).subject_prefix"]);
    assert!(files.is_empty(), "nothing is written on failure: {:?}", files.keys());
}

/// A user's protos import `natsmicro/options.proto` with nothing on their
/// include path: the integration provides it, with protox and with protoc.
#[test]
fn options_proto_is_provided_by_itself() {
    let env = Env::lock();
    let dir = TempDir::new("own-options");
    let proto = dir.write(SCRATCH_PROTO, &common::scratch_proto(&service_with_options(r#"version: "2.0.0""#)));
    for protoc in [None, Some(protoc_path())] {
        let (result, files) = compile(&env, protoc.as_deref(), |b| b, std::slice::from_ref(&proto), &[dir.path().to_owned()]);
        result.unwrap_or_else(|err| panic!("PROTOC={protoc:?}: {err}"));
        assert_contains_all(&files["bad.v1.rs"], &["pub mod bad_service_nats", "\"2.0.0\""]);
    }
}

/// A modern `google/protobuf/descriptor.proto` on the include path (with
/// extension declarations, as recent protobuf releases and the googleapis
/// bundle ship it) does not break the protox path: the bundled well-known
/// types are used ahead of the include path.
#[test]
fn modern_descriptor_proto_on_the_include_path() {
    let env = Env::lock();
    let dir = TempDir::new("modern-descriptor");
    dir.write("google/protobuf/descriptor.proto", MODERN_DESCRIPTOR_PROTO);
    let proto = dir.write(SCRATCH_PROTO, &common::scratch_proto(&service_with_options(r#"version: "3.0.0""#)));
    let (result, files) = compile(&env, None, |b| b, &[proto], &[dir.path().to_owned()]);
    result.unwrap_or_else(|err| panic!("{err}"));
    assert_contains_all(&files["bad.v1.rs"], &["pub mod bad_service_nats", "\"3.0.0\""]);
}

/// The shape of a recent `descriptor.proto`: options messages whose
/// extension ranges carry `declaration`s (syntax protox 0.10 cannot parse).
const MODERN_DESCRIPTOR_PROTO: &str = r#"syntax = "proto2";
package google.protobuf;
option go_package = "google.golang.org/protobuf/types/descriptorpb";
option cc_enable_arenas = true;

message FeatureSet {
  optional bool placeholder = 1;
  extensions 1000 to 9994 [
    declaration = { number: 1000, full_name: ".pb.cpp", type: ".pb.CppFeatures" },
    declaration = { number: 1001, full_name: ".pb.java", type: ".pb.JavaFeatures" },
    declaration = { number: 9990, full_name: ".pb.proto1", type: ".pb.Proto1Features" }
  ];
  extensions 9995 to 9999, 10000;
}

message ServiceOptions {
  optional FeatureSet features = 34;
  optional bool deprecated = 33 [default = false];
  extensions 1000 to max;
}

message MethodOptions {
  optional FeatureSet features = 35;
  optional bool deprecated = 33 [default = false];
  extensions 1000 to max [verification = UNVERIFIED];
}

message ExtensionRangeOptions {
  message Declaration {
    optional int32 number = 1;
    optional string full_name = 2;
    optional string type = 3;
    optional bool reserved = 5;
    optional bool repeated = 6;
  }
  repeated Declaration declaration = 2 [retention = RETENTION_SOURCE];
  enum VerificationState {
    DECLARATION = 0;
    UNVERIFIED = 1;
  }
  optional VerificationState verification = 3 [default = UNVERIFIED, retention = RETENTION_SOURCE];
  extensions 1000 to max;
}
"#;

/// `rerun-if-changed` covers every proto read, imports included, but not
/// the bundled well-known types or options.proto.
#[test]
fn files_read_include_imports() {
    let env = Env::lock();
    let dir = TempDir::new("rerun");
    let imported = dir.write("dep/v1/dep.proto", "syntax = \"proto3\";\npackage dep.v1;\nmessage Dep {}\n");
    let main = dir.write(
        "app/v1/app.proto",
        "syntax = \"proto3\";\npackage app.v1;\nimport \"dep/v1/dep.proto\";\nimport \"natsmicro/options.proto\";\n\
         import \"google/protobuf/empty.proto\";\n\
         service App { rpc Get(dep.v1.Dep) returns (google.protobuf.Empty); }\n",
    );
    for protoc in [None, Some(protoc_path())] {
        env.set_protoc(protoc.as_deref().map(Path::as_os_str));
        let mut read = build::proto_files_read(std::slice::from_ref(&main), &[dir.path()]).expect("compiles");
        read.sort();
        let mut expected = vec![imported.clone(), main.clone()];
        expected.sort();
        assert_eq!(read, expected, "PROTOC={protoc:?}");
    }
}

/// Errors read as one line per problem, `file: element: option: message`.
#[test]
fn errors_read_one_line_per_problem() {
    let env = Env::lock();
    let (dir, includes) = scratch_dir(&service_with_options(r#"name: "bad name!" version: "1.0""#));
    let (result, _) = compile(&env, None, |b| b, &[dir.path().join(SCRATCH_PROTO)], &includes);
    let error = result.expect_err("invalid options must fail").to_string();
    let lines: Vec<&str> = error.lines().collect();
    assert_eq!(lines.len(), 2, "{error}");
    assert!(lines[0].starts_with("bad/v1/bad.proto: bad.v1.BadService: option (natsmicro.service).name: "), "{error}");
    assert!(lines[1].starts_with("bad/v1/bad.proto: bad.v1.BadService: option (natsmicro.service).version: "), "{error}");
}

/// Names that used to panic the generator through build.rs (services `_`,
/// `__`, `_1`) are an error naming the element, never a panic.
#[test]
fn hostile_service_names_are_errors_not_panics() {
    let env = Env::lock();
    for name in ["_", "__", "_1"] {
        let (dir, includes) = scratch_dir(&format!("service {name} {{ rpc Get(Req) returns (Resp); }}"));
        let (result, _) = compile(&env, None, |b| b, &[dir.path().join(SCRATCH_PROTO)], &includes);
        let error = result.expect_err("no letter in the name").to_string();
        assert_contains_all(&error, &[&format!("bad/v1/bad.proto: bad.v1.{name}: name: "), "has no letter"]);
    }
}

/// One Rust path: build.rs appends exactly the modules the protoc path
/// generates, including the renaming of clashing module names
/// (`type_nats`, `type_nats2` in the edge package, compiled by the `tests`
/// crate's build.rs, so it is also proven to build).
#[test]
fn build_rs_and_protoc_paths_give_identical_modules() {
    let env = Env::lock();
    let files = ["edge/nested/deep/v1/edge.proto", "edge/nested/deep/v1/clash.proto"];
    let protos: Vec<PathBuf> = files.iter().map(|f| project_root().join(f)).collect();
    let (result, built) = compile(&env, None, |b| b, &protos, &project_includes());
    result.expect("compile_protos");
    let plugin = common::output_files(&common::generate(&project_includes(), &files, None));
    let services = &plugin["edge.nested.deep.v1.nats_micro.rs"];
    assert_contains_all(services, &["pub mod type_nats {", "pub mod type_nats2 {"]);
    let package = &built["edge.nested.deep.v1.rs"];
    assert!(package.ends_with(services.as_str()), "build.rs must append the protoc path's modules verbatim");
    assert_eq!(package.matches("pub mod type_nats2 {").count(), 1);
}
