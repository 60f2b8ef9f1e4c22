"""Headers both ways, timeout precedence on both sides, and interceptors."""

from __future__ import annotations

import asyncio
from typing import Unpack

import nats_micro_runtime as rt
import pytest
from nats.aio.client import Client
from order.v1 import order_nats_pb2 as orders
from order.v1 import order_pb2
from product.v1 import product_nats_pb2 as products
from product.v1 import product_pb2
from support import TestOrders, order_request


async def test_headers_travel_both_ways_and_the_call_wins_over_the_client(nc: Client) -> None:
    handler = TestOrders()
    service = await orders.register_order_service(nc, handler)
    client = orders.OrderServiceClient(nc, headers={"X-Tenant": "acme", "X-Echo": "client"})
    response, headers = await client.create_order(order_request("ada"), headers={"X-Echo": "call", "X-Trace-Id": "t1"})
    assert response.order.customer_id == "ada"
    assert headers["X-Echoed"] == "call"
    seen = handler.seen_headers[-1]
    assert (seen["X-Tenant"], seen["X-Echo"], seen["X-Trace-Id"]) == ("acme", "call", "t1")
    assert int(seen[rt.TIMEOUT_HEADER]) > 0, "the budget travels with the request"
    await service.stop()


def budget_recorder(seen: list[int]) -> rt.ServerInterceptor:
    async def record(ctx: rt.RequestContext, payload: bytes, call_next: rt.ServerNext) -> bytes:
        seen.append(int(ctx.headers[rt.TIMEOUT_HEADER]))
        return await call_next(ctx, payload)

    return record


class Products:
    async def create_product(self, request: product_pb2.CreateProductRequest, ctx: rt.RequestContext) -> product_pb2.Product:
        return product_pb2.Product(sku=request.sku)

    async def get_product(self, request: product_pb2.GetProductRequest, ctx: rt.RequestContext) -> product_pb2.Product:
        return product_pb2.Product(id=request.id)


async def test_client_timeout_precedence_call_then_client_then_endpoint_then_service_then_default(nc: Client) -> None:
    seen: list[int] = []
    order_service = await orders.register_order_service(nc, TestOrders(), interceptors=[budget_recorder(seen)])
    product_service = await products.register_product_service(nc, Products(), interceptors=[budget_recorder(seen)])
    plain, configured = orders.OrderServiceClient(nc), orders.OrderServiceClient(nc, timeout=2.5)
    await configured.get_order(order_pb2.GetOrderRequest(id="1"), timeout=1.5)  # the call's own
    await configured.get_order(order_pb2.GetOrderRequest(id="1"))  # the client's
    await plain.get_order(order_pb2.GetOrderRequest(id="1"))  # the endpoint's proto timeout
    await plain.create_order(order_request("c"))  # the service's proto timeout
    await products.ProductServiceClient(nc).get_product(product_pb2.GetProductRequest(id="1"))  # none: 10 s
    assert seen == [1_500_000, 2_500_000, 750_000, 5_000_000, 10_000_000]
    await order_service.stop()
    await product_service.stop()


async def server_budgets(nc: Client, **overrides: Unpack[rt.ServiceOverrides]) -> list[float]:
    """Seconds each handler had: GetOrder then CreateOrder, called with a 30 s budget."""
    budgets: list[float] = []

    async def record(ctx: rt.RequestContext, payload: bytes, call_next: rt.ServerNext) -> bytes:
        remaining = ctx.remaining()
        assert remaining is not None
        budgets.append(remaining)
        return await call_next(ctx, payload)

    settings: rt.ServiceOverrides = {**overrides, "interceptors": [record]}
    service = await orders.register_order_service(nc, TestOrders(), **settings)
    client = orders.OrderServiceClient(nc, timeout=30)
    await client.get_order(order_pb2.GetOrderRequest(id="1"))
    await client.create_order(order_request("c"))
    await client.create_order(order_request("c"), timeout=0.5)  # the caller's budget caps the server's
    await service.stop()
    return budgets


async def test_server_timeout_precedence_endpoint_override_then_service_override_then_proto(nc: Client) -> None:
    # Each budget is measured a little after the request arrived, hence the tolerance.
    assert await server_budgets(nc) == pytest.approx([0.75, 5.0, 0.5], abs=0.2)
    assert await server_budgets(nc, timeout=2.0) == pytest.approx([2.0, 2.0, 0.5], abs=0.2)
    assert await server_budgets(nc, timeout=2.0, endpoint_timeouts={"get_order": 1.0}) == pytest.approx([1.0, 2.0, 0.5], abs=0.2)


