//! Static descriptions of services and endpoints, emitted by the generator
//! from the proto and its options.

use std::time::Duration;

use crate::client::MethodSpec;

/// A service as the proto declares it. Every value can be overridden at run
/// time on [`crate::ServiceBuilder`] or [`crate::Client`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The proto's full service name (`order.v1.OrderService`).
    pub proto_name: &'static str,
    /// ADR-32 service name.
    pub name: &'static str,
    /// ADR-32 version (SemVer).
    pub version: &'static str,
    /// ADR-32 description.
    pub description: &'static str,
    /// First tokens of every endpoint subject.
    pub subject_prefix: &'static str,
    /// ADR-32 service metadata.
    pub metadata: &'static [(&'static str, &'static str)],
    /// The service-wide timeout from `(natsmicro.service).timeout`.
    pub timeout: Option<Duration>,
    /// Subscribe without a queue group.
    pub queue_group_disabled: bool,
}

/// An endpoint (one unary RPC) as the proto declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointSpec {
    /// Method name, endpoint name and proto timeout (the endpoint's, else the service's).
    pub method: MethodSpec,
    /// ADR-32 endpoint metadata.
    pub metadata: &'static [(&'static str, &'static str)],
    /// Subscribe this endpoint without a queue group.
    pub queue_group_disabled: bool,
    /// Requests that may wait for a free handler slot before new ones are
    /// refused with `UNAVAILABLE` (`None`: wait without limit).
    pub pending_msg_limit: Option<usize>,
    /// Bytes of requests that may wait likewise.
    pub pending_bytes_limit: Option<usize>,
}
