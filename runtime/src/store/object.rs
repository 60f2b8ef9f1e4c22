//! The typed object store handle of an `object_store` method (PROTOCOL §12.4).

use std::marker::PhantomData;

use async_nats::jetstream::object_store::{self, GetErrorKind, InfoErrorKind};
use bytes::Bytes;
use std::pin::Pin;

use tokio::io::{AsyncRead, ReadBuf};

use super::bucket;
use super::key::KeyFn;
use super::spec::ObjectStoreSpec;
use crate::codec::Codec;
use crate::error::Error;

/// What the object store keeps about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's name.
    pub name: String,
    /// Its size in bytes (the encoded response).
    pub size: u64,
    /// Its digest as the store keeps it (`SHA-256=<base64url>`).
    pub digest: Option<String>,
    /// When it was written.
    pub modified: Option<time::OffsetDateTime>,
}

impl From<object_store::ObjectInfo> for ObjectInfo {
    fn from(info: object_store::ObjectInfo) -> ObjectInfo {
        ObjectInfo { name: info.name, size: info.size as u64, digest: info.digest, modified: info.modified }
    }
}

/// The typed handle on the object store of one `object_store` method:
/// objects are the RPC's response `T` (encoded with the service's codec
/// `C`), named from a request `Req` exactly as the server names them
/// ([`ObjectStore::name`]). Every read checks the object's size and SHA-256
/// digest: a mismatch, or a body that does not decode, is `DATA_LOSS`.
/// Generated clients open it (`client.generate_report_objects().await?`).
///
/// ```no_run
/// # async fn demo(nats: async_nats::Client) -> Result<(), nats_micro_runtime::Error> {
/// use nats_micro_runtime::Protobuf;
/// use nats_micro_runtime::store::{KeyPart, KeyValue, ObjectBucketSpec, ObjectStore, ObjectStoreSpec, TemplatePart, render_object_name};
/// static REPORTS: ObjectStoreSpec = ObjectStoreSpec {
///     bucket: ObjectBucketSpec { name: "reports", description: "", ttl: None, compression: true },
///     template: &[TemplatePart::Text("report "), TemplatePart::Field("id")],
///     client_only: true,
/// };
/// fn name(id: &String) -> Result<String, nats_micro_runtime::store::KeyError> {
///     render_object_name(&[KeyPart::Text("report "), KeyPart::Field("id", KeyValue::of(id))])
/// }
/// let reports: ObjectStore<Protobuf, String, Vec<u8>> = ObjectStore::open(&nats, &REPORTS, name).await?;
/// reports.put("report 1", &vec![7; 4 << 20]).await?;
/// let report = reports.get("report 1").await?.expect("just written"); // digest verified
/// assert_eq!(report.len(), 4 << 20);
/// # Ok(()) }
/// ```
pub struct ObjectStore<C, Req, T, E = Error> {
    store: object_store::ObjectStore,
    spec: &'static ObjectStoreSpec,
    name: KeyFn<Req>,
    _types: PhantomData<fn(C, &Req, E) -> T>,
}

impl<C, Req, T, E> Clone for ObjectStore<C, Req, T, E> {
    fn clone(&self) -> Self {
        ObjectStore { store: self.store.clone(), spec: self.spec, name: self.name, _types: PhantomData }
    }
}

impl<C, Req, T, E> std::fmt::Debug for ObjectStore<C, Req, T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStore").field("bucket", &self.spec.bucket.name).finish_non_exhaustive()
    }
}

