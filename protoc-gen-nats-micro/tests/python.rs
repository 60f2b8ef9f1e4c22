//! Python output (`lang=python`): golden snapshots for the corpus written for
//! the Go plugin and for the project's protos, and what must hold whatever
//! the snapshots say. That the output imports and passes `mypy --strict`, and
//! that it works on the wire, is checked by the pytest suite (`tests/python`)
//! and the `py_interop` tests of `nats-micro-tests`.
//!
//! Regenerate the snapshots after an intended change with
//! `UPDATE_GOLDEN=1 cargo test -p protoc-gen-nats-micro --test python`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{
    CRATE_DIR, PROJECT_FILES, assert_contains_all, check_golden_tree, corpus_files, corpus_includes, generate, output_files,
    project_includes, run_protoc, without_runtime,
};
use protoc_gen_nats_micro::python::{RUNTIME, RUNTIME_FILE};

const HINT: &str = "UPDATE_GOLDEN=1 cargo test -p protoc-gen-nats-micro --test python";
const PARAM: Option<&str> = Some("lang=python");

fn golden(set: &str) -> std::path::PathBuf {
    Path::new(CRATE_DIR).join("tests/golden/python").join(set)
}

fn project_output() -> BTreeMap<String, String> {
    output_files(&generate(&project_includes(), &PROJECT_FILES, PARAM))
}

#[test]
fn corpus_matches_golden() {
    let actual = without_runtime(output_files(&generate(&corpus_includes(), &corpus_files(), PARAM)), RUNTIME_FILE, RUNTIME);
    assert!(actual.contains_key("order/v2/service_nats_pb2.py"), "{:?}", actual.keys());
    check_golden_tree(&golden("corpus"), &actual, HINT);
}

#[test]
fn project_matches_golden() {
    check_golden_tree(&golden("project"), &without_runtime(project_output(), RUNTIME_FILE, RUNTIME), HINT);
}

#[test]
fn one_module_per_proto_with_services_and_the_runtime_once() {
    let files = project_output();
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["edge/nested/deep/v1/edge_nats_pb2.py", RUNTIME_FILE, "order/v1/order_nats_pb2.py", "product/v1/product_nats_pb2.py"]
    );
    assert_eq!(files[RUNTIME_FILE], RUNTIME, "the runtime is the embedded source file, unchanged");
    // A proto without services gives nothing, not even the runtime.
    let none = generate(&project_includes(), &["natsmicro/options.proto"], PARAM);
    assert!(output_files(&none).is_empty());
}

#[test]
fn order_module_has_the_go_plugin_error_api_and_the_exception_hierarchy() {
    let order = &project_output()["order/v1/order_nats_pb2.py"];
    assert_contains_all(
        order,
        &[
            "from order.v1 import order_pb2\n",
            "import nats_micro_runtime\n",
            "ERROR_CODE_NOT_FOUND = \"NOT_FOUND\"\n",
            "ERROR_CODE_ORDER_EXPIRED = \"ORDER_EXPIRED\"\n",
            "class OrderServiceError(nats_micro_runtime.ServiceError):",
            "class OrderServiceNotFoundError(OrderServiceError, nats_micro_runtime.NotFoundError):",
            "class OrderServiceOrderExpiredError(OrderServiceError, nats_micro_runtime.CodedServiceError):",
            "def new_order_service_order_expired_error(method: str, message: str, data: bytes = b\"\") -> OrderServiceOrderExpiredError:",
            "def new_order_service_not_found_error(",
            "def is_order_service_order_expired(err: BaseException | None) -> bool:",
            "def is_order_service_not_found(",
            "class OrderServiceHandler(Protocol):",
            "async def register_order_service(",
            "class OrderServiceClient:",
            "async def create_order(",
            "subject_prefix=\"api.v1\",",
            "timeout=0.75,",
        ],
    );
    // Codes: built-ins first, then the canonical extras, then the custom codes.
    let position = |needle: &str| order.find(needle).unwrap_or_else(|| panic!("{needle} missing"));
    assert!(position("ERROR_CODE_UNAVAILABLE =") < position("ERROR_CODE_CANCELLED ="));
    assert!(position("ERROR_CODE_DATA_LOSS =") < position("ERROR_CODE_ORDER_EXPIRED ="));
}

#[test]
fn edge_names_stay_valid_python_and_strings_stay_escaped() {
    let edge = &project_output()["edge/nested/deep/v1/edge_nats_pb2.py"];
    assert_contains_all(
        edge,
        &[
            // Keywords and soft keywords as method names.
            "async def match_(self, request: empty_pb2.Empty,",
            "async def self_(self, request: wrappers_pb2.StringValue,",
            "async def async_(self, request: edge_pb2.Outer.Inner,",
            // `TypeError` would shadow the built-in.
            "class TypeError_(nats_micro_runtime.ServiceError):",
            "class TypeClient:",
            "class TypeClientClient:",
            "class TypeHttp2FailError(TypeError_, nats_micro_runtime.CodedServiceError):",
            "def is_type_http2_fail(",
            // Option strings with quotes, backslashes and line breaks.
            r#"subject_prefix="edge.\"quoted\".type","#,
            r#"description="says \"hi\" \\ and {braces}","#,
            r#"metadata={"quote\"key": "line\nbreak"},"#,
            // Streaming left out, with a note; deprecation warns.
            "Streaming RPCs are not generated yet and are left out: ``Type.Watch`` (server-streaming).",
            "warnings.warn(\"edge.nested.deep.v1.TypeClient.Get is deprecated\", DeprecationWarning, stacklevel=2)",
            "warnings.warn(\"edge.nested.deep.v1.LegacyService is deprecated\", DeprecationWarning, stacklevel=2)",
        ],
    );
    assert!(!edge.contains("Skipped"), "skipped RPCs are left out");
    // A canonical code in error_codes is the canonical code, not a second one.
    assert_eq!(edge.matches("ERROR_CODE_DEADLINE_EXCEEDED =").count(), 1);
}

#[test]
fn protoc_runs_the_plugin_with_lang_python() {
    let run = run_protoc(&project_includes(), &["order/v1/order.proto"], Some("lang=python"));
    assert!(run.success, "protoc failed: {}", run.stderr);
    assert_eq!(run.files.get(RUNTIME_FILE).map(String::as_str), Some(RUNTIME), "runtime at the output root");
}
