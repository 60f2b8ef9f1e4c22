"""Runs the cross-language stream scenario against whichever StreamService
serves ``proto/streams/v1`` on ``$NATS_URL`` (the twin of
tests/src/bin/streams_client.rs, with the same seven checks): one line
``ok NAME`` per check; on the first mismatch ``FAIL NAME: ...`` and exit
status 1.

usage: NATS_URL=nats://... python streams_client.py
(with the generated ``streams.v1`` modules and the runtime on PYTHONPATH).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import nats
import nats_micro_runtime as rt
from streams.v1 import streams_nats_pb2 as streams
from streams.v1 import streams_pb2


def check(name: str, ok: bool, detail: object) -> None:
    if ok:
        print(f"ok {name}", flush=True)
    else:
        print(f"FAIL {name}: {detail!r}", flush=True)
        sys.exit(1)


async def outcome(stream: rt.ResponseStream[streams_pb2.Number], reads: int) -> tuple[list[int], rt.NatsMicroError | None]:
    """Up to ``reads`` values of ``stream``, and the error that ended it."""
    values: list[int] = []
    try:
        async with stream:
            while len(values) < reads:
                values.append((await stream.__anext__()).value)
    except rt.NatsMicroError as err:
        return values, err
    except StopAsyncIteration:
        pass
    return values, None


async def main() -> None:
    nc = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    client = streams.StreamServiceClient(nc)

    # snippet: python-stream-client
    numbers = await client.count_up(streams_pb2.CountUpRequest(start=1, count=5))
    values = [number.value async for number in numbers]
    total, _ = await client.sum(streams_pb2.Number(value=value) for value in range(1, 11))
    said = [streams_pb2.ChatMessage(text=text) for text in ("hi", "there")]
    replies = [reply.text async for reply in await client.chat(said)]
    # end snippet
    check("count_up 1..5", values == [1, 2, 3, 4, 5], values)
    check("sum 1..10", (total.total, total.count) == (55, 10), (total.total, total.count))
    check("chat echo and bye", replies == ["echo: hi", "echo: there", "bye"], replies)

    got, error = await outcome(await client.count_up(streams_pb2.CountUpRequest(count=20_000)), 1)
    ok = not got and streams.is_stream_service_too_many(error) and error is not None and error.data == b"20000"
    check("count_up TOO_MANY with data", ok, (got, error))

    got, error = await outcome(await client.count_up(streams_pb2.CountUpRequest(count=10, fail_after=2)), 3)
    ok = got == [0, 1] and streams.is_stream_service_failed_precondition(error)
    check("count_up FAILED_PRECONDITION after 2", ok, (got, error))

    async def negative() -> AsyncIterator[streams_pb2.Number]:
        for value in (4, -1):
            yield streams_pb2.Number(value=value)

    try:
        result = await client.sum(negative())
        check("sum negative INVALID_ARGUMENT", False, result)
    except rt.NatsMicroError as err:
        check("sum negative INVALID_ARGUMENT", streams.is_stream_service_invalid_argument(err), err)

    # Leaving a stream early cancels it: the server's handler stops early.
    async def stopped_early() -> int:
        return int((await client.ping(streams_pb2.ChatMessage(text="stopped early?"))).message.text)

    before = await stopped_early()
    async with await client.count_up(streams_pb2.CountUpRequest(count=10_000, delay_ms=10)) as numbers:
        await numbers.__anext__()
    after, give_up = before, asyncio.get_running_loop().time() + 3
    while after == before and asyncio.get_running_loop().time() < give_up:
        await asyncio.sleep(0.02)
        after = await stopped_early()
    check("cancel stops the CountUp handler", after == before + 1, (before, after))
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
