"""Hardening of the service layer on real nats-servers (issue 9): malformed
header blocks, the deadline header's one definition, overload (deadline from
arrival, bounded pending queue), bounded stop, the reply-subject policy and
denied subscriptions."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import nats_micro_runtime as rt
import pytest
from conftest import running_nats_server
from nats.aio.client import Client
from nats.aio.msg import Msg
from order.v1 import order_nats_pb2 as orders
from order.v1 import order_pb2
from rawnats import RawClient
from support import TestOrders, order_request

SUBJECT = "api.v1.create_order"

MALFORMED = {
    "bare CR in a value": b"NATS/1.0\r\nX-Bad: a\rb\r\n\r\n",
    "bare LF in a value": b"NATS/1.0\r\nX-Bad: a\nb\r\n\r\n",
    "LF-only line endings": b"NATS/1.0\nX-A: b\n\n",
    "empty header name": b"NATS/1.0\r\n: v\r\n\r\n",
    "space in a name": b"NATS/1.0\r\nX Bad: v\r\n\r\n",
    "non-UTF-8 name": b"NATS/1.0\r\nX-\xff\xfe: v\r\n\r\n",
    "non-UTF-8 value": b"NATS/1.0\r\nX-A: \xff\xfe\r\n\r\n",
    "missing version line": b"X-A: b\r\n\r\n",
    "status 503": b"NATS/1.0 503\r\n\r\n",
    "status 100 idle heartbeat": b"NATS/1.0 100 Idle Heartbeat\r\n\r\n",
    "truncated version line": b"NATS/",
    "line without a colon": b"NATS/1.0\r\nnocolon\r\n\r\n",
    "only CRLF": b"\r\n",
    "status without headers end": b"NATS/1.0 503",
}


def random_blocks(count: int) -> dict[str, bytes]:
    rng = random.Random(9)
    blocks = {}
    for i in range(count):
        prefix = rng.choice([b"", b"NATS/", b"NATS/1.0", b"NATS/1.0\r\n", b"NATS/1.0 "])
        blocks[f"random {i}"] = prefix + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 48)))
    return blocks


async def answers_within_a_second(client: orders.OrderServiceClient) -> None:
    response, _ = await client.create_order(order_request("c"), timeout=1.0)
    assert response.order.id == "o-1"


@pytest.mark.parametrize(("shape", "block"), [*MALFORMED.items(), *random_blocks(24).items()], ids=str)
async def test_a_malformed_header_block_never_stops_the_service(nc: Client, nats_url: str, shape: str, block: bytes) -> None:
    service = await orders.register_order_service(nc, TestOrders())
    client = orders.OrderServiceClient(nc)
    for _ in range(3):
        raw = await RawClient.connect(nats_url)
        await raw.hpub(SUBJECT, "_INBOX.hostile", block, b"payload")
        try:
            await raw.ping()
        except (AssertionError, ConnectionError, asyncio.IncompleteReadError):
            pass  # the server itself may refuse the block: then nothing reached the service
        await raw.close()
        await answers_within_a_second(client)
    await service.stop()


async def test_the_truncated_version_line_is_counted_and_answered(nc: Client, nats_url: str) -> None:
    service = await orders.register_order_service(nc, TestOrders())
    replies: asyncio.Queue[Msg] = asyncio.Queue()
    await nc.subscribe("_INBOX.bad", cb=replies.put)
    raw = await RawClient.connect(nats_url)
    await raw.hpub(SUBJECT, "_INBOX.bad", b"NATS/")
    await raw.ping()
    reply = await asyncio.wait_for(replies.get(), 1.0)
    assert reply.headers is not None and reply.headers[rt.ERROR_CODE_HEADER] == "400"
    assert rt.connection_guard(nc).malformed_headers == 1
    await raw.close()
    await service.stop()


@pytest.mark.parametrize(
    ("values", "expired"),
    [(["0", "5000000"], True), (["5000000", "0"], False), (["\uff10"], False), (["0x0", "0"], False)],
    ids=repr,
)
async def test_only_the_first_deadline_header_counts_on_the_wire(
    nc: Client, nats_url: str, values: list[str], expired: bool
) -> None:
    service = await orders.register_order_service(nc, TestOrders(), timeout=5.0)
    replies: asyncio.Queue[Msg] = asyncio.Queue()
    await nc.subscribe("_INBOX.dup", cb=replies.put)
    block = b"NATS/1.0\r\n" + b"".join(f"Nats-Micro-Timeout: {v}\r\n".encode() for v in values) + b"\r\n"
    raw = await RawClient.connect(nats_url)
    await raw.hpub(SUBJECT, "_INBOX.dup", block, order_request("c").SerializeToString())
    reply = await asyncio.wait_for(replies.get(), 2.0)
    code = (reply.headers or {}).get(rt.ERROR_CODE_HEADER)
    assert code == ("DEADLINE_EXCEEDED" if expired else None), reply.headers
    await raw.close()
    await service.stop()


class Gate(TestOrders):
    """Handlers that wait for ``release`` and count when each one started."""

    def __init__(self) -> None:
        super().__init__()
        self.starts: list[float] = []

    async def create_order(
        self, request: order_pb2.CreateOrderRequest, ctx: rt.RequestContext
    ) -> order_pb2.CreateOrderResponse:
        self.starts.append(asyncio.get_running_loop().time())
        deadline = ctx.deadline
        assert deadline is None or asyncio.get_running_loop().time() < deadline, "a handler started after its deadline"
        await self.release.wait()
        return order_pb2.CreateOrderResponse()


async def test_five_times_capacity_is_bounded_and_nothing_starts_stale(nc: Client) -> None:
    handler = Gate()
    service = await orders.register_order_service(nc, handler, max_concurrency=2, pending_limit=4, timeout=30.0)
    # No retries: shed replies carry a RetryInfo, which would make the client retry them (PROTOCOL §10.1).
    client = orders.OrderServiceClient(nc, retry_policy=rt.RetryPolicy(max_attempts=1))
    # Two long calls hold both slots; then 28 short ones (budget 0.3 s) arrive.
    holders = [asyncio.create_task(client.create_order(order_request("c"), timeout=5)) for _ in range(2)]
    while len(handler.starts) < 2:
        await asyncio.sleep(0.01)
    calls = [asyncio.create_task(client.create_order(order_request("c"), timeout=0.3)) for _ in range(28)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    exhausted = [r for r in results if isinstance(r, rt.ResourceExhaustedError)]
    assert len(exhausted) == 24, results  # 4 of 28 fit in the pending queue
    assert all(isinstance(r, rt.RequestTimeoutError) for r in results if r not in exhausted)
    # The server counts from arrival, a little after the client's clock started: wait it out.
    await asyncio.sleep(0.3)
    handler.release.set()
    await asyncio.gather(*holders)
    await asyncio.sleep(0.1)
    assert len(handler.starts) == 2, "queued requests whose deadline passed must not start"
    (stats,) = [s for s in service.stats() if s.name == "create_order"]
    assert (stats.num_requests, stats.num_errors) == (30, 28), stats
    assert "expired while queued" in stats.last_error
    await asyncio.wait_for(service.stop(), 5)


async def test_the_default_pending_bound_is_4096(nc: Client) -> None:
    handler = Gate()
    service = await orders.register_order_service(nc, handler, max_concurrency=1, timeout=30.0)
    refused = 0
    done = asyncio.Event()

    async def count(msg: Msg) -> None:
        nonlocal refused
        if (msg.headers or {}).get(rt.ERROR_CODE_HEADER) == "RESOURCE_EXHAUSTED":
            refused += 1
            if refused == 103:
                done.set()

    await nc.subscribe("_INBOX.flood.*", cb=count)
    payload = order_request("c").SerializeToString()
    for i in range(1 + 4096 + 103):
        await nc.publish(SUBJECT, payload, reply=f"_INBOX.flood.{i}")
    await asyncio.wait_for(done.wait(), 10)
    await asyncio.sleep(0.2)
    assert refused == 103
    handler.release.set()
    await service.stop(drain_timeout=5)


async def test_stop_is_bounded_and_cancels_what_is_left(nc: Client) -> None:
    handler = TestOrders()
    service = await orders.register_order_service(nc, handler, timeout=3600.0, drain_timeout=0.3)
    client = orders.OrderServiceClient(nc)
    call = asyncio.create_task(client.create_order(order_request("slow"), timeout=30))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await asyncio.wait_for(service.stop(), 5)
    assert time.monotonic() - started < 5
    assert handler.cancelled.is_set()
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)


def test_the_reply_policy_refuses_what_it_documents() -> None:
    policy = rt.ReplyPolicy(own_subjects=("api.v1.create_order",), deny=("admin.>",))
    for reply in ["", "foo.*", "foo.>", "a b", "api.v1.create_order", "api.v1.create_order.x", "$SRV.PING", "$JS.API.x", "$KV.b.k", "$O.x", "$SYS.REQ.x", "admin.shutdown"]:
        assert policy.refusal(reply) is not None, reply
    for reply in ["_INBOX.abc.1", "api.v1.create_orders", "replies.x", "admin"]:
        assert policy.refusal(reply) is None, reply
    allow = rt.ReplyPolicy(allow_prefixes=("_INBOX.",))
    assert allow.refusal("_INBOX.x") is None and allow.refusal("other.x") is not None


async def test_a_reply_aimed_at_another_endpoint_or_a_denied_subject_runs_nothing(nc: Client) -> None:
    handler = TestOrders()
    got = TestOrders()
    service = await orders.register_order_service(nc, handler, reply_deny=["admin.>"])
    leaked: list[Msg] = []

    async def leak(msg: Msg) -> None:
        leaked.append(msg)

    await nc.subscribe("admin.>", cb=leak)
    payload = order_request("c").SerializeToString()
    for reply in ["api.v1.get_order", "$SYS.REQ.SERVER.PING", "admin.shutdown"]:
        await nc.publish(SUBJECT, payload, reply=reply)
    await nc.publish(SUBJECT, payload)  # no reply subject
    await nc.flush()
    await asyncio.sleep(0.2)
    assert handler.seen_headers == [] and got.seen_headers == [] and leaked == []
    (stats,) = [s for s in service.stats() if s.name == "create_order"]
    assert (stats.num_requests, stats.num_errors) == (4, 4)
    # Discovery replies follow the same policy.
    await nc.subscribe("$JS.API.>", cb=leak)
    await nc.publish("$SRV.PING", b"", reply="$JS.API.STREAM.DELETE.orders")
    await nc.publish("$SRV.INFO.order_service", b"", reply="admin.info")
    await nc.flush()
    await asyncio.sleep(0.2)
    assert leaked == [], "a discovery reply went where the policy forbids"
    # Normal calls still work.
    await answers_within_a_second(orders.OrderServiceClient(nc))
    await service.stop()


@pytest.fixture
def restricted_url(tmp_path: Path) -> Iterator[str]:
    """A nats-server whose user ``svc`` may not subscribe to ``api.>``."""
    config = tmp_path / "server.conf"
    config.write_text(
        'authorization { users = [ { user: "svc", password: "pw", permissions: { subscribe: { deny: ["api.>"] } } } ] }\n'
    )
    with running_nats_server("-c", str(config)) as port:
        yield f"nats://svc:pw@127.0.0.1:{port}"


@pytest.fixture
async def restricted_nc(restricted_url: str) -> AsyncIterator[Client]:
    async def quiet(err: Exception) -> None:
        pass

    connection = await nats.connect(restricted_url, error_cb=quiet)
    yield connection
    await connection.close()


async def test_a_service_whose_subscriptions_are_denied_fails_to_start(restricted_nc: Client) -> None:
    with pytest.raises(rt.StartError, match=r"api\.v1\.create_order"):
        await orders.register_order_service(restricted_nc, TestOrders())
