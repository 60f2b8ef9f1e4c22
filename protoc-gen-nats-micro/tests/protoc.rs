//! The real plugin binary driven by the real protoc (vendored).

mod common;

use std::process::Command;

use common::{
    PROJECT_FILES, SCRATCH_PROTO, assert_contains_all, corpus_files_if_present, corpus_includes, generate, output_files,
    project_includes, run_protoc, scratch_dir, service_with_options,
};

const PLUGIN: &str = env!("CARGO_BIN_EXE_protoc-gen-nats-micro");

#[test]
fn corpus_generates_through_protoc() {
    let Some(corpus) = corpus_files_if_present() else { return };
    let run = run_protoc(&corpus_includes(), &corpus, None);
    assert!(run.success, "protoc failed:\n{}", run.stderr);
    for package in ["demo.v1", "example.v1", "kvstore_demo.v1", "order.v1", "order.v2", "product.v1", "streaming.v1", "user.v1"] {
        let name = format!("{package}.nats_micro.rs");
        assert!(run.files.contains_key(&name), "{name} missing from {:?}", run.files.keys());
    }
    // Files without services (common/...) produce nothing.
    assert_eq!(run.files.len(), 8, "{:?}", run.files.keys());
    assert!(!run.stderr.contains("StreamDemoService"), "every stream is generated in every language:\n{}", run.stderr);
}

#[test]
fn protoc_output_equals_library_output() {
    let mut sets = vec![(project_includes(), PROJECT_FILES.map(String::from).to_vec())];
    if let Some(corpus) = corpus_files_if_present() {
        sets.push((corpus_includes(), corpus));
    }
    for (includes, files) in sets {
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

/// A mutated corpus request (found by `tests/fuzz.rs`) on which
/// prost-reflect 0.16 panics while decoding the descriptors.
const PANICKING_REQUEST: &[u8] = include_bytes!("fixtures/prost-reflect-panic.request.bin");

/// The panic inside the descriptor reader is guarded: a clear decode error,
/// and protoc's stderr never shows `thread 'main' panicked`.
#[test]
fn descriptor_reader_panic_is_a_clean_error() {
    let output = protoc_gen_nats_micro::generate(PANICKING_REQUEST);
    let error = output.response.error.as_deref().unwrap_or_default();
    assert!(error.starts_with("reading the proto files: malformed descriptors"), "{error}");
    let mut child = Command::new(PLUGIN)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the plugin");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), PANICKING_REQUEST).expect("write the request");
    let result = child.wait_with_output().expect("plugin output");
    assert!(result.status.success(), "the plugin reports errors in the response");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    let response =
        <prost_types::compiler::CodeGeneratorResponse as prost::Message>::decode(result.stdout.as_slice()).expect("a response");
    assert!(response.error().contains("malformed descriptors"), "{:?}", response.error);
}

#[test]
fn help_lists_every_parameter_and_flag() {
    let output = Command::new(PLUGIN).arg("--help").output().expect("run the plugin");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert_contains_all(
        &text,
        &["lang=", "language=", "extern_path=", "runtime_path=", "--options-proto", "--version", "--help"],
    );
}

#[test]
fn unknown_flag_exits_2_with_a_hint() {
    let output = Command::new(PLUGIN).arg("--frobnicate").output().expect("run the plugin");
    assert_eq!(output.status.code(), Some(2));
    assert_contains_all(&String::from_utf8_lossy(&output.stderr), &["--frobnicate", "--help"]);
}

/// `--options-proto DIR` writes the shipped options.proto where protoc
/// users put it on the include path; protoc then compiles a service with it.
#[test]
fn options_proto_flag_writes_a_usable_file() {
    let dir = common::TempDir::new("options-proto");
    let output = Command::new(PLUGIN).arg("--options-proto").arg(dir.path()).output().expect("run the plugin");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let written = std::fs::read_to_string(dir.path().join("natsmicro/options.proto")).expect("written");
    assert_eq!(written, protoc_gen_nats_micro::OPTIONS_PROTO);
    dir.write(SCRATCH_PROTO, &common::scratch_proto(&service_with_options(r#"version: "1.2.3""#)));
    let run = run_protoc(&[dir.path().to_owned()], &[SCRATCH_PROTO], None);
    assert!(run.success, "protoc failed:\n{}", run.stderr);
    assert!(run.files.contains_key("bad.v1.nats_micro.rs"), "{:?}", run.files.keys());
}
