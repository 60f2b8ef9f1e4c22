"""Server-streaming calls on a real nats-server with a hand-written spec
(PROTOCOL §9): results and trailers, errors, credit, deadline, cancel, the
Go-plugin paths in both directions, protocol errors and the reply policy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Unpack

import nats
import nats_micro_runtime as rt
from nats_server_fixture import nc  # noqa: F401 (a fixture)
import pytest
from google.protobuf import wrappers_pb2
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

Int = wrappers_pb2.Int64Value
SPEC = rt.ServiceSpec(
    proto_name="t.Count", name="count", version="1.0.0", description="", subject_prefix="count",
    endpoints=(rt.EndpointSpec("CountUp", "count_up", timeout=10),),
)  # fmt: skip
SUBJECT = "count.count_up"


class Probe:
    """What the handler did, for the tests to look at."""

    def __init__(self) -> None:
        self.yielded = 0
        self.cancelled = asyncio.Event()
        self.sleep = 0.0


async def serve(nc: NatsClient, probe: Probe, **overrides: Unpack[rt.ServiceOverrides]) -> rt.Service:
    """CountUp: yields 1..value, ``probe.sleep`` apart; value 99 fails after
    two, 0 never ends."""

    async def count_up(request: Int, ctx: rt.RequestContext) -> AsyncIterator[Int]:
        try:
            n = 0
            while request.value == 0 or n < request.value:
                n += 1
                if request.value == 99 and n == 3:
                    raise rt.FailedPreconditionError("CountUp", "failed after 2", data=b"two")
                probe.yielded += 1
                yield Int(value=n)
                await asyncio.sleep(probe.sleep if request.value else 0.01)
            ctx.set_response_header("X-Total", str(n))
        except asyncio.CancelledError:
            probe.cancelled.set()
            raise

    return await rt.start_service(nc, SPEC, {"count_up": rt.ServerStreamEndpoint(count_up, Int)}, overrides)


async def test_a_server_stream_delivers_in_order_with_trailers_and_counts_once(nc: NatsClient) -> None:
    service = await serve(nc, Probe())
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    stream = await client.server_stream("count_up", Int(value=5), Int)
    assert [m.value async for m in stream] == [1, 2, 3, 4, 5]
    assert stream.trailers["X-Total"] == "5" and stream.trailers[rt.END_HEADER] == "true"
    assert [(s.num_requests, s.num_errors) for s in service.stats()] == [(1, 0)]
    assert service.info_json()["endpoints"][0]["subject"] == SUBJECT
    await service.stop(1)


async def test_a_mid_stream_error_arrives_after_the_data_with_its_data(nc: NatsClient) -> None:
    service = await serve(nc, Probe())
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    got: list[int] = []
    with pytest.raises(rt.ServiceError) as caught:
        async for m in await client.server_stream("count_up", Int(value=99), Int):
            got.append(m.value)
    assert got == [1, 2]
    assert (caught.value.code, caught.value.message, caught.value.data) == ("FAILED_PRECONDITION", "failed after 2", b"two")
    assert [(s.num_requests, s.num_errors) for s in service.stats()] == [(1, 1)]
    await service.stop(1)


async def test_a_slow_consumer_holds_the_server_to_its_window(nc: NatsClient) -> None:
    probe = Probe()
    service = await serve(nc, probe)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=10)
    consumed = 0
    ahead = []
    async with await client.server_stream("count_up", Int(value=40), Int, window=4) as stream:
        async for _ in stream:
            consumed += 1
            await asyncio.sleep(0.02)
            ahead.append(probe.yielded - consumed)
    assert consumed == 40
    # The generator runs one item ahead of the credit it waits for.
    assert max(ahead) <= 4 + 1 and max(ahead) >= 3
    await service.stop(1)


async def test_the_deadline_ends_the_stream_on_both_sides(nc: NatsClient) -> None:
    probe = Probe()
    service = await serve(nc, probe)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    with pytest.raises(rt.ServiceError) as caught:
        async for _ in await client.server_stream("count_up", Int(value=0), Int, timeout=0.3):
            pass
    assert caught.value.code == "DEADLINE_EXCEEDED"
    await asyncio.wait_for(probe.cancelled.wait(), 2)
    await asyncio.sleep(0.05)
    assert service.stats()[0].num_errors == 1 and service.stats()[0].last_error.startswith("DEADLINE_EXCEEDED")
    await service.stop(1)


async def test_leaving_early_cancels_the_handler(nc: NatsClient) -> None:
    probe = Probe()
    service = await serve(nc, probe)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    async with await client.server_stream("count_up", Int(value=0), Int) as stream:
        async for m in stream:
            if m.value == 3:
                break
    await asyncio.wait_for(probe.cancelled.wait(), 2)
    await asyncio.sleep(0.05)
    assert service.stats()[0].last_error.startswith("CANCELLED")
    await service.stop(1)


async def collect(sub: Subscription, until_end: bool = True) -> list[Msg]:
    got = []
    while True:
        msg = await sub.next_msg(timeout=2)
        got.append(msg)
        if until_end and (msg.headers or {}).get(rt.END_HEADER) == "true":
            return got


async def test_a_go_plugin_open_without_reply_subject_or_credit_is_streamed_without_ack(nc: NatsClient) -> None:
    service = await serve(nc, Probe())
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(SUBJECT, Int(value=3).SerializeToString(), headers={rt.REPLY_TO_HEADER: inbox})
    got = await collect(sub)
    assert [dict(m.headers or {}).get(rt.SEQ_HEADER) for m in got] == ["1", "2", "3", None]
    assert [Int.FromString(m.data).value for m in got[:3]] == [1, 2, 3]
    assert rt.INBOX_HEADER not in (got[0].headers or {})
    await service.stop(1)


async def test_our_open_is_acked_with_the_server_inbox_and_window(nc: NatsClient) -> None:
    service = await serve(nc, Probe())
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    headers = {rt.REPLY_TO_HEADER: inbox, rt.CREDIT_HEADER: "8"}
    await nc.publish(SUBJECT, Int(value=1).SerializeToString(), reply=inbox, headers=headers)
    ack, data, end = await collect(sub)
    assert ack.data == b"" and (ack.headers or {})[rt.CREDIT_HEADER] == str(rt.DEFAULT_WINDOW)
    assert (ack.headers or {})[rt.INBOX_HEADER].startswith("_INBOX.")
    assert (data.headers or {})[rt.SEQ_HEADER] == "1" and (end.headers or {})[rt.END_HEADER] == "true"
    await service.stop(1)


@pytest.mark.parametrize(
    ("headers", "code"),
    [({rt.CREDIT_HEADER: "-1"}, "INVALID_ARGUMENT"), ({rt.CREDIT_HEADER: "99999999999"}, "INVALID_ARGUMENT")],
)
async def test_a_malformed_credit_in_the_open_is_refused(nc: NatsClient, headers: dict[str, str], code: str) -> None:
    service = await serve(nc, Probe())
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(SUBJECT, Int(value=1).SerializeToString(), reply=inbox, headers={rt.REPLY_TO_HEADER: inbox, **headers})
    [end] = await collect(sub)
    assert rt.code_from_wire((end.headers or {})[rt.ERROR_CODE_HEADER]) == code
    assert (end.headers or {})[rt.END_HEADER] == "true"
    await service.stop(1)


async def test_the_reply_policy_applies_to_reply_to(nc: NatsClient) -> None:
    service = await serve(nc, Probe())
    trap = await nc.subscribe("$JS.API.>")
    await nc.publish(SUBJECT, Int(value=1).SerializeToString(), headers={rt.REPLY_TO_HEADER: "$JS.API.STREAM.DELETE.x"})
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    # The reply subject (where the ack goes) passes the policy too when it differs from Reply-To (§9.2).
    await nc.publish(SUBJECT, Int(value=1).SerializeToString(), reply="$JS.API.STREAM.DELETE.y", headers={rt.REPLY_TO_HEADER: inbox})
    for quiet in (trap, sub):
        with pytest.raises(nats.errors.TimeoutError):
            await quiet.next_msg(timeout=0.3)
    assert [(s.num_requests, s.num_errors) for s in service.stats()] == [(2, 2)]
    await service.stop(1)


async def raw_server(nc: NatsClient, frames: list[tuple[bytes, dict[str, str]]]) -> None:
    """A Go-plugin-style server: no ack, streams ``frames`` to Reply-To."""

    async def answer(msg: Msg) -> None:
        target = (msg.headers or {})[rt.REPLY_TO_HEADER]
        for body, headers in frames:
            await nc.publish(target, body, headers=headers)

    await nc.subscribe(SUBJECT, cb=answer)


async def test_a_go_plugin_server_without_ack_is_read(nc: NatsClient) -> None:
    frames = [(Int(value=v).SerializeToString(), {rt.SEQ_HEADER: str(v)}) for v in (1, 2)]
    await raw_server(nc, [*frames, (b"", {rt.END_HEADER: "true"})])
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    assert [m.value async for m in await client.server_stream("count_up", Int(value=2), Int)] == [1, 2]


@pytest.mark.parametrize(
    ("seqs", "code"), [(["1", "3"], "DATA_LOSS"), (["1", "x"], "INVALID_ARGUMENT"), (["1", "-2"], "INVALID_ARGUMENT")]
)
async def test_bad_sequence_numbers_fail_the_stream(nc: NatsClient, seqs: list[str], code: str) -> None:
    await raw_server(nc, [(Int(value=1).SerializeToString(), {rt.SEQ_HEADER: seq}) for seq in seqs])
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    got = []
    with pytest.raises(rt.ServiceError) as caught:
        async for m in await client.server_stream("count_up", Int(value=2), Int):
            got.append(m.value)
    assert got == [1] and caught.value.code == code


FAST = rt.StreamTimings(keepalive_interval=0.1, peer_timeout=0.5)


async def open_raw(nc: NatsClient, value: int, credit: str = "4") -> tuple[Subscription, str]:
    """Opens a stream by hand with flow control; returns the caller inbox
    subscription and the server inbox from the ack."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    headers = {rt.REPLY_TO_HEADER: inbox, rt.CREDIT_HEADER: credit}
    await nc.publish(SUBJECT, Int(value=value).SerializeToString(), reply=inbox, headers=headers)
    ack = await sub.next_msg(timeout=2)
    return sub, (ack.headers or {})[rt.INBOX_HEADER]


