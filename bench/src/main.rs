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

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// The system allocator, counting allocations (and reallocations): a Rust
/// server (`bench serve`) reports the count when asked, for allocations per
/// request. One relaxed atomic add per allocation, in every contender alike.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as given.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as given.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as given.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as given.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (and reallocations) made by this process so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
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

/// What serving one payload's requests cost a contender's server process.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerCost {
    /// CPU time (user + system, all threads) per request, in microseconds.
    pub cpu_us: Option<f64>,
    /// Allocations per request (the Rust servers, by the counting allocator).
    pub allocations: Option<f64>,
}

/// Everything one run measured.
#[derive(Debug, Default)]
pub struct Results {
    /// By contender, then payload size.
    pub cells: BTreeMap<(usize, usize), Cell>,
    /// The server's cost, by contender, then payload size.
    pub server_cost: BTreeMap<(usize, usize), ServerCost>,
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
        // For callgrind: `valgrind --tool=callgrind target/release/bench request-path <calls> [concurrency] [contender]`
        // (contender: raw, raw-prost, generated (the default) or service).
        const USAGE: &str = "usage: bench request-path <calls> [concurrency] [contender]";
        let calls = args.get(1).ok_or(USAGE)?.parse::<usize>()?;
        let concurrency = args.get(2).map_or(Ok(1), |c| c.parse::<usize>())?;
        let contender = args.get(3).map_or(Some(Contender::Generated), |t| Contender::from_token(t)).ok_or(USAGE)?;
        let server = NatsServer::start();
        let single = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        return single.block_on(tracing_cost::request_path(&server.url(), contender, calls, concurrency));
    }
    if args.first().map(String::as_str) == Some("stream-path") {
        // For callgrind: `valgrind --tool=callgrind target/release/bench stream-path <messages> <size> <raw|seq|generated>`.
        const USAGE: &str = "usage: bench stream-path <messages> <size> <raw|seq|generated>";
        let messages = args.get(1).ok_or(USAGE)?.parse::<usize>()?;
        let size = args.get(2).ok_or(USAGE)?.parse::<usize>()?;
        let kind = args.get(3).ok_or(USAGE)?;
        let server = NatsServer::start();
        let single = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        return single.block_on(streams::stream_path(&server.url(), kind, size, messages));
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
            Some(language) => programs.server(language, &url, contender.is_raw_program()),
        };
        let mut process = ServerProcess::spawn(command, contender)?;
        for (p, &size) in PAYLOADS.iter().enumerate() {
            eprintln!("{}: payload {size} B", contender.name());
            let (cpu_before, allocations_before) = (cpu_nanos(process.child.id()), process.allocations(contender));
            let cell = match contender.language() {
                None => {
                    let caller = Caller::connect(contender, &url, &process.address, Bytes::from(vec![0x5a; size])).await?;
                    measure::cell(&caller, plan).await?
                }
                Some(language) => programs.measure(language, &url, size, plan, contender.is_raw_program()).await?,
            };
            let (cpu_after, allocations_after) = (cpu_nanos(process.child.id()), process.allocations(contender));
            let requests = requests_sent(plan) as f64;
            let cost = ServerCost {
                cpu_us: cpu_before.zip(cpu_after).map(|(before, after)| after.saturating_sub(before) as f64 / 1e3 / requests),
                allocations: allocations_before
                    .zip(allocations_after)
                    .map(|(before, after)| after.saturating_sub(before) as f64 / requests),
            };
            results.cells.insert((index, p), cell);
            results.server_cost.insert((index, p), cost);
        }
        results.server_rss_kib.insert(index, peak_rss_kib(process.child.id()).unwrap_or(0));
        process.stop();
    }
    Ok(results)
}

/// The requests one payload's run sends a server: the warm-up at
/// concurrency 16, then the measured runs, each rounded up to a multiple of
/// its concurrency as every load generator does.
fn requests_sent(plan: Plan) -> usize {
    let rounded = |total: usize, concurrency: usize| total.div_ceil(concurrency) * concurrency;
    rounded(plan.warmup, 16) + CONCURRENCY.iter().map(|&c| rounded(plan.requests, c)).sum::<usize>()
}

/// A contender's server (`bench serve <contender>`, or the node or Python
/// one), serving until its stdin closes.
struct ServerProcess {
    child: Child,
    /// What it printed after `ready`: a subject, or tonic's URL.
    address: String,
    stdout: BufReader<ChildStdout>,
}

impl ServerProcess {
    /// Starts the server and waits for its `ready [address]` line.
    fn spawn(mut command: Command, contender: Contender) -> Result<ServerProcess, Box<dyn std::error::Error>> {
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let mut words = line.split_whitespace();
        if words.next() != Some("ready") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{} server did not start: {line:?}", contender.name()).into());
        }
        let address = words.next().unwrap_or_default().to_owned();
        Ok(ServerProcess { child, address, stdout })
    }

    /// The allocations a Rust server made so far (it answers an
    /// `allocations` line on its stdin); `None` for the others.
    fn allocations(&mut self, contender: Contender) -> Option<u64> {
        if contender.language().is_some() {
            return None;
        }
        writeln!(self.child.stdin.as_mut()?, "allocations").ok()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).ok()?;
        line.strip_prefix("allocations ")?.trim().parse().ok()
    }

    /// Closes its stdin, then makes sure it is gone.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time a live process has used so far, all its threads, in
/// nanoseconds: the sum of `/proc/<pid>/task/*/schedstat`, else the
/// process's utime + stime from `/proc/<pid>/stat` (clock ticks).
fn cpu_nanos(pid: u32) -> Option<u64> {
    let from_schedstat = || -> Option<u64> {
        let mut total = 0u64;
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
            let schedstat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            total += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
        Some(total)
    };
    from_schedstat().or_else(|| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The fields after the command name (which is in parentheses and may hold spaces).
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok().filter(|&t| t > 0)?;
        Some(ticks * 1_000_000_000 / per_second)
    })
}

/// A live process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
