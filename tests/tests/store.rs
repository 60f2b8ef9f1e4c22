//! Persistence and chunked transfer (PROTOCOL §12) between the generated
//! Rust service and client of `proto/store/v1`, on a nats-server with
//! JetStream (`-js -sd <tmpdir>`), and against raw peers for the wire.
//! No assertion is timed: waits for TTLs and watches are bounded polling
//! loops that fail with what they saw.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use nats_micro_runtime::chunked::{CHUNKED_DIGEST, CHUNKED_SIZE, error_from_io};
use nats_micro_runtime::store::{KV_REVISION_HEADER, KvChange};
use nats_micro_runtime::stream::wire::{REPLY_TO, STREAM_CREDIT, STREAM_END, STREAM_INBOX, STREAM_SEQ};
use nats_micro_runtime::{Code, Request, Service, StartError};
use nats_micro_tests::harness::{NatsServer, free_port};
use nats_micro_tests::project::store::v1::profile_service_nats::{self as store, ProfileServiceClient, ProfileServiceError};
use nats_micro_tests::project::store::v1::{
    Chunk, DownloadRequest, Note, Profile, ReportRequest, SessionKind, SessionRequest, Tenant, UploadResult,
};
use nats_micro_tests::store::{PatternReader, Profiles, pattern};
use prost::Message as _;
use sha2::{Digest, Sha256};

struct Fixture {
    server: NatsServer,
    service: Service,
    client: ProfileServiceClient,
}

async fn start_on(server: NatsServer) -> Fixture {
    let service = store::serve(&server.connect().await, Profiles::default()).await.expect("the store service starts");
    let client = ProfileServiceClient::new(server.connect().await);
    Fixture { server, service, client }
}

async fn start() -> Fixture {
    start_on(NatsServer::start_jetstream()).await
}

fn profile(id: &str, name: &str) -> Profile {
    Profile { id: id.into(), name: name.into(), ..Default::default() }
}

fn revision_of(headers: &HeaderMap) -> u64 {
    headers.get(KV_REVISION_HEADER).and_then(|v| v.as_str().parse().ok()).expect("a reply after a write carries its revision")
}

/// The STATS data of one endpoint.
fn stats_data(service: &Service, endpoint: &str) -> serde_json::Value {
    let stats = service.stats();
    let entry = stats.endpoints.iter().find(|e| e.name == endpoint).expect("endpoint in STATS");
    entry.data.clone().unwrap_or_default()
}

/// Polls `check` every 50 ms for up to `limit`: whether it came true.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_bad_key(result: Result<impl std::fmt::Debug, ProfileServiceError>, field: &str) {
    let err = result.expect_err("a request without a valid key fails");
    assert!(err.is_invalid_argument(), "{err}");
    let violations = err.bad_request().expect("a BadRequest detail").field_violations;
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].field, field, "{err}");
}

#[tokio::test]
async fn last_write_wins_keeps_the_reply_body_with_its_revision_and_history() {
    let fx = start().await;
    let saved = fx.client.save_profile(profile("1", "ada")).await.expect("saved");
    assert_eq!(saved.version, 1);
    let first = revision_of(saved.headers());
    let profiles = fx.client.save_profile_kv().await.expect("the bucket exists");
    let entry = profiles.get("user.1").await.expect("read").expect("written before the reply");
    assert_eq!((&entry.value, entry.revision), (&*saved, first));
    assert_eq!(profiles.key(&profile("1", "")).unwrap(), "user.1");
    assert_eq!(profiles.key_from_parts(&[("id", "1")]).unwrap(), "user.1");

    for n in 2..=7 {
        let saved = fx.client.save_profile(profile("1", "ada")).await.expect("saved again");
        assert_eq!(saved.version, n);
        assert!(revision_of(saved.headers()) > first);
    }
    let latest = profiles.get("user.1").await.unwrap().unwrap();
    assert_eq!(latest.value.version, 7);
    // max_history 5: the bucket keeps the last five values of the key.
    let history: Vec<_> = profiles.store().history("user.1").await.unwrap().collect().await;
    let versions: Vec<i64> = history.into_iter().map(|e| Profile::decode(e.unwrap().value).unwrap().version).collect();
    assert_eq!(versions, [3, 4, 5, 6, 7]);

    // A value that does not decode as the response is DATA_LOSS.
    profiles.store().put("user.garbage", Bytes::from_static(b"\xff\xff\xff")).await.unwrap();
    let err = profiles.get("user.garbage").await.expect_err("undecodable");
    assert!(err.is_data_loss(), "{err}");

    // The bucket was created with the proto's settings.
    let info = profiles.store().status().await.unwrap();
    let config = &info.info.config;
    assert_eq!(config.description.as_deref(), Some("Profiles by id \"quoted\" \\ and escaped"));
    assert_eq!(config.max_messages_per_subject, 5);
    assert!(config.compression.is_some());
    assert_eq!(config.metadata.get("owner").map(String::as_str), Some("store-scenario"));
    drop(fx.server);
}

