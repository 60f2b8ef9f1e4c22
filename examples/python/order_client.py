"""Calls the order service on ``$NATS_URL`` (default ``nats://127.0.0.1:4222``)
and handles each of its typed errors, printing one line per call.

Run it with ``bash examples/python/run.sh``, or next to ``order_server.py``
with the generated code on ``PYTHONPATH``.
"""

from __future__ import annotations

import asyncio
import os

import nats
import nats_micro_runtime
from nats.aio.client import Client
from order.v1 import order_nats_pb2 as orders
from order.v1 import order_pb2


def cart(product: str, age_minutes: int, card: str) -> order_pb2.CreateOrderRequest:
    return order_pb2.CreateOrderRequest(
        customer_id="cust-7",
        items=[order_pb2.LineItem(product_id=product, quantity=2, unit_price_cents=1999)],
        cart_age_minutes=age_minutes,
        card_token=card,
    )


# snippet: client
async def run_client(nc: Client) -> list[str]:
    """Places orders that succeed and fail, handling each typed error."""
    client = orders.OrderServiceClient(nc, timeout=2.0)
    lines = []
    created, headers = await client.create_order(cart("book", 5, "ok"), headers={"X-Trace-Id": "demo-1"})
    lines.append(f"placed {created.order.id} for {created.order.total_cents} cents (trace {headers.get('X-Trace-Id')})")
    found, _ = await client.get_order(order_pb2.GetOrderRequest(id=created.order.id))
    lines.append(f"found {found.id} with {len(found.items)} item(s)")

    for label, request in [
        ("expired cart", cart("book", 45, "ok")),
        ("declined card", cart("book", 5, "declined")),
        ("sold out", cart("sold-out", 5, "ok")),
        ("empty order", order_pb2.CreateOrderRequest()),
    ]:
        try:
            await client.create_order(request)
            lines.append(f"{label}: unexpectedly placed")
        except orders.OrderServiceOrderExpiredError as err:
            lines.append(f"{label}: ORDER_EXPIRED, ask the customer to refresh the cart ({err.message})")
        except orders.OrderServicePaymentFailedError as err:
            lines.append(f"{label}: PAYMENT_FAILED, ask for another card ({err.message})")
        except orders.OrderServiceStockUnavailableError as err:
            lines.append(f"{label}: STOCK_UNAVAILABLE, drop item {err.data.decode()} ({err.message})")
        except orders.OrderServiceError as err:
            # The Go plugin's checkers work too.
            if orders.is_order_service_invalid_argument(err):
                lines.append(f"{label}: INVALID_ARGUMENT, fix the request ({err.message})")
            else:
                raise

    try:
        await client.get_order(order_pb2.GetOrderRequest(id="ord-404"))
    except nats_micro_runtime.NotFoundError as err:  # any service's NOT_FOUND
        lines.append(f"lookup: NOT_FOUND ({err.message})")

    elsewhere = orders.OrderServiceClient(nc, subject_prefix="nobody.home")
    try:
        await elsewhere.get_order(order_pb2.GetOrderRequest(id="ord-1"))
    except nats_micro_runtime.TransportError as err:
        lines.append(f"elsewhere: {type(err).__name__} ({err.message})")
    return lines
# end snippet


async def main() -> None:
    nc = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    for line in await run_client(nc):
        print(line, flush=True)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