async def test_server_interceptors_run_in_order_change_headers_and_short_circuit(nc: Client) -> None:
    log: list[str] = []
    handler = TestOrders()

    def tracer(name: str) -> rt.ServerInterceptor:
        async def intercept(ctx: rt.RequestContext, payload: bytes, call_next: rt.ServerNext) -> bytes:
            log.append(f"{name}>{ctx.method}")
            try:
                return await call_next(ctx, payload)
            finally:
                log.append(f"<{name}")

        return intercept

    async def require_auth(ctx: rt.RequestContext, payload: bytes, call_next: rt.ServerNext) -> bytes:
        if ctx.header("Authorization") is None:
            raise rt.UnauthenticatedError(ctx.method, "missing Authorization")
        ctx.headers["X-User"] = "ada"
        ctx.set_response_header("X-Checked", "yes")
        return await call_next(ctx, payload)

    service = await orders.register_order_service(nc, handler, interceptors=[tracer("a"), tracer("b"), require_auth])
    client = orders.OrderServiceClient(nc)
    with pytest.raises(orders.OrderServiceUnauthenticatedError) as caught:
        await client.create_order(order_request("c"))
    assert caught.value.message == "missing Authorization"
    assert handler.seen_headers == [], "short-circuited before the handler"
    _, headers = await client.create_order(order_request("c"), headers={"Authorization": "Bearer x"})
    assert headers["X-Checked"] == "yes"
    assert handler.seen_headers[-1]["X-User"] == "ada"
    assert log == ["a>CreateOrder", "b>CreateOrder", "<b", "<a"] * 2
    assert service.stats()[0].num_errors == 1, "a short-circuit is an error reply"
    await service.stop()


async def test_client_interceptors_run_in_order_redirect_and_short_circuit(nc: Client) -> None:
    log: list[str] = []
    service = await orders.register_order_service(nc, TestOrders(), subject_prefix="elsewhere.v1")

    async def outer(call: rt.ClientCall, call_next: rt.ClientNext) -> rt.Reply:
        log.append(f"outer {call.method} {call.subject}")
        call.headers["X-Echo"] = "from-interceptor"
        reply = await call_next(call)
        log.append("outer done")
        return reply

    async def redirect(call: rt.ClientCall, call_next: rt.ClientNext) -> rt.Reply:
        if call.headers.get("X-Refuse"):
            raise orders.new_order_service_permission_denied_error(call.method, "refused locally")
        call.subject = call.subject.replace("api.v1", "elsewhere.v1")
        log.append(f"inner {call.subject}")
        return await call_next(call)

    client = orders.OrderServiceClient(nc, interceptors=[outer, redirect])
    _, headers = await client.create_order(order_request("c"))
    assert headers["X-Echoed"] == "from-interceptor"
    assert log == ["outer CreateOrder api.v1.create_order", "inner elsewhere.v1.create_order", "outer done"]
    with pytest.raises(orders.OrderServicePermissionDeniedError):
        await client.create_order(order_request("c"), headers={"X-Refuse": "1"})
    assert service.stats()[0].num_requests == 1, "a short-circuited call is never sent"
    # The subject prefix can also be set on the client directly.
    (response, _) = await orders.OrderServiceClient(nc, subject_prefix="elsewhere.v1").get_order(order_pb2.GetOrderRequest(id="7"))
    assert response.id == "7"
    await service.stop()


async def test_requests_on_one_endpoint_run_concurrently(nc: Client) -> None:
    handler = TestOrders()
    service = await orders.register_order_service(nc, handler)
    client = orders.OrderServiceClient(nc)
    blocked = asyncio.ensure_future(client.create_order(order_request("blocked")))
    await asyncio.wait_for(handler.entered.wait(), 5)
    # The blocked request holds its handler; another one on the same endpoint still gets served.
    (response, _) = await client.create_order(order_request("free"), timeout=2)
    assert response.order.customer_id == "free"
    handler.release.set()
    assert (await blocked).message.order.customer_id == "blocked"
    await service.stop()
