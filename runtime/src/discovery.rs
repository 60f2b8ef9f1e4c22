//! ADR-32 discovery documents: `$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `type` of a PING reply.
pub const PING_RESPONSE_TYPE: &str = "io.nats.micro.v1.ping_response";
/// `type` of an INFO reply.
pub const INFO_RESPONSE_TYPE: &str = "io.nats.micro.v1.info_response";
/// `type` of a STATS reply.
pub const STATS_RESPONSE_TYPE: &str = "io.nats.micro.v1.stats_response";

/// The fields every discovery reply starts with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceIdentity {
    /// The reply's type ([`PING_RESPONSE_TYPE`], ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Service name.
    pub name: String,
    /// Instance id.
    pub id: String,
    /// Service version.
    pub version: String,
    /// Service metadata (present in every reply, as PROTOCOL §5 asks).
    pub metadata: BTreeMap<String, String>,
}

/// Reply to `$SRV.PING`: the identity alone.
pub type PingResponse = ServiceIdentity;

/// One endpoint in an INFO reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointInfo {
    /// Endpoint name (`create_order`).
    pub name: String,
    /// Subject it listens on (`api.v1.create_order`).
    pub subject: String,
    /// Queue group, absent when disabled.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub queue_group: Option<String>,
    /// Endpoint metadata.
    pub metadata: BTreeMap<String, String>,
}

/// Reply to `$SRV.INFO`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoResponse {
    /// Type (`INFO_RESPONSE_TYPE`), name, id, version, metadata.
    #[serde(flatten)]
    pub identity: ServiceIdentity,
    /// Service description.
    pub description: String,
    /// Endpoints, in proto order.
    pub endpoints: Vec<EndpointInfo>,
}

/// One endpoint in a STATS reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStats {
    /// Endpoint name.
    pub name: String,
    /// Subject it listens on.
    pub subject: String,
    /// Queue group, absent when disabled.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub queue_group: Option<String>,
    /// Requests received.
    pub num_requests: u64,
    /// Error replies sent (typed or not).
    pub num_errors: u64,
    /// The last error, as `CODE:message` (empty if none).
    pub last_error: String,
    /// Total handler time, in nanoseconds.
    pub processing_time: u64,
    /// Average handler time, in nanoseconds.
    pub average_processing_time: u64,
}

/// Reply to `$SRV.STATS`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsResponse {
    /// Type (`STATS_RESPONSE_TYPE`), name, id, version, metadata.
    #[serde(flatten)]
    pub identity: ServiceIdentity,
    /// When the service started, RFC 3339 in UTC.
    pub started: String,
    /// Per-endpoint statistics, in proto order.
    pub endpoints: Vec<EndpointStats>,
}
