//! TypeScript programs on generated code: their sources compiled with `tsc`
//! next to the TypeScript generated for some protos, then run with node.
//! Shared by the interop tests and the benchmark.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::codegen::repo;

/// `tsc` output of one TypeScript program: its sources next to the
/// generated code in `gen/`, compiled into `dist/`.
pub struct Program {
    dir: PathBuf,
}

/// The protos the programs of `tests/ts` import: they are compiled together,
/// so every one of them is generated whichever program a test runs.
pub const TESTS_TS_PROTOS: &[&str] = &[
    "order/v1/order.proto",
    "jsondemo/v1/jsondemo.proto",
    "streams/v1/streams.proto",
    "details/v1/details.proto",
    "chaos/v1/chaos.proto",
    "trace/v1/trace.proto",
    "store/v1/store.proto",
];

impl Program {
    /// The programs of `tests/ts` with [`TESTS_TS_PROTOS`], compiled into `dir`.
    pub fn tests_ts(dir: &Path) -> Program {
        Program::build(dir, &repo().join("tests/ts"), TESTS_TS_PROTOS)
    }

    /// Generates the TypeScript for `protos` (under the project and corpus
    /// roots: protoc-gen-es for the messages, our generator for the
    /// services) into `dir/gen`, copies the `.ts` files of `sources` into
    /// `dir`, and compiles everything with `tsc` under `tsconfig.base.json`.
    /// `dir` is emptied first. Outside the repository (a `CARGO_TARGET_DIR`
    /// elsewhere) it gets what tsc and node would otherwise find above it
    /// in the repository: `node_modules/` (linked) and an ES module `package.json`.
    pub fn build(dir: &Path, sources: &Path, protos: &[&str]) -> Program {
        let root = repo();
        let _ = std::fs::remove_dir_all(dir);
        let generated = dir.join("gen");
        std::fs::create_dir_all(&generated).expect("build directory");
        let inside_repo = match (dir.canonicalize(), root.canonicalize()) {
            (Ok(dir), Ok(root)) => dir.starts_with(root),
            _ => true,
        };
        if !inside_repo {
            std::fs::write(dir.join("package.json"), "{\"private\": true, \"type\": \"module\"}\n").expect("package.json");
            std::os::unix::fs::symlink(root.join("node_modules"), dir.join("node_modules")).expect("linking node_modules");
        }
        let es = root.join("node_modules/.bin/protoc-gen-es");
        let tsc = root.join("node_modules/.bin/tsc");
        for tool in [&es, &tsc] {
            assert!(tool.exists(), "{} is missing: run `bash scripts/setup`", tool.display());
        }
        assert_runtime_built(&root);

        let es_args = [
            format!("--plugin=protoc-gen-es={}", es.display()),
            format!("--es_out={}", generated.display()),
            "--es_opt=target=ts,import_extension=js".to_owned(),
        ];
        crate::codegen::generate(&generated, protos, "ts", &es_args);

        for entry in std::fs::read_dir(sources).expect("TypeScript sources") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "ts") {
                std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copying a source");
            }
        }
        let base = protoc_gen_nats_micro::typescript::names::string_literal(&root.join("tsconfig.base.json").to_string_lossy());
        let config = format!(
            r#"{{"extends": {base}, "compilerOptions": {{"outDir": "dist", "rootDir": "."}}, "include": ["*.ts", "gen/**/*.ts"]}}"#
        );
        std::fs::write(dir.join("tsconfig.json"), config).expect("tsconfig");
        let output = Command::new(&tsc).arg("-p").arg(dir).output().expect("running tsc");
        assert!(
            output.status.success(),
            "tsc failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Program { dir: dir.to_owned() }
    }

    /// The directory the program is compiled in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `node dist/SCRIPT.js ARGS`
    pub fn node(&self, script: &str, args: &[&str]) -> Command {
        let mut command = Command::new("node");
        command.arg(self.dir.join("dist").join(format!("{script}.js"))).args(args);
        command
    }
}

/// Panics unless the runtime package (`runtime-ts/`, which generated code
/// imports as `nats-micro-runtime`) is built and newer than its sources.
pub fn assert_runtime_built(root: &Path) {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let built = modified(&root.join("runtime-ts/dist/index.js"));
    let newest_source = std::fs::read_dir(root.join("runtime-ts/src"))
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().and_then(|e| modified(&e.path())))
        .max();
    assert!(
        built.is_some() && built >= newest_source,
        "runtime-ts/dist is missing or older than runtime-ts/src: run `bash scripts/setup`"
    );
}
