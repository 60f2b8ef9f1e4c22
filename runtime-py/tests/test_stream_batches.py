"""Batches on a real nats-server (PROTOCOL §9.9), seen on the wire by a
hand-written peer: the announcements in the open and the ack, what a sender
packs (ready messages only, within the credit, 64 KiB and ``max_payload``)
and only for a peer that announced batches and credit, what a receiver makes
of batches (delivered one by one, credit per message) and of malformed ones,
in both directions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats.errors
import nats_micro_runtime as rt
from batch_cases import MALFORMED, MALFORMED_IDS, framed, ints
from nats_server_fixture import nc  # noqa: F401 (a fixture)
import pytest
from google.protobuf import wrappers_pb2
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

Int = wrappers_pb2.Int64Value
Blob = wrappers_pb2.BytesValue
SPEC = rt.ServiceSpec(
    proto_name="t.Batches", name="batches", version="1.0.0", description="", subject_prefix="batches",
    endpoints=(
        rt.EndpointSpec("Count", "count", timeout=10),
        rt.EndpointSpec("Blobs", "blobs", timeout=10),
        rt.EndpointSpec("Sum", "sum", timeout=10, max_inflight=4),
    ),
)  # fmt: skip
COUNT, BLOBS, SUM = "batches.count", "batches.blobs", "batches.sum"
SIZES = {1: [10, 10, 70_000, 10], 2: [10_000] * 20}
"""What Blobs yields, by request value: sizes of the blobs."""


async def serve(nc: NatsClient) -> rt.Service:
    """Count yields 1..value without ever waiting (1001: fails after 1000); Blobs yields the blobs of
    ``SIZES[value]``; Sum adds what it is sent (window 4)."""

    async def count(request: Int, ctx: rt.RequestContext) -> AsyncIterator[Int]:
        for n in range(1, min(request.value, 1000) + 1):
            yield Int(value=n)
        if request.value == 1001:
            raise rt.FailedPreconditionError("Count", "failed after 1000")

    async def blobs(request: Int, ctx: rt.RequestContext) -> AsyncIterator[Blob]:
        for size in SIZES[request.value]:
            yield Blob(value=b"x" * size)

    async def sum_(requests: AsyncIterator[Int], ctx: rt.RequestContext) -> Int:
        return Int(value=sum([number.value async for number in requests]))

    handlers: dict[str, rt.ServedEndpoint] = {
        "count": rt.ServerStreamEndpoint(count, Int),
        "blobs": rt.ServerStreamEndpoint(blobs, Int),
        "sum": rt.ClientStreamEndpoint(sum_, Int),
    }
    return await rt.start_service(nc, SPEC, handlers, {})


def shape(msg: Msg) -> str:
    """``seq`` for data, ``seq+count`` for a batch, ``end`` or ``credit``."""
    headers = msg.headers or {}
    if rt.BATCH_HEADER in headers and rt.SEQ_HEADER in headers:
        return f"{headers[rt.SEQ_HEADER]}+{headers[rt.BATCH_HEADER]}"
    if rt.SEQ_HEADER in headers:
        return headers[rt.SEQ_HEADER]
    return "end" if headers.get(rt.END_HEADER) == "true" else "credit"


async def open_raw(nc: NatsClient, subject: str, value: int, headers: dict[str, str]) -> tuple[Subscription, str, Msg]:
    """Opens a stream by hand with ``headers``; returns the caller inbox, the server inbox and the ack."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(subject, Int(value=value).SerializeToString(), reply=inbox, headers={rt.REPLY_TO_HEADER: inbox, **headers})
    ack = await sub.next_msg(timeout=2)
    return sub, (ack.headers or {})[rt.INBOX_HEADER], ack


async def take(sub: Subscription, messages: int) -> list[Msg]:
    """NATS messages until they hold ``messages`` stream messages, or an end."""
    got: list[Msg] = []
    held = 0
    while held < messages:
        msg = await sub.next_msg(timeout=2)
        got.append(msg)
        headers = msg.headers or {}
        if headers.get(rt.END_HEADER) == "true":
            break
        if rt.SEQ_HEADER in headers:
            held += int(headers.get(rt.BATCH_HEADER, "1"))
    return got


