//! Benchmarks, all in one run on one nats-server: a unary echo through raw
//! async-nats (the floor), the generated Rust client and server, a server on
//! async-nats's `service` module, tonic gRPC over loopback, and the generated
//! TypeScript and Python servers and clients (each driven by a load generator
//! of its own language). Every figure is also given as a ratio to raw
//! async-nats from the same run. Then the plugin's cost on synthetic protos
//! of 10, 100 and 1,000 services.
//!
//! `bash scripts/bench` (quick, under a minute) or `bash scripts/bench --full`
//! (writes BENCHMARKS.md); `bash scripts/bench --codegen` measures only the
//! plugin (median of 5), `bash scripts/bench --streams [--full]` only the
//! streams, `bash scripts/bench --chunked` only chunked transfer, `bash scripts/bench --tracing` the cost of the request spans.
//! Nothing here asserts on timings.

mod chunked;
mod codegen;
mod contenders;
mod external;
mod measure;
mod report;
mod streams;
mod tracing_cost;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use contenders::{Caller, Contender};
use external::{Language, Programs};
use nats_micro_test_support::harness::NatsServer;

/// Code generated from `proto/bench/v1/echo.proto`.
pub mod echo {
    /// Messages (prost) and the NATS service (protoc-gen-nats-micro).
    pub mod nats {
        include!(concat!(env!("OUT_DIR"), "/nats/bench.v1.rs"));
    }
    /// Messages and service for tonic.
    pub mod tonic {
        include!(concat!(env!("OUT_DIR"), "/tonic/bench.v1.rs"));
    }
}

/// Payload sizes: about 16 B, 1 KiB and 64 KiB.
const PAYLOADS: [usize; 3] = [16, 1024, 64 * 1024];
/// Concurrency levels for throughput.
const CONCURRENCY: [usize; 3] = [1, 16, 128];
/// Synthetic proto sizes for codegen.
const CODEGEN_SIZES: [usize; 3] = [10, 100, 1000];

/// How much to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// `quick` or `full`.
    pub name: &'static str,
    /// Requests per measured run.
    pub requests: usize,
    /// Requests sent (at concurrency 16) before measuring each payload.
    pub warmup: usize,
    /// Plugin runs per codegen size (the median is reported).
    pub codegen_repeats: usize,
}

const QUICK: Plan = Plan { name: "quick", requests: 1_000, warmup: 300, codegen_repeats: 1 };
const FULL: Plan = Plan { name: "full", requests: 20_000, warmup: 5_000, codegen_repeats: 5 };

/// Figures for one contender and payload.
#[derive(Clone, Debug, Default)]
pub struct Cell {
    /// Requests per second at each of [`CONCURRENCY`].
    pub throughput: [f64; 3],
    /// p50 latency at concurrency 1, in microseconds.
    pub p50_us: f64,
    /// p99 latency at concurrency 1, in microseconds.
    pub p99_us: f64,
}

/// Stream throughput by payload size: the generated server stream of each
/// language against its own NATS client's raw publish/subscribe.
#[derive(Debug, Default)]
pub struct Streams {
    pub rust: Vec<streams::StreamCell>,
    pub typescript: Vec<streams::StreamCell>,
    pub python: Vec<streams::StreamCell>,
}

/// Measures the Rust streams (and, in a full run, the slow reader), then
/// the TypeScript and Python contenders, on the nats-server at `url`.
async fn measure_streams(
    programs: &Programs,
    url: &str,
    full: bool,
) -> Result<(Streams, Option<streams::SlowReader>), Box<dyn std::error::Error>> {
    let (rust, slow) = streams::measure(url, full).await?;
    let plan = streams::plan(full);
    eprintln!("streams: TypeScript");
    let typescript = programs.measure_streams(Language::TypeScript, url, &plan).await?;
    eprintln!("streams: Python");
    let python = programs.measure_streams(Language::Python, url, &plan).await?;
    Ok((Streams { rust, typescript, python }, slow))
}

