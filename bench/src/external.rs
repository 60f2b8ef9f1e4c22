//! The contenders in other languages: the generated TypeScript and Python.
//! A Rust load generator cannot drive their clients, so each language has a
//! server and a load generator of its own (`bench/ts`, `bench/python`), both
//! on the code generated for `proto/bench/v1/echo.proto` at the start of the
//! run. The load generator follows measure.rs's protocol and prints one JSON
//! line per concurrency, which becomes a [`Cell`]. The stream contenders
//! (`bench/ts/streams.ts`, `bench/python/streams.py`, on
//! `proto/bench/v1/stream.proto`) print one JSON line per payload size,
//! which becomes a [`StreamCell`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nats_micro_test_support::harness::python;
use nats_micro_test_support::typescript::Program;

use crate::streams::{RawRate, StreamCell};
use crate::{CONCURRENCY, Cell, Plan};

/// The proto every contender serves, relative to `proto/`.
const PROTO: &str = "bench/v1/echo.proto";
/// The proto of the stream contenders, relative to `proto/`.
const STREAM_PROTO: &str = "bench/v1/stream.proto";

/// A language whose generated server and client are a contender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    /// `lang=ts`, run with node.
    TypeScript,
    /// `lang=python`, run with the workspace's Python.
    Python,
}

/// The servers and load generators of both languages, ready to run.
pub struct Programs {
    typescript: Program,
    /// `bench/python`: the scripts.
    python_sources: PathBuf,
    /// The generated Python, put on `PYTHONPATH`.
    python_generated: PathBuf,
}

impl Programs {
    /// Generates the TypeScript and Python for the echo proto into
    /// `target/bench-gen/{ts,python}` and compiles the TypeScript with `tsc`.
    pub fn prepare(root: &Path) -> Result<Programs, String> {
        require("node", Command::new("node").arg("--version"))?;
        require("tsc", Command::new(root.join("node_modules/.bin/tsc")).arg("--version"))?;
        require(
            "Python with nats-py, protobuf and grpcio-tools",
            Command::new(python()).args(["-c", "import nats, google.protobuf, grpc_tools"]),
        )?;

        let out = root.join("target/bench-gen");
        let typescript = Program::build(&out.join("ts"), &root.join("bench/ts"), &[PROTO, STREAM_PROTO]);
        let python_generated = out.join("python");
        let _ = std::fs::remove_dir_all(&python_generated);
        nats_micro_test_support::codegen::generate(
            &python_generated,
            &[PROTO, STREAM_PROTO],
            "python",
            &[format!("--python_out={}", python_generated.display())],
        );
        Ok(Programs { typescript, python_sources: root.join("bench/python"), python_generated })
    }

    /// The server of `language` on `nats_url`; prints `ready` once serving
    /// and stops when its stdin closes. The command runs the interpreter
    /// itself (no wrapper), so the child's PID is the server's.
    /// With `raw`, the plain responder of that language's NATS client instead.
    pub fn server(&self, language: Language, nats_url: &str, raw: bool) -> Command {
        let args = [nats_url, "raw"];
        self.script(language, "server", &args[..if raw { 2 } else { 1 }])
    }

    /// Runs the load generator of `language` for one payload size: a
    /// warm-up, then `plan.requests` calls at each of [`CONCURRENCY`]; with
    /// `raw`, plain requests to the raw responder.
    pub async fn measure(
        &self,
        language: Language,
        nats_url: &str,
        payload: usize,
        plan: Plan,
        raw: bool,
    ) -> Result<Cell, String> {
        let concurrency = CONCURRENCY.map(|c| c.to_string()).join(",");
        let (payload, requests, warmup) = (payload.to_string(), plan.requests.to_string(), plan.warmup.to_string());
        let mut args = vec![nats_url, &payload, &concurrency, &requests, &warmup];
        if raw {
            args.push("raw");
        }
        let what = format!("the {language:?} load generator");
        let stdout = run(self.script(language, "load", &args), &what).await?;
        parse_cell(&stdout).map_err(|e| format!("{what}: {e}"))
    }

    /// Runs the stream contender of `language` for every `(payload bytes,
    /// messages)`: raw publish/subscribe (plain and with the sequence
    /// header) and the generated server stream, in one process.
    pub async fn measure_streams(
        &self,
        language: Language,
        nats_url: &str,
        cells: &[(usize, usize)],
    ) -> Result<Vec<StreamCell>, String> {
        let plan = cells.iter().map(|(size, messages)| format!("{size}:{messages}")).collect::<Vec<_>>().join(",");
        let what = format!("the {language:?} stream contender");
        let stdout = run(self.script(language, "streams", &[nats_url, &plan]), &what).await?;
        parse_stream_cells(&stdout).map_err(|e| format!("{what}: {e}"))
    }

