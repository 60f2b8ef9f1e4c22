//! Resilience under faults (PROTOCOL §10.3), on real nats-servers, with the
//! ChaosService of `proto/chaos/v1`:
//!
//! 1. a nats-server killed and restarted on the same port while a client
//!    calls at concurrency 32, for the Rust client and server and across
//!    languages (`chaos_client` / `chaos_server` of each: Rust in
//!    `tests/src/bin`, TypeScript in `tests/ts`, Python in `tests/peers`);
//! 2. the node a service instance is on killed in a 3-node cluster;
//! 3. a circuit breaker over a failing dependency;
//! 4. overload: shedding, discovery still answering, no slow consumer.
//!
//! The figures (calls, failures, recovery time, retries) are printed; run
//! with `--nocapture` to see them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nats_micro_runtime::ErrorKind;
use nats_micro_runtime::breaker::{BreakerState, CircuitBreaker};
use nats_micro_runtime::retry::RetryPolicy;
use nats_micro_tests::chaos::{self, Chaos};
use nats_micro_tests::harness::{NatsCluster, NatsServer, free_port};
use nats_micro_tests::peers::Language;
use nats_micro_tests::project::chaos::v1::chaos_service_nats::ChaosServiceClient;
use nats_micro_tests::project::chaos::v1::{Ask, Down};
use serde_json::Value;

/// One scenario at a time: each loads the machine on purpose (32 callers,
/// servers restarted), and two at once on a small CI machine would measure
/// each other rather than the fault.
static SCENARIO: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    SCENARIO.blocking_lock()
}

/// A child process whose stdout lines arrive on a channel; killed on drop.
struct Process {
    child: Child,
    lines: Receiver<String>,
    /// Kept open: the TypeScript programs stop when stdin closes.
    _stdin: Option<ChildStdin>,
    label: String,
}

impl Process {
    fn spawn(mut command: Command, label: String) -> Process {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("starting {label} ({command:?}): {err}"));
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Process { child, lines, _stdin: stdin, label }
    }

    /// The next line that starts with `prefix`, waiting at most `timeout`.
    fn line_starting(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => panic!("{}: no `{prefix}` line within {timeout:?}", self.label),
                Err(RecvTimeoutError::Disconnected) => panic!("{}: exited without a `{prefix}` line", self.label),
            }
        }
    }

    /// Asks the process to stop (SIGTERM).
    fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("running kill");
        assert!(status.success(), "{}: kill -TERM failed", self.label);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A chaos server of some language, serving until [`ChaosServer::put_ids`].
struct ChaosServer(Process);

impl ChaosServer {
    fn start(language: Language, url: &str) -> ChaosServer {
        let mut command = language.program("chaos_server");
        command.env("NATS_URL", url);
        let process = Process::spawn(command, format!("the {language:?} chaos server"));
        process.line_starting("ready", Duration::from_secs(30));
        ChaosServer(process)
    }

    /// Stops the server and returns the ids of the `Put`s it executed.
    fn put_ids(self) -> Vec<u64> {
        self.0.terminate();
        let line = self.0.line_starting("put-ids", Duration::from_secs(20));
        line["put-ids".len()..]
            .trim()
            .split(',')
            .filter(|id| !id.is_empty())
            .map(|id| id.parse().unwrap_or_else(|_| panic!("{}: a put id {id:?}", self.0.label)))
            .collect()
    }
}

/// What a chaos client reports.
#[derive(Debug)]
struct Report {
    get_ok: u64,
    get_failed: u64,
    put_ok: u64,
    put_failed: u64,
    wrong: u64,
    put_ok_ids: Vec<u64>,
    recovery_ms: u64,
    retries: u64,
}

/// A chaos client of some language under load.
struct ChaosClient(Process);

impl ChaosClient {
    fn start(language: Language, url: &str, seconds: u64, extra_env: &[(&str, &str)]) -> ChaosClient {
        let mut command = language.program("chaos_client");
        command.env("NATS_URL", url).env("CHAOS_SECONDS", seconds.to_string()).env("CHAOS_CONCURRENCY", "32");
        command.envs(extra_env.iter().copied());
        let process = Process::spawn(command, format!("the {language:?} chaos client"));
        process.line_starting("ready", Duration::from_secs(30));
        ChaosClient(process)
    }

