"""Observability (PROTOCOL §11) on a real nats-server: the §11.4 events with
their fields, each situation driven for real (a malformed request, a deadline
drop, a shed request, an uncoded failure, an uncaught ``BaseException``, a
refused reply subject); the per-request record; W3C ``traceparent`` parsing;
OpenTelemetry spans, parent links and metrics with in-memory exporters; and
that the runtime does not import OpenTelemetry unless it is enabled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Unpack

import nats
import nats.errors
import nats_micro_runtime as rt
import pytest
from google.protobuf import wrappers_pb2
from nats.aio.client import Client as NatsClient
from nats_server_fixture import nc  # noqa: F401 (a fixture)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

SPEC = rt.ServiceSpec(
    proto_name="obs.v1.EchoService", name="echo", version="1.0.0", description="", subject_prefix="obs",
    endpoints=(rt.EndpointSpec("Echo", "echo"),),
)  # fmt: skip
INNER = rt.ServiceSpec(
    proto_name="obs.v1.InnerService", name="inner", version="1.0.0", description="", subject_prefix="inner",
    endpoints=(rt.EndpointSpec("Echo", "echo"),),
)  # fmt: skip
SUBJECT = "obs.echo"
NO_RETRIES = rt.RetryPolicy(max_attempts=1)
VALID_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

Handler = Any


async def serve(
    nc: NatsClient, handler: Handler, spec: rt.ServiceSpec = SPEC, **overrides: Unpack[rt.ServiceOverrides]
) -> rt.Service:
    return await rt.start_service(nc, spec, {"echo": rt.UnaryEndpoint(handler, wrappers_pb2.StringValue)}, overrides)


async def echo_handler(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
    return request


async def call(client: rt.Client, value: str = "hi", **options: Any) -> rt.Response[wrappers_pb2.StringValue]:
    return await client.unary("echo", wrappers_pb2.StringValue(value=value), wrappers_pb2.StringValue, **options)


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "nats_micro_runtime" and r.getMessage() == name]


def field(record: logging.LogRecord, name: str) -> Any:
    """A field the runtime put in ``extra``."""
    return getattr(record, name)


def fields(record: logging.LogRecord, *names: str) -> dict[str, Any]:
    return {name: getattr(record, name) for name in names}


async def until(condition: Any, timeout: float = 5.0) -> None:
    """Waits for ``condition()`` (a log record written after the reply went out)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="nats_micro_runtime")
    yield caplog


# --- events (§11.4) ---------------------------------------------------------


async def test_a_malformed_request_is_logged_with_its_error(nc: NatsClient, logs: pytest.LogCaptureFixture) -> None:
    service = await serve(nc, echo_handler)
    reply = await nc.request(SUBJECT, b"\xff\xff\xff", timeout=5)
    assert reply.headers is not None and reply.headers["Nats-Service-Error-Code"] == "400"
    (record,) = events(logs, "request_malformed")
    assert record.levelno == logging.WARNING
    assert fields(record, "event", "service", "endpoint", "subject") == {
        "event": "request_malformed", "service": "echo", "endpoint": "echo", "subject": SUBJECT,
    }  # fmt: skip
    assert "google.protobuf.StringValue" in field(record, "error")
    await service.stop()