#[tokio::test]
async fn create_only_refuses_a_second_write_with_already_exists() {
    let fx = start().await;
    let created = fx.client.create_profile(profile("c1", "ada")).await.expect("created");
    let again = fx.client.create_profile(profile("c1", "bob")).await.expect_err("a key that holds a value");
    assert!(again.is_already_exists(), "{again}");
    let kv = fx.client.create_profile_kv().await.unwrap();
    let entry = kv.get("user.c1").await.unwrap().unwrap();
    assert_eq!((entry.value.name.as_str(), entry.revision), ("ada", revision_of(created.headers())));
    // A deleted key may be created again.
    kv.delete("user.c1").await.unwrap();
    let recreated = fx.client.create_profile(profile("c1", "eve")).await.expect("created after a delete");
    assert_eq!(kv.get("user.c1").await.unwrap().unwrap().revision, revision_of(recreated.headers()));
    // The handle's own create and update have the same semantics.
    assert!(kv.create("user.c1", &profile("c1", "x")).await.unwrap_err().is_already_exists());
    assert!(kv.update("user.c1", &profile("c1", "x"), 1).await.unwrap_err().is_aborted());
    drop(fx.server);
}

#[tokio::test]
async fn compare_and_set_uses_the_revision_header_or_the_revision_read_before_the_handler() {
    let fx = start().await;
    // No header, no key: a create.
    let first = fx.client.update_profile(profile("u1", "ada")).await.expect("created");
    let r1 = revision_of(first.headers());
    // No header: the revision read before the handler.
    let second = fx.client.update_profile(profile("u1", "ada")).await.expect("updated");
    let r2 = revision_of(second.headers());
    assert!(r2 > r1);
    // A stale revision is ABORTED; the current one is written.
    let stale = Request::new(profile("u1", "bob")).with_header(KV_REVISION_HEADER, &r1.to_string());
    let err = fx.client.update_profile(stale).await.expect_err("stale");
    assert!(err.is_aborted(), "{err}");
    let current = Request::new(profile("u1", "bob")).with_header(KV_REVISION_HEADER, &r2.to_string());
    let third = fx.client.update_profile(current).await.expect("at the current revision");
    // 0: the key must hold no value.
    let must_be_new = Request::new(profile("u1", "eve")).with_header(KV_REVISION_HEADER, "0");
    assert!(fx.client.update_profile(must_be_new).await.unwrap_err().is_aborted());
    let brand_new = Request::new(profile("u2", "eve")).with_header(KV_REVISION_HEADER, "0");
    fx.client.update_profile(brand_new).await.expect("0 for a new key");
    // A malformed header is INVALID_ARGUMENT before the handler runs (its counter does not move).
    let malformed = Request::new(profile("u1", "eve")).with_header(KV_REVISION_HEADER, "12abc");
    let err = fx.client.update_profile(malformed).await.expect_err("malformed");
    assert!(err.is_invalid_argument(), "{err}");
    assert_eq!(err.bad_request().unwrap().field_violations[0].field, KV_REVISION_HEADER);
    let next = fx.client.save_profile(profile("u1", "x")).await.unwrap();
    assert_eq!(next.version, third.version + 2, "must-be-new and this call reached the handler; malformed did not");
    let kv = fx.client.update_profile_kv().await.unwrap();
    assert_eq!(kv.get("user.u1").await.unwrap().unwrap().value.name, "bob");
    drop(fx.server);
}

