//! Shared helpers for the integration tests: proto locations, building
//! `CodeGeneratorRequest`s (with extension options intact), temporary
//! directories and small assertion helpers.
#![allow(dead_code)] // Each test binary uses its own subset.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use protoc_gen_nats_micro::Output;

/// The crate directory.
pub const CRATE_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// `CRATE_DIR/relative`, canonical (protoc refuses `..` in paths).
fn crate_relative(relative: &str) -> PathBuf {
    let path = Path::new(CRATE_DIR).join(relative);
    path.canonicalize().unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The project's protos (`natsmicro/options.proto`, `order/v1/order.proto`, ...).
pub fn project_root() -> PathBuf {
    crate_relative("../proto")
}

/// The corpus written for the Go plugin.
pub fn corpus_root() -> PathBuf {
    crate_relative("../../shared/corpus/anchor-examples")
}

/// `google/api/annotations.proto` and friends, imported by the corpus.
pub fn googleapis_root() -> PathBuf {
    crate_relative("../../shared/corpus/googleapis")
}

/// Import roots for the corpus.
pub fn corpus_includes() -> Vec<PathBuf> {
    vec![corpus_root(), googleapis_root(), project_root()]
}

/// Import roots for the project protos.
pub fn project_includes() -> Vec<PathBuf> {
    vec![project_root()]
}

/// The project protos that declare services.
pub const PROJECT_FILES: [&str; 3] = ["order/v1/order.proto", "product/v1/product.proto", "edge/nested/deep/v1/edge.proto"];

/// Every `.proto` of the corpus, as import names, sorted.
pub fn corpus_files() -> Vec<String> {
    let root = corpus_root();
    let mut files = Vec::new();
    collect_protos(&root, &root, &mut files);
    files.sort();
    assert!(files.len() >= 10, "corpus not found under {}: {files:?}", root.display());
    files
}

fn collect_protos(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_protos(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "proto") {
            let relative = path.strip_prefix(root).expect("under root");
            out.push(relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"));
        }
    }
}

/// Compiles `files` with protox into an encoded `FileDescriptorSet`
/// (imports and source info included), or protox's error text.
pub fn try_descriptor_set(includes: &[PathBuf], files: &[impl AsRef<str>]) -> Result<Vec<u8>, String> {
    let mut compiler = protox::Compiler::new(includes).map_err(|err| format!("{err:?}"))?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(files.iter().map(AsRef::as_ref)).map_err(|err| format!("{err:?}"))?;
    Ok(compiler.encode_file_descriptor_set())
}

/// An encoded `CodeGeneratorRequest` for `files` (import names) found under
/// `includes`, as protoc would send it (dependencies first).
pub fn request(includes: &[PathBuf], files: &[impl AsRef<str>], parameter: Option<&str>) -> Vec<u8> {
    let set = try_descriptor_set(includes, files).unwrap_or_else(|err| panic!("compiling protos: {err}"));
    let files: Vec<String> = files.iter().map(|f| f.as_ref().to_owned()).collect();
    let parameter = flat_layout(parameter);
    protoc_gen_nats_micro::request_from_descriptor_set(&set, &files, Some(&parameter)).expect("protox output decodes")
}

/// `parameter` with the Rust output flat and not included from prost's
/// file: what these tests compare (the default layout, beside
/// protoc-gen-prost's files, is tested with the real protoc-gen-prost in
/// `prost_plugins.rs` and `buf.rs`).
pub fn flat_layout(parameter: Option<&str>) -> String {
    match parameter {
        Some(parameter) if !parameter.is_empty() => format!("flat_output_dir,no_include,{parameter}"),
        _ => "flat_output_dir,no_include".to_owned(),
    }
}

/// Runs the library entry on a request for `files`.
pub fn generate(includes: &[PathBuf], files: &[impl AsRef<str>], parameter: Option<&str>) -> Output {
    protoc_gen_nats_micro::generate(&request(includes, files, parameter))
}

/// The generated files of a successful run, by name; panics with the error otherwise.
pub fn output_files(output: &Output) -> BTreeMap<String, String> {
    if let Some(error) = &output.response.error {
        panic!("generation failed: {error}");
    }
    output.response.file.iter().map(|f| (f.name().to_owned(), f.content().to_owned())).collect()
}

/// The error of a run that must fail.
pub fn expect_error(output: &Output) -> &str {
    match &output.response.error {
        Some(error) => {
            assert!(output.response.file.is_empty(), "a failed run must produce no files, got {:?}", output.response.file);
            error
        }
        None => panic!("expected an error, got files {:?}", output.response.file.iter().map(|f| f.name()).collect::<Vec<_>>()),
    }
}

/// Asserts that `text` contains every one of `needles`.
#[track_caller]
pub fn assert_contains_all(text: &str, needles: &[&str]) {
    let missing: Vec<&&str> = needles.iter().filter(|n| !text.contains(**n)).collect();
    assert!(missing.is_empty(), "missing {missing:?} in:\n{text}");
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory whose name includes `label`.
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("nats-micro-test-{label}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("creating {}: {err}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `content` to `relative` inside the directory (creating parents).
    pub fn write(&self, relative: &str, content: &str) -> PathBuf {
        let path = self.0.join(relative);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("create parent directories");
        std::fs::write(&path, content).unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The import name every scratch proto gets.
pub const SCRATCH_PROTO: &str = "bad/v1/bad.proto";

/// A scratch proto in package `bad.v1`, importing our options and the
/// well-known Duration, with `body` (services and messages) appended. It
/// declares `Req { string id = 1; }` and `Resp {}` for services to use.
pub fn scratch_proto(body: &str) -> String {
    format!(
        "syntax = \"proto3\";\n\
         package bad.v1;\n\
         import \"natsmicro/options.proto\";\n\
         import \"google/protobuf/duration.proto\";\n\
         message Req {{ string id = 1; }}\n\
         message Resp {{}}\n\
         {body}\n"
    )
}

/// A temp dir holding [`SCRATCH_PROTO`] with `body`, plus the includes to
/// compile it (the dir and the project protos).
pub fn scratch_dir(body: &str) -> (TempDir, Vec<PathBuf>) {
    let dir = TempDir::new("scratch");
    dir.write(SCRATCH_PROTO, &scratch_proto(body));
    let includes = vec![dir.path().to_owned(), project_root()];
    (dir, includes)
}

/// Runs the library on a scratch proto with `body`.
pub fn generate_scratch(body: &str) -> Output {
    let (_dir, includes) = scratch_dir(body);
    generate(&includes, &[SCRATCH_PROTO], None)
}

/// `service BadService { option (natsmicro.service) = { <options> }; rpc Get(Req) returns (Resp); }`
pub fn service_with_options(options: &str) -> String {
    format!("service BadService {{\n  option (natsmicro.service) = {{ {options} }};\n  rpc Get(Req) returns (Resp);\n}}")
}

/// `service BadService { rpc Get(Req) returns (Resp) { <method options> } }`
pub fn service_with_method_options(method_options: &str) -> String {
    format!("service BadService {{\n  rpc Get(Req) returns (Resp) {{ {method_options} }}\n}}")
}

/// The vendored protoc binary.
pub fn protoc_path() -> PathBuf {
    protoc_bin_vendored::protoc_bin_path().expect("vendored protoc for this platform")
}

/// The vendored `google/protobuf/*.proto` include directory.
pub fn protoc_include() -> PathBuf {
    protoc_bin_vendored::include_path().expect("vendored protoc includes")
}

/// What a protoc run left: its exit status, stderr and the generated files.
pub struct ProtocRun {
    pub success: bool,
    pub stderr: String,
    pub files: BTreeMap<String, String>,
}

/// Runs the real protoc with the real plugin binary on `files` (import
/// names) under `includes` (plus protoc's own), with optional `--nats-micro_opt`.
pub fn run_protoc(includes: &[PathBuf], files: &[impl AsRef<str>], opt: Option<&str>) -> ProtocRun {
    let out = TempDir::new("protoc-out");
    let mut command = std::process::Command::new(protoc_path());
    command
        .arg(format!("--plugin=protoc-gen-nats-micro={}", env!("CARGO_BIN_EXE_protoc-gen-nats-micro")))
        .arg(format!("--nats-micro_out={}", out.path().display()));
    command.arg(format!("--nats-micro_opt={}", flat_layout(opt)));
    for include in includes.iter().cloned().chain([protoc_include()]) {
        command.arg(format!("-I{}", include.display()));
    }
    command.args(files.iter().map(AsRef::as_ref));
    let result = command.output().expect("run protoc");
    ProtocRun {
        success: result.status.success(),
        stderr: String::from_utf8_lossy(&result.stderr).into_owned(),
        files: read_dir_files(out.path()),
    }
}

/// Every file directly in `dir`, by name.
pub fn read_dir_files(dir: &Path) -> BTreeMap<String, String> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()));
    entries
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let content = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
            (path.file_name().expect("file name").to_string_lossy().into_owned(), content)
        })
        .collect()
}

