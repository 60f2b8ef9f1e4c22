//! ADR-32 discovery: the documents `$SRV.PING`, `$SRV.INFO` and
//! `$SRV.STATS` answer with, and the task that answers them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use async_nats::Subscriber;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::endpoint::Endpoint;
use super::json_body;
use super::reply_policy::ReplyCheck;
use crate::telemetry::event;

/// `type` of a PING reply.
pub const PING_RESPONSE_TYPE: &str = "io.nats.micro.v1.ping_response";
/// `type` of an INFO reply.
pub const INFO_RESPONSE_TYPE: &str = "io.nats.micro.v1.info_response";
/// `type` of a STATS reply.
pub const STATS_RESPONSE_TYPE: &str = "io.nats.micro.v1.stats_response";

/// The fields every discovery reply starts with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceIdentity {
    /// The reply's type (`io.nats.micro.v1.ping_response`, ...).
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
    /// Endpoint data: `{"shed": n}`, the requests shed because the backlog
    /// was full, and for an endpoint that persists its responses
    /// `"persist_failures"`, its writes that failed under either policy (PROTOCOL §12.2).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub data: Option<serde_json::Value>,
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

/// Who the service is, for discovery replies.
pub(super) struct Identity {
    pub(super) name: String,
    pub(super) id: String,
    pub(super) version: String,
    pub(super) metadata: BTreeMap<String, String>,
    pub(super) started: String,
    pub(super) endpoints: Vec<Arc<Endpoint>>,
    pub(super) restarts: AtomicU64,
}

impl Identity {
    pub(super) fn document(&self, kind: &str) -> ServiceIdentity {
        ServiceIdentity {
            kind: kind.to_owned(),
            name: self.name.clone(),
            id: self.id.clone(),
            version: self.version.clone(),
            metadata: self.metadata.clone(),
        }
    }

    pub(super) fn stats(&self) -> StatsResponse {
        StatsResponse {
            identity: self.document(STATS_RESPONSE_TYPE),
            started: self.started.clone(),
            endpoints: self
                .endpoints
                .iter()
                .map(|endpoint| endpoint.stats.snapshot(&endpoint.info, endpoint.handler.persist_failures()))
                .collect(),
        }
    }
}

pub(super) async fn serve_discovery(
    nats: async_nats::Client,
    subscribers: Vec<(&'static str, Subscriber)>,
    identity: Arc<Identity>,
    reply_check: Arc<ReplyCheck>,
    ping: Bytes,
    info: Bytes,
) {
    let mut requests = futures_util::stream::select_all(
        subscribers.into_iter().map(|(verb, subscriber)| subscriber.map(move |message| (verb, message))),
    );
    while let Some((verb, message)) = requests.next().await {
        if let Some(reason) = reply_check.refusal(message.reply.as_ref()) {
            let at = event::At { service: &identity.name, endpoint: "", subject: &message.subject };
            event::reply_refused(at, message.reply.as_ref().map_or("", |reply| reply.as_str()), &reason);
            continue;
        }
        let Some(reply) = message.reply else { continue };
        let body = match verb {
            "PING" => ping.clone(),
            "INFO" => info.clone(),
            _ => match json_body(&identity.stats()) {
                Ok(body) => body,
                Err(err) => {
                    event::discovery_failed(event::At { service: &identity.name, endpoint: "", subject: &message.subject }, &err);
                    continue;
                }
            },
        };
        if let Err(err) = nats.publish(reply, body).await {
            event::discovery_failed(event::At { service: &identity.name, endpoint: "", subject: &message.subject }, &err);
        }
    }
}
