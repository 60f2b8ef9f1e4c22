"""Observability (PROTOCOL §11): W3C trace context in request headers, the
events every runtime logs, the per-request record, and the switch that turns
OpenTelemetry on.

OpenTelemetry stays unimported until :func:`enable_opentelemetry` is called:
with it off, a request costs one ``None`` check here and a cached
``isEnabledFor`` test of the logger.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._headers import ATTEMPT_HEADER, decode_attempt

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._otel import OpenTelemetry

_log = logging.getLogger("nats_micro_runtime")

TRACEPARENT_HEADER = "traceparent"
"""W3C Trace Context header with the caller's trace id and span id (lower case, as W3C writes it)."""
TRACESTATE_HEADER = "tracestate"
"""W3C Trace Context header with vendor state; honoured only beside a valid ``traceparent``."""

# Version 00 exactly as W3C writes it: lower-case hex, four dash-separated fields.
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})", re.ASCII)


@dataclass(frozen=True)
class TraceContext:
    """The W3C trace context a request carries (PROTOCOL §11.1).

    >>> ctx = TraceContext.from_headers({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    >>> ctx.trace_id, ctx.sampled
    ('4bf92f3577b34da6a3ce929d0e0e4736', True)
    """

    trace_id: str
    """32 lower-case hex digits, not all zero."""
    span_id: str
    """The caller's span: 16 lower-case hex digits, not all zero."""
    flags: int
    """Trace flags (bit 0: sampled)."""
    tracestate: str | None = None
    """The ``tracestate`` header as received, if any."""

    @property
    def sampled(self) -> bool:
        """Whether the caller recorded its span."""
        return bool(self.flags & 1)

    @property
    def traceparent(self) -> str:
        """The ``traceparent`` header value."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | None) -> TraceContext | None:
        """The context in ``headers``, or ``None`` when ``traceparent`` is
        missing or invalid (the request then starts a new trace; it is never
        an error). ``tracestate`` is kept only beside a valid ``traceparent``."""
        if not headers:
            return None
        value = headers.get(TRACEPARENT_HEADER)
        if value is None:
            return None
        found = _TRACEPARENT.fullmatch(value)
        if found is None:
            return None
        trace_id, span_id, flags = found.groups()
        if trace_id == "0" * 32 or span_id == "0" * 16:
            return None
        return cls(trace_id, span_id, int(flags, 16), headers.get(TRACESTATE_HEADER))


# The events of PROTOCOL §11.4 with their levels.
REQUEST_MALFORMED = "request_malformed"
DEADLINE_DROPPED = "deadline_dropped"
REQUEST_SHED = "request_shed"
HANDLER_FAILED = "handler_failed"
HANDLER_PANICKED = "handler_panicked"
REPLY_REFUSED = "reply_refused"
DISCOVERY_FAILED = "discovery_failed"
PERSIST_FAILED = "persist_failed"
REQUEST_FINISHED = "request_finished"
"""Not an event of §11.4: the per-request record (a span's fields), at debug level."""

_LEVELS = {
    REQUEST_MALFORMED: logging.WARNING,
    DEADLINE_DROPPED: logging.WARNING,
    REQUEST_SHED: logging.WARNING,
    HANDLER_FAILED: logging.ERROR,
    HANDLER_PANICKED: logging.ERROR,
    REPLY_REFUSED: logging.WARNING,
    DISCOVERY_FAILED: logging.WARNING,
    PERSIST_FAILED: logging.WARNING,
    REQUEST_FINISHED: logging.DEBUG,
}


def emit(
    event: str,
    service: str,
    endpoint: str,
    subject: str,
    exc_info: BaseException | None = None,
    *,
    level: int | None = None,
    **fields: Any,
) -> None:
    """Logs ``event`` on the ``nats_micro_runtime`` logger at its level (or
    ``level``: ``persist_failed`` is an error under ``REQUIRED``), the
    event's name as the message and every field in ``extra`` (``event``,
    ``service``, ``endpoint``, ``subject`` and the event's own)."""
    level = _LEVELS[event] if level is None else level
    if _log.isEnabledFor(level):
        extra = {"event": event, "service": service, "endpoint": endpoint, "subject": subject, **fields}
        _log.log(level, event, extra=extra, exc_info=exc_info)


_telemetry: OpenTelemetry | None = None
_request_ids = itertools.count(1)


def telemetry() -> OpenTelemetry | None:
    """The OpenTelemetry instrumentation, when enabled."""
    return _telemetry


def enable_opentelemetry(
    *, tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
) -> None:
    """Records a span per request and per call, and the ``rpc.server.duration``
    and ``rpc.client.duration`` histograms (PROTOCOL §11.2, §11.3), and
    carries trace context in ``traceparent``/``tracestate``. Uses the global
    providers unless given others. Needs ``opentelemetry-api``
    (``pip install nats-micro-runtime[otel]``); until this is called the
    runtime does not import it.

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> enable_opentelemetry(tracer_provider=TracerProvider())
    >>> disable_opentelemetry()
    """
    global _telemetry
    from ._otel import OpenTelemetry  # here, so that nobody who leaves it off imports opentelemetry

    _telemetry = OpenTelemetry(tracer_provider, meter_provider)


def disable_opentelemetry() -> None:
    """Stops recording spans and metrics and carrying trace context."""
    global _telemetry
    _telemetry = None


class RequestRecord:
    """What is recorded about one request a service received, made at its
    arrival only when OpenTelemetry is on or the logger takes debug records:
    the server span and the ``request_finished`` record."""

    __slots__ = ("service", "method", "endpoint", "subject", "attempt", "request_id", "deadline_ms", "span")

    def __init__(
        self,
        service: str,
        proto_service: str,
        method: str,
        endpoint: str,
        subject: str,
        headers: Mapping[str, str] | None,
        arrived_ns: int,
    ) -> None:
        self.service = service
        self.method = method
        self.endpoint = endpoint
        self.subject = subject
        self.attempt = decode_attempt(headers.get(ATTEMPT_HEADER) if headers else None)
        self.deadline_ms: float | None = None
        """The request's budget at arrival, once known."""
        self.span = None
        if _telemetry is not None:
            # ``arrived_ns`` is on the perf counter; spans start on the wall clock.
            start = time.time_ns() - (time.perf_counter_ns() - arrived_ns)
            self.span = _telemetry.server_span(proto_service, self, headers, start)
        self.request_id = self.span.span_id if self.span is not None else str(next(_request_ids))

    def finish(self, code: str | None, message: str, elapsed_ns: int) -> None:
        """Ends the span and logs ``request_finished``; ``code`` is ``None`` on success."""
        duration_ms = elapsed_ns / 1e6
        trace_id = ""
        if self.span is not None:
            trace_id = self.span.trace_id
            self.span.end(code, message, duration_ms)
        if _log.isEnabledFor(logging.DEBUG):
            emit(
                REQUEST_FINISHED,
                self.service,
                self.endpoint,
                self.subject,
                request_id=self.request_id,
                deadline_ms=self.deadline_ms,
                attempt=self.attempt,
                code=code or "OK",
                duration_ms=duration_ms,
                trace_id=trace_id,
            )


def record_request(
    service: str, proto_service: str, method: str, endpoint: str, subject: str, headers: Mapping[str, str] | None, arrived_ns: int
) -> RequestRecord | None:
    """A :class:`RequestRecord` when anything records requests, else ``None``
    (and no allocation); ``arrived_ns`` is the arrival on ``time.perf_counter_ns``."""
    if _telemetry is None and not _log.isEnabledFor(logging.DEBUG):
        return None
    return RequestRecord(service, proto_service, method, endpoint, subject, headers, arrived_ns)
