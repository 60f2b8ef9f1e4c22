"""Serves the order service and calls it in one process with OpenTelemetry
on (PROTOCOL §11), then prints the trace as a tree: the caller's span, the
client span of the call and, under it, the service's span of the request.

Run it with ``bash examples/python/run.sh``, or with the generated code on
``PYTHONPATH`` and a nats-server on ``$NATS_URL``. Needs ``opentelemetry-sdk``
(``pip install nats-micro-runtime[otel] opentelemetry-sdk``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import nats
import nats_micro_runtime
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from order.v1 import order_nats_pb2 as orders
from order.v1 import order_pb2
from order_server import InMemoryOrders


def print_tree(spans: Sequence[ReadableSpan]) -> None:
    """One line per span, indented under its parent, with the RPC attributes."""
    ids = {span.context.span_id for span in spans if span.context is not None}

    def show(parent: int | None, depth: int) -> None:
        for span in spans:
            above = span.parent.span_id if span.parent is not None else None
            if (above if above in ids else None) != parent or span.context is None:
                continue
            subject = (span.attributes or {}).get("messaging.destination.name")
            where = f" on {subject}" if isinstance(subject, str) else ""
            print(f"{'  ' * depth}{span.kind.name} {span.name}{where}")
            show(span.context.span_id, depth + 1)

    trace_ids = {f"{span.context.trace_id:032x}" for span in spans if span.context is not None}
    print(f"trace {', '.join(sorted(trace_ids))}")
    show(None, 0)


async def main() -> None:
    nc = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    # snippet: tracing
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    nats_micro_runtime.enable_opentelemetry(tracer_provider=provider)  # spans, metrics, traceparent

    service = await orders.register_order_service(nc, InMemoryOrders())
    client = orders.OrderServiceClient(nc, timeout=2.0)
    item = order_pb2.LineItem(product_id="book", quantity=1, unit_price_cents=1999)
    with provider.get_tracer("checkout").start_as_current_span("checkout"):
        await client.create_order(order_pb2.CreateOrderRequest(customer_id="c-1", items=[item], card_token="ok"))
    await service.stop()
    print_tree(exporter.get_finished_spans())
    # end snippet
    await nc.drain()


if __name__ == "__main__":
    asyncio.run(main())