/// Everything one run measured.
#[derive(Debug, Default)]
pub struct Results {
    /// By contender, then payload size.
    pub cells: BTreeMap<(usize, usize), Cell>,
    /// Peak RSS of each contender's server process, in KiB.
    pub server_rss_kib: BTreeMap<usize, u64>,
    /// Plugin cost by size.
    pub codegen: Vec<codegen::Codegen>,
    /// Stream throughput by payload size, per language.
    pub streams: Streams,
    /// The slow reader of a million messages (full runs).
    pub slow_reader: Option<streams::SlowReader>,
    /// Chunked transfer, generated against raw (full runs).
    pub chunked: Vec<chunked::ChunkedCell>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if args.first().map(String::as_str) == Some("serve") {
        let contender = args.get(1).and_then(|t| Contender::from_token(t)).ok_or("usage: bench serve <contender> <nats-url>")?;
        let url = args.get(2).ok_or("usage: bench serve <contender> <nats-url>")?;
        return runtime.block_on(contenders::serve(contender, url));
    }
    if args.first().map(String::as_str) == Some("load") {
        // For profiling one client: `bench load <contender> <nats-url> <address> <requests> <concurrency>`
        // against a server started with `bench serve` (address: what it printed after `ready`).
        const USAGE: &str = "usage: bench load <contender> <nats-url> <address> <requests> <concurrency>";
        let contender = args.get(1).and_then(|t| Contender::from_token(t)).ok_or(USAGE)?;
        let [url, address, requests, concurrency] = [2, 3, 4, 5].map(|i| args.get(i).cloned().unwrap_or_default());
        let (requests, concurrency) = (requests.parse::<usize>()?, concurrency.parse::<usize>()?);
        return runtime.block_on(async {
            let caller = Caller::connect(contender, &url, &address, Bytes::from(vec![0x5a; 1024])).await?;
            let run = measure::run(&caller, concurrency, requests).await?;
            println!("{:.0} req/s", run.throughput);
            Ok(())
        });
    }
    if args.first().map(String::as_str) == Some("codegen-request") {
        // For profiling the plugin: `bench codegen-request <services> > request.bin`, then
        // `perf record target/release/protoc-gen-nats-micro < request.bin > /dev/null`.
        let services = args.get(1).ok_or("usage: bench codegen-request <services>")?.parse::<usize>()?;
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let request = codegen::request_for(services, &root.join("proto"))?;
        std::io::Write::write_all(&mut std::io::stdout().lock(), &request)?;
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("--streams") {
        // Only the stream tables: `bench --streams [--full]`.
        let full = args.get(1).map(String::as_str) == Some("--full");
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        eprintln!("generating and compiling the TypeScript contenders");
        let programs = Programs::prepare(&root)?;
        let server = NatsServer::start();
        let (streams, slow) = runtime.block_on(measure_streams(&programs, &server.url(), full))?;
        println!("{}", report::streams_table(&streams, slow.as_ref()).trim());
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("--chunked") {
        // Only the chunked transfer table: `bench --chunked`.
        let cells = runtime.block_on(chunked::measure())?;
        println!("{}", chunked::table(&cells).trim());
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("--tracing") {
        // Only the cost of tracing on vs off: `bench --tracing`.
        let server = NatsServer::start();
        return tracing_cost::measure(&server.url());
    }
    if args.first().map(String::as_str) == Some("request-path") {
        // For callgrind: `valgrind --tool=callgrind target/release/bench request-path <calls>`.
        let calls = args.get(1).ok_or("usage: bench request-path <calls>")?.parse::<usize>()?;
        let server = NatsServer::start();
        let single = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        return single.block_on(tracing_cost::request_path(&server.url(), calls));
    }
    if args.first().map(String::as_str) == Some("--codegen") {
        // Only the code generation table, median of the full plan's repeats: `bench --codegen`.
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let plugin = std::env::current_exe()?.with_file_name("protoc-gen-nats-micro");
        let runs = codegen::measure(&plugin, &root.join("proto"), &CODEGEN_SIZES, FULL.codegen_repeats)?;
        println!("{}", report::codegen_table(&runs, FULL.codegen_repeats).trim());
        return Ok(());
    }
    let plan = match args.first().map(String::as_str) {
        None | Some("--quick") => QUICK,
        Some("--full") => FULL,
        Some(other) => {
            return Err(format!(
                "unknown argument {other:?}; use --quick (default), --full, --streams, --chunked, --tracing or --codegen"
            )
            .into());
        }
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let exe = std::env::current_exe()?;
    let plugin = exe.with_file_name("protoc-gen-nats-micro");

    eprintln!("generating and compiling the TypeScript and Python contenders");
    let programs = Programs::prepare(&root)?;
    let mut results = runtime.block_on(measure_rpc(&exe, &programs, plan))?;
    let server = NatsServer::start();
    (results.streams, results.slow_reader) = runtime.block_on(measure_streams(&programs, &server.url(), plan.name == "full"))?;
    drop(server);
    if plan.name == "full" {
        results.chunked = runtime.block_on(chunked::measure())?;
    }
    eprintln!("codegen: synthetic protos of {CODEGEN_SIZES:?} services");
    results.codegen = codegen::measure(&plugin, &root.join("proto"), &CODEGEN_SIZES, plan.codegen_repeats)?;

    let report = report::markdown(&results, plan);
    println!("{report}");
    if plan.name == "full" {
        std::fs::write(root.join("BENCHMARKS.md"), &report)?;
        eprintln!("wrote BENCHMARKS.md");
    }
    Ok(())
}

async fn measure_rpc(exe: &std::path::Path, programs: &Programs, plan: Plan) -> Result<Results, Box<dyn std::error::Error>> {
    let server = NatsServer::start();
    let url = server.url();
    let mut results = Results::default();
    for (index, contender) in Contender::ALL.into_iter().enumerate() {
        let command = match contender.language() {
            None => {
                let mut command = Command::new(exe);
                command.args(["serve", contender.token(), &url]);
                command
            }
            Some(language) => programs.server(language, &url),
        };
        let (mut child, address) = spawn_server(command, contender)?;
        for (p, &size) in PAYLOADS.iter().enumerate() {
            eprintln!("{}: payload {size} B", contender.name());
            let cell = match contender.language() {
                None => {
                    let caller = Caller::connect(contender, &url, &address, Bytes::from(vec![0x5a; size])).await?;
                    measure::cell(&caller, plan).await?
                }
                Some(language) => programs.measure(language, &url, size, plan).await?,
            };
            results.cells.insert((index, p), cell);
        }
        results.server_rss_kib.insert(index, peak_rss_kib(child.id()).unwrap_or(0));
        drop(child.stdin.take());
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(results)
}

/// Starts a contender's server (`bench serve <contender>`, or the node or
/// Python one) and waits for its `ready [address]` line; it serves until its
/// stdin closes.
fn spawn_server(mut command: Command, contender: Contender) -> Result<(Child, String), Box<dyn std::error::Error>> {
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let mut words = line.split_whitespace();
    if words.next() != Some("ready") {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("{} server did not start: {line:?}", contender.name()).into());
    }
    Ok((child, words.next().unwrap_or_default().to_owned()))
}

/// A live process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
