"""The order service in Python: serves ``order.v1.OrderService`` on
``$NATS_URL`` (default ``nats://127.0.0.1:4222``) until Ctrl-C, then stops
gracefully and prints its statistics.

``bash examples/python/run.sh`` generates the code and runs this server with
the client; to run it by hand, put the generated code on ``PYTHONPATH``::

    PYTHONPATH=target/python-example .venv/bin/python examples/python/order_server.py
"""

from __future__ import annotations

import asyncio
import os
import signal

import nats
import nats_micro_runtime
from order.v1 import order_nats_pb2 as orders
from order.v1 import order_pb2

CART_LIFETIME_MINUTES = 30
"""Carts older than this expire."""


# snippet: service
class InMemoryOrders:
    """An ``orders.OrderServiceHandler`` keeping orders in memory."""

    def __init__(self) -> None:
        self._orders: dict[str, order_pb2.Order] = {}

    async def create_order(
        self, request: order_pb2.CreateOrderRequest, ctx: nats_micro_runtime.RequestContext
    ) -> order_pb2.CreateOrderResponse:
        if not request.items:
            raise orders.new_order_service_invalid_argument_error(ctx.method, "an order needs at least one item")
        if request.cart_age_minutes > CART_LIFETIME_MINUTES:
            raise orders.new_order_service_order_expired_error(
                ctx.method, f"order expired after {CART_LIFETIME_MINUTES} minutes"
            )
        if request.card_token == "declined":
            raise orders.OrderServicePaymentFailedError(ctx.method, "the card was declined")
        for item in request.items:
            if item.product_id == "sold-out":
                # The error data tells the caller which item to drop.
                raise orders.OrderServiceStockUnavailableError(ctx.method, "an item is out of stock", item.product_id.encode())
        order = order_pb2.Order(
            id=f"ord-{len(self._orders) + 1}",
            customer_id=request.customer_id,
            items=request.items,
            total_cents=sum(item.unit_price_cents * item.quantity for item in request.items),
            status=order_pb2.Order.STATUS_PLACED,
        )
        self._orders[order.id] = order
        trace = ctx.header("X-Trace-Id")
        if trace is not None:
            ctx.set_response_header("X-Trace-Id", trace)
        return order_pb2.CreateOrderResponse(order=order)

    async def get_order(self, request: order_pb2.GetOrderRequest, ctx: nats_micro_runtime.RequestContext) -> order_pb2.Order:
        order = self._orders.get(request.id)
        if order is None:
            raise orders.new_order_service_not_found_error(ctx.method, f"no order {request.id}")
        return order


async def main() -> None:
    url = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    nc = await nats.connect(url)
    service = await orders.register_order_service(nc, InMemoryOrders(), merge_metadata={"instance": str(os.getpid())})
    print(f"serving {service.name} (id {service.id}) on {url}; Ctrl-C stops gracefully", flush=True)
    for endpoint in service.endpoints:
        print(f"  endpoint {endpoint.name} on {endpoint.subject}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await service.stop()
    for stats in service.stats():
        print(f"stats: {stats.name} requests={stats.num_requests} errors={stats.num_errors}", flush=True)
    await nc.close()
# end snippet


if __name__ == "__main__":
    asyncio.run(main())