/// Every file under `dir`, recursively, by `/`-separated relative path
/// (empty if `dir` does not exist): for outputs that nest files in directories.
pub fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for path in entries.map(|entry| entry.expect("directory entry").path()) {
            if path.is_dir() {
                walk(root, &path, out);
                continue;
            }
            let relative = path.strip_prefix(root).expect("under root");
            let name = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            let content = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
            out.insert(name, content);
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Compares `actual` (relative path → content) with the golden tree in `dir`,
/// or rewrites the tree when `UPDATE_GOLDEN=1`. On a mismatch, names every
/// differing file with its first differing line; `hint` says how to update.
/// The generated files without the shared runtime file `name`, after
/// checking that it is the embedded runtime `source` (after at most a
/// generated-header comment). The runtime is a source file of this crate,
/// so it is checked against that source rather than snapshotted again.
pub fn without_runtime(mut files: BTreeMap<String, String>, name: &str, source: &str) -> BTreeMap<String, String> {
    let runtime = files.remove(name).unwrap_or_else(|| panic!("{name} is emitted"));
    let header = runtime.strip_suffix(source).unwrap_or_else(|| panic!("{name} is not the embedded runtime source"));
    assert!(header.lines().all(|line| line.starts_with("//") || line.starts_with('#')), "{name} starts with {header:?}");
    files
}

pub fn check_golden_tree(dir: &Path, actual: &BTreeMap<String, String>, hint: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        let _ = std::fs::remove_dir_all(dir);
        for (name, content) in actual {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().expect("has a parent")).expect("create golden directories");
            std::fs::write(&path, content).unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
        }
        return;
    }
    let golden = read_tree(dir);
    let names = |files: &BTreeMap<String, String>| files.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&golden), names(actual), "generated file names differ from {}\nrun: {hint}", dir.display());
    let differing: Vec<String> = actual
        .iter()
        .filter(|(name, content)| golden[*name] != **content)
        .map(|(name, content)| {
            let line = golden[name].lines().zip(content.lines()).position(|(g, a)| g != a);
            let line = line.unwrap_or_else(|| golden[name].lines().count().min(content.lines().count()));
            format!("  {name}: first difference at line {}", line + 1)
        })
        .collect();
    assert!(differing.is_empty(), "generated code differs from {}:\n{}\nrun: {hint}", dir.display(), differing.join("\n"));
}

