//! Responses kept in JetStream (PROTOCOL §12.1–§12.4): `kv_store` and
//! `object_store` methods.
//!
//! - Servers: a persisting method's endpoint creates or updates its bucket
//!   when the service starts (JetStream missing is `FAILED_PRECONDITION`),
//!   and writes each successful response under the key rendered from its
//!   request before replying, with the write mode and failure policy of the
//!   proto. Generated code passes the specs and the key functions; nothing
//!   else is needed.
//! - Clients: [`KvStore`] and [`ObjectStore`], typed handles opened from the
//!   generated client (`client.save_profile_kv().await?`).
//! - Keys: [`render_kv_key`] and [`render_object_name`], the one renderer
//!   generated key functions call.
//!
//! Needs a nats-server with JetStream (`nats-server -js`).

mod bucket;
mod key;
mod kv;
mod object;
pub(crate) mod persist;
mod spec;

pub use key::{
    IntoKeyValue, KeyError, KeyFn, KeyPart, KeyValue, TemplatePart, is_valid_kv_key, render_kv_key, render_object_name,
};
pub use kv::{KvChange, KvEntry, KvStore, KvWatch};
pub use object::{ObjectInfo, ObjectStore};
pub use persist::StoreKeys;
pub use spec::{FailurePolicy, KvBucketSpec, KvStoreSpec, ObjectBucketSpec, ObjectStoreSpec, WriteMode};

/// The revision of a key-value write: on a successful reply after the
/// server's write, and on a compare-and-set request as the revision the
/// caller expects (decimal; `0`: the key must hold no value).
pub const KV_REVISION_HEADER: &str = "Nats-Micro-KV-Revision";

/// A revision header's value: 1 to 20 ASCII digits that fit a `u64`.
///
/// ```
/// use nats_micro_runtime::store::parse_revision;
/// assert_eq!(parse_revision("42"), Some(42));
/// assert_eq!(parse_revision("0"), Some(0));
/// for bad in ["", "-1", "+1", " 1", "1.0", "abc", "99999999999999999999999"] {
///     assert_eq!(parse_revision(bad), None, "{bad:?}");
/// }
/// ```
pub fn parse_revision(value: &str) -> Option<u64> {
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}