async def test_the_server_keeps_alive_and_gives_up_on_a_silent_caller(nc: NatsClient) -> None:
    probe = Probe()
    probe.sleep = 60
    service = await serve(nc, probe, stream_timings=FAST)
    sub, _ = await open_raw(nc, 2)
    assert (await sub.next_msg(timeout=2)).headers == {rt.SEQ_HEADER: "1"}
    keepalives = 0
    with pytest.raises(nats.errors.TimeoutError):
        while True:  # the caller never answers: keepalives until the server gives up, then silence
            msg = await sub.next_msg(timeout=0.4)
            assert (msg.headers or {}) == {rt.CREDIT_HEADER: "0"}
            keepalives += 1
    assert 2 <= keepalives <= 8
    assert probe.cancelled.is_set() and service.stats()[0].last_error.startswith("UNAVAILABLE")
    await service.stop(1)


async def test_a_caller_that_keeps_alive_is_not_given_up(nc: NatsClient) -> None:
    probe = Probe()
    probe.sleep = 0.7  # longer than the peer timeout between two messages
    service = await serve(nc, probe, stream_timings=FAST)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5, stream_timings=FAST)
    assert [m.value async for m in await client.server_stream("count_up", Int(value=2), Int)] == [1, 2]
    await service.stop(1)



