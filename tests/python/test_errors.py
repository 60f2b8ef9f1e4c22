"""Every code end to end (Python client and server over a real nats-server),
the wire form of codes, the exception hierarchy, and failures that must not
leak or kill the service."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats.errors
import nats_micro_runtime as rt
import pytest
from nats import micro
from nats.micro.request import Request
from nats.aio.client import Client
from order.v1 import order_nats_pb2 as orders
from order.v1 import order_pb2
from support import ALL_CODES, SECRET, WANT_CODE, TestOrders, order_request


@pytest.fixture
async def service(nc: Client) -> AsyncIterator[rt.Service]:
    service = await orders.register_order_service(nc, TestOrders())
    yield service
    await service.stop()


def pascal(code: str) -> str:
    return "".join(part.capitalize() for part in code.split("_"))


async def test_every_code_reaches_the_client_as_its_class_with_message_data_and_headers(
    nc: Client, service: rt.Service
) -> None:
    client = orders.OrderServiceClient(nc)
    for code in ALL_CODES:
        with pytest.raises(orders.OrderServiceError) as caught:
            await client.create_order(order_request("c"), headers={WANT_CODE: code, "X-Echo": code})
        err = caught.value
        assert type(err) is getattr(orders, f"OrderService{pascal(code)}Error"), code
        assert (err.code, err.method, err.message, err.data) == (code, "CreateOrder", f"wanted {code}", f"data:{code}".encode())
        assert err.headers["X-Echoed"] == code, "response headers travel with errors"
        assert getattr(orders, f"is_order_service_{code.lower()}")(err), code
        assert not orders.is_order_service_not_found(err) or code == "NOT_FOUND"
        assert isinstance(err, rt.ServiceError) and isinstance(err, rt.NatsMicroError)
        assert not isinstance(err, rt.TransportError)
        if code in rt.CANONICAL_CODES:
            assert isinstance(err, getattr(rt, f"{pascal(code)}Error")), "catchable across services"
    # A code the service does not declare stays the service's base class, verbatim.
    for code in ["SOMETHING_ELSE", "418"]:
        with pytest.raises(orders.OrderServiceError) as caught:
            await client.create_order(order_request("c"), headers={WANT_CODE: code})
        assert type(caught.value) is orders.OrderServiceError
        assert caught.value.code == code


async def test_built_ins_travel_as_numbers_and_the_rest_by_name(nc: Client, service: rt.Service) -> None:
    expected = {"NOT_FOUND": "404", "INTERNAL": "500", "DEADLINE_EXCEEDED": "DEADLINE_EXCEEDED", "ORDER_EXPIRED": "ORDER_EXPIRED"}
    for code, wire in expected.items():
        reply = await nc.request("api.v1.create_order", b"", timeout=5, headers={WANT_CODE: code})
        assert reply.headers is not None
        assert reply.headers[rt.ERROR_CODE_HEADER] == wire
        assert reply.headers[rt.ERROR_MESSAGE_HEADER] == f"wanted {code}"
        assert reply.data == f"data:{code}".encode()


async def test_names_format_sends_built_in_names_for_go_clients(nc: Client) -> None:
    service = await orders.register_order_service(nc, TestOrders(), code_format=rt.CodeFormat.NAMES)
    reply = await nc.request("api.v1.create_order", b"", timeout=5, headers={WANT_CODE: "NOT_FOUND"})
    assert reply.headers is not None and reply.headers[rt.ERROR_CODE_HEADER] == "NOT_FOUND"
    with pytest.raises(orders.OrderServiceNotFoundError):
        await orders.OrderServiceClient(nc).create_order(order_request("c"), headers={WANT_CODE: "NOT_FOUND"})
    await service.stop()


async def test_constructors_and_raised_errors_send_exactly_their_code_message_and_data(nc: Client) -> None:
    class Raising(TestOrders):
        async def create_order(
            self, request: order_pb2.CreateOrderRequest, ctx: rt.RequestContext
        ) -> order_pb2.CreateOrderResponse:
            raise orders.new_order_service_stock_unavailable_error(ctx.method, "sku p-1 ran out", b"p-1")

    service = await orders.register_order_service(nc, Raising())
    with pytest.raises(orders.OrderServiceStockUnavailableError) as caught:
        await orders.OrderServiceClient(nc).create_order(order_request("c"))
    assert (caught.value.message, caught.value.data) == ("sku p-1 ran out", b"p-1")
    assert str(caught.value) == "[STOCK_UNAVAILABLE] CreateOrder: sku p-1 ran out"
    with pytest.raises(orders.OrderServiceNotFoundError) as not_found:
        await orders.OrderServiceClient(nc).get_order(order_pb2.GetOrderRequest())
    assert not_found.value.message == "no order with an empty id"
    await service.stop()


async def test_an_exception_without_a_code_is_internal_and_its_text_stays_on_the_server(
    nc: Client, caplog: pytest.LogCaptureFixture
) -> None:
    service = await orders.register_order_service(nc, TestOrders())
    client = orders.OrderServiceClient(nc)
    with pytest.raises(orders.OrderServiceInternalError) as caught:
        await client.create_order(order_request("uncoded"))
    assert caught.value.message == rt.INTERNAL_MESSAGE
    assert "hunter2" not in repr(caught.value) and caught.value.data == b""
    assert SECRET in caplog.text, "logged on the server"
    (response, _) = await client.create_order(order_request("c"))
    assert response.order.id == "o-1", "the service survives"
    await service.stop()

    exposing = await orders.register_order_service(nc, TestOrders(), expose_internal_errors=True)
    with pytest.raises(orders.OrderServiceInternalError) as exposed:
        await client.create_order(order_request("uncoded"))
    assert SECRET in exposed.value.message
    await exposing.stop()


async def test_a_malformed_request_is_invalid_argument(nc: Client, service: rt.Service) -> None:
    reply = await nc.request("api.v1.create_order", b"\xff\xff\xff", timeout=5)
    assert reply.headers is not None
    assert reply.headers[rt.ERROR_CODE_HEADER] == "400"
    assert reply.headers[rt.ERROR_MESSAGE_HEADER].startswith("malformed request for CreateOrder")


async def test_no_responders_and_timeouts_are_transport_errors(nc: Client) -> None:
    client = orders.OrderServiceClient(nc)
    with pytest.raises(rt.NoRespondersError) as no_responders:
        await client.create_order(order_request("c"))
    assert (no_responders.value.code, no_responders.value.method) == (rt.UNAVAILABLE, "CreateOrder")
    assert not isinstance(no_responders.value, rt.ServiceError)
    assert not orders.is_order_service_unavailable(no_responders.value), "checkers match error replies only"
    assert isinstance(no_responders.value.__cause__, nats.errors.NoRespondersError)

    silent = await nc.subscribe("api.v1.create_order")  # takes requests, never answers
    with pytest.raises(rt.RequestTimeoutError) as timed_out:
        await client.create_order(order_request("c"), timeout=0.2)
    assert isinstance(timed_out.value, TimeoutError) and timed_out.value.code == rt.DEADLINE_EXCEEDED
    await silent.unsubscribe()

    with pytest.raises(rt.ConfigError, match="subject prefix"):
        orders.OrderServiceClient(nc, subject_prefix="api v1")

    async def redirect(call: rt.ClientCall, call_next: rt.ClientNext) -> rt.Reply:
        call.subject = "api.v1.create_order "
        return await call_next(call)

    with pytest.raises(rt.ConfigError, match="invalid subject"):
        await orders.OrderServiceClient(nc, interceptors=[redirect]).create_order(order_request("c"))

    with pytest.raises(rt.MaxPayloadExceededError) as too_big:
        await client.create_order(order_request("x" * (nc.max_payload + 1)))
    assert too_big.value.code == rt.RESOURCE_EXHAUSTED

    await nc.close()
    with pytest.raises(rt.ConnectionClosedError):
        await client.create_order(order_request("c"))


async def test_a_reply_over_max_payload_becomes_resource_exhausted(nc: Client) -> None:
    class Huge(TestOrders):
        async def create_order(
            self, request: order_pb2.CreateOrderRequest, ctx: rt.RequestContext
        ) -> order_pb2.CreateOrderResponse:
            return order_pb2.CreateOrderResponse(order=order_pb2.Order(id="x" * (nc.max_payload + 1)))

    service = await orders.register_order_service(nc, Huge())
    with pytest.raises(orders.OrderServiceResourceExhaustedError) as caught:
        await orders.OrderServiceClient(nc).create_order(order_request("c"))
    assert caught.value.message.startswith("the response could not be sent")
    assert service.stats()[0].num_errors == 1
    await service.stop()


async def test_the_server_gives_up_at_its_deadline_and_cancels_the_handler(nc: Client) -> None:
    handler = TestOrders()
    service = await orders.register_order_service(nc, handler, endpoint_timeouts={"create_order": 0.2})
    with pytest.raises(orders.OrderServiceDeadlineExceededError) as caught:
        await orders.OrderServiceClient(nc).create_order(order_request("slow"), timeout=5)
    assert caught.value.message == "CreateOrder did not finish before its deadline"
    assert handler.cancelled.is_set()
    await service.stop()


async def test_the_client_reads_string_codes_from_a_nats_micro_service(nc: Client) -> None:
    peer = await micro.add_service(nc, name="py_peer", version="1.0.0")

    async def create_order(request: Request) -> None:
        want = (request.headers or {})[WANT_CODE]
        await request.respond_error(want, f"peer says [{want}]", data=b"peer")

    await peer.add_endpoint(name="create_order", subject="api.v1.create_order", handler=create_order)
    client = orders.OrderServiceClient(nc)
    for wire, expected in [("404", orders.OrderServiceNotFoundError), ("NOT_FOUND", orders.OrderServiceNotFoundError),
                           ("ORDER_EXPIRED", orders.OrderServiceOrderExpiredError), ("", orders.OrderServiceUnknownError)]:
        with pytest.raises(expected) as caught:
            await client.create_order(order_request("c"), headers={WANT_CODE: wire})
        assert (caught.value.message, caught.value.data) == (f"peer says [{wire}]", b"peer")
    await peer.stop()


def test_exception_hierarchy() -> None:
    assert issubclass(orders.OrderServiceOrderExpiredError, orders.OrderServiceError)
    assert issubclass(orders.OrderServiceError, rt.ServiceError)
    assert issubclass(orders.OrderServiceNotFoundError, rt.NotFoundError)
    for transport in (rt.NoRespondersError, rt.RequestTimeoutError, rt.ConnectionClosedError, rt.MaxPayloadExceededError):
        assert issubclass(transport, rt.TransportError) and issubclass(transport, rt.NatsMicroError)
        assert not issubclass(transport, rt.ServiceError)
    err = orders.OrderServiceError("ORDER_EXPIRED", "CreateOrder", "late", b"d")
    assert orders.is_order_service_order_expired(err), "checkers go by code"
    assert not orders.is_order_service_order_expired(ValueError("ORDER_EXPIRED"))
    assert not orders.is_order_service_order_expired(None)
    assert issubclass(rt.ConfigError, ValueError)
