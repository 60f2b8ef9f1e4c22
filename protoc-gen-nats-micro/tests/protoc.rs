//! The real plugin binary driven by the real protoc (vendored).

mod common;

use std::process::Command;

use common::{
    PROJECT_FILES, SCRATCH_PROTO, assert_contains_all, corpus_files, corpus_includes, generate, output_files, project_includes,
    run_protoc, scratch_dir, service_with_options,
};

const PLUGIN: &str = env!("CARGO_BIN_EXE_protoc-gen-nats-micro");

#[test]
fn corpus_generates_through_protoc() {
    let run = run_protoc(&corpus_includes(), &corpus_files(), None);
    assert!(run.success, "protoc failed:\n{}", run.stderr);
    for package in ["demo.v1", "example.v1", "kvstore_demo.v1", "order.v1", "order.v2", "product.v1", "streaming.v1", "user.v1"] {
        let name = format!("{package}.nats_micro.rs");
        assert!(run.files.contains_key(&name), "{name} missing from {:?}", run.files.keys());
    }
    // Files without services (common/...) produce nothing.
    assert_eq!(run.files.len(), 8, "{:?}", run.files.keys());
    assert_contains_all(
        &run.stderr,
        &[
            "streaming.v1.StreamDemoService.CountUp: server-streaming RPC left out",
            "streaming.v1.StreamDemoService.Sum: client-streaming RPC left out",
            "streaming.v1.StreamDemoService.Chat: bidirectional-streaming RPC left out",
        ],
    );
    assert!(!run.stderr.contains("StreamDemoService.Ping"), "the unary Ping is generated:\n{}", run.stderr);
}

#[test]
fn protoc_output_equals_library_output() {
    for (includes, files) in [(corpus_includes(), corpus_files()), (project_includes(), PROJECT_FILES.map(String::from).to_vec())]
    {
        let run = run_protoc(&includes, &files, None);
        assert!(run.success, "protoc failed:\n{}", run.stderr);
        let library = output_files(&generate(&includes, &files, None));
        assert_eq!(run.files.keys().collect::<Vec<_>>(), library.keys().collect::<Vec<_>>());
        for (name, content) in &library {
            assert!(run.files[name] == *content, "{name}: protoc's output differs from the library's");
        }
    }
}

#[test]
fn unknown_parameter_fails_protoc() {
    let run = run_protoc(&project_includes(), &["order/v1/order.proto"], Some("colour=blue"));
    assert!(!run.success, "protoc must fail on an unknown parameter");
    assert_contains_all(&run.stderr, &["colour"]);
    assert!(run.files.is_empty(), "{:?}", run.files.keys());
}

#[test]
fn parameters_reach_the_plugin() {
    let run = run_protoc(&project_includes(), &["order/v1/order.proto"], Some("lang=rust,runtime_path=crate::rt"));
    assert!(run.success, "protoc failed:\n{}", run.stderr);
    let code = &run.files["order.v1.nats_micro.rs"];
    assert!(code.contains("use crate::rt as rt;") && !code.contains("nats_micro_runtime"), "runtime_path ignored");
}

#[test]
fn invalid_proto_fails_protoc_with_location() {
    let (_dir, includes) = scratch_dir(&service_with_options(r#"version: "1.0""#));
    let run = run_protoc(&includes, &[SCRATCH_PROTO], None);
    assert!(!run.success, "protoc must fail on an invalid option");
    assert_contains_all(&run.stderr, &[SCRATCH_PROTO, "bad.v1.BadService", "(natsmicro.service).version", "\"1.0\""]);
}

#[test]
fn version_flag() {
    let output = Command::new(PLUGIN).arg("--version").output().expect("run the plugin");
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("protoc-gen-nats-micro {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn stray_argument_is_refused() {
    let output = Command::new(PLUGIN).arg("order.proto").output().expect("run the plugin");
    assert_eq!(output.status.code(), Some(2));
    assert_contains_all(&String::from_utf8_lossy(&output.stderr), &["order.proto", "protoc"]);
}