#[tokio::test]
async fn best_effort_failures_leave_the_reply_and_are_counted_required_ones_fail_the_call() {
    let fx = start().await;
    fx.client.touch_profile(profile("t1", "ada")).await.expect("created");
    let touched = fx.client.touch_profile(profile("t1", "bob")).await.expect("best effort: the reply stands");
    assert_eq!(touched.version, 2);
    assert!(touched.headers().get(KV_REVISION_HEADER).is_none(), "nothing was written");
    let bad = fx.client.touch_profile(profile("", "ada")).await.expect("best effort: an unrenderable key too");
    assert_eq!(bad.version, 1);
    assert_eq!(stats_data(&fx.service, "touch_profile"), serde_json::json!({"shed": 0, "persist_failures": 2}));
    assert_eq!(fx.client.touch_profile_kv().await.unwrap().get("user.t1").await.unwrap().unwrap().value.name, "ada");

    // REQUIRED: the caller gets the error instead of the reply.
    fx.client.create_profile(profile("r1", "ada")).await.unwrap();
    assert!(fx.client.create_profile(profile("r1", "ada")).await.unwrap_err().is_already_exists());
    assert_bad_key(fx.client.save_profile(profile("", "ada")).await, "id");
    let stats = fx.service.stats();
    let create = stats.endpoints.iter().find(|e| e.name == "create_profile").unwrap();
    assert_eq!((create.num_requests, create.num_errors), (2, 1));
    // A REQUIRED failure is both an error and a failed write.
    assert_eq!(stats_data(&fx.service, "create_profile"), serde_json::json!({"shed": 0, "persist_failures": 1}));
    // Endpoints that persist nothing keep their data as it was.
    assert_eq!(stats_data(&fx.service, "annotate"), serde_json::json!({"shed": 0}));
    // A handler error persists nothing.
    let rejected = fx.client.save_profile(profile("r2", "reject")).await.unwrap_err();
    assert!(rejected.is_profile_rejected(), "{rejected}");
    assert!(fx.client.save_profile_kv().await.unwrap().get("user.r2").await.unwrap().is_none());
    drop(fx.server);
}

fn session() -> SessionRequest {
    SessionRequest {
        tenant: Some(Tenant { region: "eu".into(), id: -42 }),
        number: u64::MAX,
        serial: 7,
        delta: -3,
        slot: 0,
        active: true,
        kind: SessionKind::Web as i32,
        label: Some("blue".into()),
    }
}

#[tokio::test]
async fn keys_render_every_scalar_and_nested_fields_and_refuse_missing_or_invalid_values() {
    let fx = start().await;
    let opened = fx.client.open_session(session()).await.expect("opened");
    let key = "eu.-42.n18446744073709551615.u7.s-3.f0.true.SESSION_KIND_WEB.blue";
    assert_eq!(opened.key, key);
    let sessions = fx.client.open_session_kv().await.unwrap();
    assert_eq!(sessions.key(&session()).unwrap(), key);
    assert_eq!(sessions.get(key).await.unwrap().map(|e| e.value.key), Some(key.to_owned()));
    // An enum number the proto does not declare renders in decimal.
    let undeclared = SessionRequest { kind: 9, ..session() };
    assert!(store::open_session_key(&undeclared).unwrap().contains(".true.9.blue"));

    assert_bad_key(fx.client.open_session(SessionRequest { tenant: None, ..session() }).await, "tenant.region");
    assert_bad_key(fx.client.open_session(SessionRequest { label: None, ..session() }).await, "label");
    assert_bad_key(fx.client.open_session(SessionRequest { label: Some(String::new()), ..session() }).await, "label");
    assert_bad_key(fx.client.open_session(SessionRequest { label: Some("a b".into()), ..session() }).await, "label");
    assert_bad_key(fx.client.open_session(SessionRequest { label: Some("x.".into()), ..session() }).await, "label");
    let empty_region = SessionRequest { tenant: Some(Tenant { region: String::new(), id: 1 }), ..session() };
    assert_bad_key(fx.client.open_session(empty_region).await, "tenant.region");
    assert_bad_key(fx.client.save_profile(profile("", "x")).await, "id");
    assert_bad_key(fx.client.save_profile(profile("a*b", "x")).await, "id");
    assert_bad_key(fx.client.save_profile(profile("a..b", "x")).await, "id");
    drop(fx.server);
}

#[tokio::test]
async fn keys_with_a_ttl_expire_and_purges_leave_short_lived_markers() {
    let fx = start().await;
    let opened = fx.client.open_session(session()).await.expect("opened");
    let sessions = fx.client.open_session_kv().await.unwrap();
    assert!(sessions.get(&opened.key).await.unwrap().is_some());
    // key_ttl is 1 s: the key is gone soon after (bounded wait, no timing asserted).
    let expired = eventually(Duration::from_secs(15), || async { sessions.get(&opened.key).await.unwrap().is_none() }).await;
    assert!(expired, "the session key outlived its TTL by far");
    // The handle writes with the key's TTL too.
    sessions.put("eu.1.n1.u1.s1.f1.true.SESSION_KIND_CLI.x", &Default::default()).await.unwrap();
    let expired = eventually(Duration::from_secs(15), || async {
        sessions.get("eu.1.n1.u1.s1.f1.true.SESSION_KIND_CLI.x").await.unwrap().is_none()
    })
    .await;
    assert!(expired, "a key the handle wrote outlived its TTL by far");
    let info = sessions.store().status().await.unwrap();
    assert_eq!(info.info.config.subject_delete_marker_ttl, Some(Duration::from_secs(1)));
    assert!(info.info.config.allow_message_ttl);
    drop(fx.server);
}

