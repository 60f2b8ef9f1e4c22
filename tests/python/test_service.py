"""The service layer: ADR-32 discovery (valid against the schemas in
``../shared/schemas/micro/v1``), run-time overrides, queue groups, pending
limits and graceful stop."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import jsonschema
import nats.errors
import nats_micro_runtime as rt
import pytest
from conftest import HAS_SCHEMAS, SCHEMAS
from nats.aio.client import Client
from order.v1 import order_nats_pb2 as orders
from order.v1 import order_pb2
from support import WANT_CODE, TestOrders, order_request


async def ask(nc: Client, subject: str) -> dict[str, Any]:
    reply = await nc.request(subject, b"", timeout=5)
    document: dict[str, Any] = json.loads(reply.data)
    return document


async def test_discovery_replies_validate_on_every_subject_level_and_count_every_error(nc: Client) -> None:
    service = await orders.register_order_service(nc, TestOrders(), merge_metadata={"region": "eu"})
    client = orders.OrderServiceClient(nc)
    for want in ["NOT_FOUND", "ORDER_EXPIRED"]:
        with pytest.raises(orders.OrderServiceError):
            await client.create_order(order_request("c"), headers={WANT_CODE: want})
    with pytest.raises(orders.OrderServiceInternalError):
        await client.create_order(order_request("uncoded"))
    await client.create_order(order_request("c"))

    for verb, kind in [("PING", "ping_response"), ("INFO", "info_response"), ("STATS", "stats_response")]:
        # The ADR-32 schemas come from ../shared; without it the documents are still checked field by field.
        schema = json.loads((SCHEMAS / f"{kind}.json").read_text()) if HAS_SCHEMAS else None
        for subject in [f"$SRV.{verb}", f"$SRV.{verb}.order_service", f"$SRV.{verb}.order_service.{service.id}"]:
            document = await ask(nc, subject)
            if schema is not None:
                jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())
            assert document["type"] == f"io.nats.micro.v1.{kind}"
            assert (document["name"], document["id"], document["version"]) == ("order_service", service.id, "1.0.0")
            assert document["metadata"] == {"team": "orders", "region": "eu"}, subject

    info = await ask(nc, "$SRV.INFO.order_service")
    assert info["description"] == "Order management"
    assert [e["name"] for e in info["endpoints"]] == ["create_order", "get_order"], "proto order"
    assert info["endpoints"][0] == {
        "name": "create_order",
        "subject": "api.v1.create_order",
        "queue_group": "q",
        "metadata": {"operation": "write"},
    }

    stats = await ask(nc, "$SRV.STATS.order_service")
    create = stats["endpoints"][0]
    assert (create["num_requests"], create["num_errors"]) == (4, 3)
    assert create["last_error"] == "INTERNAL:internal error"
    assert create["processing_time"] > 0 and create["average_processing_time"] == create["processing_time"] // 4
    assert stats["started"].endswith("Z") and datetime.fromisoformat(stats["started"]).tzinfo is not None
    assert service.stats()[0].num_errors == 3, "in-process stats agree"
    await service.stop()


async def test_every_option_can_be_overridden_at_run_time(nc: Client) -> None:
    service = await orders.register_order_service(
        nc,
        TestOrders(),
        name="orders-eu",
        version="2.1.0-rc.1",
        description="EU orders",
        metadata={"only": "this"},
        subject_prefix="eu.orders",
    )
    info = await ask(nc, "$SRV.INFO.orders-eu")
    assert (info["name"], info["version"], info["description"], info["metadata"]) == (
        "orders-eu",
        "2.1.0-rc.1",
        "EU orders",
        {"only": "this"},
    )
    assert [e.subject for e in service.endpoints] == ["eu.orders.create_order", "eu.orders.get_order"]
    (order, _) = await orders.OrderServiceClient(nc, subject_prefix="eu.orders").get_order(order_pb2.GetOrderRequest(id="9"))
    assert order.id == "9"
    await service.stop()


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"name": "has space"}, "service name"),
        ({"version": "1.0"}, "SemVer"),
        ({"subject_prefix": "api..v1"}, "empty token"),
        ({"subject_prefix": "api.*"}, "'*'"),
        ({"queue_group": "a b"}, "queue group"),
        ({"endpoint_timeouts": {"nope": 1.0}}, "nope"),
        ({"max_concurrency": 0}, "max_concurrency"),
    ],
)
async def test_invalid_settings_fail_registration(nc: Client, overrides: rt.ServiceOverrides, problem: str) -> None:
    with pytest.raises(rt.ConfigError, match=problem):
        await orders.register_order_service(nc, TestOrders(), **overrides)


async def test_without_a_queue_group_every_instance_gets_every_request(nc: Client) -> None:
    a = await orders.register_order_service(nc, TestOrders(), queue_group=None)
    b = await orders.register_order_service(nc, TestOrders(), queue_group=None)
    info = await ask(nc, f"$SRV.INFO.order_service.{a.id}")
    assert "queue_group" not in info["endpoints"][0]
    await orders.OrderServiceClient(nc).create_order(order_request("c"))
    for _ in range(100):
        if (a.stats()[0].num_requests, b.stats()[0].num_requests) == (1, 1):
            break
        await asyncio.sleep(0.02)
    assert (a.stats()[0].num_requests, b.stats()[0].num_requests) == (1, 1)
    await a.stop()
    await b.stop()


async def test_pending_limits_refuse_what_does_not_fit_with_resource_exhausted(nc: Client) -> None:
    release = asyncio.Event()

    async def slow(request: order_pb2.GetOrderRequest, ctx: rt.RequestContext) -> order_pb2.Order:
        await release.wait()
        return order_pb2.Order(id=request.id)

    spec = rt.ServiceSpec(
        proto_name="test.Limited",
        name="limited",
        version="1.0.0",
        description="",
        subject_prefix="limited",
        endpoints=(rt.EndpointSpec("GetOrder", "get_order", pending_msg_limit=1),),
    )
    table = rt.ErrorTable(rt.ServiceError, {})
    service = await rt.start_service(
        nc, spec, {"get_order": rt.UnaryEndpoint(slow, order_pb2.GetOrderRequest)}, {"max_concurrency": 1}
    )
    client = rt.Client(nc, spec, table, timeout=5)
    calls = [asyncio.ensure_future(client.unary("get_order", order_pb2.GetOrderRequest(id=str(i)), order_pb2.Order)) for i in range(3)]
    done, _ = await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
    (refused,) = done
    assert refused is calls[2], "the first is served, the second waits, the third does not fit"
    error = refused.exception()
    assert isinstance(error, rt.ServiceError) and error.code == rt.RESOURCE_EXHAUSTED
    assert error.message == "endpoint get_order is overloaded"
    release.set()
    assert [(await call).message.id for call in calls[:2]] == ["0", "1"]
    await service.stop()


async def test_stop_finishes_requests_in_flight_then_leaves(nc: Client) -> None:
    handler = TestOrders()
    service = await orders.register_order_service(nc, handler)
    client = orders.OrderServiceClient(nc)
    in_flight = asyncio.ensure_future(client.create_order(order_request("blocked")))
    await asyncio.wait_for(handler.entered.wait(), 5)
    stopping = asyncio.ensure_future(service.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done(), "stop waits for the request in flight"
    handler.release.set()
    (response, _) = await in_flight
    assert response.order.customer_id == "blocked"
    await stopping
    with pytest.raises(rt.NoRespondersError):
        await client.create_order(order_request("c"))
    with pytest.raises(nats.errors.NoRespondersError):
        await nc.request("$SRV.PING.order_service", b"", timeout=1)