async def test_a_silent_server_fails_the_caller_with_unavailable(nc: NatsClient) -> None:
    async def ack_then_silence(msg: Msg) -> None:
        target = (msg.headers or {})[rt.REPLY_TO_HEADER]
        await nc.publish(target, b"", headers={rt.INBOX_HEADER: nc.new_inbox(), rt.CREDIT_HEADER: "4"})

    await nc.subscribe(SUBJECT, cb=ack_then_silence)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5, stream_timings=FAST)
    started = asyncio.get_running_loop().time()
    with pytest.raises(rt.ServiceError) as caught:
        async for _ in await client.server_stream("count_up", Int(value=2), Int):
            pass
    assert caught.value.code == "UNAVAILABLE" and asyncio.get_running_loop().time() - started < 2


async def test_a_malformed_credit_grant_ends_the_stream_with_invalid_argument(nc: NatsClient) -> None:
    probe = Probe()
    probe.sleep = 60
    service = await serve(nc, probe)
    sub, server_inbox = await open_raw(nc, 2)
    await sub.next_msg(timeout=2)  # data 1
    await nc.publish(server_inbox, b"", headers={rt.CREDIT_HEADER: "lots"})
    end = await sub.next_msg(timeout=2)
    assert rt.code_from_wire((end.headers or {})[rt.ERROR_CODE_HEADER]) == "INVALID_ARGUMENT"
    assert (end.headers or {})[rt.END_HEADER] == "true" and probe.cancelled.is_set()
    await service.stop(1)


