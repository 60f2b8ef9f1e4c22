//! The `build.rs` integration: prost messages plus our services in one file
//! per package, compiled by protox or by the `PROTOC` named in the environment.

mod common;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use common::{
    SCRATCH_PROTO, TempDir, assert_contains_all, corpus_includes, corpus_root, project_includes, project_root, protoc_path,
    read_dir_files, scratch_dir, service_with_options,
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
    let user = corpus_root().join("user/v1/service.proto");
    let (result, files) = compile(&env, None, |b| b, &[user], &corpus_includes());
    result.expect("compile_protos");
    assert!(files.keys().all(|name| !name.ends_with(".serde.rs")), "serde files must be folded in: {:?}", files.keys());
    assert_contains_all(
        &files["user.v1.rs"],
        &["pub mod user_service_nats", "rt::Json", "impl serde::Serialize for GetUserRequest"],
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
