//! The server's persistence step (PROTOCOL §12.2, §12.3): buckets created
//! or updated at registration; per request, the keys rendered and (for
//! compare-and-set) the expected revision found before the handler runs,
//! then the encoded response written before the reply is sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use async_nats::jetstream::object_store::ObjectStore;
use bytes::Bytes;

use super::bucket::{self, Expect, KvBucket, WriteError};
use super::key::KeyFn;
use super::kv::conflict_error;
use super::spec::{FailurePolicy, KvStoreSpec, ObjectStoreSpec, WriteMode};
use super::{KV_REVISION_HEADER, parse_revision};
use crate::code::Code;
use crate::context::RequestContext;
use crate::error::{Error, StartError};

/// The key functions of a method that persists its response: the generated
/// `…_key` / `…_object_name` functions of the request type.
#[derive(Debug)]
pub struct StoreKeys<Req> {
    /// Renders the key-value key (`kv_store`).
    pub kv: Option<KeyFn<Req>>,
    /// Renders the object name (`object_store`).
    pub object: Option<KeyFn<Req>>,
}

/// What one endpoint persists, and where.
pub(crate) struct Persister<Req> {
    kv: Option<(&'static KvStoreSpec, KeyFn<Req>)>,
    object: Option<(&'static ObjectStoreSpec, KeyFn<Req>)>,
    /// The buckets, bound at registration (again after a reconnect).
    bound: RwLock<(Option<KvBucket>, Option<ObjectStore>)>,
    /// Writes that failed, under either policy (STATS `persist_failures`).
    failures: AtomicU64,
}

/// The keys of one request, rendered from it before its handler runs.
pub(crate) struct Keys {
    kv: Option<Result<String, Error>>,
    /// A compare-and-set's `Nats-Micro-KV-Revision`.
    header: Option<u64>,
    object: Option<Result<String, Error>>,
}

/// The keys of one request and what its key-value write expects.
pub(crate) struct Pending {
    kv: Option<Result<(String, Expect), (String, Error)>>,
    object: Option<Result<String, Error>>,
}

impl<Req> Persister<Req> {
    /// A persister for the server-side stores of `kv` and `object` (none for
    /// a `client_only` one): `None` when nothing is written.
    pub(crate) fn new(
        kv: Option<&'static KvStoreSpec>,
        object: Option<&'static ObjectStoreSpec>,
        keys: StoreKeys<Req>,
    ) -> Option<Persister<Req>> {
        let kv = kv.filter(|spec| !spec.client_only).zip(keys.kv);
        let object = object.filter(|spec| !spec.client_only).zip(keys.object);
        (kv.is_some() || object.is_some()).then(|| Persister {
            kv,
            object,
            bound: RwLock::new((None, None)),
            failures: AtomicU64::new(0),
        })
    }

    /// Creates or updates the buckets with the proto's settings; JetStream
    /// unavailable is `FAILED_PRECONDITION` naming it and the bucket, within
    /// the connection's request timeout.
    pub(crate) async fn prepare(&self, nats: &async_nats::Client) -> Result<(), StartError> {
        let js = bucket::context(nats);
        let refuse = |what: &str, err: Error| {
            StartError::Store(Error::failed_precondition(format!("registering {what}: {}", err.message())))
        };
        let kv = match self.kv {
            Some((spec, _)) => {
                let what = format!("key-value bucket {:?} (JetStream)", spec.bucket.name);
                let store =
                    bucket::bounded(nats, &what, bucket::ensure_kv(&js, &spec.bucket)).await.map_err(|e| refuse(&what, e))?;
                Some(KvBucket { js: js.clone(), store })
            }
            None => None,
        };
        let object = match self.object {
            Some((spec, _)) => {
                let what = format!("object store bucket {:?} (JetStream)", spec.bucket.name);
                Some(
                    bucket::bounded(nats, &what, bucket::ensure_objects(&js, &spec.bucket))
                        .await
                        .map_err(|e| refuse(&what, e))?,
                )
            }
            None => None,
        };
        *self.bound.write().unwrap_or_else(PoisonError::into_inner) = (kv, object);
        Ok(())
    }

    /// Writes that failed so far, under either policy.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn kv_bucket(&self) -> Option<KvBucket> {
        self.bound.read().unwrap_or_else(PoisonError::into_inner).0.clone()
    }

    fn object_bucket(&self) -> Option<ObjectStore> {
        self.bound.read().unwrap_or_else(PoisonError::into_inner).1.clone()
    }

    /// Renders the keys of `request` and reads a compare-and-set's
    /// `Nats-Micro-KV-Revision`; a malformed one fails the call at once.
    pub(crate) fn keys(&self, ctx: &RequestContext, request: &Req) -> Result<Keys, Error> {
        let object = self.object.map(|(_, name)| name(request).map_err(Error::from));
        let Some((spec, key)) = self.kv else { return Ok(Keys { kv: None, header: None, object }) };
        let header = match (spec.write_mode, ctx.header(KV_REVISION_HEADER)) {
            (WriteMode::CompareAndSet, Some(value)) => Some(parse_revision(value).ok_or_else(|| {
                Error::invalid_argument(format!("malformed {KV_REVISION_HEADER} header {value:?}: a decimal revision"))
                    .with_field_violation(KV_REVISION_HEADER, "must be a decimal revision (0: the key holds no value)")
            })?),
            _ => None,
        };
        Ok(Keys { kv: Some(key(request).map_err(Error::from)), header, object })
    }

    /// What the write will expect: for compare-and-set without the header,
    /// the key's revision read now, before the handler runs.
    pub(crate) async fn before(&self, keys: Keys) -> Pending {
        let Keys { kv, header, object } = keys;
        let (Some((spec, _)), Some(key)) = (self.kv, kv) else { return Pending { kv: None, object } };
        let key = match key {
            Ok(key) => key,
            Err(err) => return Pending { kv: Some(Err((String::new(), err))), object },
        };
        let expect = match (spec.write_mode, header) {
            (WriteMode::LastWriteWins, _) => Ok(Expect::Anything),
            (WriteMode::CreateOnly, _) => Ok(Expect::Nothing),
            (WriteMode::CompareAndSet, Some(revision)) => Ok(expected(revision)),
            (WriteMode::CompareAndSet, None) => match self.kv_bucket() {
                Some(bucket) => bucket.revision(&key).await.map(expected),
                None => Err(Error::unavailable("the key-value bucket is not bound (the service is not registered)")),
            },
        };
        let kv = match expect {
            Ok(expect) => Ok((key, expect)),
            Err(err) => Err((key, err)),
        };
        Pending { kv: Some(kv), object }
    }

    /// Writes the encoded response (the exact reply body) where `pending`
    /// says; a failure is logged and counted (best effort) or returned
    /// (`REQUIRED`). A successful key-value write puts its revision on the reply.
    pub(crate) async fn after(&self, ctx: &RequestContext, pending: Pending, body: &Bytes) -> Result<(), Error> {
        if let (Some((spec, _)), Some(kv)) = (self.kv, pending.kv) {
            let outcome = match kv {
                Ok((key, expect)) => match self.kv_bucket() {
                    Some(bucket) => match bucket.write(&key, body.clone(), expect, spec.key_ttl).await {
                        Ok(revision) => {
                            ctx.set_response_header(KV_REVISION_HEADER, &revision.to_string());
                            Ok(())
                        }
                        Err(WriteError::Conflict(why)) => {
                            let code = if spec.write_mode == WriteMode::CreateOnly { Code::AlreadyExists } else { Code::Aborted };
                            Err((key.clone(), conflict_error(code, spec.bucket.name, &key, &why)))
                        }
                        Err(WriteError::Failed(err)) => Err((key, err)),
                    },
                    None => Err((key, Error::unavailable("the key-value bucket is not bound (the service is not registered)"))),
                },
                Err(failed) => Err(failed),
            };
            if let Err((key, err)) = outcome {
                self.failed(ctx, spec.bucket.name, &key, err, spec.failure_policy)?;
            }
        }
        if let (Some((spec, _)), Some(name)) = (self.object, pending.object) {
            let written = match (name, self.object_bucket()) {
                (Ok(name), Some(store)) => {
                    super::object::put_object(&store, &name, body.clone()).await.map(|_| ()).map_err(|e| (name, e))
                }
                (Ok(name), None) => {
                    Err((name, Error::unavailable("the object store is not bound (the service is not registered)")))
                }
                (Err(err), _) => Err((String::new(), err)),
            };
            if let Err((name, err)) = written {
                // Object stores have no failure policy: always best effort (§12.3).
                self.failed(ctx, spec.bucket.name, &name, err, FailurePolicy::BestEffort)?;
            }
        }
        Ok(())
    }

    /// Logs a failed write (`persist_failed`) and counts it, then lets the
    /// reply stand (best effort) or returns it as the call's error
    /// (`REQUIRED`, which STATS also counts as an error).
    fn failed(&self, ctx: &RequestContext, bucket: &str, key: &str, err: Error, policy: FailurePolicy) -> Result<(), Error> {
        let at = crate::telemetry::event::At { service: ctx.service(), endpoint: ctx.endpoint(), subject: ctx.subject() };
        let text = err.internal_text().map_or_else(|| err.to_string(), str::to_owned);
        crate::telemetry::event::persist_failed(at, bucket, key, &text, policy == FailurePolicy::Required);
        self.failures.fetch_add(1, Ordering::Relaxed);
        match policy {
            FailurePolicy::BestEffort => Ok(()),
            FailurePolicy::Required => Err(err),
        }
    }
}

/// The write a compare-and-set expects at `revision` (0: the key holds no value).
fn expected(revision: u64) -> Expect {
    if revision == 0 { Expect::Nothing } else { Expect::Revision(revision) }
}
