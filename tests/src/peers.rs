//! The programs the cross-language tests run: for each scenario (`streams`,
//! `details`, `chaos`, `trace`) a server and often a client in each
//! language, all reading `NATS_URL` and printing `ready` once serving.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;

use crate::harness::python;
use crate::typescript::Program;

/// The protos the Python peers of `tests/peers` import.
const PYTHON_PEER_PROTOS: &[&str] = &[
    "streams/v1/streams.proto",
    "details/v1/details.proto",
    "chaos/v1/chaos.proto",
    "trace/v1/trace.proto",
    "store/v1/store.proto",
];

/// A language with a runtime and a program for each scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    Rust,
    TypeScript,
    Python,
}

impl Language {
    /// Every language, Rust first.
    pub const ALL: [Language; 3] = [Language::Rust, Language::TypeScript, Language::Python];

    /// The program `name` (`streams_server`, `details_client`, …) of this
    /// language: a binary of this crate, `tests/ts/<name>.ts` compiled with
    /// the code generated for it, or `tests/peers/<name>.py`.
    pub fn program(self, name: &str) -> Command {
        match self {
            Language::Rust => Command::new(rust_binary(name)),
            Language::TypeScript => typescript().node(name, &[]),
            Language::Python => python_script(&format!("{name}.py")),
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `target/<profile>/`, where cargo puts this crate's binaries beside the
/// `deps/` folder of the running test.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_path_buf()
}

/// A binary of this crate (`cargo test` builds them for its integration tests).
fn rust_binary(name: &str) -> PathBuf {
    let path = profile_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} is missing: run the tests with cargo test", path.display());
    path
}

/// `target/tmp`, cargo's folder for integration tests' files.
fn target_tmp() -> PathBuf {
    profile_dir().parent().expect("target/").join("tmp")
}

/// The scripts of `tests/ts` with the TypeScript generated for them, built once per test binary.
pub fn typescript() -> &'static Program {
    static PROGRAM: OnceLock<Program> = OnceLock::new();
    PROGRAM.get_or_init(|| Program::tests_ts(&target_tmp().join("ts-peers")))
}

/// The script `name` of `tests/peers`, run with this checkout's runtime and
/// the Python generated for the peers' protos importable.
pub fn python_script(name: &str) -> Command {
    static TREE: OnceLock<PathBuf> = OnceLock::new();
    let tree = TREE.get_or_init(|| {
        let tree = target_tmp().join("py-peers");
        let _ = std::fs::remove_dir_all(&tree);
        std::fs::create_dir_all(&tree).expect("output directory");
        let python_out = format!("--python_out={}", tree.display());
        crate::codegen::generate(&tree, PYTHON_PEER_PROTOS, "python", &[python_out]);
        tree
    });
    // This checkout's runtime first, whatever the environment's editable install points at.
    let path = std::env::join_paths([root().join("runtime-py/src"), tree.clone()]).expect("PYTHONPATH");
    let mut command = Command::new(python());
    command.arg(root().join("tests/peers").join(name)).env("PYTHONPATH", path);
    command
}

/// A server process, killed on drop. Its stdin stays open while it runs
/// (a TypeScript server may stop when stdin closes).
pub struct Server {
    child: Child,
    stdout: BufReader<ChildStdout>,
    _stdin: Option<ChildStdin>,
}

impl Server {
    /// Starts `command` with `NATS_URL` set to `url` and waits for its `ready` line.
    pub fn start(mut command: Command, url: &str, label: &str) -> Server {
        let mut child = command
            .env("NATS_URL", url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("starting {label} {command:?}: {err}"));
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("reading the server");
        let server = Server { child, stdout, _stdin: stdin };
        assert!(first.starts_with("ready"), "{label} did not start: {first:?}");
        server
    }

    /// The rest of what the server prints, read line by line.
    pub fn stdout(&mut self) -> &mut BufReader<ChildStdout> {
        &mut self.stdout
    }

    /// The process.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
