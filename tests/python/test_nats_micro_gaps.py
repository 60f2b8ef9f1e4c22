"""Why the runtime serves on the core nats-py client instead of ``nats.micro``
(nats-py 2.16): these are the gaps, pinned so a fixed nats-py shows up here.
Each one breaks a rule of the wire contract (PROTOCOL §4, §5) that our
service layer keeps (see test_service.py and test_errors.py)."""

from __future__ import annotations

import asyncio
import json

from nats import micro
from nats.micro.request import Request
from nats.aio.client import Client


async def test_nats_micro_counts_no_error_reply_that_carries_data(nc: Client) -> None:
    service = await micro.add_service(nc, name="gap", version="1.0.0")

    async def fail(request: Request) -> None:
        # The only way to send error data (or headers) with nats.micro.
        await request.respond_error("NOT_FOUND", "gone", data=b"details")

    await service.add_endpoint(name="get", subject="gap.get", handler=fail)
    reply = await nc.request("gap.get", b"", timeout=5)
    assert reply.headers is not None and reply.data == b"details"
    stats = json.loads((await nc.request("$SRV.STATS.gap", b"", timeout=5)).data)
    assert stats["endpoints"][0]["num_errors"] == 0, "STATS must count every error reply"
    await service.stop()


async def test_nats_micro_cannot_serve_without_a_queue_group(nc: Client) -> None:
    service = await micro.add_service(nc, name="gap", version="1.0.0", queue_group=None)

    async def ok(request: Request) -> None:
        await request.respond(b"")

    await service.add_endpoint(name="get", subject="gap.get", handler=ok, queue_group=None)
    info = json.loads((await nc.request("$SRV.INFO.gap", b"", timeout=5)).data)
    assert info["endpoints"][0]["queue_group"] == "q", "queue_group_disabled cannot be honoured"
    await service.stop()


async def test_nats_micro_handles_one_request_of_an_endpoint_at_a_time(nc: Client) -> None:
    service = await micro.add_service(nc, name="gap", version="1.0.0")
    second_arrived = asyncio.Event()

    async def handle(request: Request) -> None:
        if request.data == b"second":
            second_arrived.set()
            await request.respond(b"")
            return
        try:
            await asyncio.wait_for(second_arrived.wait(), 0.5)
            await request.respond(b"saw the second request")
        except TimeoutError:
            await request.respond(b"alone")

    await service.add_endpoint(name="get", subject="gap.get", handler=handle)
    first, _ = await asyncio.gather(nc.request("gap.get", b"first", timeout=5), nc.request("gap.get", b"second", timeout=5))
    assert first.data == b"alone", "the second request waited for the first handler to finish"
    await service.stop()

