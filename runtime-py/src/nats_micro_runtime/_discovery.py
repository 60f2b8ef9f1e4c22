"""ADR-32 discovery documents: endpoints as INFO and STATS report them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EndpointInfo:
    """A registered endpoint, as INFO reports it."""

    name: str
    subject: str
    queue_group: str | None
    metadata: Mapping[str, str]

    def to_json(self) -> dict[str, Any]:
        """The ADR-32 JSON form (no ``queue_group`` when disabled)."""
        return {**_endpoint_json(self.name, self.subject, self.queue_group), "metadata": dict(self.metadata)}


@dataclass(frozen=True)
class EndpointStats:
    """One endpoint's statistics, as STATS reports them."""

    name: str
    subject: str
    queue_group: str | None
    num_requests: int
    num_errors: int
    last_error: str
    processing_time: int
    """Total handler time, in nanoseconds."""
    average_processing_time: int
    """Average handler time, in nanoseconds."""
    data: Mapping[str, Any] | None = None
    """Endpoint-specific statistics (``{"shed": n}``: requests refused with a
    full backlog, §5; with ``"persist_failures": n`` for an endpoint that
    persists its responses, §12.2)."""

    def to_json(self) -> dict[str, Any]:
        """The ADR-32 JSON form (no ``queue_group`` when disabled)."""
        return {
            **_endpoint_json(self.name, self.subject, self.queue_group),
            "num_requests": self.num_requests,
            "num_errors": self.num_errors,
            "last_error": self.last_error,
            "processing_time": self.processing_time,
            "average_processing_time": self.average_processing_time,
        } | ({} if self.data is None else {"data": dict(self.data)})


#: The endpoint metadata key that marks a streaming endpoint in ADR-32 INFO,
#: with ``server``, ``client`` or ``bidirectional`` as value (PROTOCOL §9).
STREAM_METADATA_KEY = "nats_micro.stream"


def _endpoint_json(name: str, subject: str, queue_group: str | None) -> dict[str, Any]:
    """An endpoint's name and subject, and its queue group unless disabled."""
    return {"name": name, "subject": subject} | ({} if queue_group is None else {"queue_group": queue_group})