async def test_a_stopping_service_ends_its_streams_with_unavailable(nc: NatsClient) -> None:
    probe = Probe()
    probe.sleep = 60
    service = await serve(nc, probe)
    client = rt.Client(nc, SPEC, rt.ServiceError, timeout=5)
    stream = await client.server_stream("count_up", Int(value=2), Int)
    assert (await stream.__anext__()).value == 1
    await service.stop(0.1)
    with pytest.raises(rt.ServiceError) as caught:
        await stream.__anext__()
    assert caught.value.code == "UNAVAILABLE" and probe.cancelled.is_set()


@pytest.mark.parametrize("catches", [True, False])
async def test_a_response_over_max_payload_is_thrown_back_into_the_handler(nc: NatsClient, catches: bool) -> None:
    """§9.3: nothing is sent; a handler that catches the error goes on, one
    that does not ends the stream with it."""
    caught: list[str] = []

    async def blobs(request: wrappers_pb2.BytesValue, ctx: rt.RequestContext) -> AsyncIterator[wrappers_pb2.BytesValue]:
        yield wrappers_pb2.BytesValue(value=b"first")
        try:
            yield wrappers_pb2.BytesValue(value=b"x" * (nc.max_payload + 1))
        except rt.NatsMicroError as err:
            caught.append(err.code)
            if not catches:
                raise
        yield wrappers_pb2.BytesValue(value=b"after")

    spec = rt.ServiceSpec(
        proto_name="t.Blobs", name="blobs", version="1.0.0", description="", subject_prefix="blobs",
        endpoints=(rt.EndpointSpec("Blobs", "blobs", timeout=10),),
    )  # fmt: skip
    service = await rt.start_service(nc, spec, {"blobs": rt.ServerStreamEndpoint(blobs, wrappers_pb2.BytesValue)}, {})
    client = rt.Client(nc, spec, rt.ServiceError, timeout=5)
    got: list[bytes] = []
    stream = await client.server_stream("blobs", wrappers_pb2.BytesValue(), wrappers_pb2.BytesValue)
    if catches:
        got = [m.value async for m in stream]
        assert got == [b"first", b"after"]
    else:
        with pytest.raises(rt.ServiceError) as failed:
            async for m in stream:
                got.append(m.value)
        assert got == [b"first"] and failed.value.code == "RESOURCE_EXHAUSTED"
    assert caught == ["RESOURCE_EXHAUSTED"]
    await service.stop(1)
