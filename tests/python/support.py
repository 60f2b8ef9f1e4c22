"""The OrderService the tests serve: the Python twin of ``TestOrders`` in
``tests/tests/e2e/support.rs``, so Rust and Python peers agree on behaviour.

- header ``X-Want-Code: CODE`` fails ``CreateOrder`` with CODE, message
  ``wanted CODE`` and data ``data:CODE``;
- customer ``uncoded`` raises an exception without a code (with a secret in
  its text), ``slow`` sleeps until cancelled (``cancelled`` is set then),
  ``blocked`` waits for ``release``;
- header ``X-Echo`` comes back as ``X-Echoed``, on success and on error;
- ``GetOrder`` with an empty id is ``NOT_FOUND``.

``Echo`` serves the project's ``json: true`` demo service (``proto/jsondemo``).
"""

from __future__ import annotations

import asyncio

import nats_micro_runtime
from jsondemo.v1 import jsondemo_nats_pb2 as demo
from jsondemo.v1 import jsondemo_pb2 as encoding_pb2
from order.v1 import order_nats_pb2 as orders
from order.v1 import order_pb2

WANT_CODE = "X-Want-Code"
SECRET = "postgres://admin:hunter2@db/orders refused the connection"

# Every code the OrderService can return: built-ins, canonical extras, custom codes.
ALL_CODES = (
    *nats_micro_runtime.CANONICAL_CODES,
    orders.ERROR_CODE_ORDER_EXPIRED,
    orders.ERROR_CODE_PAYMENT_FAILED,
    orders.ERROR_CODE_STOCK_UNAVAILABLE,
)


class TestOrders:
    """An ``orders.OrderServiceHandler`` whose behaviour the request chooses."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.seen_headers: list[dict[str, str]] = []

    async def create_order(
        self, request: order_pb2.CreateOrderRequest, ctx: nats_micro_runtime.RequestContext
    ) -> order_pb2.CreateOrderResponse:
        self.seen_headers.append(dict(ctx.headers))
        echo = ctx.header("X-Echo")
        if echo is not None:
            ctx.set_response_header("X-Echoed", echo)
        want = ctx.header(WANT_CODE)
        if want is not None:
            raise orders.OrderServiceError(want, ctx.method, f"wanted {want}", f"data:{want}".encode())
        if request.customer_id == "uncoded":
            raise ConnectionError(SECRET)
        if request.customer_id == "slow":
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if request.customer_id == "blocked":
            self.entered.set()
            await self.release.wait()
        return order_pb2.CreateOrderResponse(order=order_pb2.Order(id="o-1", customer_id=request.customer_id))

    async def get_order(self, request: order_pb2.GetOrderRequest, ctx: nats_micro_runtime.RequestContext) -> order_pb2.Order:
        if not request.id:
            raise orders.new_order_service_not_found_error(ctx.method, "no order with an empty id")
        return order_pb2.Order(id=request.id)


def order_request(customer: str) -> order_pb2.CreateOrderRequest:
    """A request that succeeds unless the customer says otherwise."""
    return order_pb2.CreateOrderRequest(
        customer_id=customer, items=[order_pb2.LineItem(product_id="p-1", quantity=2, unit_price_cents=1250)]
    )


class Echo:
    """A ``demo.JSONServiceHandler``: echoes messages; ``GetUser`` needs an id."""

    async def echo(self, request: encoding_pb2.EchoRequest, ctx: nats_micro_runtime.RequestContext) -> encoding_pb2.EchoResponse:
        return encoding_pb2.EchoResponse(message=request.message, timestamp=request.timestamp, encoding="json")

    async def get_user(self, request: encoding_pb2.GetUserRequest, ctx: nats_micro_runtime.RequestContext) -> encoding_pb2.GetUserResponse:
        if not request.id:
            raise demo.new_json_service_invalid_argument_error(ctx.method, "id is required")
        return encoding_pb2.GetUserResponse(user=encoding_pb2.User(id=request.id, name="Ada", roles=["admin"]))
