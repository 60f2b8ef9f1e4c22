//! The typed key-value handle of a `kv_store` method (PROTOCOL §12.4).

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_nats::jetstream::kv::{Operation, Store};
use futures_util::{Stream, StreamExt, TryStreamExt};

use super::bucket::{self, Expect, KvBucket, WriteError};
use super::key::{KeyFn, KeyPattern, render_parts};
use super::spec::KvStoreSpec;
use crate::code::Code;
use crate::codec::Codec;
use crate::error::Error;

/// A value read from a bucket: the decoded response, its revision and when it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct KvEntry<T> {
    /// The key.
    pub key: String,
    /// The value, decoded with the service's codec.
    pub value: T,
    /// The revision (the bucket stream's sequence number of this write).
    pub revision: u64,
    /// When it was written.
    pub created: time::OffsetDateTime,
}

/// One change of a watched key.
#[derive(Clone, Debug, PartialEq)]
pub enum KvChange<T> {
    /// A new value.
    Put(KvEntry<T>),
    /// The key was deleted (its history stays).
    Delete {
        /// The key.
        key: String,
        /// The revision of the delete marker.
        revision: u64,
    },
    /// The key was purged (its history is gone).
    Purge {
        /// The key.
        key: String,
        /// The revision of the purge marker.
        revision: u64,
    },
}

/// The typed handle on the key-value bucket of one `kv_store` method:
/// values are the RPC's response `T`, encoded with the service's codec `C`;
/// keys are plain strings, rendered from a request `Req` exactly as the
/// server renders them ([`KvStore::key`]), or from the template's parts.
/// Errors are the service's error type `E`, with the codes of PROTOCOL §12.4.
/// Generated clients open it (`client.save_profile_kv().await?`).
///
/// ```no_run
/// # async fn demo(nats: async_nats::Client) -> Result<(), nats_micro_runtime::Error> {
/// use nats_micro_runtime::Protobuf;
/// use nats_micro_runtime::store::{FailurePolicy, KeyPart, KeyValue, KvBucketSpec, KvStore, KvStoreSpec, TemplatePart, WriteMode, render_kv_key};
/// static NOTES: KvStoreSpec = KvStoreSpec {
///     bucket: KvBucketSpec { name: "notes", description: "", history: 3, ttl: None, compression: false, metadata: &[], limit_marker_ttl: None },
///     template: &[TemplatePart::Text("note."), TemplatePart::Field("id")],
///     key_ttl: None, purge_ttl: None, write_mode: WriteMode::LastWriteWins, failure_policy: FailurePolicy::BestEffort, client_only: true,
/// };
/// fn key(id: &String) -> Result<String, nats_micro_runtime::store::KeyError> {
///     render_kv_key(&[KeyPart::Text("note."), KeyPart::Field("id", KeyValue::of(id))])
/// }
/// let notes: KvStore<Protobuf, String, String> = KvStore::open(&nats, &NOTES, key).await?;
/// let revision = notes.put("note.1", &"hello".to_owned()).await?;
/// let entry = notes.get("note.1").await?.expect("just written");
/// assert_eq!((entry.value.as_str(), entry.revision), ("hello", revision));
/// notes.update("note.1", &"hello again".to_owned(), revision).await?;
/// assert_eq!(notes.keys(&[]).await?, ["note.1"]);
/// # Ok(()) }
/// ```
pub struct KvStore<C, Req, T, E = Error> {
    bucket: KvBucket,
    spec: &'static KvStoreSpec,
    key: KeyFn<Req>,
    _types: PhantomData<fn(C, &Req, E) -> T>,
}

impl<C, Req, T, E> Clone for KvStore<C, Req, T, E> {
    fn clone(&self) -> Self {
        KvStore { bucket: self.bucket.clone(), spec: self.spec, key: self.key, _types: PhantomData }
    }
}

impl<C, Req, T, E> std::fmt::Debug for KvStore<C, Req, T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore").field("bucket", &self.spec.bucket.name).finish_non_exhaustive()
    }
}