    fn report(mut self, timeout: Duration) -> Report {
        let line = self.0.line_starting("{", timeout);
        let status = self.0.child.wait().expect("waiting for the client");
        assert!(status.success(), "{} crashed: {status}", self.0.label);
        let json: Value = serde_json::from_str(&line).unwrap_or_else(|err| panic!("{}: {err}: {line}", self.0.label));
        let number = |key: &str| json[key].as_u64().unwrap_or_else(|| panic!("{}: no {key} in {line}", self.0.label));
        Report {
            get_ok: number("get_ok"),
            get_failed: number("get_failed"),
            put_ok: number("put_ok"),
            put_failed: number("put_failed"),
            wrong: number("wrong"),
            put_ok_ids: json["put_ok_ids"].as_array().expect("put_ok_ids").iter().filter_map(Value::as_u64).collect(),
            recovery_ms: number("recovery_ms"),
            retries: number("retries"),
        }
    }
}

/// The figures every fault scenario must meet: no wrong reply, at least
/// 99.9 % of `Get`s succeed, no `Put` executed twice, every `Put` the client
/// counted as ok executed exactly once; and the fault was felt.
fn check(label: &str, report: &Report, executed_puts: &[u64]) {
    println!(
        "{label}: get ok {} failed {}, put ok {} failed {}, wrong {}, retries {}, recovery {} ms",
        report.get_ok, report.get_failed, report.put_ok, report.put_failed, report.wrong, report.retries, report.recovery_ms
    );
    assert_eq!(report.wrong, 0, "{label}: wrong replies");
    let gets = report.get_ok + report.get_failed;
    assert!(gets > 1000, "{label}: too few calls to judge: {report:?}");
    assert!(report.get_ok * 1000 >= gets * 999, "{label}: {} of {gets} Gets failed", report.get_failed);
    let mut executions: HashMap<u64, usize> = HashMap::new();
    for id in executed_puts {
        *executions.entry(*id).or_default() += 1;
    }
    let twice: Vec<_> = executions.iter().filter(|(_, count)| **count > 1).map(|(id, _)| *id).collect();
    assert!(twice.is_empty(), "{label}: Puts executed more than once: {twice:?}");
    assert_eq!(report.put_ok_ids.len() as u64, report.put_ok, "{label}: put_ok_ids");
    let missing: Vec<_> = report.put_ok_ids.iter().filter(|id| executions.get(id) != Some(&1)).collect();
    assert!(missing.is_empty(), "{label}: Puts reported ok but not executed exactly once: {missing:?}");
    assert!(
        report.retries > 0 || report.put_failed > 0 || report.recovery_ms > 0,
        "{label}: the fault went unnoticed, so nothing was tested: {report:?}"
    );
}

/// Scenario 1: the nats-server killed and restarted on the same port,
/// 1 s later, while `client` calls `server` at concurrency 32.
fn restart_under_load(client: Language, server: Language) {
    let label = format!("{client:?} client -> {server:?} server, nats-server restarted");
    let mut nats = NatsServer::start_on(free_port(), &[]);
    let url = nats.url();
    let service = ChaosServer::start(server, &url);
    let load = ChaosClient::start(client, &url, 8, &[]);
    std::thread::sleep(Duration::from_secs(2));
    nats.stop();
    std::thread::sleep(Duration::from_secs(1));
    nats.restart();
    let report = load.report(Duration::from_secs(40));
    check(&label, &report, &service.put_ids());
}

#[test]
fn restart_rust_client_rust_server() {
    let _scenario = one_at_a_time();
    restart_under_load(Language::Rust, Language::Rust);
}

#[test]
fn restart_typescript_client_rust_server() {
    let _scenario = one_at_a_time();
    restart_under_load(Language::TypeScript, Language::Rust);
}

#[test]
fn restart_python_client_rust_server() {
    let _scenario = one_at_a_time();
    restart_under_load(Language::Python, Language::Rust);
}