async def nothing_more(sub: Subscription) -> None:
    with pytest.raises(nats.errors.TimeoutError):
        await sub.next_msg(timeout=0.2)


# The server sends ------------------------------------------------------------------


async def test_the_server_announces_batches_in_its_ack(nc: NatsClient) -> None:
    service = await serve(nc)
    sub, _, ack = await open_raw(nc, COUNT, 1, {rt.CREDIT_HEADER: "8"})
    assert (ack.headers or {})[rt.BATCH_HEADER] == "true"
    await service.stop(1)


async def test_the_server_packs_ready_messages_within_the_callers_credit(nc: NatsClient) -> None:
    service = await serve(nc)
    sub, server_inbox, _ = await open_raw(nc, COUNT, 25, {rt.CREDIT_HEADER: "10", rt.BATCH_HEADER: "true"})
    got = await take(sub, 10)
    await nothing_more(sub)  # never beyond the credit
    await nc.publish(server_inbox, b"", headers={rt.CREDIT_HEADER: "10"})
    got += await take(sub, 10)
    await nothing_more(sub)
    await nc.publish(server_inbox, b"", headers={rt.CREDIT_HEADER: "10"})
    got += await take(sub, 6)
    assert [shape(m) for m in got] == ["1+10", "11+10", "21+5", "end"]
    bodies = [body for m in got[:3] for body in rt.split_batch(m.data, int((m.headers or {})[rt.BATCH_HEADER]))]
    assert [Int.FromString(body).value for body in bodies] == list(range(1, 26))
    await service.stop(1)


async def test_an_error_end_follows_the_last_batch(nc: NatsClient) -> None:
    service = await serve(nc)
    sub, _, _ = await open_raw(nc, COUNT, 1001, {rt.CREDIT_HEADER: "2000", rt.BATCH_HEADER: "true"})
    got = await take(sub, 1001)
    assert [shape(m) for m in got] == ["1+1000", "end"]
    assert rt.code_from_wire((got[-1].headers or {})[rt.ERROR_CODE_HEADER]) == "FAILED_PRECONDITION"
    await service.stop(1)


async def test_server_batches_stay_within_64_kib_and_a_message_too_big_for_one_goes_alone(nc: NatsClient) -> None:
    service = await serve(nc)
    sub, _, _ = await open_raw(nc, BLOBS, 2, {rt.CREDIT_HEADER: "100", rt.BATCH_HEADER: "true"})
    got = await take(sub, 21)
    assert [shape(m) for m in got] == ["1+6", "7+6", "13+6", "19+2", "end"]
    assert all(len(m.data) <= rt.MAX_BATCH_BYTES for m in got)
    sub, _, _ = await open_raw(nc, BLOBS, 1, {rt.CREDIT_HEADER: "100", rt.BATCH_HEADER: "true"})
    got = await take(sub, 5)
    # the 70,000 bytes go alone, and the batch of the one message after them as ordinary data
    assert [shape(m) for m in got] == ["1+2", "3", "4", "end"]
    assert len(Blob.FromString(got[1].data).value) == 70_000
    await service.stop(1)


@pytest.mark.parametrize(
    "headers",
    [{rt.CREDIT_HEADER: "100"}, {rt.CREDIT_HEADER: "100", rt.BATCH_HEADER: "yes"}, {rt.BATCH_HEADER: "true"}],
    ids=["credit only (a Go-style peer)", "not true", "batches without credit"],
)
async def test_a_caller_that_did_not_announce_batches_and_credit_gets_one_message_per_nats_message(
    nc: NatsClient, headers: dict[str, str]
) -> None:
    service = await serve(nc)
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(COUNT, Int(value=30).SerializeToString(), reply=inbox, headers={rt.REPLY_TO_HEADER: inbox, **headers})
    got = [m for m in await take(sub, 31) if rt.INBOX_HEADER not in (m.headers or {})]
    assert [shape(m) for m in got] == [*map(str, range(1, 31)), "end"]
    await service.stop(1)