/// An encoded `CodeGeneratorRequest` from descriptors built in code
/// (dependencies first), generating `to_generate`.
pub fn request_from_protos(
    files: Vec<prost_types::FileDescriptorProto>,
    to_generate: &[&str],
    parameter: Option<&str>,
) -> Vec<u8> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet { file: files }.encode_to_vec();
    let names: Vec<String> = to_generate.iter().map(|s| (*s).to_owned()).collect();
    protoc_gen_nats_micro::request_from_descriptor_set(&set, &names, parameter).expect("encoded set decodes")
}

/// A proto3 file `name` in `package` with messages `Req` and `Resp` and one
/// service `service` whose methods take `Req` and return `Resp`.
pub fn simple_proto(name: &str, package: &str, service: &str, methods: &[&str]) -> prost_types::FileDescriptorProto {
    use prost_types::{DescriptorProto, MethodDescriptorProto, ServiceDescriptorProto};
    let prefix = if package.is_empty() { String::new() } else { format!(".{package}") };
    let message = |n: &str| DescriptorProto { name: Some(n.to_owned()), ..Default::default() };
    let method = |m: &&str| MethodDescriptorProto {
        name: Some((*m).to_owned()),
        input_type: Some(format!("{prefix}.Req")),
        output_type: Some(format!("{prefix}.Resp")),
        ..Default::default()
    };
    prost_types::FileDescriptorProto {
        name: Some(name.to_owned()),
        package: (!package.is_empty()).then(|| package.to_owned()),
        syntax: Some("proto3".to_owned()),
        message_type: vec![message("Req"), message("Resp")],
        service: vec![ServiceDescriptorProto {
            name: Some(service.to_owned()),
            method: methods.iter().map(method).collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The corpus files, or `None` (saying so once on stderr) when
/// `../shared/corpus` is not beside the repository.
pub fn corpus_files_if_present() -> Option<Vec<String>> {
    let root = Path::new(CRATE_DIR).join("../../shared/corpus/anchor-examples");
    if !root.is_dir() {
        eprintln!("skipped: no ../shared/corpus");
        return None;
    }
    Some(corpus_files())
}
