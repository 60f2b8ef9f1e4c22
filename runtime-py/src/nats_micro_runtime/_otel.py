"""OpenTelemetry spans and metrics of requests and calls (PROTOCOL §11.2,
§11.3). Imported only by :func:`enable_opentelemetry`, so that the runtime
does without ``opentelemetry-api`` until then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from contextvars import Token
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import Histogram, MeterProvider, get_meter_provider
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.trace import TracerProvider
from opentelemetry.util.types import AttributeValue

from ._codes import CANCELLED, DATA_LOSS, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE, UNIMPLEMENTED, UNKNOWN
from ._errors import NatsMicroError
from ._interceptor import ClientCall
from ._observe import TRACEPARENT_HEADER, TRACESTATE_HEADER, TraceContext
from ._typevars import T

if TYPE_CHECKING:
    from ._observe import RequestRecord

INSTRUMENTATION = "nats_micro_runtime"
"""The instrumentation scope name of the tracer and the meter."""

SERVER_FAILURES = frozenset({UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS})
"""Codes that mark a server span as failed: the service's own failures (as
gRPC's conventions say); other codes are the caller's problem."""

Attributes = dict[str, AttributeValue]


def _rpc_attributes(proto_service: str, method: str, endpoint: str, subject: str) -> Attributes:
    return {
        "rpc.system": "nats_micro",
        "rpc.service": proto_service,
        "rpc.method": method,
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "nats_micro.endpoint": endpoint,
    }


def _remote_parent(headers: Mapping[str, str] | None) -> Context:
    """The caller's span as a parent, or an empty context (a new trace) when
    the request carries no valid ``traceparent``; never the context the
    subscription happened to be made in."""
    found = TraceContext.from_headers(headers)
    if found is None:
        return Context()
    state = TraceState.from_header([found.tracestate]) if found.tracestate else None
    parent = SpanContext(int(found.trace_id, 16), int(found.span_id, 16), True, TraceFlags(found.flags), state)
    return trace.set_span_in_context(NonRecordingSpan(parent), Context())


def _failure_code(err: BaseException) -> str:
    """The code a failed call is recorded with: its own, else ``CANCELLED`` or ``UNKNOWN``."""
    if isinstance(err, NatsMicroError):
        return err.code
    return CANCELLED if isinstance(err, asyncio.CancelledError) else UNKNOWN


class ServerSpan:
    """One request's SERVER span and its duration metric."""

    __slots__ = ("_span", "_duration", "_attributes", "_token")

    def __init__(self, span: Span, duration: Histogram, attributes: Attributes) -> None:
        self._span = span
        self._duration = duration
        self._attributes = attributes
        self._token: Token[Context] | None = None

    @property
    def trace_id(self) -> str:
        return f"{self._span.get_span_context().trace_id:032x}"

    @property
    def span_id(self) -> str:
        return f"{self._span.get_span_context().span_id:016x}"

    def activate(self) -> None:
        """Makes the span current in this task (a handler's calls become its children) until :meth:`deactivate`."""
        self._token = otel_context.attach(trace.set_span_in_context(self._span))

    def deactivate(self) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
            self._token = None

    def end(self, code: str | None, message: str, duration_ms: float) -> None:
        if code is not None:
            self._span.set_attribute("nats_micro.error_code", code)
            if code in SERVER_FAILURES:
                self._span.set_status(Status(StatusCode.ERROR, f"{code}: {message}"))
        self._span.end()
        self._duration.record(duration_ms, {**self._attributes, "nats_micro.error_code": code or "OK"})


