//! TypeScript output (`lang=ts`): golden snapshots for the corpus and the
//! project's protos, and `tsc --strict` (plus the stricter flags of
//! `tsconfig.base.json`) over the generated code beside protoc-gen-es's
//! messages, both produced by the real protoc.
//!
//! Regenerate the snapshots after an intended change with
//! `UPDATE_GOLDEN=1 cargo test -p protoc-gen-nats-micro --test typescript`.
//! The type checks need the node packages (`bash scripts/setup`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use protoc_gen_nats_micro::typescript::{RUNTIME, RUNTIME_FILE};

use common::{
    CRATE_DIR, PROJECT_FILES, assert_contains_all, check_golden_tree, corpus_files, corpus_includes, generate, output_files,
    project_includes, protoc_include, protoc_path, read_tree, without_runtime,
};

const HINT: &str = "UPDATE_GOLDEN=1 cargo test -p protoc-gen-nats-micro --test typescript";
const PLUGIN: &str = env!("CARGO_BIN_EXE_protoc-gen-nats-micro");

fn repo_root() -> PathBuf {
    Path::new(CRATE_DIR).join("..").canonicalize().expect("repository root")
}

fn ts_output(includes: &[PathBuf], files: &[impl AsRef<str>]) -> BTreeMap<String, String> {
    output_files(&generate(includes, files, Some("lang=ts")))
}

fn project_output() -> BTreeMap<String, String> {
    ts_output(&project_includes(), &PROJECT_FILES)
}

#[test]
fn corpus_matches_golden() {
    let actual = without_runtime(ts_output(&corpus_includes(), &corpus_files()), RUNTIME_FILE, RUNTIME);
    assert!(actual.contains_key("order/v1/service_nats.pb.ts"), "{:?}", actual.keys());
    check_golden_tree(&Path::new(CRATE_DIR).join("tests/golden/ts/corpus"), &actual, HINT);
}

#[test]
fn project_matches_golden() {
    let actual = without_runtime(project_output(), RUNTIME_FILE, RUNTIME);
    check_golden_tree(&Path::new(CRATE_DIR).join("tests/golden/ts/project"), &actual, HINT);
}

#[test]
fn one_file_per_proto_file_and_the_runtime_once_at_the_root() {
    let files = project_output();
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "edge/nested/deep/v1/edge_nats.pb.ts",
            "nats_micro_runtime.ts",
            "order/v1/order_nats.pb.ts",
            "product/v1/product_nats.pb.ts",
        ]
    );
    let order = &files["order/v1/order_nats.pb.ts"];
    assert_contains_all(
        order,
        &["import * as runtime from \"../../nats_micro_runtime.js\";", "import * as pb from \"./order_pb.js\";"],
    );
    // Everything not specific to one service is in the runtime only.
    for shared in ["function codeFromWire", "class NatsMicroError", "function chain", "ERROR_CODE_HEADER ="] {
        assert!(files["nats_micro_runtime.ts"].contains(shared), "{shared}");
        assert!(files.iter().filter(|(name, _)| *name != "nats_micro_runtime.ts").all(|(_, c)| !c.contains(shared)), "{shared}");
    }
    // No services, no files: not even the runtime.
    let none = ts_output(&project_includes(), &["natsmicro/options.proto"]);
    assert!(none.is_empty(), "{:?}", none.keys());
}

#[test]
fn error_api_is_the_go_plugins() {
    let order = &project_output()["order/v1/order_nats.pb.ts"];
    // Built-ins in the Go plugin's order, the canonical extras, then the custom codes.
    let members: Vec<&str> = order
        .lines()
        .filter_map(|l| l.trim().strip_suffix(',').and_then(|m| m.split_once(" = \"")).map(|(name, _)| name))
        .collect();
    assert_eq!(
        members,
        [
            "INVALID_ARGUMENT",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "UNAUTHENTICATED",
            "INTERNAL",
            "UNAVAILABLE",
            "CANCELLED",
            "UNKNOWN",
            "DEADLINE_EXCEEDED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "DATA_LOSS",
            "ORDER_EXPIRED",
            "PAYMENT_FAILED",
            "STOCK_UNAVAILABLE",
        ]
    );
    assert_contains_all(
        order,
        &[
            "export enum OrderServiceErrorCode {",
            "  ORDER_EXPIRED = \"ORDER_EXPIRED\",",
            "export class OrderServiceError extends runtime.NatsMicroError {",
            "export function newOrderServiceOrderExpiredError(method: string, message: string, data?: Uint8Array): OrderServiceError {",
            "export function newOrderServiceNotFoundError(method: string, message: string, data?: Uint8Array): OrderServiceError {",
            "export function isOrderServiceOrderExpired(error: unknown): error is OrderServiceError {",
            "export function isOrderServiceNotFound(error: unknown): error is OrderServiceError {",
            "export function isOrderServiceDeadlineExceeded(error: unknown): error is OrderServiceError {",
            "export function getOrderServiceErrorCode(error: unknown): OrderServiceErrorCode | string {",
            "export function isOrderServiceError(error: unknown): error is OrderServiceError {",
            "export interface IOrderServiceNats {",
            "export function registerOrderServiceHandlers(",
            "export class OrderServiceNatsClient {",
        ],
    );
}

