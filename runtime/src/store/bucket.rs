//! Buckets on JetStream: created or updated to the proto's settings, opened
//! by the client handles, written with the §12.2 semantics, and JetStream's
//! failures turned into the codes of §12.2 and §12.4.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::kv::{Operation, Store};
use async_nats::jetstream::object_store::ObjectStore;
use async_nats::jetstream::stream::{Compression, Config, DiscardPolicy};
use async_nats::jetstream::{self, Context};
use bytes::Bytes;

use super::spec::{KvBucketSpec, ObjectBucketSpec};
use crate::error::Error;

/// How long a JetStream request may take when the connection sets no request timeout.
const DEFAULT_JETSTREAM_TIMEOUT: Duration = Duration::from_secs(5);

/// The time JetStream requests are bounded by: the connection's request timeout.
pub(crate) fn jetstream_timeout(nats: &async_nats::Client) -> Duration {
    nats.timeout().unwrap_or(DEFAULT_JETSTREAM_TIMEOUT)
}

/// A JetStream context on `nats`, its requests bounded like the connection's.
pub(crate) fn context(nats: &async_nats::Client) -> Context {
    let mut js = jetstream::new(nats.clone());
    js.set_timeout(jetstream_timeout(nats));
    js
}

/// `work`, failed with `UNAVAILABLE` after the JetStream timeout (a hang is never an answer).
pub(crate) async fn bounded<T>(
    nats: &async_nats::Client,
    what: &str,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let limit = jetstream_timeout(nats) + Duration::from_millis(500);
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| Err(Error::unavailable(format!("{what}: JetStream did not answer within {} ms", limit.as_millis()))))
}

/// A JetStream failure as a typed error: `FAILED_PRECONDITION` when
/// JetStream is not there (no responders, not enabled), `UNAVAILABLE` on a
/// timeout or anything else about reaching it.
pub(crate) fn jetstream_error(what: &str, err: &dyn std::fmt::Display) -> Error {
    let text = err.to_string();
    let lower = text.to_ascii_lowercase();
    // async-nats words a JetStream request without responders "requested JetStream resource does not exist".
    if lower.contains("no responders")
        || lower.contains("not enabled")
        || lower.contains("jetstream not")
        || lower.contains("requested jetstream resource does not exist")
    {
        Error::failed_precondition(format!("{what}: JetStream is not enabled on this server or account ({text})"))
    } else if lower.contains("timed out") || lower.contains("timeout") {
        Error::unavailable(format!("{what}: JetStream did not answer in time ({text})"))
    } else {
        Error::unavailable(format!("{what}: {text}"))
    }
}

/// Whether a lookup failed because the bucket's stream does not exist.
fn not_found(err: &dyn std::fmt::Display) -> bool {
    let text = err.to_string().to_ascii_lowercase();
    text.contains("not found") || text.contains("10059")
}

/// The stream configuration of a key-value bucket, as the NATS clients make
/// it, with the proto's description, history, TTL, compression, metadata and
/// limit markers.
fn kv_stream_config(spec: &KvBucketSpec) -> Config {
    Config {
        name: format!("KV_{}", spec.name),
        description: (!spec.description.is_empty()).then(|| spec.description.to_owned()),
        subjects: vec![format!("$KV.{}.>", spec.name)],
        max_messages_per_subject: i64::from(spec.history.max(1)),
        max_age: spec.ttl.unwrap_or_default(),
        max_bytes: -1,
        max_message_size: -1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: 1,
        discard: DiscardPolicy::New,
        compression: spec.compression.then_some(Compression::S2),
        metadata: spec.metadata.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<HashMap<_, _>>(),
        allow_message_ttl: spec.limit_marker_ttl.is_some(),
        subject_delete_marker_ttl: spec.limit_marker_ttl,
        ..Default::default()
    }
}

/// The stream configuration of an object store bucket, as the NATS clients make it.
fn object_stream_config(spec: &ObjectBucketSpec) -> Config {
    Config {
        name: format!("OBJ_{}", spec.name),
        description: (!spec.description.is_empty()).then(|| spec.description.to_owned()),
        subjects: vec![format!("$O.{}.C.>", spec.name), format!("$O.{}.M.>", spec.name)],
        max_age: spec.ttl.unwrap_or_default(),
        max_bytes: -1,
        num_replicas: 1,
        discard: DiscardPolicy::New,
        allow_rollup: true,
        allow_direct: true,
        compression: spec.compression.then_some(Compression::S2),
        ..Default::default()
    }
}

/// Creates the key-value bucket, or updates it to the proto's settings
/// (registration, PROTOCOL §12.2).
pub(crate) async fn ensure_kv(js: &Context, spec: &KvBucketSpec) -> Result<Store, Error> {
    let what = format!("key-value bucket {:?}", spec.name);
    js.create_or_update_stream(kv_stream_config(spec)).await.map_err(|err| jetstream_error(&what, &err))?;
    js.get_key_value(spec.name).await.map_err(|err| jetstream_error(&what, &err))
}

/// Opens the key-value bucket; a missing one is `NOT_FOUND`, or created
/// with the proto's settings when `create` (client-only methods, §12.4).
pub(crate) async fn open_kv(js: &Context, spec: &KvBucketSpec, create: bool) -> Result<Store, Error> {
    let what = format!("key-value bucket {:?}", spec.name);
    match js.get_key_value(spec.name).await {
        Ok(store) => Ok(store),
        Err(err) if not_found(&err) && create => {
            js.get_or_create_stream(kv_stream_config(spec)).await.map_err(|err| jetstream_error(&what, &err))?;
            js.get_key_value(spec.name).await.map_err(|err| jetstream_error(&what, &err))
        }
        Err(err) if not_found(&err) => Err(Error::not_found(format!("{what} does not exist (no service created it yet)"))),
        Err(err) => Err(jetstream_error(&what, &err)),
    }
}