class OpenTelemetry:
    """The tracer and the two histograms, from the given or the global providers."""

    def __init__(self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None) -> None:
        self._tracer = trace.get_tracer(INSTRUMENTATION, tracer_provider=tracer_provider)
        meter = (meter_provider or get_meter_provider()).get_meter(INSTRUMENTATION)
        self._server_duration = meter.create_histogram(
            "rpc.server.duration", unit="ms", description="Time from a request's arrival to its reply"
        )
        self._client_duration = meter.create_histogram(
            "rpc.client.duration", unit="ms", description="Time from a call's start to its reply or failure"
        )

    def server_span(
        self, proto_service: str, record: RequestRecord, headers: Mapping[str, str] | None, start_ns: int
    ) -> ServerSpan:
        """Starts the SERVER span of a request that arrived at ``start_ns`` (wall clock)."""
        attributes = _rpc_attributes(proto_service, record.method, record.endpoint, record.subject)
        span_attributes = dict(attributes)
        if record.attempt > 1:
            span_attributes["nats_micro.attempt"] = record.attempt
        span = self._tracer.start_span(
            f"{proto_service}/{record.method}",
            context=_remote_parent(headers),
            kind=SpanKind.SERVER,
            attributes=span_attributes,
            start_time=start_ns,
        )
        return ServerSpan(span, self._server_duration, attributes)

    def attempt_started(self, number: int) -> None:
        """Marks an attempt of a call on its CLIENT span (a retried call has one span, §11.2)."""
        trace.get_current_span().add_event("attempt", {"nats_micro.attempt": number})

    def client_span(self, proto_service: str, endpoint: str, call: ClientCall) -> ClientSpan:
        """Starts the CLIENT span of a call and puts its trace context in the
        call's headers (unless the caller set a ``traceparent``: the caller's
        headers win). The span is not made current; see :meth:`ClientSpan.current`."""
        attributes = _rpc_attributes(proto_service, call.method, endpoint, call.subject)
        span = self._tracer.start_span(f"{proto_service}/{call.method}", kind=SpanKind.CLIENT, attributes=attributes)
        context = span.get_span_context()
        if context.is_valid and TRACEPARENT_HEADER not in call.headers:
            flags = int(context.trace_flags)
            call.headers[TRACEPARENT_HEADER] = f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"
            if context.trace_state:
                call.headers[TRACESTATE_HEADER] = context.trace_state.to_header()
        return ClientSpan(span, self._client_duration, attributes)

    async def client_call(
        self, proto_service: str, endpoint: str, call: ClientCall, send: Callable[[ClientCall], Awaitable[T]]
    ) -> T:
        """Runs ``send(call)`` under a CLIENT span (see :meth:`client_span`), ending it with the outcome."""
        span = self.client_span(proto_service, endpoint, call)
        try:
            with span.current():
                result = await send(call)
        except BaseException as err:
            span.end(err)
            raise
        span.end(None)
        return result


class ClientSpan:
    """One call's CLIENT span and its duration metric, from the call's start
    to its outcome: a unary call's reply or failure, a stream's end, error or
    the caller leaving (PROTOCOL §11.2)."""

    __slots__ = ("_span", "_duration", "_attributes", "_started", "_ended")

    def __init__(self, span: Span, duration: Histogram, attributes: Attributes) -> None:
        self._span = span
        self._duration = duration
        self._attributes = attributes
        self._started = time.perf_counter_ns()
        self._ended = False

    def current(self) -> AbstractContextManager[Span]:
        """Makes the span current inside a ``with`` block (attempt events, the
        interceptors' own calls), without ending it on the way out."""
        return trace.use_span(self._span, end_on_exit=False, record_exception=False, set_status_on_exception=False)

    def end(self, error: BaseException | None) -> None:
        """Ends the span, once: unset status on success (``error`` is ``None``),
        else an error status and the code's name in ``nats_micro.error_code``."""
        if self._ended:
            return
        self._ended = True
        code = "OK"
        if error is not None:
            code = _failure_code(error)
            self._span.set_attribute("nats_micro.error_code", code)
            self._span.set_status(Status(StatusCode.ERROR, f"{code}: {error}"))
        self._span.end()
        elapsed_ms = (time.perf_counter_ns() - self._started) / 1e6
        self._duration.record(elapsed_ms, {**self._attributes, "nats_micro.error_code": code})