impl<C, Req, T, E> ObjectStore<C, Req, T, E>
where
    C: Codec<T>,
    E: From<Error>,
{
    /// Binds to the bucket of `spec`, as [`KvStore::open`](super::KvStore::open).
    pub async fn open(nats: &async_nats::Client, spec: &'static ObjectStoreSpec, name: KeyFn<Req>) -> Result<Self, E> {
        let js = bucket::context(nats);
        let what = format!("opening object store bucket {:?}", spec.bucket.name);
        let store = bucket::bounded(nats, &what, bucket::open_objects(&js, &spec.bucket, spec.client_only)).await?;
        Ok(ObjectStore { store, spec, name, _types: PhantomData })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &'static str {
        self.spec.bucket.name
    }

    /// The async-nats handle underneath.
    pub fn store(&self) -> &object_store::ObjectStore {
        &self.store
    }

    /// The name the server stores a response to `request` under.
    pub fn name(&self, request: &Req) -> Result<String, E> {
        (self.name)(request).map_err(|err| E::from(err.into()))
    }

    /// The object, decoded, after its size and digest were checked (`DATA_LOSS`
    /// on a mismatch); `None` when there is no such object.
    pub async fn get(&self, name: &str) -> Result<Option<T>, E> {
        match self.get_bytes(name).await? {
            Some(body) => C::decode(body)
                .map(Some)
                .map_err(|err| E::from(Error::data_loss(format!("object {name:?} does not decode: {err}")))),
            None => Ok(None),
        }
    }

    /// The object's bytes (the encoded response), size and digest checked.
    pub async fn get_bytes(&self, name: &str) -> Result<Option<Bytes>, E> {
        read_object(&self.store, name).await.map_err(E::from)
    }

    /// Stores `value` under `name`, replacing what was there.
    pub async fn put(&self, name: &str, value: &T) -> Result<ObjectInfo, E> {
        let body = C::encode(value).map_err(|err| E::from(Error::invalid_argument(format!("encoding the object: {err}"))))?;
        put_object(&self.store, name, body).await.map_err(E::from)
    }

    /// Deletes the object.
    pub async fn delete(&self, name: &str) -> Result<(), E> {
        let what = format!("deleting object {name:?} of bucket {:?}", self.bucket());
        self.store.delete(name).await.map_err(|err| E::from(bucket::jetstream_error(&what, &err)))
    }

    /// The object's size, digest and time; `None` when there is no such object.
    pub async fn info(&self, name: &str) -> Result<Option<ObjectInfo>, E> {
        let what = format!("reading the info of object {name:?} of bucket {:?}", self.bucket());
        match self.store.info(name).await {
            Ok(info) => Ok(Some(info.into())),
            Err(err) if err.kind() == InfoErrorKind::NotFound => Ok(None),
            Err(err) => Err(E::from(bucket::jetstream_error(&what, &err))),
        }
    }
}

/// Reads a whole object, checking its digest (async-nats checks it at the
/// end of the read) and its size.
pub(crate) async fn read_object(store: &object_store::ObjectStore, name: &str) -> Result<Option<Bytes>, Error> {
    let what = format!("reading object {name:?}");
    let mut object = match store.get(name).await {
        Ok(object) => object,
        Err(err) if err.kind() == GetErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(bucket::jetstream_error(&what, &err)),
    };
    let expected = object.info().size;
    let mut body = Vec::with_capacity(expected);
    // Read by hand: async-nats fills the buffer and then fails a read on a
    // digest mismatch, which tokio's read helpers assert against.
    let mut buffer = vec![0u8; 128 * 1024];
    loop {
        let mut read = ReadBuf::new(&mut buffer);
        let polled = std::future::poll_fn(|cx| Pin::new(&mut object).poll_read(cx, &mut read)).await;
        let filled = read.filled().len();
        body.extend_from_slice(&buffer[..filled]);
        match polled {
            Ok(()) if filled == 0 => break,
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {
                return Err(Error::data_loss(format!("{what}: its SHA-256 digest does not match ({err})")));
            }
            Err(err) => return Err(bucket::jetstream_error(&what, &err)),
        }
        if body.len() > expected {
            return Err(Error::data_loss(format!("{what}: more than the {expected} bytes it should have")));
        }
    }
    if body.len() != expected {
        return Err(Error::data_loss(format!("{what}: read {} bytes of the {expected} it should have", body.len())));
    }
    Ok(Some(Bytes::from(body)))
}

/// Stores `body` under `name`.
pub(crate) async fn put_object(store: &object_store::ObjectStore, name: &str, body: Bytes) -> Result<ObjectInfo, Error> {
    let what = format!("writing object {name:?}");
    let mut reader: &[u8] = &body;
    store.put(name, &mut reader).await.map(ObjectInfo::from).map_err(|err| bucket::jetstream_error(&what, &err))
}