#[test]
fn restart_rust_client_typescript_server() {
    let _scenario = one_at_a_time();
    restart_under_load(Language::Rust, Language::TypeScript);
}

#[test]
fn restart_rust_client_python_server() {
    let _scenario = one_at_a_time();
    restart_under_load(Language::Rust, Language::Python);
}

/// Scenario 2: two instances on different nodes of a 3-node cluster, the
/// client on the third; the node of one instance is killed under load.
/// Requests that were on their way to that instance are lost without the
/// client's connection dropping, so the client bounds each attempt (1 s)
/// and retries the idempotent ones.
#[test]
fn cluster_node_lost_under_load() {
    let _scenario = one_at_a_time();
    let mut cluster = NatsCluster::start(3);
    let first = ChaosServer::start(Language::Rust, &cluster.node(0).url());
    let second = ChaosServer::start(Language::Rust, &cluster.node(1).url());
    let client_url = cluster.node(2).url();
    let load = ChaosClient::start(Language::Rust, &client_url, 8, &[("CHAOS_ATTEMPT_TIMEOUT_MS", "1000")]);
    std::thread::sleep(Duration::from_secs(2));
    let served = gets_served_per_instance(&client_url);
    assert!(served.len() == 2 && served.iter().all(|n| *n > 0), "both instances serve before the fault: {served:?}");
    cluster.node(0).stop();
    let report = load.report(Duration::from_secs(40));
    let mut executed = first.put_ids();
    executed.extend(second.put_ids());
    check("Rust client -> 2 Rust servers, a cluster node killed", &report, &executed);
}

/// `Get` requests each ChaosService instance has served so far, from
/// every instance's `$SRV.STATS` reply.
fn gets_served_per_instance(url: &str) -> Vec<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let nats = async_nats::connect(url).await.expect("connects");
        let inbox = nats.new_inbox();
        let mut replies = nats.subscribe(inbox.clone()).await.expect("subscribes");
        nats.publish_with_reply("$SRV.STATS.ChaosService", inbox, bytes::Bytes::new()).await.expect("asks");
        let mut served = Vec::new();
        while let Ok(Some(reply)) =
            tokio::time::timeout(Duration::from_millis(500), futures_util::StreamExt::next(&mut replies)).await
        {
            let stats: Value = serde_json::from_slice(&reply.payload).expect("STATS is JSON");
            let endpoints = stats["endpoints"].as_array().cloned().unwrap_or_default();
            let get = endpoints.iter().find(|e| e["name"] == "get").and_then(|e| e["num_requests"].as_u64());
            served.push(get.unwrap_or(0));
        }
        served
    })
}

/// Scenario 3: a circuit breaker over `Flaky` while its dependency is
/// down: it opens after the threshold, no call reaches the server while it
/// is open, and the half-open probe closes it once the dependency is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_fails_fast_and_closes_after_recovery() {
    let _scenario = SCENARIO.lock().await;
    let nats = NatsServer::start();
    let service = chaos::builder(Chaos::default()).start(&nats.connect().await).await.expect("starts");
    let changes = Arc::new(Mutex::new(Vec::new()));
    let seen = changes.clone();
    let connection = nats.connect().await;
    let plain = ChaosServiceClient::new(connection.clone());
    // snippet: rust-breaker
    let breaker = CircuitBreaker::new() // 5 in a row, or half of the last 20; open 5 s
        .open_interval(Duration::from_millis(500))
        .on_state_change(move |from, to| seen.lock().expect("lock").push((from, to)));
    // Each attempt passes the breaker; here one attempt per call. A clone tells breaker.state().
    let guarded =
        ChaosServiceClient::new(connection).with_retry_policy(RetryPolicy::disabled()).with_circuit_breaker(breaker.clone());
    // end snippet
    let ask = |id: u64| Ask { id, text: id.to_string(), sleep_ms: 0 };

    let before = plain.set_down(Down { down: true }).await.expect("SetDown").flaky_calls;
    for id in 0..5 {
        let err = guarded.flaky(ask(id)).await.expect_err("the dependency is down");
        assert!(err.is_unavailable() && err.kind() == ErrorKind::Service, "{err:?}");
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    let started = Instant::now();
    for id in 5..105 {
        let err = guarded.flaky(ask(id)).await.expect_err("open");
        assert_eq!(err.kind(), ErrorKind::CircuitOpen, "{err:?}");
        assert!(err.is_unavailable());
        assert_eq!(err.message(), "circuit open for chaos.v1.ChaosService.Flaky");
    }
    let fast = started.elapsed();
    assert!(fast < Duration::from_millis(100), "open calls fail at once: {fast:?}");
    let reached = plain.set_down(Down { down: false }).await.expect("SetDown").flaky_calls - before;
    assert_eq!(reached, 5, "only the calls before the breaker opened reached the server");

    tokio::time::sleep(Duration::from_millis(600)).await;
    let answer = guarded.flaky(ask(200)).await.expect("the probe succeeds");
    assert_eq!(answer.id, 200);
    assert_eq!(breaker.state(), BreakerState::Closed);
    use BreakerState::*;
    assert_eq!(*changes.lock().expect("lock"), [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]);
    println!("breaker: opened after 5 failures, 100 calls failed fast in {fast:?}, 0 reached the server");
    service.stop().await;
}

