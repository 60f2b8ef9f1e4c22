"""Streaming RPCs through generated code (proto/streams/v1, PROTOCOL §9):
CountUp (server-streaming), Sum (client-streaming) and Chat (bidirectional)
served by a generated handler and called by the generated client; typed
errors before and during a stream, the window, the deadline, and a caller
leaving early. The wire details are tested in runtime-py/tests
(test_server_streams.py, test_client_streams.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats_micro_runtime as rt
import pytest
from nats.aio.client import Client
from streams.v1 import streams_nats_pb2 as streams
from streams.v1 import streams_pb2


class StreamService:
    """The StreamService as proto/streams/v1/streams.proto documents it."""

    def __init__(self) -> None:
        self.sent = 0
        self.cancelled = asyncio.Event()
        self.summed = 0

    async def sum(self, requests: AsyncIterator[streams_pb2.Number], ctx: rt.RequestContext) -> streams_pb2.SumResponse:
        total, count = 0, 0
        try:
            async for number in requests:
                if number.value < 0:
                    raise streams.StreamServiceInvalidArgumentError("Sum", f"{number.value} is negative", data=b"neg")
                total += number.value
                count += 1
                self.summed = count
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        ctx.set_response_header("X-Count", str(count))
        return streams_pb2.SumResponse(total=total, count=count)

    async def chat(
        self, requests: AsyncIterator[streams_pb2.ChatMessage], ctx: rt.RequestContext
    ) -> AsyncIterator[streams_pb2.ChatMessage]:
        try:
            async for message in requests:
                if message.text == "fail":
                    raise streams.StreamServiceTooManyError("Chat", "one too many", data=b"chat")
                yield streams_pb2.ChatMessage(text=f"echo: {message.text}")
            yield streams_pb2.ChatMessage(text="bye")
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def ping(self, request: streams_pb2.ChatMessage, ctx: rt.RequestContext) -> streams_pb2.ChatMessage:
        return streams_pb2.ChatMessage(text=request.text)

    async def count_up(self, request: streams_pb2.CountUpRequest, ctx: rt.RequestContext) -> AsyncIterator[streams_pb2.Number]:
        if request.count > 10000:
            raise streams.StreamServiceTooManyError("CountUp", "too many numbers", data=str(request.count).encode())
        try:
            for i in range(request.count):
                if request.fail_after > 0 and i == request.fail_after:
                    raise streams.StreamServiceFailedPreconditionError("CountUp", f"failed after {i}", data=b"partial")
                self.sent += 1
                yield streams_pb2.Number(value=request.start + i)
                await asyncio.sleep(request.delay_ms / 1000)
            ctx.set_response_header("X-Count", str(request.count))
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


async def test_count_up_streams_every_number_with_trailers(nc: Client) -> None:
    service = await streams.register_stream_service(nc, StreamService())
    client = streams.StreamServiceClient(nc)
    async with await client.count_up(streams_pb2.CountUpRequest(start=1, count=5)) as numbers:
        assert [n.value async for n in numbers] == [1, 2, 3, 4, 5]
    assert numbers.trailers["X-Count"] == "5"
    assert (await client.ping(streams_pb2.ChatMessage(text="hi"))).message.text == "hi"
    info = [(e["name"], e["metadata"].get("nats_micro.stream")) for e in service.info_json()["endpoints"]]
    assert info == [("count_up", "server"), ("sum", "client"), ("chat", "bidirectional"), ("ping", None)], (
        "proto order, each stream with its kind"
    )
    assert {s.name: s.num_requests for s in service.stats()} == {"ping": 1, "count_up": 1, "sum": 0, "chat": 0}
    await service.stop(1)


async def test_too_many_fails_at_the_open_with_its_data(nc: Client) -> None:
    service = await streams.register_stream_service(nc, StreamService())
    client = streams.StreamServiceClient(nc)
    with pytest.raises(streams.StreamServiceError) as caught:
        async for _ in await client.count_up(streams_pb2.CountUpRequest(count=20000)):
            pytest.fail("no number comes before TOO_MANY")
    assert isinstance(caught.value, streams.StreamServiceTooManyError) and streams.is_stream_service_too_many(caught.value)
    assert caught.value.data == b"20000"
    await service.stop(1)


async def test_failed_precondition_ends_the_stream_after_the_numbers(nc: Client) -> None:
    service = await streams.register_stream_service(nc, StreamService())
    client = streams.StreamServiceClient(nc)
    got: list[int] = []
    with pytest.raises(streams.StreamServiceError) as caught:
        async for n in await client.count_up(streams_pb2.CountUpRequest(start=10, count=5, fail_after=2)):
            got.append(n.value)
    assert got == [10, 11] and streams.is_stream_service_failed_precondition(caught.value)
    assert (caught.value.message, caught.value.data) == ("failed after 2", b"partial")
    assert next(s for s in service.stats() if s.name == "count_up").num_errors == 1
    await service.stop(1)


async def test_the_proto_window_bounds_how_far_the_server_runs_ahead(nc: Client) -> None:
    handler = StreamService()
    service = await streams.register_stream_service(nc, handler)
    client = streams.StreamServiceClient(nc)
    consumed, ahead = 0, 0
    async for _ in await client.count_up(streams_pb2.CountUpRequest(count=60)):  # max_inflight: 16
        consumed += 1
        await asyncio.sleep(0.005)
        ahead = max(ahead, handler.sent - consumed)
    assert consumed == 60 and 8 <= ahead <= 16 + 1
    await service.stop(1)


async def test_the_deadline_and_leaving_early_stop_the_handler(nc: Client) -> None:
    first, second = StreamService(), StreamService()
    client = streams.StreamServiceClient(nc)
    service = await streams.register_stream_service(nc, first)
    with pytest.raises(streams.StreamServiceError) as caught:
        async for _ in await client.count_up(streams_pb2.CountUpRequest(count=100, delay_ms=100), timeout=0.3):
            pass
    assert streams.is_stream_service_deadline_exceeded(caught.value)
    await asyncio.wait_for(first.cancelled.wait(), 2)
    await service.stop(1)

    service = await streams.register_stream_service(nc, second)
    async with await client.count_up(streams_pb2.CountUpRequest(count=100, delay_ms=20)) as numbers:
        async for n in numbers:
            if n.value == 2:
                break
    await asyncio.wait_for(second.cancelled.wait(), 2)
    await service.stop(1)


async def numbers(*values: int, delay: float = 0.0) -> AsyncIterator[streams_pb2.Number]:
    for value in values:
        yield streams_pb2.Number(value=value)
        await asyncio.sleep(delay)


async def test_sum_adds_a_stream_of_numbers(nc: Client) -> None:
    service = await streams.register_stream_service(nc, StreamService())
    client = streams.StreamServiceClient(nc)
    total, headers = await client.sum(numbers(*range(1, 11)))
    assert (total.total, total.count, headers["X-Count"]) == (55, 10, "10")
    assert (await client.sum([streams_pb2.Number(value=7)])).message.total == 7, "a plain iterable too"
    with pytest.raises(streams.StreamServiceError) as caught:
        await client.sum(numbers(4, -1, 5))
    assert streams.is_stream_service_invalid_argument(caught.value) and caught.value.data == b"neg"
    assert next(s for s in service.stats() if s.name == "sum").num_errors == 1
    await service.stop(1)


async def test_chat_echoes_and_says_bye_or_fails_midway(nc: Client) -> None:
    service = await streams.register_stream_service(nc, StreamService())
    client = streams.StreamServiceClient(nc)
    said = [streams_pb2.ChatMessage(text=text) for text in ("hi", "there")]
    async with await client.chat(said) as replies:
        assert [r.text async for r in replies] == ["echo: hi", "echo: there", "bye"]
    got: list[str] = []
    with pytest.raises(streams.StreamServiceError) as caught:
        async for reply in await client.chat([streams_pb2.ChatMessage(text=t) for t in ("a", "fail", "b")]):
            got.append(reply.text)
    assert got == ["echo: a"] and isinstance(caught.value, streams.StreamServiceTooManyError)
    assert (caught.value.message, caught.value.data) == ("one too many", b"chat")
    await service.stop(1)


async def test_cancelling_a_sum_or_leaving_a_chat_stops_the_handler(nc: Client) -> None:
    handler = StreamService()
    service = await streams.register_stream_service(nc, handler)
    client = streams.StreamServiceClient(nc)
    call = asyncio.get_running_loop().create_task(client.sum(numbers(*range(1000), delay=0.02)))
    while handler.summed < 3:
        await asyncio.sleep(0.01)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.wait_for(handler.cancelled.wait(), 1)

    handler.cancelled.clear()

    async def endless() -> AsyncIterator[streams_pb2.ChatMessage]:
        while True:
            yield streams_pb2.ChatMessage(text="again")
            await asyncio.sleep(0.01)

    async with await client.chat(endless()) as replies:
        async for _ in replies:
            break
    await asyncio.wait_for(handler.cancelled.wait(), 1)
    await service.stop(1)


async def test_sum_is_held_to_the_servers_window_by_a_slow_handler(nc: Client) -> None:
    received = 0

    class SlowSum(StreamService):
        async def sum(self, requests: AsyncIterator[streams_pb2.Number], ctx: rt.RequestContext) -> streams_pb2.SumResponse:
            nonlocal received
            async for _ in requests:
                received += 1
                await asyncio.sleep(0.005)
            return streams_pb2.SumResponse(count=received)

    service = await streams.register_stream_service(nc, SlowSum())
    client = streams.StreamServiceClient(nc)
    sent, ahead = 0, 0

    async def counted() -> AsyncIterator[streams_pb2.Number]:
        nonlocal sent, ahead
        for value in range(150):
            ahead = max(ahead, sent - received)
            sent += 1
            yield streams_pb2.Number(value=value)

    assert (await client.sum(counted())).message.count == 150
    # Sum sets no max_inflight: the server offers the default window of 64 (PROTOCOL §9.4),
    # and the caller runs that far ahead of the slow handler, never further.
    assert rt.DEFAULT_WINDOW // 2 <= ahead <= rt.DEFAULT_WINDOW + 1
    await service.stop(1)