async def test_a_request_past_its_deadline_is_dropped_and_logged(nc: NatsClient, logs: pytest.LogCaptureFixture) -> None:
    async def slow(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
        await asyncio.sleep(5)
        return request

    service = await serve(nc, slow)
    client = rt.Client(nc, SPEC, rt.ServiceError)
    with pytest.raises(rt.NatsMicroError):
        await call(client, timeout=0.1)
    await until(lambda: events(logs, "deadline_dropped"))
    (record,) = events(logs, "deadline_dropped")
    assert record.levelno == logging.WARNING
    assert fields(record, "service", "endpoint", "subject") == {"service": "echo", "endpoint": "echo", "subject": SUBJECT}
    assert 80 <= field(record, "waited_ms") < 2000
    await service.stop()


async def test_a_request_whose_deadline_passes_while_queued_is_never_started(
    nc: NatsClient, logs: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()
    started: list[str] = []

    async def blocked(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
        started.append(request.value)
        await release.wait()
        return request

    service = await serve(nc, blocked, max_concurrency=1)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    first = asyncio.ensure_future(call(client, "first"))
    await until(lambda: started == ["first"])
    with pytest.raises(rt.NatsMicroError):
        await call(client, "late", timeout=0.2)
    await asyncio.sleep(0.1)
    release.set()
    await first
    await until(lambda: events(logs, "deadline_dropped"))
    (record,) = events(logs, "deadline_dropped")
    assert field(record, "waited_ms") >= 250 and started == ["first"]
    await service.stop()


async def test_a_discovery_reply_that_cannot_be_sent_is_logged(tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "small.conf"
    config.write_text("max_payload: 1024\n", encoding="utf-8")
    async with nats_server("-c", str(config)) as url:
        connection = await nats.connect(url)
        service = await serve(connection, echo_handler, merge_metadata={"blob": "x" * 2000})
        with pytest.raises(nats.errors.TimeoutError):
            await connection.request("$SRV.INFO.echo", b"", timeout=0.5)
        (record,) = events(logs, "discovery_failed")
        assert record.levelno == logging.WARNING
        assert fields(record, "service", "endpoint", "subject") == {"service": "echo", "endpoint": "", "subject": "$SRV.INFO.echo"}
        assert "MaxPayload" in field(record, "error")
        await service.stop()
        await connection.close()


@contextlib.asynccontextmanager
async def nats_server(*args: str) -> AsyncIterator[str]:
    """A nats-server with extra arguments on a free loopback port; yields its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = str(Path(sys.executable).parent / "nats-server")
    server = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port), *args], stdout=subprocess.DEVNULL)
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert loop.time() < end, "nats-server did not start"
                await asyncio.sleep(0.02)
        yield f"nats://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


async def test_a_shed_request_is_logged_with_the_queue_length(nc: NatsClient, logs: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()

    async def blocked(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
        await release.wait()
        return request

    service = await serve(nc, blocked, max_concurrency=1, pending_limit=1)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5, retry_policy=NO_RETRIES)
    first = asyncio.ensure_future(call(client, "1"))
    await until(lambda: service.stats()[0].num_requests == 0 and bool(service._endpoints[0]._tasks))
    second = asyncio.ensure_future(call(client, "2"))
    await until(lambda: service._endpoints[0]._queued == 1)
    with pytest.raises(rt.ServiceError) as shed:
        await call(client, "3")
    assert shed.value.code == rt.RESOURCE_EXHAUSTED
    (record,) = events(logs, "request_shed")
    assert record.levelno == logging.WARNING
    assert fields(record, "service", "endpoint", "subject", "queued") == {
        "service": "echo", "endpoint": "echo", "subject": SUBJECT, "queued": 1,
    }  # fmt: skip
    release.set()
    await asyncio.gather(first, second)
    await service.stop()


async def test_an_uncoded_failure_is_logged_with_its_text_and_withheld(nc: NatsClient, logs: pytest.LogCaptureFixture) -> None:
    async def failing(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
        raise RuntimeError("the disk is on fire")

    service = await serve(nc, failing)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    with pytest.raises(rt.ServiceError) as caught:
        await call(client)
    assert caught.value.code == rt.INTERNAL and caught.value.message == rt.INTERNAL_MESSAGE
    (record,) = events(logs, "handler_failed")
    assert record.levelno == logging.ERROR
    assert fields(record, "service", "endpoint", "subject", "error") == {
        "service": "echo", "endpoint": "echo", "subject": SUBJECT, "error": "RuntimeError: the disk is on fire",
    }  # fmt: skip
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError), "the traceback is kept"
    assert not events(logs, "handler_panicked")
    await service.stop()


async def test_an_uncaught_base_exception_is_a_panic_and_the_caller_gets_internal(
    nc: NatsClient, logs: pytest.LogCaptureFixture
) -> None:
    class Meltdown(BaseException):
        pass

    async def panicking(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
        await asyncio.sleep(0)
        raise Meltdown("core breach")

    service = await serve(nc, panicking)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    with pytest.raises(rt.ServiceError) as caught:
        await call(client)
    assert caught.value.code == rt.INTERNAL
    (record,) = events(logs, "handler_panicked")
    assert record.levelno == logging.ERROR
    assert fields(record, "service", "endpoint", "subject", "panic") == {
        "service": "echo", "endpoint": "echo", "subject": SUBJECT, "panic": "Meltdown: core breach",
    }  # fmt: skip
    assert service.stats()[0].num_errors == 1
    await service.stop()


async def test_a_refused_reply_subject_is_logged_with_the_subject(nc: NatsClient, logs: pytest.LogCaptureFixture) -> None:
    service = await serve(nc, echo_handler, reply_deny=["evil.>"])
    await nc.publish(SUBJECT, wrappers_pb2.StringValue(value="x").SerializeToString(), reply="evil.sink")
    await until(lambda: events(logs, "reply_refused"))
    (record,) = events(logs, "reply_refused")
    assert record.levelno == logging.WARNING
    assert fields(record, "service", "endpoint", "subject", "reply") == {
        "service": "echo", "endpoint": "echo", "subject": SUBJECT, "reply": "evil.sink",
    }  # fmt: skip
    await service.stop()


async def test_every_request_leaves_a_debug_record_with_its_fields(nc: NatsClient, logs: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []

    async def handler(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
        seen.append(ctx.attempt)
        if request.value == "missing":
            raise rt.NotFoundError(ctx.method, "no such thing")
        return request

    service = await serve(nc, handler, timeout=3)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=2)
    await call(client, headers={rt.ATTEMPT_HEADER: "3"})
    with pytest.raises(rt.ServiceError):
        await call(client, "missing", headers={rt.ATTEMPT_HEADER: "-1"})
    await until(lambda: len(events(logs, "request_finished")) == 2)
    ok, missing = events(logs, "request_finished")
    assert ok.levelno == logging.DEBUG
    assert fields(ok, "service", "endpoint", "subject", "attempt", "code", "trace_id") == {
        "service": "echo", "endpoint": "echo", "subject": SUBJECT, "attempt": 3, "code": "OK", "trace_id": "",
    }  # fmt: skip
    assert 1000 < field(ok, "deadline_ms") <= 2000, "the caller's budget is below the endpoint's 3 s"
    assert field(ok, "duration_ms") >= 0 and field(ok, "request_id") != field(missing, "request_id")
    assert (field(missing, "attempt"), field(missing, "code")) == (1, rt.NOT_FOUND)
    assert seen == [3, 1]
    await service.stop()


# --- W3C trace context (§11.1) --------------------------------------------------


@pytest.mark.parametrize(
    "traceparent",
    [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # another version
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00-４bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # a non-ASCII digit
    ],
)
def test_an_invalid_traceparent_is_no_context(traceparent: str) -> None:
    assert rt.TraceContext.from_headers({rt.TRACEPARENT_HEADER: traceparent, rt.TRACESTATE_HEADER: "k=v"}) is None


def test_a_valid_traceparent_keeps_its_tracestate() -> None:
    found = rt.TraceContext.from_headers({rt.TRACEPARENT_HEADER: VALID_PARENT, rt.TRACESTATE_HEADER: "vendor=abc"})
    assert found == rt.TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1, "vendor=abc")
    assert found.sampled and found.traceparent == VALID_PARENT
    assert rt.TraceContext.from_headers({rt.TRACESTATE_HEADER: "vendor=abc"}) is None, "tracestate alone is no context"
    assert rt.TraceContext.from_headers({"Traceparent": VALID_PARENT}) is None, "header names are case-sensitive"
    assert rt.TraceContext.from_headers(None) is None


# --- OpenTelemetry (§11.2, §11.3) ----------------------------------------------


class Otel:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metrics])

    def finished(self, kind: SpanKind) -> list[ReadableSpan]:
        return [span for span in self.spans.get_finished_spans() if span.kind == kind]

    def histogram(self, name: str) -> list[HistogramDataPoint]:
        data = self.metrics.get_metrics_data()
        points: list[HistogramDataPoint] = []
        if data is None:
            return points
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        assert metric.unit == "ms"
                        points += [p for p in metric.data.data_points if isinstance(p, HistogramDataPoint)]
        return points


@pytest.fixture
def otel() -> Iterator[Otel]:
    recorded = Otel()
    rt.enable_opentelemetry(tracer_provider=recorded.tracer_provider, meter_provider=recorded.meter_provider)
    try:
        yield recorded
    finally:
        rt.disable_opentelemetry()
        recorded.tracer_provider.shutdown()
        recorded.meter_provider.shutdown()


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


RPC = {
    "rpc.system": "nats_micro",
    "rpc.service": "obs.v1.EchoService",
    "rpc.method": "Echo",
    "messaging.system": "nats",
    "messaging.destination.name": SUBJECT,
    "nats_micro.endpoint": "echo",
}


async def test_a_call_and_its_request_share_one_trace_with_the_client_span_as_parent(nc: NatsClient, otel: Otel) -> None:
    service = await serve(nc, echo_handler)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    tracer = otel.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("caller") as caller:
        await call(client)
    await until(lambda: len(otel.finished(SpanKind.SERVER)) == 1)
    (client_span,) = otel.finished(SpanKind.CLIENT)
    (server_span,) = otel.finished(SpanKind.SERVER)
    trace_id = caller.get_span_context().trace_id
    assert client_span.context is not None and server_span.context is not None
    assert client_span.context.trace_id == server_span.context.trace_id == trace_id
    assert client_span.parent is not None and client_span.parent.span_id == caller.get_span_context().span_id
    assert server_span.parent is not None and server_span.parent.span_id == client_span.context.span_id
    assert server_span.parent.is_remote
    assert client_span.name == server_span.name == "obs.v1.EchoService/Echo"
    assert attributes(client_span) == attributes(server_span) == RPC
    assert client_span.status.status_code == server_span.status.status_code == StatusCode.UNSET
    await service.stop()


async def test_a_handlers_calls_are_children_of_its_request(nc: NatsClient, otel: Otel) -> None:
    inner = await serve(nc, echo_handler, INNER)
    inner_client = rt.Client(nc, INNER, rt.ServiceError, timeout=5)

    async def forwarding(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
        return (await call(inner_client, request.value)).message

    outer = await serve(nc, forwarding)
    await call(rt.Client(nc, SPEC, rt.ServiceError, timeout=5))
    await until(lambda: len(otel.finished(SpanKind.SERVER)) == 2)
    by_name = {(s.name, s.kind): s for s in otel.spans.get_finished_spans()}
    outer_call = by_name["obs.v1.EchoService/Echo", SpanKind.CLIENT]
    outer_request = by_name["obs.v1.EchoService/Echo", SpanKind.SERVER]
    inner_call = by_name["obs.v1.InnerService/Echo", SpanKind.CLIENT]
    inner_request = by_name["obs.v1.InnerService/Echo", SpanKind.SERVER]
    assert outer_call.parent is None, "no span was current: the call starts the trace"
    chain = [outer_call, outer_request, inner_call, inner_request]
    for parent, child in zip(chain, chain[1:]):
        assert parent.context is not None and child.parent is not None and child.context is not None
        assert child.parent.span_id == parent.context.span_id and child.context.trace_id == parent.context.trace_id
    await outer.stop()
    await inner.stop()


async def test_server_failures_mark_the_span_and_caller_errors_do_not(nc: NatsClient, otel: Otel) -> None:
    async def handler(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
        if request.value == "missing":
            raise rt.NotFoundError(ctx.method, "no such thing")
        raise rt.UnavailableError(ctx.method, "down for maintenance")

    service = await serve(nc, handler)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5, retry_policy=NO_RETRIES)
    for value in ("missing", "down"):
        with pytest.raises(rt.ServiceError):
            await call(client, value)
    await until(lambda: len(otel.finished(SpanKind.SERVER)) == 2)
    missing, down = otel.finished(SpanKind.SERVER)
    assert attributes(missing)["nats_micro.error_code"] == rt.NOT_FOUND and missing.status.status_code == StatusCode.UNSET
    assert attributes(down)["nats_micro.error_code"] == rt.UNAVAILABLE and down.status.status_code == StatusCode.ERROR
    for span in otel.finished(SpanKind.CLIENT):
        assert span.status.status_code == StatusCode.ERROR, "every error fails the client span"
    assert [attributes(s)["nats_micro.error_code"] for s in otel.finished(SpanKind.CLIENT)] == [rt.NOT_FOUND, rt.UNAVAILABLE]
    server_points = otel.histogram("rpc.server.duration")
    codes = sorted(str(p.attributes["nats_micro.error_code"]) for p in server_points if p.attributes)
    assert codes == [rt.NOT_FOUND, rt.UNAVAILABLE] and all(p.count == 1 for p in server_points)
    await service.stop()


async def test_a_retried_call_is_one_client_span_with_an_event_per_attempt(nc: NatsClient, otel: Otel) -> None:
    async def flaky(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
        if ctx.attempt == 1:
            raise rt.UnavailableError(ctx.method, "warming up")
        return request

    service = await serve(nc, flaky)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5, retry_policy=rt.RetryPolicy(initial_delay=0.01))
    await call(client)
    await until(lambda: len(otel.finished(SpanKind.SERVER)) == 2)
    (client_span,) = otel.finished(SpanKind.CLIENT)
    first, second = otel.finished(SpanKind.SERVER)
    assert [dict(e.attributes or {}) for e in client_span.events if e.name == "attempt"] == [
        {"nats_micro.attempt": 1}, {"nats_micro.attempt": 2},
    ]  # fmt: skip
    assert client_span.status.status_code == StatusCode.UNSET, "the call succeeded in the end"
    for request in (first, second):
        assert client_span.context is not None and request.parent is not None
        assert request.parent.span_id == client_span.context.span_id
    assert "nats_micro.attempt" not in attributes(first) and attributes(second)["nats_micro.attempt"] == 2
    assert attributes(first)["nats_micro.error_code"] == rt.UNAVAILABLE and first.status.status_code == StatusCode.ERROR
    await service.stop()


async def test_metrics_count_successes_as_ok(nc: NatsClient, otel: Otel) -> None:
    service = await serve(nc, echo_handler)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    for _ in range(3):
        await call(client)
    await until(lambda: sum(p.count for p in otel.histogram("rpc.server.duration")) == 3)
    (server,) = otel.histogram("rpc.server.duration")
    (client_point,) = otel.histogram("rpc.client.duration")
    assert server.attributes == client_point.attributes == {**RPC, "nats_micro.error_code": "OK"}
    assert client_point.count == 3 and client_point.sum >= server.sum >= 0
    await service.stop()


async def test_the_server_follows_the_traceparent_it_receives_or_starts_a_new_trace(nc: NatsClient, otel: Otel) -> None:
    service = await serve(nc, echo_handler)
    body = wrappers_pb2.StringValue(value="x").SerializeToString()
    headers = {rt.TRACEPARENT_HEADER: VALID_PARENT, rt.TRACESTATE_HEADER: "vendor=abc", rt.ATTEMPT_HEADER: "2"}
    await nc.request(SUBJECT, body, timeout=5, headers=headers)
    await nc.request(SUBJECT, body, timeout=5, headers={rt.TRACEPARENT_HEADER: "00-garbage", rt.TRACESTATE_HEADER: "v=1"})
    await until(lambda: len(otel.finished(SpanKind.SERVER)) == 2)
    followed, fresh = otel.finished(SpanKind.SERVER)
    assert followed.parent is not None and followed.context is not None
    assert f"{followed.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert f"{followed.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert followed.context.trace_state.get("vendor") == "abc"
    assert attributes(followed)["nats_micro.attempt"] == 2
    assert fresh.parent is None, "an invalid traceparent starts a new trace"
    assert fresh.context is not None and len(fresh.context.trace_state) == 0, "no tracestate without a valid traceparent"
    assert "nats_micro.attempt" not in attributes(fresh)
    await service.stop()


async def test_headers_the_caller_sets_win(nc: NatsClient, otel: Otel) -> None:
    service = await serve(nc, echo_handler)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    await call(client, headers={rt.TRACEPARENT_HEADER: VALID_PARENT})
    await until(lambda: len(otel.finished(SpanKind.SERVER)) == 1)
    (server_span,) = otel.finished(SpanKind.SERVER)
    assert server_span.parent is not None and f"{server_span.parent.span_id:016x}" == "00f067aa0ba902b7"
    await service.stop()


async def serve_stream(nc: NatsClient, endpoint: Any) -> rt.Service:
    return await rt.start_service(nc, SPEC, {"echo": endpoint}, {})


async def test_a_server_streams_client_span_lasts_until_its_last_message(nc: NatsClient, otel: Otel) -> None:
    release = asyncio.Event()

    async def letters(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> AsyncIterator[wrappers_pb2.StringValue]:
        for ch in request.value:
            if ch == request.value[-1]:
                await release.wait()  # the last message waits for the test
            yield wrappers_pb2.StringValue(value=ch)

    service = await serve_stream(nc, rt.ServerStreamEndpoint(letters, wrappers_pb2.StringValue))
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    stream = await client.server_stream("echo", wrappers_pb2.StringValue(value="abc"), wrappers_pb2.StringValue)
    received = [(await anext(stream)).value, (await anext(stream)).value]
    await asyncio.sleep(0.05)
    assert otel.finished(SpanKind.CLIENT) == [], "the stream is still open: so is its span"
    assert otel.histogram("rpc.client.duration") == []
    release.set()
    received += [m.value async for m in stream]
    assert received == ["a", "b", "c"]
    await until(lambda: len(otel.finished(SpanKind.SERVER)) == 1)
    (client_span,) = otel.finished(SpanKind.CLIENT)
    (server_span,) = otel.finished(SpanKind.SERVER)
    assert client_span.context is not None and server_span.parent is not None
    assert server_span.parent.span_id == client_span.context.span_id, "the open carried the client span's context"
    assert client_span.start_time is not None and server_span.start_time is not None
    assert client_span.end_time is not None and server_span.end_time is not None
    assert client_span.start_time <= server_span.start_time and server_span.end_time - client_span.start_time >= 50_000_000
    assert client_span.end_time - client_span.start_time >= 50_000_000, "the span covers the whole stream, not its open"
    assert client_span.status.status_code == server_span.status.status_code == StatusCode.UNSET
    assert attributes(client_span) == attributes(server_span) == RPC
    (point,) = otel.histogram("rpc.client.duration")
    assert point.count == 1 and point.attributes == {**RPC, "nats_micro.error_code": "OK"} and point.sum >= 50
    await service.stop()


async def test_a_stream_that_ends_with_an_error_sets_the_code_on_the_client_span(nc: NatsClient, otel: Otel) -> None:
    async def fails(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> AsyncIterator[wrappers_pb2.StringValue]:
        yield wrappers_pb2.StringValue(value="first")
        raise rt.NotFoundError(ctx.method, "gone after the first")

    service = await serve_stream(nc, rt.ServerStreamEndpoint(fails, wrappers_pb2.StringValue))
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    stream = await client.server_stream("echo", wrappers_pb2.StringValue(value="x"), wrappers_pb2.StringValue)
    assert (await anext(stream)).value == "first"
    assert otel.finished(SpanKind.CLIENT) == []
    with pytest.raises(rt.ServiceError) as failed:
        await anext(stream)
    assert failed.value.code == rt.NOT_FOUND
    (client_span,) = otel.finished(SpanKind.CLIENT)
    assert attributes(client_span)["nats_micro.error_code"] == rt.NOT_FOUND
    assert client_span.status.status_code == StatusCode.ERROR
    (point,) = otel.histogram("rpc.client.duration")
    assert point.attributes is not None and point.attributes["nats_micro.error_code"] == "NOT_FOUND"
    await service.stop()


async def test_an_abandoned_stream_ends_its_client_span_as_cancelled(nc: NatsClient, otel: Otel) -> None:
    async def endless(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> AsyncIterator[wrappers_pb2.StringValue]:
        while True:
            yield request

    service = await serve_stream(nc, rt.ServerStreamEndpoint(endless, wrappers_pb2.StringValue))
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    async with await client.server_stream("echo", wrappers_pb2.StringValue(value="x"), wrappers_pb2.StringValue) as stream:
        async for _ in stream:
            break
        assert otel.finished(SpanKind.CLIENT) == []
    (client_span,) = otel.finished(SpanKind.CLIENT)
    assert attributes(client_span)["nats_micro.error_code"] == rt.CANCELLED
    assert client_span.status.status_code == StatusCode.ERROR
    await until(lambda: len(otel.finished(SpanKind.SERVER)) == 1)
    await service.stop()


async def test_client_and_bidi_streams_spans_last_until_their_outcome(nc: NatsClient, otel: Otel) -> None:
    async def join(requests: AsyncIterator[wrappers_pb2.StringValue], ctx: rt.RequestContext) -> wrappers_pb2.StringValue:
        return wrappers_pb2.StringValue(value="".join([r.value async for r in requests]))

    async def slowly() -> AsyncIterator[wrappers_pb2.StringValue]:
        for ch in "ab":
            await asyncio.sleep(0.05)
            yield wrappers_pb2.StringValue(value=ch)

    service = await serve_stream(nc, rt.ClientStreamEndpoint(join, wrappers_pb2.StringValue))
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    joined, _ = await client.client_stream("echo", slowly(), wrappers_pb2.StringValue)
    assert joined.value == "ab"
    (client_span,) = otel.finished(SpanKind.CLIENT)
    assert client_span.end_time is not None and client_span.start_time is not None
    assert client_span.end_time - client_span.start_time >= 100_000_000, "the span covers the requests sent"
    assert client_span.status.status_code == StatusCode.UNSET
    await service.stop()
    otel.spans.clear()

    async def echo_each(
        requests: AsyncIterator[wrappers_pb2.StringValue], ctx: rt.RequestContext
    ) -> AsyncIterator[wrappers_pb2.StringValue]:
        async for request in requests:
            yield request

    service = await serve_stream(nc, rt.BidiStreamEndpoint(echo_each, wrappers_pb2.StringValue))
    stream = await client.bidi_stream("echo", slowly(), wrappers_pb2.StringValue)
    assert (await anext(stream)).value == "a"
    assert otel.finished(SpanKind.CLIENT) == []
    assert [m.value async for m in stream] == ["b"]
    (client_span,) = otel.finished(SpanKind.CLIENT)
    assert client_span.status.status_code == StatusCode.UNSET and "nats_micro.error_code" not in attributes(client_span)

    reader = asyncio.create_task(anext(await client.bidi_stream("echo", slowly(), wrappers_pb2.StringValue)))
    await asyncio.sleep(0.01)
    reader.cancel()  # the caller gives up while waiting for the first response
    with pytest.raises(asyncio.CancelledError):
        await reader
    await until(lambda: len(otel.finished(SpanKind.CLIENT)) == 2)
    assert attributes(otel.finished(SpanKind.CLIENT)[1])["nats_micro.error_code"] == rt.CANCELLED
    await service.stop()


async def test_a_streams_client_span_records_what_its_interceptors_settle_with(nc: NatsClient, otel: Otel) -> None:
    async def fails(request: wrappers_pb2.StringValue, ctx: rt.RequestContext) -> AsyncIterator[wrappers_pb2.StringValue]:
        yield request
        raise rt.UnavailableError(ctx.method, "gone")

    seen: list[int] = []

    async def forgiving(call: rt.ClientCall, call_next: rt.ClientNext) -> rt.Reply:
        seen.append(trace.get_current_span().get_span_context().span_id)
        try:
            return await call_next(call)
        except rt.ServiceError:
            return rt.Reply(b"", {"forgiven": "yes"})

    service = await serve_stream(nc, rt.ServerStreamEndpoint(fails, wrappers_pb2.StringValue))
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5, interceptors=[forgiving])
    stream = await client.server_stream("echo", wrappers_pb2.StringValue(value="x"), wrappers_pb2.StringValue)
    assert [m.value async for m in stream] == ["x"] and stream.trailers == {"forgiven": "yes"}
    (client_span,) = otel.finished(SpanKind.CLIENT)
    assert client_span.context is not None and seen == [client_span.context.span_id], "interceptors run under the span"
    assert client_span.status.status_code == StatusCode.UNSET and "nats_micro.error_code" not in attributes(client_span)
    await service.stop()


async def test_the_runtime_does_not_import_opentelemetry_until_enabled(nc: NatsClient) -> None:
    url = nc.connected_url
    assert url is not None
    script = f"""
import asyncio, sys
import nats
import nats_micro_runtime as rt
from google.protobuf import wrappers_pb2
SPEC = rt.ServiceSpec("o.S", "s", "1.0.0", "", "quiet", endpoints=(rt.EndpointSpec("Echo", "echo"),))
async def echo(request, ctx):
    return request
async def main():
    nc = await nats.connect("{url.geturl()}")
    service = await rt.start_service(nc, SPEC, {{"echo": rt.UnaryEndpoint(echo, wrappers_pb2.StringValue)}}, {{}})
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    await client.unary("echo", wrappers_pb2.StringValue(value="x"), wrappers_pb2.StringValue)
    await service.stop()
    await nc.close()
    print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
asyncio.run(main())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