async def test_our_client_and_server_stream_in_batches_end_to_end(nc: NatsClient) -> None:
    service = await serve(nc)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    spy = await nc.subscribe("_INBOX.>")
    stream = await client.server_stream("count", Int(value=1000), Int, window=64)
    assert [m.value async for m in stream] == list(range(1, 1001))
    seen: list[Msg] = []
    while True:
        try:
            seen.append(await spy.next_msg(timeout=0.2))
        except nats.errors.TimeoutError:
            break
    batches = [m for m in seen if rt.BATCH_HEADER in (m.headers or {}) and rt.SEQ_HEADER in (m.headers or {})]
    assert batches and all(int((m.headers or {})[rt.BATCH_HEADER]) <= 64 for m in batches)
    await service.stop(1)


# The client sends --------------------------------------------------------------------


async def raw_sum_server(nc: NatsClient, ack_headers: dict[str, str], seen: list[Msg]) -> None:
    """Acks a Sum open with ``ack_headers``, records what the caller sends to
    its inbox and answers the caller's end with the sum of what it held."""

    async def on_open(open_msg: Msg) -> None:
        reply_to = (open_msg.headers or {})[rt.REPLY_TO_HEADER]
        total = 0

        async def on_caller(msg: Msg) -> None:
            nonlocal total
            seen.append(msg)
            headers = msg.headers or {}
            if rt.BATCH_HEADER in headers:
                total += sum(Int.FromString(b).value for b in rt.split_batch(msg.data, int(headers[rt.BATCH_HEADER])))
            elif rt.SEQ_HEADER in headers:
                total += Int.FromString(msg.data).value
            elif headers.get(rt.END_HEADER) == "true":
                await nc.publish(reply_to, Int(value=total).SerializeToString(), headers={rt.END_HEADER: "true"})

        inbox = nc.new_inbox()
        await nc.subscribe(inbox, cb=on_caller)
        seen.append(open_msg)
        await nc.publish(open_msg.reply, b"", headers={rt.INBOX_HEADER: inbox, **ack_headers})

    await nc.subscribe(SUM, cb=on_open)


@pytest.mark.parametrize(
    ("ack", "shapes"),
    [
        ({rt.CREDIT_HEADER: "100", rt.BATCH_HEADER: "true"}, ["1+5", "end"]),
        ({rt.CREDIT_HEADER: "3", rt.BATCH_HEADER: "true"}, ["1+3", "4+2", "end"]),
        ({rt.CREDIT_HEADER: "100"}, ["1", "2", "3", "4", "5", "end"]),
        ({rt.BATCH_HEADER: "true"}, ["1", "2", "3", "4", "5", "end"]),
    ],
    ids=["batches", "batches within the credit", "credit only", "batches without credit"],
)
async def test_the_client_packs_its_requests_only_for_a_server_that_announced_batches_and_credit(
    nc: NatsClient, ack: dict[str, str], shapes: list[str]
) -> None:
    seen: list[Msg] = []
    await raw_sum_server(nc, ack, seen)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)

    async def grant_as_read() -> None:  # the stand-in server grants what it got, once it got 3
        while len(seen) < 2:
            await asyncio.sleep(0.01)
        if ack.get(rt.CREDIT_HEADER) == "3":
            await nc.publish((seen[0].headers or {})[rt.REPLY_TO_HEADER], b"", headers={rt.CREDIT_HEADER: "3"})

    granting = asyncio.ensure_future(grant_as_read())
    result = await client.client_stream("sum", ints_of(1, 2, 3, 4, 5), Int)
    await granting
    assert result.message.value == 15
    open_msg, *sent = seen
    assert (open_msg.headers or {})[rt.BATCH_HEADER] == "true", "the open announces batches"
    assert [shape(m) for m in sent] == shapes