impl<C, Req, T, E> KvStore<C, Req, T, E>
where
    C: Codec<T>,
    E: From<Error>,
{
    /// Binds to the bucket of `spec`: a missing bucket is `NOT_FOUND`, or, for
    /// a `client_only` method (which no server creates), created with the
    /// proto's settings. JetStream not enabled is `FAILED_PRECONDITION`.
    pub async fn open(nats: &async_nats::Client, spec: &'static KvStoreSpec, key: KeyFn<Req>) -> Result<Self, E> {
        let js = bucket::context(nats);
        let what = format!("opening key-value bucket {:?}", spec.bucket.name);
        let store = bucket::bounded(nats, &what, bucket::open_kv(&js, &spec.bucket, spec.client_only)).await?;
        Ok(KvStore { bucket: KvBucket { js, store }, spec, key, _types: PhantomData })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &'static str {
        self.spec.bucket.name
    }

    /// The proto's settings of the bucket and its key.
    pub fn spec(&self) -> &'static KvStoreSpec {
        self.spec
    }

    /// The async-nats handle underneath, for anything this one does not offer.
    pub fn store(&self) -> &Store {
        &self.bucket.store
    }

    /// The key the server writes a response to `request` under (PROTOCOL
    /// §12.1); `INVALID_ARGUMENT` naming the field when it has none.
    pub fn key(&self, request: &Req) -> Result<String, E> {
        (self.key)(request).map_err(|err| E::from(err.into()))
    }

    /// The key from the template's parts, every placeholder given by its
    /// path: `key_from_parts(&[("id", "42")])` gives `user.42`.
    pub fn key_from_parts(&self, parts: &[(&str, &str)]) -> Result<String, E> {
        render_parts(self.spec.template, parts).map_err(|err| E::from(err.into()))
    }

    /// The latest value of `key` with its revision, `None` when it holds none
    /// (never written, deleted, purged or expired). A value that does not
    /// decode is `DATA_LOSS`.
    pub async fn get(&self, key: &str) -> Result<Option<KvEntry<T>>, E> {
        let what = format!("reading key {key:?} of bucket {:?}", self.bucket());
        let entry = self.bucket.store.entry(key).await.map_err(|err| E::from(read_error(&what, &err)))?;
        match entry {
            Some(entry) if entry.operation == Operation::Put => {
                let value = decode::<C, T>(&entry.key, entry.value)?;
                Ok(Some(KvEntry { key: entry.key, value, revision: entry.revision, created: entry.created }))
            }
            _ => Ok(None),
        }
    }

    /// Writes `value` under `key` whatever it holds; returns the revision.
    pub async fn put(&self, key: &str, value: &T) -> Result<u64, E> {
        self.write(key, value, Expect::Anything, Code::Aborted).await
    }

    /// Writes `value` under `key` if it holds no value; `ALREADY_EXISTS` otherwise.
    pub async fn create(&self, key: &str, value: &T) -> Result<u64, E> {
        self.write(key, value, Expect::Nothing, Code::AlreadyExists).await
    }

    /// Writes `value` under `key` if its latest revision is `revision`
    /// (0: it holds no value); `ABORTED` otherwise.
    pub async fn update(&self, key: &str, value: &T, revision: u64) -> Result<u64, E> {
        let expect = if revision == 0 { Expect::Nothing } else { Expect::Revision(revision) };
        self.write(key, value, expect, Code::Aborted).await
    }

    async fn write(&self, key: &str, value: &T, expect: Expect, conflict: Code) -> Result<u64, E> {
        let body = C::encode(value).map_err(|err| E::from(Error::invalid_argument(format!("encoding the value: {err}"))))?;
        match self.bucket.write(key, body, expect, self.spec.key_ttl).await {
            Ok(revision) => Ok(revision),
            Err(WriteError::Conflict(why)) => Err(E::from(conflict_error(conflict, self.bucket(), key, &why))),
            Err(WriteError::Failed(err)) => Err(E::from(err)),
        }
    }

    /// Deletes `key`: a delete marker; the history stays.
    pub async fn delete(&self, key: &str) -> Result<(), E> {
        let what = format!("deleting key {key:?} of bucket {:?}", self.bucket());
        self.bucket.store.delete(key).await.map_err(|err| E::from(bucket::jetstream_error(&what, &err)))
    }

    /// Purges `key` and its history, leaving a marker that lives `purge_ttl`
    /// when the proto sets one.
    pub async fn purge(&self, key: &str) -> Result<(), E> {
        let what = format!("purging key {key:?} of bucket {:?}", self.bucket());
        let purged = match self.spec.purge_ttl {
            Some(ttl) => self.bucket.store.purge_with_ttl(key, ttl).await,
            None => self.bucket.store.purge(key).await,
        };
        purged.map_err(|err| E::from(bucket::jetstream_error(&what, &err)))
    }

    /// The changes of `key`: its current value (or marker) first, as nats.go's
    /// watch gives it, then every put (value and revision), delete and purge
    /// as it happens (PROTOCOL §12.4). A value that does not decode ends the
    /// stream with `DATA_LOSS`.
    pub async fn watch(&self, key: &str) -> Result<KvWatch<T, E>, E> {
        self.watch_from(key, true).await
    }

    /// The changes of `key` from now on, without its current value.
    pub async fn watch_updates(&self, key: &str) -> Result<KvWatch<T, E>, E> {
        self.watch_from(key, false).await
    }

    async fn watch_from(&self, key: &str, current: bool) -> Result<KvWatch<T, E>, E> {
        let what = format!("watching key {key:?} of bucket {:?}", self.bucket());
        let watch = if current { self.bucket.store.watch_with_history(key).await } else { self.bucket.store.watch(key).await };
        let watch = watch.map_err(|err| E::from(bucket::jetstream_error(&what, &err)))?;
        let changes = watch.map(move |entry| {
            let entry = entry.map_err(|err| E::from(Error::unavailable(format!("{what}: {err}"))))?;
            Ok(match entry.operation {
                Operation::Put => {
                    let value = decode::<C, T>(&entry.key, entry.value)?;
                    KvChange::Put(KvEntry { key: entry.key, value, revision: entry.revision, created: entry.created })
                }
                Operation::Delete => KvChange::Delete { key: entry.key, revision: entry.revision },
                Operation::Purge => KvChange::Purge { key: entry.key, revision: entry.revision },
            })
        });
        Ok(KvWatch { changes: Box::pin(changes) })
    }

    /// The keys that hold a value and match the template with the given
    /// parts (placeholder path and value) and any value for the others:
    /// `keys(&[])` lists every key of the bucket the template can make.
    /// (The bucket's keys are listed and filtered here: JetStream filters by
    /// whole tokens only, and a placeholder may be part of a token.)
    pub async fn keys(&self, parts: &[(&str, &str)]) -> Result<Vec<String>, E> {
        let pattern = KeyPattern::new(self.spec.template, parts).map_err(|err| E::from(err.into()))?;
        let what = format!("listing the keys of bucket {:?}", self.bucket());
        let keys = self.bucket.store.keys().await.map_err(|err| E::from(bucket::jetstream_error(&what, &err)))?;
        let mut keys: Vec<String> = keys
            .try_filter(|key| std::future::ready(pattern.matches(key)))
            .try_collect()
            .await
            .map_err(|err| E::from(Error::unavailable(format!("{what}: {err}"))))?;
        keys.sort();
        Ok(keys)
    }
}