/// Scenario 4: `Slow` under ten times its capacity (4 handlers, 16
/// waiting): the excess is shed at once with RESOURCE_EXHAUSTED, `$SRV.PING`
/// answers promptly throughout, the service's connection never becomes a
/// slow consumer, and a retrying client gets through once the load drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_and_discovery_keeps_answering() {
    let _scenario = SCENARIO.lock().await;
    let nats = NatsServer::start_on(free_port(), &[]);
    let service_connection = nats.connect().await;
    let service = chaos::builder(Chaos::default()).start(&service_connection).await.expect("starts");
    let once = ChaosServiceClient::new(nats.connect().await).with_retry_policy(RetryPolicy::disabled());
    let capacity = chaos::MAX_CONCURRENCY + 16;
    let burst: Vec<_> = (0..capacity as u64 * 10)
        .map(|id| {
            let client = once.clone();
            tokio::spawn(async move { client.slow(Ask { id, text: id.to_string(), sleep_ms: 300 }).await })
        })
        .collect();
    // Meanwhile: discovery answers promptly, and a retrying client waits its turn.
    let retrying = ChaosServiceClient::new(nats.connect().await)
        .with_retry_policy(RetryPolicy::default().max_attempts(20).max_delay(Duration::from_millis(500)));
    let patient = tokio::spawn(async move { retrying.slow(Ask { id: 9999, text: "9999".into(), sleep_ms: 300 }).await });
    let pinger = nats.connect().await;
    let mut slowest_ping = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        let request = async_nats::Request::new().timeout(Some(Duration::from_secs(2)));
        pinger.send_request("$SRV.PING.ChaosService", request).await.expect("PING answers under load");
        slowest_ping = slowest_ping.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut ok, mut shed) = (0, 0);
    for call in burst {
        match call.await.expect("task") {
            Ok(_) => ok += 1,
            Err(err) if err.is_resource_exhausted() => shed += 1,
            Err(err) => panic!("neither served nor shed: {err:?}"),
        }
    }
    let answer = patient.await.expect("task").expect("the retrying client gets through");
    assert_eq!(answer.id, 9999);
    println!("overload: {ok} served, {shed} shed of {}, slowest PING {slowest_ping:?}", capacity * 10);
    // The first `capacity` arrivals are served; the retrying client's first
    // attempt may be one of them (it runs one attempt at a time).
    assert!(ok + 1 >= capacity && shed >= capacity * 5, "served {ok}, shed {shed}");
    assert!(slowest_ping < Duration::from_millis(500), "PING took {slowest_ping:?}");
    let varz = nats.monitor("/varz");
    assert!(varz.contains("\"slow_consumers\": 0") || varz.contains("\"slow_consumers\":0"), "slow consumers: {varz}");
    assert_eq!(service_connection.statistics().connects.load(Ordering::Relaxed), 1, "the service's connection stayed up");
    service.stop().await;
}
