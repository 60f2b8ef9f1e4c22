//! Typed `natsmicro/options.proto` messages, filled from the descriptors
//! with `DynamicMessage::transcode_to`: a field is read by its number and
//! type, never looked up by a name string (a typo there would silently
//! yield a default). `tests/options_schema.rs` pins every field of these
//! structs (name, number, type) to the shipped `options.proto`.

use std::collections::BTreeMap;

/// `natsmicro/options.proto` as shipped: the import path users write.
pub const OPTIONS_PROTO_PATH: &str = "natsmicro/options.proto";

/// The text of `natsmicro/options.proto`, embedded so that build.rs users
/// and `protoc-gen-nats-micro --options-proto` get it without a checkout.
pub const OPTIONS_PROTO: &str = include_str!("../proto/natsmicro/options.proto");

/// `(natsmicro.service)`, extension 50001 of `google.protobuf.ServiceOptions`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ServiceOptions {
    /// `subject_prefix`.
    #[prost(string, tag = "1")]
    pub subject_prefix: String,
    /// `name`.
    #[prost(string, tag = "2")]
    pub name: String,
    /// `version`.
    #[prost(string, tag = "3")]
    pub version: String,
    /// `description`.
    #[prost(string, tag = "4")]
    pub description: String,
    /// `metadata`.
    #[prost(btree_map = "string, string", tag = "5")]
    pub metadata: BTreeMap<String, String>,
    /// `timeout`.
    #[prost(message, optional, tag = "6")]
    pub timeout: Option<prost_types::Duration>,
    /// `skip`.
    #[prost(bool, tag = "7")]
    pub skip: bool,
    /// `json`.
    #[prost(bool, tag = "8")]
    pub json: bool,
    /// `error_codes`.
    #[prost(string, repeated, tag = "9")]
    pub error_codes: Vec<String>,
    /// `queue_group_disabled`.
    #[prost(bool, tag = "10")]
    pub queue_group_disabled: bool,
}

/// `(natsmicro.endpoint)`, extension 50002 of `google.protobuf.MethodOptions`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EndpointOptions {
    /// `timeout`.
    #[prost(message, optional, tag = "1")]
    pub timeout: Option<prost_types::Duration>,
    /// `skip`.
    #[prost(bool, tag = "2")]
    pub skip: bool,
    /// `metadata`.
    #[prost(btree_map = "string, string", tag = "3")]
    pub metadata: BTreeMap<String, String>,
    /// `queue_group_disabled`.
    #[prost(bool, tag = "4")]
    pub queue_group_disabled: bool,
    /// `pending_msg_limit`.
    #[prost(int32, tag = "5")]
    pub pending_msg_limit: i32,
    /// `pending_bytes_limit`.
    #[prost(int32, tag = "6")]
    pub pending_bytes_limit: i32,
}

/// `(natsmicro.kv_store)`, extension 50003 of `google.protobuf.MethodOptions`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KvStoreOptions {
    /// `bucket`.
    #[prost(string, tag = "1")]
    pub bucket: String,
    /// `key_template`.
    #[prost(string, tag = "2")]
    pub key_template: String,
    /// `ttl`.
    #[prost(message, optional, tag = "3")]
    pub ttl: Option<prost_types::Duration>,
    /// `description`.
    #[prost(string, tag = "4")]
    pub description: String,
    /// `max_history`.
    #[prost(int32, tag = "5")]
    pub max_history: i32,
    /// `client_only`.
    #[prost(bool, tag = "6")]
    pub client_only: bool,
    /// `metadata`.
    #[prost(btree_map = "string, string", tag = "7")]
    pub metadata: BTreeMap<String, String>,
    /// `limit_marker_ttl`.
    #[prost(message, optional, tag = "8")]
    pub limit_marker_ttl: Option<prost_types::Duration>,
    /// `key_ttl`.
    #[prost(message, optional, tag = "9")]
    pub key_ttl: Option<prost_types::Duration>,
    /// `purge_ttl`.
    #[prost(message, optional, tag = "10")]
    pub purge_ttl: Option<prost_types::Duration>,
    /// `write_mode` (`natsmicro.KVWriteMode`).
    #[prost(enumeration = "KvWriteMode", tag = "11")]
    pub write_mode: i32,
    /// `persist_failure_policy` (`natsmicro.KVPersistFailurePolicy`).
    #[prost(enumeration = "KvPersistFailurePolicy", tag = "12")]
    pub persist_failure_policy: i32,
    /// `compression`.
    #[prost(bool, tag = "13")]
    pub compression: bool,
}

/// `(natsmicro.object_store)`, extension 50004 of `google.protobuf.MethodOptions`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ObjectStoreOptions {
    /// `bucket`.
    #[prost(string, tag = "1")]
    pub bucket: String,
    /// `key_template`.
    #[prost(string, tag = "2")]
    pub key_template: String,
    /// `ttl`.
    #[prost(message, optional, tag = "3")]
    pub ttl: Option<prost_types::Duration>,
    /// `description`.
    #[prost(string, tag = "4")]
    pub description: String,
    /// `client_only`.
    #[prost(bool, tag = "5")]
    pub client_only: bool,
    /// `compression`.
    #[prost(bool, tag = "6")]
    pub compression: bool,
}

/// `(natsmicro.stream)`, extension 50005 of `google.protobuf.MethodOptions`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamOptions {
    /// `max_inflight`.
    #[prost(int32, tag = "1")]
    pub max_inflight: i32,
    /// `ordered`.
    #[prost(bool, tag = "2")]
    pub ordered: bool,
}

/// `(natsmicro.chunked_io)`, extension 50006 of `google.protobuf.MethodOptions`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedIoOptions {
    /// `chunk_field`.
    #[prost(string, tag = "1")]
    pub chunk_field: String,
    /// `default_chunk_size`.
    #[prost(int32, tag = "2")]
    pub default_chunk_size: i32,
}

/// `natsmicro.KVWriteMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum KvWriteMode {
    /// `KV_WRITE_MODE_UNSPECIFIED`.
    Unspecified = 0,
    /// `KV_WRITE_MODE_LAST_WRITE_WINS`.
    LastWriteWins = 1,
    /// `KV_WRITE_MODE_COMPARE_AND_SET`.
    CompareAndSet = 2,
    /// `KV_WRITE_MODE_CREATE_ONLY`.
    CreateOnly = 3,
}

/// `natsmicro.KVPersistFailurePolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum KvPersistFailurePolicy {
    /// `KV_PERSIST_FAILURE_POLICY_UNSPECIFIED`.
    Unspecified = 0,
    /// `KV_PERSIST_FAILURE_POLICY_BEST_EFFORT`.
    BestEffort = 1,
    /// `KV_PERSIST_FAILURE_POLICY_REQUIRED`.
    Required = 2,
}
