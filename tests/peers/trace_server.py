"""Serves ``trace.v1.TraceService`` (proto/trace/v1/trace.proto) with the
generated Python code and OpenTelemetry on, for the cross-language trace test
(the twin of tests/src/bin/trace_server.rs and tests/ts/trace_server.ts):
``Hop`` forwards the rest of its route to the next hop from inside the
handler, so that the outgoing call is a child of the request's span.

usage: NATS_URL=nats://... HOP_NAME=py python trace_server.py
(with the generated ``trace.v1`` modules and the runtime on PYTHONPATH).
Serves on subject prefix ``trace.v1.<HOP_NAME>`` and prints ``ready`` once
serving; at SIGTERM (or Ctrl-C) stops, flushes and prints one line
``spans <json>``: the spans it recorded, as the proto describes them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import types
from typing import Any


def _generated_trace_package() -> None:
    """Makes ``trace`` the generated proto package (``trace.v1``) rather than
    the standard library's ``trace`` module, which a namespace package (a
    folder without ``__init__.py``, as protoc writes it) does not shadow."""
    for entry in sys.path:
        folder = os.path.join(entry or ".", "trace")
        if os.path.isdir(os.path.join(folder, "v1")):
            package = types.ModuleType("trace")
            package.__path__ = [folder]
            sys.modules["trace"] = package
            return


_generated_trace_package()

import nats  # noqa: E402 (after the trace package is set up)
import nats_micro_runtime as rt  # noqa: E402
from serving import serve_until_signalled  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402
from trace.v1 import trace_nats_pb2 as tracing  # noqa: E402
from trace.v1 import trace_pb2  # noqa: E402

HOP_NAME = os.environ.get("HOP_NAME", "py")


class TraceService:
    """Hop as the proto documents it."""

    def __init__(self, nc: nats.aio.client.Client) -> None:
        self._nc = nc

    async def hop(self, request: trace_pb2.HopRequest, ctx: rt.RequestContext) -> trace_pb2.HopResponse:
        if not request.route:
            return trace_pb2.HopResponse(visited=[HOP_NAME])
        following, *rest = request.route
        # The span of this request is current here: the call below is its child.
        client = tracing.TraceServiceClient(self._nc, subject_prefix=f"trace.v1.{following}")
        answer, _ = await client.hop(trace_pb2.HopRequest(route=rest), timeout=ctx.remaining())
        return trace_pb2.HopResponse(visited=[HOP_NAME, *answer.visited])


def span_json(span: ReadableSpan) -> dict[str, Any]:
    """One span as trace.proto's comments say: hex ids as W3C writes them."""
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": "server" if span.kind == SpanKind.SERVER else "client" if span.kind == SpanKind.CLIENT else "internal",
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent is not None else "",
        "attributes": dict(span.attributes or {}),
    }


async def main() -> None:
    logging.getLogger("nats_micro_runtime").setLevel(logging.CRITICAL)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    rt.enable_opentelemetry(tracer_provider=provider)
    nc = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    service = await tracing.register_trace_service(nc, TraceService(nc), subject_prefix=f"trace.v1.{HOP_NAME}")
    await serve_until_signalled(service)
    await nc.drain()
    provider.force_flush()
    print("spans " + json.dumps([span_json(span) for span in exporter.get_finished_spans()]), flush=True)
    provider.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