#[tokio::test]
async fn watches_see_puts_deletes_and_purges_and_keys_match_template_parts() {
    let fx = start().await;
    let profiles = fx.client.save_profile_kv().await.unwrap();
    let mut watch = profiles.watch("user.w1").await.unwrap();
    let mut seen = Vec::new();
    // Each change is awaited before the next write: a purge is a rollup
    // that removes the key's earlier messages, so a change the watcher has
    // not been delivered yet when the purge lands is gone for every watcher.
    let saved = fx.client.save_profile(profile("w1", "ada")).await.unwrap();
    for step in 0..4 {
        match step {
            1 => profiles.delete("user.w1").await.unwrap(),
            2 => drop(profiles.put("user.w1", &profile("w1", "bob")).await.unwrap()),
            3 => profiles.purge("user.w1").await.unwrap(),
            _ => {}
        }
        match tokio::time::timeout(Duration::from_secs(10), watch.change()).await {
            Ok(Some(change)) => seen.push(change.expect("a change")),
            other => panic!("the watch stopped after {seen:?}: {other:?}"),
        }
    }
    assert!(matches!(&seen[0], KvChange::Put(e) if e.value == *saved && e.revision == revision_of(saved.headers())), "{seen:?}");
    assert!(matches!(&seen[1], KvChange::Delete { key, .. } if key == "user.w1"), "{seen:?}");
    assert!(matches!(&seen[2], KvChange::Put(e) if e.value.name == "bob"), "{seen:?}");
    assert!(matches!(&seen[3], KvChange::Purge { .. }), "{seen:?}");
    // `watch` starts with the key's current state (here the purge marker);
    // `watch_updates` with the next change only.
    let mut again = profiles.watch("user.w1").await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), again.change()).await.expect("the current state");
    assert!(matches!(&first, Some(Ok(KvChange::Purge { .. }))), "{first:?}");
    let mut updates = profiles.watch_updates("user.w1").await.unwrap();
    profiles.put("user.w1", &profile("w1", "cy")).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), updates.change()).await.expect("the next put");
    assert!(matches!(&next, Some(Ok(KvChange::Put(e))) if e.value.name == "cy"), "{next:?}");
    profiles.purge("user.w1").await.unwrap();

    for id in ["k1", "k2", "k3"] {
        fx.client.save_profile(profile(id, "x")).await.unwrap();
    }
    assert_eq!(profiles.keys(&[]).await.unwrap(), ["user.k1", "user.k2", "user.k3"]);
    assert_eq!(profiles.keys(&[("id", "k2")]).await.unwrap(), ["user.k2"]);
    assert!(profiles.keys(&[("nope", "1")]).await.unwrap_err().is_invalid_argument());

    fx.client.open_session(session()).await.unwrap();
    let sessions = fx.client.open_session_kv().await.unwrap();
    let europe = sessions.keys(&[("tenant.region", "eu"), ("label", "blue")]).await.unwrap();
    assert!(europe.iter().all(|k| k.starts_with("eu.")), "{europe:?}");
    assert!(sessions.keys(&[("tenant.region", "us")]).await.unwrap().is_empty());
    drop(fx.server);
}

#[tokio::test]
async fn client_only_methods_never_write_and_their_handles_create_the_bucket() {
    let fx = start().await;
    let note = Note { id: "n1".into(), text: "hello".into() };
    assert_eq!(*fx.client.annotate(note.clone()).await.unwrap(), note);
    let js = async_nats::jetstream::new(fx.server.connect().await);
    assert!(js.get_key_value("notes").await.is_err(), "the server never creates a client-only bucket");
    // The other buckets were created at registration.
    for bucket in ["profiles", "profiles_created", "profiles_cas", "profiles_touched", "sessions"] {
        assert!(js.get_key_value(bucket).await.is_ok(), "{bucket}");
    }
    // A handle on a non-client-only bucket that no server created is NOT_FOUND.
    let bare = NatsServer::start_jetstream();
    let err = ProfileServiceClient::new(bare.connect().await).save_profile_kv().await.unwrap_err();
    assert!(err.is_not_found() && err.message().contains("profiles"), "{err}");

    let notes = fx.client.annotate_kv().await.expect("opening creates the client-only bucket");
    let revision = notes.put(&notes.key(&note).unwrap(), &note).await.unwrap();
    let entry = notes.get("note.n1").await.unwrap().unwrap();
    assert_eq!((entry.value, entry.revision), (note, revision));
    drop(fx.server);
}