    /// `node dist/NAME.js ARGS` or `python bench/python/NAME.py ARGS`.
    fn script(&self, language: Language, name: &str, args: &[&str]) -> Command {
        match language {
            Language::TypeScript => self.typescript.node(name, args),
            Language::Python => {
                let mut command = Command::new(python());
                command.arg(self.python_sources.join(format!("{name}.py"))).args(args).env("PYTHONPATH", &self.python_generated);
                command
            }
        }
    }
}

/// Runs `command` (`what` in errors) to its end and returns its stdout.
async fn run(mut command: Command, what: &str) -> Result<String, String> {
    let output = tokio::task::spawn_blocking(move || command.stdin(Stdio::null()).output())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("starting {what}: {e}"))?;
    if !output.status.success() {
        return Err(format!("{what} failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr)));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Fails with a pointer to `scripts/setup` unless `command` runs and succeeds.
fn require(what: &str, command: &mut Command) -> Result<(), String> {
    match command.stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(status) if status.success() => Ok(()),
        _ => Err(format!("{what} is needed for the TypeScript and Python contenders: run `bash scripts/setup`")),
    }
}

/// A [`Cell`] from the load generator's JSON lines, one per concurrency.
fn parse_cell(stdout: &str) -> Result<Cell, String> {
    let mut cell = Cell::default();
    let mut seen = [false; CONCURRENCY.len()];
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let json: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not a JSON line ({e}): {line:?}"))?;
        let number = |key: &str| json[key].as_f64().ok_or_else(|| format!("no number {key:?} in {line:?}"));
        let concurrency = number("concurrency")?;
        let c = CONCURRENCY
            .iter()
            .position(|&c| c as f64 == concurrency)
            .ok_or_else(|| format!("unexpected concurrency in {line:?}"))?;
        cell.throughput[c] = number("throughput")?;
        if CONCURRENCY[c] == 1 {
            cell.p50_us = number("p50_us")?;
            cell.p99_us = number("p99_us")?;
        }
        seen[c] = true;
    }
    if seen.contains(&false) {
        return Err(format!("a concurrency is missing from {stdout:?}"));
    }
    Ok(cell)
}

/// [`StreamCell`]s from the stream contender's JSON lines, one per payload size.
fn parse_stream_cells(stdout: &str) -> Result<Vec<StreamCell>, String> {
    let mut cells = Vec::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let json: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not a JSON line ({e}): {line:?}"))?;
        let number = |key: &str| json[key].as_f64().ok_or_else(|| format!("no number {key:?} in {line:?}"));
        cells.push(StreamCell {
            size: number("size")? as usize,
            messages: number("messages")? as usize,
            raw: RawRate { rate: number("raw_rate")?, lost: number("raw_lost")? as usize },
            raw_with_seq: RawRate { rate: number("raw_seq_rate")?, lost: number("raw_seq_lost")? as usize },
            codec: number("codec_rate")?,
            generated: number("generated")?,
        });
    }
    if cells.is_empty() {
        return Err(format!("no cells in {stdout:?}"));
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::{parse_cell, parse_stream_cells};

    #[test]
    fn stream_json_lines_fill_cells() {
        let cells = parse_stream_cells(
            "{\"size\":16,\"messages\":100,\"raw_rate\":5000.5,\"raw_lost\":3,\"raw_seq_rate\":4000,\"raw_seq_lost\":1,\"codec_rate\":9000,\"generated\":2500}\n\n\
             {\"size\":1024,\"messages\":10,\"raw_rate\":100,\"raw_lost\":0,\"raw_seq_rate\":90,\"raw_seq_lost\":0,\"codec_rate\":800,\"generated\":50.25}\n",
        )
        .expect("parses");
        let summary: Vec<_> = cells
            .iter()
            .map(|c| (c.size, c.messages, c.raw.rate, c.raw.lost, c.raw_with_seq.rate, c.raw_with_seq.lost, c.codec, c.generated))
            .collect();
        assert_eq!(summary, [(16, 100, 5000.5, 3, 4000.0, 1, 9000.0, 2500.0), (1024, 10, 100.0, 0, 90.0, 0, 800.0, 50.25)]);
        assert!(parse_stream_cells("").is_err());
        assert!(parse_stream_cells("{\"size\":16}").is_err());
    }

    #[test]
    fn json_lines_fill_a_cell() {
        let cell = parse_cell(
            "{\"concurrency\":1,\"throughput\":1000.5,\"p50_us\":90,\"p99_us\":250.25}\n\
             {\"concurrency\":16,\"throughput\":8000}\n{\"concurrency\":128,\"throughput\":9000}\n",
        )
        .expect("parses");
        assert_eq!(cell.throughput, [1000.5, 8000.0, 9000.0]);
        assert_eq!((cell.p50_us, cell.p99_us), (90.0, 250.25));
    }

    #[test]
    fn missing_concurrencies_and_latencies_are_errors() {
        assert!(parse_cell("{\"concurrency\":16,\"throughput\":8000}\n").is_err());
        assert!(parse_cell("{\"concurrency\":1,\"throughput\":1}\n{\"concurrency\":16,\"throughput\":1}\n{\"concurrency\":128,\"throughput\":1}").is_err());
    }
}
