"""Run by test_package.py in a fresh venv outside the repository, with the
runtime installed from its wheel and two separately generated output folders
on PYTHONPATH (order in one, product in the other). Prints ``ok`` at the end.

Shows: one runtime (installed, not a copy), one error class identity across
the folders, one interceptor type for both clients, a handler that re-raises
a downstream client's error keeping its code, and a foreign exception
carrying a code by ``nats_error_code()``."""

from __future__ import annotations

import asyncio
import sys

import nats
import nats_micro_runtime as rt
from order.v1 import order_nats_pb2 as orders
from order.v1 import order_pb2
from product.v1 import product_nats_pb2 as products
from product.v1 import product_pb2


class Orders:
    async def create_order(self, request: order_pb2.CreateOrderRequest, ctx: rt.RequestContext) -> order_pb2.CreateOrderResponse:
        raise orders.new_order_service_order_expired_error(ctx.method, "too late", b"late")

    async def get_order(self, request: order_pb2.GetOrderRequest, ctx: rt.RequestContext) -> order_pb2.Order:
        raise orders.new_order_service_not_found_error(ctx.method, f"no order {request.id}")


class Foreign(Exception):
    """An exception of another library that carries a code by duck typing."""

    message = "quota exceeded elsewhere"

    def nats_error_code(self) -> str:
        return "RESOURCE_EXHAUSTED"


class Products:
    def __init__(self, downstream: orders.OrderServiceClient) -> None:
        self.downstream = downstream

    async def create_product(self, request: product_pb2.CreateProductRequest, ctx: rt.RequestContext) -> product_pb2.Product:
        if request.sku == "foreign":
            raise Foreign()
        await self.downstream.create_order(order_pb2.CreateOrderRequest())  # re-raises ORDER_EXPIRED
        return product_pb2.Product()

    async def get_product(self, request: product_pb2.GetProductRequest, ctx: rt.RequestContext) -> product_pb2.Product:
        await self.downstream.get_order(order_pb2.GetOrderRequest(id=request.id))  # re-raises NOT_FOUND
        return product_pb2.Product()


seen: list[str] = []


async def tag(call: rt.ClientCall, call_next: rt.ClientNext) -> rt.Reply:
    seen.append(call.method)
    return await call_next(call)


async def main(url: str) -> None:
    assert "site-packages" in (rt.__file__ or ""), rt.__file__
    assert orders.nats_micro_runtime is products.nats_micro_runtime is rt
    assert issubclass(orders.OrderServiceNotFoundError, rt.NotFoundError)
    assert issubclass(products.ProductServiceNotFoundError, rt.NotFoundError)

    nc = await nats.connect(url)
    interceptor: rt.ClientInterceptor = tag  # one type for clients of both folders
    order_client = orders.OrderServiceClient(nc, interceptors=[interceptor], timeout=5)
    product_client = products.ProductServiceClient(nc, interceptors=[interceptor], timeout=5)
    async with await orders.register_order_service(nc, Orders()), await products.register_product_service(nc, Products(order_client)):
        try:
            await product_client.get_product(product_pb2.GetProductRequest(id="42"))
            raise AssertionError("expected NOT_FOUND")
        except rt.NotFoundError as err:  # one class for both folders
            assert isinstance(err, products.ProductServiceNotFoundError) and err.code == "NOT_FOUND", repr(err)
            assert products.is_product_service_not_found(err)
            assert err.message == "no order 42", err.message
        try:
            await product_client.create_product(product_pb2.CreateProductRequest(sku="x"))
            raise AssertionError("expected ORDER_EXPIRED")
        except products.ProductServiceError as err:
            assert err.code == "ORDER_EXPIRED" and err.data == b"late", repr(err)
        try:
            await product_client.create_product(product_pb2.CreateProductRequest(sku="foreign"))
            raise AssertionError("expected RESOURCE_EXHAUSTED")
        except rt.ResourceExhaustedError as err:
            assert err.message == "quota exceeded elsewhere", repr(err)
    assert seen == ["GetProduct", "GetOrder", "CreateProduct", "CreateOrder", "CreateProduct"], seen
    await nc.close()
    print("ok")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