/// Creates the object store bucket, or updates it to the proto's settings.
pub(crate) async fn ensure_objects(js: &Context, spec: &ObjectBucketSpec) -> Result<ObjectStore, Error> {
    let what = format!("object store bucket {:?}", spec.name);
    js.create_or_update_stream(object_stream_config(spec)).await.map_err(|err| jetstream_error(&what, &err))?;
    js.get_object_store(spec.name).await.map_err(|err| jetstream_error(&what, &err))
}

/// Opens the object store bucket, as [`open_kv`].
pub(crate) async fn open_objects(js: &Context, spec: &ObjectBucketSpec, create: bool) -> Result<ObjectStore, Error> {
    let what = format!("object store bucket {:?}", spec.name);
    match js.get_object_store(spec.name).await {
        Ok(store) => Ok(store),
        Err(err) if not_found(&err) && create => {
            js.get_or_create_stream(object_stream_config(spec)).await.map_err(|err| jetstream_error(&what, &err))?;
            js.get_object_store(spec.name).await.map_err(|err| jetstream_error(&what, &err))
        }
        Err(err) if not_found(&err) => Err(Error::not_found(format!("{what} does not exist (no service created it yet)"))),
        Err(err) => Err(jetstream_error(&what, &err)),
    }
}

/// How a write treats what the key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Put: whatever it holds.
    Anything,
    /// Create: it must hold no value (a delete or purge marker may be replaced).
    Nothing,
    /// Update: its last revision must be this one.
    Revision(u64),
}

/// Why a write failed.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The key did not hold what was expected.
    Conflict(String),
    /// Anything else, already typed.
    Failed(Error),
}

/// One bucket's handle with the JetStream context that writes to it.
#[derive(Clone, Debug)]
pub(crate) struct KvBucket {
    pub(crate) js: Context,
    pub(crate) store: Store,
}

impl KvBucket {
    /// The latest revision of `key` that holds a value (0: none).
    pub(crate) async fn revision(&self, key: &str) -> Result<u64, Error> {
        match self.store.entry(key).await {
            Ok(Some(entry)) if entry.operation == Operation::Put => Ok(entry.revision),
            Ok(_) => Ok(0),
            Err(err) => Err(jetstream_error(&format!("reading key {key:?} of bucket {:?}", self.store.name), &err)),
        }
    }

    /// Writes `value` under `key` (PROTOCOL §12.2): a publish to the key's
    /// subject with the expected revision and the per-key TTL as headers
    /// (async-nats 0.51 has no put or update with a TTL). Returns the revision.
    pub(crate) async fn write(&self, key: &str, value: Bytes, expect: Expect, ttl: Option<Duration>) -> Result<u64, WriteError> {
        match self.publish(key, value.clone(), expect, ttl).await {
            Err(WriteError::Conflict(why)) if expect == Expect::Nothing => {
                // A deleted or purged key may be created again, at its marker's revision.
                let latest = self.store.entry(key).await.map_err(|err| WriteError::Failed(self.failure(key, &err)))?;
                match latest {
                    Some(entry) if entry.operation != Operation::Put => {
                        self.publish(key, value, Expect::Revision(entry.revision), ttl).await
                    }
                    _ => Err(WriteError::Conflict(why)),
                }
            }
            result => result,
        }
    }

    async fn publish(&self, key: &str, value: Bytes, expect: Expect, ttl: Option<Duration>) -> Result<u64, WriteError> {
        if !super::key::is_valid_kv_key(key) {
            return Err(WriteError::Failed(Error::invalid_argument(format!("{key:?} is not a valid key-value key"))));
        }
        let subject = format!("{}{key}", self.store.put_prefix.as_deref().unwrap_or(&self.store.prefix));
        let mut headers = HeaderMap::new();
        match expect {
            Expect::Anything => {}
            Expect::Nothing => headers.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, "0"),
            Expect::Revision(revision) => {
                headers.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, revision.to_string().as_str())
            }
        }
        if let Some(ttl) = ttl {
            headers.insert(async_nats::header::NATS_MESSAGE_TTL, format!("{}s", ttl.as_secs().max(1)).as_str());
        }
        let ack = match self.js.publish_with_headers(subject, headers, value).await {
            Ok(ack) => ack.await,
            Err(err) => Err(err),
        };
        match ack {
            Ok(ack) => Ok(ack.sequence),
            Err(err) if err.kind() == PublishErrorKind::WrongLastSequence => Err(WriteError::Conflict(err.to_string())),
            Err(err) if err.kind() == PublishErrorKind::MaxPayloadExceeded => {
                Err(WriteError::Failed(Error::resource_exhausted(format!("writing key {key:?}: {err}"))))
            }
            Err(err) => Err(WriteError::Failed(self.failure(key, &err))),
        }
    }

    /// A failed write or read of `key`, typed: a value or bucket over its
    /// limits is `RESOURCE_EXHAUSTED`, the rest as [`jetstream_error`].
    fn failure(&self, key: &str, err: &dyn std::fmt::Display) -> Error {
        let what = format!("writing key {key:?} of bucket {:?}", self.store.name);
        let text = err.to_string().to_ascii_lowercase();
        if text.contains("maximum") || text.contains("exceeds") || text.contains("insufficient resources") {
            return Error::resource_exhausted(format!("{what}: {err}"));
        }
        jetstream_error(&what, err)
    }
}
