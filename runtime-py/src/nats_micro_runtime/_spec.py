"""What generated code declares: a service and its unary endpoints as the proto says."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ._errors import ConfigError
from ._store import KvStoreSpec, ObjectStoreSpec


@dataclass(frozen=True)
class ChunkedSpec:
    """A streaming RPC's ``(natsmicro.chunked_io)`` (PROTOCOL §12.5): the
    streamed message's one ``bytes`` field and the default chunk size."""

    field: str
    """Proto name of the streamed message's only field."""
    chunk_size: int = 64 * 1024
    """Bytes per chunk when a transfer sets none."""


@dataclass(frozen=True)
class EndpointSpec:
    """One unary RPC as the proto declares it."""

    method: str
    """Proto method name (``CreateOrder``)."""
    endpoint: str
    """ADR-32 endpoint name and last subject token (``create_order``)."""
    timeout: float | None = None
    """Seconds, from the proto: the endpoint's ``timeout``, else the service's."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    """ADR-32 endpoint metadata."""
    queue_group_disabled: bool = False
    """Subscribe this endpoint without a queue group."""
    idempotent: bool = False
    """Safe to repeat after a timeout or a lost connection: the proto's
    ``idempotency_level`` is ``NO_SIDE_EFFECTS`` or ``IDEMPOTENT``."""
    pending_msg_limit: int | None = None
    """Requests that may wait for a free handler slot before more are refused with ``UNAVAILABLE``."""
    pending_bytes_limit: int | None = None
    """Bytes of requests that may wait likewise."""
    max_inflight: int | None = None
    """A stream endpoint's window: messages a receiver accepts ahead
    (``max_inflight`` of ``(natsmicro.stream)``; 64 without it)."""
    kv_store: KvStoreSpec | None = None
    """``(natsmicro.kv_store)``: the response is kept in a key-value bucket (PROTOCOL §12.2)."""
    object_store: ObjectStoreSpec | None = None
    """``(natsmicro.object_store)``: the response is kept in an object store (PROTOCOL §12.3)."""
    chunked: ChunkedSpec | None = None
    """``(natsmicro.chunked_io)``: the stream carries one payload in chunks (PROTOCOL §12.5)."""


@dataclass(frozen=True)
class ServiceSpec:
    """A service as the proto declares it; every value can be overridden at run time."""

    proto_name: str
    """Full proto name (``order.v1.OrderService``)."""
    name: str
    """ADR-32 service name."""
    version: str
    """ADR-32 version (SemVer)."""
    description: str
    """ADR-32 description."""
    subject_prefix: str
    """First tokens of every endpoint subject."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    """ADR-32 service metadata."""
    timeout: float | None = None
    """Seconds, from ``(natsmicro.service).timeout``."""
    queue_group_disabled: bool = False
    """Subscribe without a queue group."""
    json: bool = False
    """Bodies use the proto3 JSON mapping instead of binary protobuf."""
    endpoints: tuple[EndpointSpec, ...] = ()
    """The unary RPCs, in proto order."""

    def endpoint(self, name: str) -> EndpointSpec:
        """The endpoint called ``name`` (``create_order``)."""
        for spec in self.endpoints:
            if spec.endpoint == name:
                return spec
        raise ConfigError(f"{self.proto_name} has no endpoint {name!r}")
