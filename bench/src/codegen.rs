//! Code generation cost: the plugin binary on synthetic protos with N
//! services of 10 methods each, timed from spawn to exit, with its peak RSS.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;

/// Methods per synthetic service.
pub const METHODS_PER_SERVICE: usize = 10;

/// One codegen measurement (the median of its repetitions).
#[derive(Clone, Debug)]
pub struct Codegen {
    /// Services in the proto.
    pub services: usize,
    /// Wall time of the plugin process.
    pub time: Duration,
    /// Peak resident memory of the plugin process, in KiB.
    pub peak_rss_kib: u64,
    /// Size of the generated output, in bytes.
    pub output_bytes: usize,
}

fn synthetic_proto(services: usize) -> String {
    let mut proto = String::from(
        "syntax = \"proto3\";\npackage synth.v1;\nimport \"natsmicro/options.proto\";\n\
         message Req { string id = 1; int64 n = 2; }\nmessage Resp { string id = 1; bytes body = 2; }\n",
    );
    for s in 0..services {
        proto.push_str(&format!(
            "// Service {s}.\nservice Service{s:04} {{\n  option (natsmicro.service) = {{ subject_prefix: \"synth.s{s:04}\" error_codes: [\"CUSTOM_A\", \"CUSTOM_B\"] }};\n"
        ));
        for m in 0..METHODS_PER_SERVICE {
            proto.push_str(&format!("  // Method {m}.\n  rpc Method{m:02}(Req) returns (Resp);\n"));
        }
        proto.push_str("}\n");
    }
    proto
}

/// An encoded CodeGeneratorRequest for a synthetic proto with `services` services.
fn request(services: usize, proto_dir: &Path, scratch: &Path) -> Result<Vec<u8>, String> {
    std::fs::create_dir_all(scratch).map_err(|e| e.to_string())?;
    std::fs::write(scratch.join("synthetic.proto"), synthetic_proto(services)).map_err(|e| e.to_string())?;
    let mut compiler = protox::Compiler::new([scratch, proto_dir]).map_err(|e| format!("{e:?}"))?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_file("synthetic.proto").map_err(|e| format!("{e:?}"))?;
    protoc_gen_nats_micro::request_from_descriptor_set(&compiler.encode_file_descriptor_set(), &["synthetic.proto".into()], None)
        .map_err(|e| e.to_string())
}

/// An encoded request for `services` synthetic services, built in a scratch directory.
pub fn request_for(services: usize, proto_dir: &Path) -> Result<Vec<u8>, String> {
    let scratch = std::env::temp_dir().join(format!("nats-micro-bench-request-{}", std::process::id()));
    let request = request(services, proto_dir, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    request
}

/// Runs the plugin once; returns wall time, peak RSS and output size.
fn run_plugin(plugin: &Path, request: &[u8]) -> Result<(Duration, u64, usize), String> {
    let started = Instant::now();
    let mut child = Command::new(plugin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("running {}: {e}", plugin.display()))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let request = request.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&request));
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut response = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut response).map_err(|e| e.to_string())?;
    let _ = writer.join();
    // wait4 gives this child's own peak RSS (std's wait does not expose rusage).
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in; the pid is our unreaped child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: valid pointers to a status int and a rusage struct owned by this frame.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    if reaped != pid {
        return Err("wait4 failed".into());
    }
    let response = prost_types::compiler::CodeGeneratorResponse::decode(response.as_slice()).map_err(|e| e.to_string())?;
    if let Some(error) = response.error {
        return Err(format!("the plugin failed: {error}"));
    }
    Ok((elapsed, usage.ru_maxrss as u64, response.file.iter().map(|f| f.content().len()).sum()))
}

/// Measures the plugin for each size, `repeats` times each (median reported).
pub fn measure(plugin: &Path, proto_dir: &Path, sizes: &[usize], repeats: usize) -> Result<Vec<Codegen>, String> {
    let scratch = std::env::temp_dir().join(format!("nats-micro-bench-{}", std::process::id()));
    let mut results = Vec::new();
    for &services in sizes {
        let request = request(services, proto_dir, &scratch)?;
        let mut runs: Vec<(Duration, u64, usize)> =
            (0..repeats).map(|_| run_plugin(plugin, &request)).collect::<Result<_, _>>()?;
        runs.sort_by_key(|run| run.0);
        let (time, peak_rss_kib, output_bytes) = runs[runs.len() / 2];
        results.push(Codegen { services, time, peak_rss_kib, output_bytes });
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(results)
}