/// The changes of one watched key ([`KvStore::watch`]): a [`Stream`] of
/// [`KvChange`]s that runs until dropped.
pub struct KvWatch<T, E = Error> {
    changes: Pin<Box<dyn Stream<Item = Result<KvChange<T>, E>> + Send>>,
}

impl<T, E> std::fmt::Debug for KvWatch<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KvWatch")
    }
}

impl<T, E> KvWatch<T, E> {
    /// The next change.
    pub async fn change(&mut self) -> Option<Result<KvChange<T>, E>> {
        self.changes.next().await
    }
}

impl<T, E> Stream for KvWatch<T, E> {
    type Item = Result<KvChange<T>, E>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.changes.as_mut().poll_next(cx)
    }
}

fn decode<C: Codec<T>, T>(key: &str, value: bytes::Bytes) -> Result<T, Error> {
    C::decode(value).map_err(|err| Error::data_loss(format!("the value of key {key:?} does not decode: {err}")))
}

fn read_error(what: &str, err: &async_nats::jetstream::kv::EntryError) -> Error {
    match err.kind() {
        async_nats::jetstream::kv::EntryErrorKind::InvalidKey => Error::invalid_argument(format!("{what}: invalid key")),
        _ => bucket::jetstream_error(what, err),
    }
}

/// The error of a write whose key did not hold what was expected.
pub(crate) fn conflict_error(code: Code, bucket: &str, key: &str, why: &str) -> Error {
    match code {
        Code::AlreadyExists => Error::already_exists(format!("key {key:?} of bucket {bucket:?} already holds a value ({why})")),
        _ => Error::aborted(format!("key {key:?} of bucket {bucket:?} changed since the expected revision ({why})")),
    }
}