#[tokio::test]
async fn without_jetstream_registration_and_handles_fail_with_failed_precondition() {
    let server = NatsServer::start();
    let err = store::serve(&server.connect().await, Profiles::default()).await.expect_err("no JetStream");
    let typed = err.error().expect("a typed error");
    assert_eq!(typed.code(), &Code::FailedPrecondition, "{err}");
    assert!(typed.message().contains("JetStream") && typed.message().contains("\"profiles\""), "{err}");
    assert!(matches!(err, StartError::Store(_)));
    // Nothing was left subscribed.
    let client = ProfileServiceClient::new(server.connect().await);
    let call = client.annotate(Note::default()).await.unwrap_err();
    assert!(call.is_no_responders(), "{call}");
    let handle = client.save_profile_kv().await.unwrap_err();
    assert!(handle.is_failed_precondition() && handle.message().contains("JetStream"), "{handle}");
    let objects = client.generate_report_objects().await.unwrap_err();
    assert!(objects.is_failed_precondition(), "{objects}");
}

/// A JetStream server whose max_payload (16 MiB) takes a reply of 10 MiB.
struct BigServer {
    server: NatsServer,
    dir: PathBuf,
}

impl Drop for BigServer {
    fn drop(&mut self) {
        self.server.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn big_server() -> BigServer {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("nats-micro-store-big-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("server.conf");
    std::fs::write(&config, "max_payload: 16MB\n").unwrap();
    let args = ["-js", "-sd", &dir.join("js").to_string_lossy(), "-c", &config.to_string_lossy()].map(str::to_owned);
    BigServer { server: NatsServer::start_on(port, &args), dir }
}

#[tokio::test]
async fn object_store_keeps_a_10_mib_report_and_reads_check_its_digest() {
    let big = big_server();
    let nats = big.server.connect().await;
    let service = store::serve(&nats, Profiles::default()).await.expect("serving");
    let client = ProfileServiceClient::new(big.server.connect().await).with_timeout(Duration::from_secs(60));
    let size = 10 * 1024 * 1024;
    let started = Instant::now();
    let report = client.generate_report(ReportRequest { id: "q1".into(), size }).await.expect("a report");
    let reports = client.generate_report_objects().await.unwrap();
    let name = reports.name(&ReportRequest { id: "q1".into(), size: 0 }).unwrap();
    assert_eq!(name, "report q1.bin");
    let stored = reports.get(&name).await.expect("digest checked").expect("stored before the reply");
    eprintln!("object store round trip of 10 MiB (report, put, get): {:?}", started.elapsed());
    assert_eq!(stored.body.len(), size as usize);
    assert_eq!(Sha256::digest(&stored.body), Sha256::digest(&report.body));
    let info = reports.info(&name).await.unwrap().unwrap();
    assert_eq!(info.size, (report.encoded_len()) as u64);
    assert!(info.digest.as_deref().is_some_and(|d| d.starts_with("SHA-256=")));
    assert!(reports.get("report nope.bin").await.unwrap().is_none());

    // Corrupt the object: one more chunk in its chunk subject, through raw JetStream.
    let js = async_nats::jetstream::new(big.server.connect().await);
    let nuid = reports.store().info(&name).await.unwrap().nuid;
    js.publish(format!("$O.reports.C.{nuid}"), Bytes::from_static(b"tampered")).await.unwrap().await.unwrap();
    let err = reports.get(&name).await.expect_err("a corrupted object");
    assert!(err.is_data_loss(), "{err}");
    // And an object whose recorded digest is wrong.
    reports.put("report forged.bin", &report).await.unwrap();
    let mut forged = reports.store().info("report forged.bin").await.unwrap();
    forged.digest = Some(format!("SHA-256={}", base64::engine::general_purpose::URL_SAFE.encode([0u8; 32])));
    let subject = format!("$O.reports.M.{}", base64::engine::general_purpose::URL_SAFE.encode("report forged.bin"));
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Rollup", "sub");
    js.publish_with_headers(subject, headers, serde_json::to_vec(&forged).unwrap().into()).await.unwrap().await.unwrap();
    let err = reports.get("report forged.bin").await.expect_err("a wrong digest");
    assert!(err.is_data_loss(), "{err}");

    // A name that cannot be rendered: best effort, the reply stands, counted.
    let unnamed = client.generate_report(ReportRequest { id: String::new(), size: 3 }).await.expect("best effort");
    assert_eq!(unnamed.body.len(), 3);
    let stats = service.stats();
    let entry = stats.endpoints.iter().find(|e| e.name == "generate_report").unwrap();
    assert_eq!(entry.data, Some(serde_json::json!({"shed": 0, "persist_failures": 1})));
    service.stop().await;
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of pattern(seed) of `size` bytes, computed in pieces.
fn pattern_sha256(size: u64, seed: u32) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut at = 0;
    while at < size {
        let len = (size - at).min(1 << 20);
        hasher.update(pattern(at, len as usize, seed));
        at += len;
    }
    hasher.finalize().into()
}

#[tokio::test]
async fn chunked_50_mib_upload_and_download_round_trip_with_checksums() {
    let fx = start().await;
    let size = 50 * 1024 * 1024;
    let expected = pattern_sha256(size, 3);
    let started = Instant::now();
    let uploaded: UploadResult =
        fx.client.upload_chunked().send_reader(PatternReader::new(size, 3)).await.expect("uploaded").into_inner();
    eprintln!("upload of 50 MiB: {:?}", started.elapsed());
    assert_eq!((uploaded.size, uploaded.sha256.as_str()), (size, hex(&expected).as_str()));

    let dir = std::env::temp_dir().join(format!("nats-micro-chunked-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("payload.bin");
    let started = Instant::now();
    let transfer = fx
        .client
        .download_chunked(DownloadRequest { size, seed: 3, fail_after: 0 })
        .receive_file(&path)
        .await
        .expect("downloaded");
    eprintln!("download of 50 MiB: {:?}", started.elapsed());
    assert_eq!((transfer.size, transfer.sha256, transfer.digest_verified), (size, expected, true));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left beside it");

    // The file helper uploads what it downloaded; the bytes helper downloads into memory.
    let again = fx.client.upload_chunked().chunk_size(100_000).send_file(&path).await.unwrap();
    assert_eq!(again.sha256, hex(&expected));
    let (bytes, transfer) =
        fx.client.download_chunked(DownloadRequest { size: 1_000_003, seed: 9, fail_after: 0 }).receive_bytes().await.unwrap();
    assert_eq!((bytes.len(), transfer.sha256), (1_000_003, sha256(&pattern(0, 1_000_003, 9))));
    // Through the AsyncRead of the receiver.
    let mut chunks =
        fx.client.download_chunked(DownloadRequest { size: 300_000, seed: 1, fail_after: 0 }).receive().await.unwrap();
    let mut sink = Vec::new();
    tokio::io::copy(&mut chunks, &mut sink).await.unwrap();
    assert_eq!((sink, chunks.transfer().map(|t| t.digest_verified)), (pattern(0, 300_000, 1), Some(true)));
    // Empty payloads carry no data message at all.
    let empty = fx.client.upload_chunked().send_bytes(Bytes::new()).await.unwrap();
    assert_eq!(empty.size, 0);
    let _ = std::fs::remove_dir_all(&dir);
    drop(fx.server);
}

#[tokio::test]
async fn interrupted_transfers_fail_with_the_streams_error_and_leave_no_file() {
    let fx = start().await;
    let dir = std::env::temp_dir().join(format!("nats-micro-cut-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cut.bin");
    let request = DownloadRequest { size: 5 * 1024 * 1024, seed: 2, fail_after: 1024 * 1024 };
    let err = fx.client.download_chunked(request).receive_file(&path).await.expect_err("cut");
    assert!(err.is_unavailable() && err.message() == "cut", "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "neither the file nor its temporary file is left");
    let err = fx.client.download_chunked(request).receive_bytes().await.expect_err("cut");
    assert!(err.is_unavailable(), "{err}");

    // An upload whose reader fails: the stream is cancelled and the call fails with the reader's error.
    struct Failing(u64);
    impl tokio::io::AsyncRead for Failing {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(Err(std::io::Error::other("disk gone")));
            }
            let n = buf.remaining().min(self.0 as usize);
            buf.put_slice(&vec![1; n]);
            self.0 -= n as u64;
            std::task::Poll::Ready(Ok(()))
        }
    }
    let err = fx.client.upload_chunked().send_reader(Failing(300_000)).await.expect_err("the reader failed");
    assert!(err.message().contains("disk gone"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    drop(fx.server);
}

#[tokio::test]
async fn a_chunk_over_max_payload_is_refused_before_anything_is_sent() {
    let fx = start().await;
    let err = fx.client.upload_chunked().chunk_size(2 * 1024 * 1024).send_bytes(vec![0u8; 10]).await.expect_err("too big");
    assert!(err.is_invalid_argument() && err.message().contains("max_payload"), "{err}");
    let stats = fx.service.stats();
    let upload = stats.endpoints.iter().find(|e| e.name == "upload").unwrap();
    assert_eq!(upload.num_requests, 0, "no stream was opened");
    drop(fx.server);
}

/// A raw download server on `raw.download` that streams `payload` in two
/// chunks the Go plugin's way (no ack, no credit) and ends with `end`.
async fn raw_download_server(nats: async_nats::Client, payload: &'static [u8], end: HeaderMap) -> tokio::task::JoinHandle<()> {
    let mut opens = nats.subscribe("raw.download").await.unwrap();
    // A round trip through the server: it has the subscription above once this comes back.
    let echo = nats.new_inbox();
    let mut echoes = nats.subscribe(echo.clone()).await.unwrap();
    nats.publish(echo, Bytes::new()).await.unwrap();
    echoes.next().await.unwrap();
    tokio::spawn(async move {
        while let Some(open) = opens.next().await {
            let reply_to = open.headers.as_ref().and_then(|h| h.get(REPLY_TO)).map(|v| v.to_string()).unwrap();
            for (seq, part) in payload.chunks(payload.len().div_ceil(2)).enumerate() {
                let mut headers = HeaderMap::new();
                headers.insert(STREAM_SEQ, (seq + 1).to_string().as_str());
                let body = Chunk { data: part.to_vec() }.encode_to_vec();
                nats.publish_with_headers(reply_to.clone(), headers, body.into()).await.unwrap();
            }
            let mut headers = end.clone();
            headers.insert(STREAM_END, "true");
            nats.publish_with_headers(reply_to, headers, Bytes::new()).await.unwrap();
        }
    })
}

fn end_headers(size: &str, digest: Option<String>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CHUNKED_SIZE, size);
    if let Some(digest) = digest {
        headers.insert(CHUNKED_DIGEST, digest.as_str());
    }
    headers
}

fn digest_header(data: &[u8]) -> String {
    format!("sha-256={}", base64::engine::general_purpose::STANDARD.encode(sha256(data)))
}

#[tokio::test]
async fn downloads_check_the_senders_digest_and_accept_a_sender_without_one() {
    let server = NatsServer::start();
    const PAYLOAD: &[u8] = b"the quick brown fox jumps over the lazy dog";
    let client = ProfileServiceClient::new(server.connect().await).with_subject_prefix("raw");
    let request = || DownloadRequest { size: 1, seed: 0, fail_after: 0 };
    let cases = [
        ("right", end_headers(&PAYLOAD.len().to_string(), Some(digest_header(PAYLOAD))), Ok(true)),
        ("wrong digest", end_headers(&PAYLOAD.len().to_string(), Some(digest_header(b"something else"))), Err(Code::DataLoss)),
        ("wrong size", end_headers("7", Some(digest_header(PAYLOAD))), Err(Code::DataLoss)),
        ("malformed digest", end_headers(&PAYLOAD.len().to_string(), Some("sha-256=???".into())), Err(Code::DataLoss)),
        ("go plugin: no headers", HeaderMap::new(), Ok(false)),
    ];
    for (case, end, expected) in cases {
        let peer = raw_download_server(server.connect().await, PAYLOAD, end).await;
        let outcome = client.download_chunked(request()).receive_bytes().await;
        match (outcome, expected) {
            (Ok((bytes, transfer)), Ok(verified)) => {
                assert_eq!((&bytes[..], transfer.digest_verified), (PAYLOAD, verified), "{case}");
            }
            (Err(err), Err(code)) => assert_eq!(err.code().to_code(), code, "{case}: {err}"),
            (outcome, expected) => panic!("{case}: {outcome:?}, expected {expected:?}"),
        }
        peer.abort();
    }
}

/// Uploads `chunks` as a raw client (our wire, a crafted end) and returns
/// the server's result message: its headers and body.
async fn raw_upload(nats: &async_nats::Client, chunks: &[&[u8]], end: HeaderMap) -> (HeaderMap, Bytes) {
    let inbox = nats.new_inbox();
    let mut replies = nats.subscribe(inbox.clone()).await.unwrap();
    let mut open = HeaderMap::new();
    open.insert(REPLY_TO, inbox.as_str());
    open.insert(STREAM_CREDIT, "64");
    nats.publish_with_reply_and_headers("store.profiles.upload", inbox.clone(), open, Bytes::new()).await.unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(10), replies.next()).await.unwrap().unwrap();
    let server_inbox = ack.headers.as_ref().and_then(|h| h.get(STREAM_INBOX)).map(|v| v.to_string()).expect("an ack");
    for (seq, chunk) in chunks.iter().enumerate() {
        let mut headers = HeaderMap::new();
        headers.insert(STREAM_SEQ, (seq + 1).to_string().as_str());
        nats.publish_with_headers(server_inbox.clone(), headers, Chunk { data: chunk.to_vec() }.encode_to_vec().into())
            .await
            .unwrap();
    }
    let mut headers = end;
    headers.insert(STREAM_END, "true");
    nats.publish_with_headers(server_inbox, headers, Bytes::new()).await.unwrap();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), replies.next()).await.unwrap().unwrap();
        let headers = message.headers.clone().unwrap_or_default();
        if headers.get(STREAM_END).is_some() {
            return (headers, message.payload);
        }
    }
}

#[tokio::test]
async fn uploads_check_the_senders_digest_and_accept_a_sender_without_one() {
    let fx = start().await;
    let nats = fx.server.connect().await;
    let parts: [&[u8]; 2] = [b"hello ", b"world"];
    let whole = b"hello world";
    let (headers, body) = raw_upload(&nats, &parts, end_headers("11", Some(digest_header(whole)))).await;
    assert!(headers.get("Nats-Service-Error-Code").is_none(), "{headers:?}");
    assert_eq!(UploadResult::decode(body).unwrap().sha256, hex(&sha256(whole)));

    let (headers, _) = raw_upload(&nats, &parts, end_headers("11", Some(digest_header(b"hello worle")))).await;
    assert_eq!(headers.get("Nats-Service-Error-Code").map(|v| v.as_str()), Some("DATA_LOSS"), "{headers:?}");
    let (headers, _) = raw_upload(&nats, &parts, end_headers("12", None)).await;
    assert_eq!(headers.get("Nats-Service-Error-Code").map(|v| v.as_str()), Some("DATA_LOSS"), "{headers:?}");

    // A Go-plugin client sends neither header: accepted (sequence and end checked only).
    let (headers, body) = raw_upload(&nats, &parts, HeaderMap::new()).await;
    assert!(headers.get("Nats-Service-Error-Code").is_none(), "{headers:?}");
    assert_eq!(UploadResult::decode(body).unwrap().size, 11);
    drop(fx.server);
}

/// The README's examples, run.
#[tokio::test]
async fn readme_store_and_chunked_examples() -> Result<(), Box<dyn std::error::Error>> {
    let fx = start().await;
    let client = &fx.client;
    client.generate_report(ReportRequest { id: "q1".into(), size: 1000 }).await?;
    // snippet: rust-store-client
    let saved = client.save_profile(Profile { id: "42".into(), name: "Ada".into(), ..Default::default() }).await?;
    let written = saved.headers().get("Nats-Micro-KV-Revision"); // the revision the server wrote
    let profiles = client.save_profile_kv().await?; // typed handle on bucket "profiles"
    let key = profiles.key(&saved)?; // "user.42", rendered as the server renders it
    let entry = profiles.get(&key).await?.expect("written before the reply");
    let mut changes = profiles.watch_updates(&key).await?; // from now on (`watch`: the current value first)
    let renamed = Profile { name: "Ada L.".into(), ..entry.value.clone() };
    profiles.update(&key, &renamed, entry.revision).await?; // ABORTED if someone wrote since
    let all_42 = profiles.keys(&[("id", "42")]).await?; // keys from template parts, `*` for the rest
    let reports = client.generate_report_objects().await?;
    let report = reports.get("report q1.bin").await?; // size and SHA-256 checked: DATA_LOSS otherwise
    // end snippet
    assert_eq!(written.map(|v| v.as_str().parse::<u64>().unwrap()), Some(entry.revision));
    assert!(matches!(changes.change().await, Some(Ok(KvChange::Put(e))) if e.value == renamed));
    assert_eq!((all_42, report.map(|r| r.body.len())), (vec![key], Some(1000)));

    let dir = std::env::temp_dir().join(format!("nats-micro-readme-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir)?;
    let (path, target) = (dir.join("backup.bin"), dir.join("copy.bin"));
    std::fs::write(&path, pattern(0, 200_000, 5))?;
    // snippet: rust-chunked-client
    let uploaded = client.upload_chunked().send_file(&path).await?; // or send_reader, send_bytes, send_stream
    let transfer = client
        .download_chunked(DownloadRequest { size: 200_000, seed: 5, fail_after: 0 })
        .receive_file(&target) // a temporary file beside it, renamed once size and digest match
        .await?;
    assert!(transfer.digest_verified); // false from a Go-plugin server, which sends no digest
    // end snippet
    assert_eq!(uploaded.sha256, transfer.sha256_hex());
    std::fs::remove_dir_all(&dir)?;
    drop(fx.server);
    Ok(())
}

#[test]
fn io_errors_of_a_transfer_keep_their_code() {
    let io = std::io::Error::other(nats_micro_runtime::Error::data_loss("mismatch"));
    assert_eq!(error_from_io(&io).code(), &Code::DataLoss);
}
