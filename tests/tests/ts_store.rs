//! Persistence and chunked transfer (PROTOCOL §12) of the TypeScript
//! output on real nats-servers: `tests/ts/store_checks.ts` (the scenario's
//! service in-process, its generated client's typed handles and chunked
//! helpers: every write mode, both failure policies with forced failures,
//! compare-and-set, bad keys, TTL expiry, history, watch, keys by parts,
//! client-only, the object store with a 10 MiB round trip and a tampered
//! digest, 50 MiB up and down, a cut download, corrupted digests, no
//! JetStream) on a server with JetStream and one without; then the programs
//! the cross-language test runs (`store_server.ts`, `store_client.ts`)
//! against each other.

use std::path::Path;

use nats_micro_tests::harness::NatsServer;
use nats_micro_tests::peers::{Language, Server};
use serde_json::Value;

/// Checks `store_checks.ts` prints as `ok NAME`.
const CHECKS: usize = 24;

#[test]
fn typescript_persistence_and_chunked_transfer() {
    let jetstream = NatsServer::start_jetstream();
    let plain = NatsServer::start();
    let output = Language::TypeScript
        .program("store_checks")
        .env("NATS_URL", jetstream.url())
        .env("NATS_URL_PLAIN", plain.url())
        .output()
        .expect("running store_checks");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "store_checks failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let passed = stdout.lines().filter(|line| line.starts_with("ok ")).count();
    assert_eq!(passed, CHECKS, "{CHECKS} checks:\n{stdout}");
    for figure in stdout.lines().filter(|line| line.starts_with("figure ")) {
        println!("{figure}");
    }
}

/// One `store_client` command's JSON line.
fn store_client(url: &str, args: &[&str]) -> Value {
    let output =
        Language::TypeScript.program("store_client").args(args).env("NATS_URL", url).output().expect("running store_client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "store_client {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.trim()).unwrap_or_else(|err| panic!("store_client {args:?}: {err}: {stdout}"))
}

/// SHA-256 of pattern(seed) of `size` bytes (byte i = (i * 31 + seed) mod 251), in hex, by Python's hashlib.
fn pattern_sha256(size: usize, seed: usize) -> String {
    let script = "import hashlib, sys\n\
        size, seed = int(sys.argv[1]), int(sys.argv[2])\n\
        block = bytes((i * 31 + seed) % 251 for i in range(251 * 4096))\n\
        h = hashlib.sha256()\n\
        left = size\n\
        while left > 0:\n    h.update(block[:min(left, len(block))]); left -= min(left, len(block))\n\
        print(h.hexdigest())";
    let output = std::process::Command::new(nats_micro_tests::harness::python())
        .args(["-c", script, &size.to_string(), &seed.to_string()])
        .output()
        .expect("running python");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn the_typescript_store_programs_work_together() {
    let nats = NatsServer::start_jetstream();
    let url = nats.url();
    let _server = Server::start(Language::TypeScript.program("store_server"), &url, "the TypeScript store server");

    assert_eq!(store_client(&url, &["kv-get", "user.p1"]), serde_json::json!({"found": false}));
    let put = store_client(&url, &["kv-put", "user.p1", "p1", "ann"]);
    let revision = put["revision"].as_u64().expect("a revision");
    let got = store_client(&url, &["kv-get", "user.p1"]);
    assert_eq!(got, serde_json::json!({"found": true, "revision": revision, "id": "p1", "name": "ann", "version": 7}));
    assert_eq!(store_client(&url, &["obj-get", "report none.bin"])["error"], "NOT_FOUND");

    let size = 50 * 1024 * 1024;
    let upload = store_client(&url, &["upload", &size.to_string(), "3"]);
    assert_eq!(upload["size"], size);
    assert_eq!(upload["sha256"], pattern_sha256(size, 3));
    println!("TS->TS upload 50 MiB: client peak RSS {} KiB", upload["peak_rss_kib"]);

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ts-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let path = dir.join("download.bin");
    let path = path.to_string_lossy();
    let download = store_client(&url, &["download", &size.to_string(), "5", "0", &path]);
    assert_eq!(download["size"], size);
    assert_eq!(download["sha256"], pattern_sha256(size, 5));
    println!("TS->TS download 50 MiB: client peak RSS {} KiB", download["peak_rss_kib"]);

    let cut = dir.join("cut.bin");
    let cut = cut.to_string_lossy();
    let failed = store_client(&url, &["download", &size.to_string(), "5", &(5 * 1024 * 1024).to_string(), &cut]);
    assert_eq!(failed, serde_json::json!({"error": "UNAVAILABLE", "message": "cut", "file_exists": false}));
    let _ = std::fs::remove_dir_all(&dir);
}