#[test]
fn proto_strings_names_and_comments_are_escaped() {
    let edge = &project_output()["edge/nested/deep/v1/edge_nats.pb.ts"];
    assert_contains_all(
        edge,
        &[
            // Option strings with quotes, backslashes and newlines.
            r#"subjectPrefix: "edge.\"quoted\".type","#,
            r#"description: "says \"hi\" \\ and {braces}","#,
            r#"metadata: { "quote\"key": "line\nbreak" },"#,
            // Keyword-like methods; `new` is quoted where it would be a construct signature.
            "  match(request: wkt.Empty, ctx: runtime.RequestContext)",
            "  \"new\"(request: pb.Outer, ctx: runtime.RequestContext): runtime.HandlerResult<typeof pb.Outer_InnerSchema>;",
            "  self(request: wkt.StringValue,",
            "  async(request: pb.Outer_Inner,",
            "  clone(request: pb.Outer,",
            // Messages from another package's file and nested messages.
            "import * as pb_order_v1_order from \"../../../../order/v1/order_pb.js\";",
            "import * as wkt from \"@bufbuild/protobuf/wkt\";",
            "): Promise<pb_order_v1_order.Order> {",
            // Services named like generated items of others do not clash.
            "export class TypeNatsClient {",
            "export class TypeClientNatsClient {",
            "export class TypeError extends runtime.NatsMicroError {",
            "export function newTypeHttp2FailError(",
            // Streaming is left out, and says so; deprecation is marked.
            "Streaming RPCs are not generated yet and are left out: `Watch` (server-streaming).",
            "@deprecated",
        ],
    );
    assert!(!edge.contains("Skipped"), "skipped methods are not generated");
    // The proto comment with a code fence and brackets stays inside one JSDoc block.
    let product = &project_output()["product/v1/product_nats.pb.ts"];
    assert!(
        product.contains("   * Creates a product; ALREADY_EXISTS for a taken SKU, INVALID_ARGUMENT for\n   * a bad price.\n"),
        "{product}"
    );
}

#[test]
fn a_comment_cannot_close_its_jsdoc() {
    let (dir, includes) = common::scratch_dir("");
    dir.write(
        "c/v1/c.proto",
        "syntax = \"proto3\";\npackage c.v1;\nmessage M {}\n// Ends early */ console.log(\"pwned\"); /*\nservice S {\n  // also */ here\n  rpc Do(M) returns (M);\n}\n",
    );
    let files = ts_output(&includes, &["c/v1/c.proto"]);
    let generated = &files["c/v1/c_nats.pb.ts"];
    assert!(generated.contains("Ends early *\\/ console.log"), "{generated}");
    assert!(!generated.contains("*/ console.log"), "{generated}");
    assert!(!generated.contains("also */"), "{generated}");
}

/// Runs the real protoc with protoc-gen-es and our plugin (`lang=ts`) on
/// `files` plus `extra` (imports that protoc-gen-es must also generate),
/// into `out`.
fn protoc_ts(out: &Path, includes: &[PathBuf], files: &[String], extra: &[&str]) {
    let root = repo_root();
    let es = root.join("node_modules/.bin/protoc-gen-es");
    assert!(es.exists(), "{} is missing: run `bash scripts/setup` (npm ci)", es.display());
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).expect("output directory");
    let mut command = Command::new(protoc_path());
    command
        .arg(format!("--plugin=protoc-gen-es={}", es.display()))
        .arg(format!("--es_out={}", out.display()))
        .arg("--es_opt=target=ts,import_extension=js")
        .arg(format!("--plugin=protoc-gen-nats-micro={PLUGIN}"))
        .arg(format!("--nats-micro_out={}", out.display()))
        .arg("--nats-micro_opt=lang=ts");
    for include in includes.iter().cloned().chain([protoc_include()]) {
        command.arg(format!("-I{}", include.display()));
    }
    command.args(files).args(extra);
    let output = command.output().expect("running protoc");
    assert!(output.status.success(), "protoc failed:\n{}", String::from_utf8_lossy(&output.stderr));
}

/// `tsc --noEmit` over every file in `dir` with the repository's strict base configuration.
fn type_check(dir: &Path) {
    let root = repo_root();
    let config = format!(
        "{{ \"extends\": {:?}, \"compilerOptions\": {{ \"noEmit\": true }}, \"include\": [\"**/*.ts\"] }}\n",
        root.join("tsconfig.base.json").display().to_string()
    );
    std::fs::write(dir.join("tsconfig.json"), config).expect("tsconfig");
    let output = Command::new(root.join("node_modules/.bin/tsc"))
        .args(["--strict", "--noEmit", "-p"])
        .arg(dir)
        .output()
        .expect("running tsc (bash scripts/setup installs it)");
    assert!(
        output.status.success(),
        "tsc --strict found errors in {}:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A scratch directory under `target/tmp` (inside the repository, so that
/// the generated code resolves the packages in `node_modules/`).
fn scratch(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("typescript-{name}"))
}

#[test]
fn corpus_type_checks_with_tsc_strict() {
    let out = scratch("corpus");
    protoc_ts(
        &out,
        &corpus_includes(),
        &corpus_files(),
        &["google/api/annotations.proto", "google/api/http.proto", "natsmicro/options.proto"],
    );
    let generated = read_tree(&out);
    for (name, content) in ts_output(&corpus_includes(), &corpus_files()) {
        assert_eq!(generated.get(&name), Some(&content), "{name}: protoc and the library agree");
    }
    type_check(&out);
}

#[test]
fn project_type_checks_with_tsc_strict() {
    let out = scratch("project");
    let files: Vec<String> = PROJECT_FILES.iter().map(|f| f.to_string()).collect();
    protoc_ts(&out, &project_includes(), &files, &["natsmicro/options.proto"]);
    assert!(out.join("edge/nested/deep/v1/edge_pb.ts").exists(), "protoc-gen-es ran");
    type_check(&out);
}