def ints_of(*values: int) -> list[Int]:
    return [Int(value=v) for v in values]


# Malformed batches ------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "body", "delivered", "code"), MALFORMED, ids=MALFORMED_IDS)
async def test_a_malformed_batch_from_the_caller_ends_the_stream_with_its_code(
    nc: NatsClient, headers: dict[str, str], body: bytes, delivered: list[int], code: str
) -> None:
    service = await serve(nc)
    sub, server_inbox, ack = await open_raw(nc, SUM, 0, {rt.CREDIT_HEADER: "8"})
    assert (ack.headers or {})[rt.CREDIT_HEADER] == "4"
    await nc.publish(server_inbox, body, headers={rt.SEQ_HEADER: "1", **headers})
    [end] = await take(sub, 1)
    assert rt.code_from_wire((end.headers or {})[rt.ERROR_CODE_HEADER]) == code
    assert (end.headers or {})[rt.END_HEADER] == "true"
    await asyncio.sleep(0.05)
    assert service.stats()[2].last_error.startswith(code)
    await service.stop(1)


@pytest.mark.parametrize(("headers", "body", "delivered", "code"), MALFORMED, ids=MALFORMED_IDS)
async def test_a_malformed_batch_from_the_server_fails_the_callers_stream_with_its_code(
    nc: NatsClient, headers: dict[str, str], body: bytes, delivered: list[int], code: str
) -> None:
    async def answer(msg: Msg) -> None:
        target = (msg.headers or {})[rt.REPLY_TO_HEADER]
        await nc.publish(target, b"", headers={rt.INBOX_HEADER: nc.new_inbox(), rt.CREDIT_HEADER: "4"})
        await nc.publish(target, body, headers={rt.SEQ_HEADER: "1", **headers})

    await nc.subscribe(COUNT, cb=answer)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    got: list[int] = []
    with pytest.raises(rt.ServiceError) as caught:
        async for m in await client.server_stream("count", Int(value=1), Int, window=4):
            got.append(m.value)
    assert (got, caught.value.code) == (delivered, code)


async def test_a_batch_from_the_server_is_delivered_in_order_with_credit_granted_per_message(nc: NatsClient) -> None:
    grants: list[int] = []
    opened: list[Msg] = []
    granted = asyncio.Event()

    async def on_credit(msg: Msg) -> None:
        credit = (msg.headers or {}).get(rt.CREDIT_HEADER)
        if credit not in (None, "0"):
            grants.append(int(credit))
            if sum(grants) >= 4:
                granted.set()

    async def answer(msg: Msg) -> None:
        opened.append(msg)
        target = (msg.headers or {})[rt.REPLY_TO_HEADER]
        inbox = nc.new_inbox()
        await nc.subscribe(inbox, cb=on_credit)
        await nc.publish(target, b"", headers={rt.INBOX_HEADER: inbox, rt.CREDIT_HEADER: "4"})
        await nc.publish(target, framed(*ints(1, 2, 3)), headers={rt.SEQ_HEADER: "1", rt.BATCH_HEADER: "3"})
        await nc.publish(target, ints(4)[0], headers={rt.SEQ_HEADER: "4"})
        await granted.wait()  # the window of 4 is used up: more only after the caller granted it back
        await nc.publish(target, framed(*ints(5, 6, 7, 8)), headers={rt.SEQ_HEADER: "5", rt.BATCH_HEADER: "4"})
        await nc.publish(target, b"", headers={rt.END_HEADER: "true"})

    await nc.subscribe(COUNT, cb=answer)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    got: list[int] = []
    async for m in await client.server_stream("count", Int(value=8), Int, window=4):
        got.append(m.value)
        if m.value <= 4:
            await asyncio.sleep(0.05)  # for the grants to arrive as the messages are consumed
            assert sum(grants) == m.value // 2 * 2, (m.value, grants)
    assert got == list(range(1, 9))
    assert (opened[0].headers or {})[rt.BATCH_HEADER] == "true" and (opened[0].headers or {})[rt.CREDIT_HEADER] == "4"
