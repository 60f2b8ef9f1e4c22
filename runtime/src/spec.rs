//! Static descriptions of services and endpoints, emitted by the generator
//! from the proto and its options.

use std::time::Duration;

use crate::client::MethodSpec;
use crate::store::{KvStoreSpec, ObjectStoreSpec};
use crate::stream::StreamKind;

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

/// An endpoint (one RPC, unary or streaming) as the proto declares it.
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
    /// A streaming endpoint's flow-control window: messages each side may
    /// have in flight (`max_inflight` of `(natsmicro.stream)`, PROTOCOL §9.4).
    pub window: u32,
    /// How the endpoint streams (`None`: unary).
    pub stream: Option<StreamKind>,
    /// `(natsmicro.kv_store)`: the response is kept in a key-value bucket (PROTOCOL §12.2).
    pub kv_store: Option<&'static KvStoreSpec>,
    /// `(natsmicro.object_store)`: the response is kept in an object store (PROTOCOL §12.3).
    pub object_store: Option<&'static ObjectStoreSpec>,
}

impl EndpointSpec {
    /// An endpoint with no proto options: no timeout, no metadata, in the
    /// service's queue group, no pending limits. The generator starts every
    /// endpoint from here and sets only what the proto declares.
    ///
    /// ```
    /// use std::time::Duration;
    /// use nats_micro_runtime::EndpointSpec;
    ///
    /// const GET_ORDER: EndpointSpec =
    ///     EndpointSpec::new("GetOrder", "get_order").with_timeout(Duration::from_secs(2)).with_pending_limits(Some(64), None);
    /// assert_eq!(GET_ORDER.method.endpoint, "get_order");
    /// assert_eq!(GET_ORDER.method.timeout, Some(Duration::from_secs(2)));
    /// assert!(GET_ORDER.metadata.is_empty() && !GET_ORDER.queue_group_disabled);
    /// ```
    pub const fn new(method: &'static str, endpoint: &'static str) -> EndpointSpec {
        EndpointSpec {
            method: MethodSpec { method, endpoint, timeout: None, idempotent: false },
            metadata: &[],
            queue_group_disabled: false,
            pending_msg_limit: None,
            pending_bytes_limit: None,
            window: crate::stream::DEFAULT_WINDOW,
            stream: None,
            kv_store: None,
            object_store: None,
        }
    }

    /// Keeps the endpoint's responses in a key-value bucket (PROTOCOL §12.2).
    pub const fn with_kv_store(mut self, store: &'static KvStoreSpec) -> EndpointSpec {
        self.kv_store = Some(store);
        self
    }

    /// Keeps the endpoint's responses in an object store (PROTOCOL §12.3).
    pub const fn with_object_store(mut self, store: &'static ObjectStoreSpec) -> EndpointSpec {
        self.object_store = Some(store);
        self
    }

    /// Marks a streaming endpoint.
    pub const fn streaming(mut self, kind: StreamKind) -> EndpointSpec {
        self.stream = Some(kind);
        self
    }

    /// The ADR-32 INFO metadata: the proto's, and for a streaming endpoint
    /// its kind under [`STREAM_METADATA_KEY`](crate::stream::STREAM_METADATA_KEY).
    pub fn info_metadata(&self) -> std::collections::BTreeMap<String, String> {
        let mut metadata: std::collections::BTreeMap<String, String> =
            self.metadata.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        if let Some(kind) = self.stream {
            metadata.insert(crate::stream::STREAM_METADATA_KEY.to_owned(), kind.as_str().to_owned());
        }
        metadata
    }

    /// Sets a streaming endpoint's flow-control window.
    pub const fn with_window(mut self, window: u32) -> EndpointSpec {
        self.window = window;
        self
    }

    /// Sets the proto timeout (the endpoint's, else the service's).
    pub const fn with_timeout(mut self, timeout: Duration) -> EndpointSpec {
        self.method.timeout = Some(timeout);
        self
    }

    /// Sets the ADR-32 endpoint metadata.
    pub const fn with_metadata(mut self, metadata: &'static [(&'static str, &'static str)]) -> EndpointSpec {
        self.metadata = metadata;
        self
    }

    /// Marks the method safe to repeat (`idempotency_level` `NO_SIDE_EFFECTS`
    /// or `IDEMPOTENT` in the proto): a retry policy may send it again after
    /// a timeout or a lost connection.
    pub const fn idempotent(mut self) -> EndpointSpec {
        self.method.idempotent = true;
        self
    }

    /// Subscribes this endpoint without a queue group.
    pub const fn without_queue_group(mut self) -> EndpointSpec {
        self.queue_group_disabled = true;
        self
    }

    /// Sets how many requests, and how many bytes of them, may wait for a
    /// free handler slot (`None`: without limit).
    pub const fn with_pending_limits(mut self, messages: Option<usize>, bytes: Option<usize>) -> EndpointSpec {
        self.pending_msg_limit = messages;
        self.pending_bytes_limit = bytes;
        self
    }
}
