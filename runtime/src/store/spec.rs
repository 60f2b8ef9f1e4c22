//! What the proto declares for a method's bucket (`kv_store`,
//! `object_store`), as constants the generator emits.

use std::time::Duration;

use super::key::TemplatePart;

/// How a server writes a response to its key (PROTOCOL §12.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteMode {
    /// Put: the newest write wins.
    LastWriteWins,
    /// Update at the expected revision (`Nats-Micro-KV-Revision`, else the
    /// revision read before the handler ran); a conflict is `ABORTED`.
    CompareAndSet,
    /// Create; a key that holds a value is `ALREADY_EXISTS`.
    CreateOnly,
}

/// What a failed write does to the call (PROTOCOL §12.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailurePolicy {
    /// The reply stands; the failure is logged (`persist_failed`) and
    /// counted in STATS (`persist_failures`).
    BestEffort,
    /// The caller gets the error instead of the reply.
    Required,
}

/// A key-value bucket and the settings it is created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvBucketSpec {
    /// Bucket name.
    pub name: &'static str,
    /// Description (may be empty).
    pub description: &'static str,
    /// Revisions kept per key (1 to 64).
    pub history: u32,
    /// Maximum age of entries.
    pub ttl: Option<Duration>,
    /// S2 compression.
    pub compression: bool,
    /// Bucket metadata.
    pub metadata: &'static [(&'static str, &'static str)],
    /// TTL of the markers left when a key expires or is purged (enables per-key TTLs).
    pub limit_marker_ttl: Option<Duration>,
}

/// `(natsmicro.kv_store)` of a method.
///
/// ```
/// use nats_micro_runtime::store::{FailurePolicy, KvBucketSpec, KvStoreSpec, TemplatePart, WriteMode};
/// const SAVE: KvStoreSpec = KvStoreSpec {
///     bucket: KvBucketSpec { name: "profiles", description: "", history: 5, ttl: None, compression: false, metadata: &[], limit_marker_ttl: None },
///     template: &[TemplatePart::Text("user."), TemplatePart::Field("id")],
///     key_ttl: None,
///     purge_ttl: None,
///     write_mode: WriteMode::LastWriteWins,
///     failure_policy: FailurePolicy::Required,
///     client_only: false,
/// };
/// assert_eq!(SAVE.bucket.name, "profiles");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvStoreSpec {
    /// The bucket.
    pub bucket: KvBucketSpec,
    /// The key template, in pieces.
    pub template: &'static [TemplatePart],
    /// TTL of every written key.
    pub key_ttl: Option<Duration>,
    /// TTL of the marker a purge leaves.
    pub purge_ttl: Option<Duration>,
    /// How the server writes.
    pub write_mode: WriteMode,
    /// What a failed write does to the call.
    pub failure_policy: FailurePolicy,
    /// Only client helpers: the server never writes.
    pub client_only: bool,
}

/// An object store bucket and the settings it is created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectBucketSpec {
    /// Bucket name.
    pub name: &'static str,
    /// Description (may be empty).
    pub description: &'static str,
    /// Maximum age of objects.
    pub ttl: Option<Duration>,
    /// S2 compression.
    pub compression: bool,
}

/// `(natsmicro.object_store)` of a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectStoreSpec {
    /// The bucket.
    pub bucket: ObjectBucketSpec,
    /// The object name template, in pieces.
    pub template: &'static [TemplatePart],
    /// Only client helpers: the server never writes.
    pub client_only: bool,
}
