"""Serves ``streams.v1.StreamService`` (proto/streams/v1/streams.proto) with
the generated Python code, as the proto's comments fix it, for the
cross-language stream tests (the twin of tests/src/bin/streams_server.rs and
tests/ts/streams_server.ts): CountUp, Sum, Chat and Ping.

usage: NATS_URL=nats://... python streams_server.py
(with the generated ``streams.v1`` modules and the runtime on PYTHONPATH).
Prints ``ready`` once serving; stops cleanly on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator

import nats
import nats_micro_runtime as rt
from serving import serve_until_signalled
from streams.v1 import streams_nats_pb2 as streams
from streams.v1 import streams_pb2

MAX_COUNT = 10_000
STOPPED_EARLY = "stopped early?"
"""The Ping text answered with how many CountUp calls stopped early (see the proto)."""


class StreamService:
    """The StreamService as the proto documents it."""

    def __init__(self) -> None:
        self.stopped_early = 0
        """CountUp calls that ended before their last number (the caller cancelled or went away)."""

    async def count_up(self, request: streams_pb2.CountUpRequest, ctx: rt.RequestContext) -> AsyncIterator[streams_pb2.Number]:
        if request.count > MAX_COUNT:
            raise streams.StreamServiceTooManyError(
                ctx.method, f"{request.count} numbers is over {MAX_COUNT}", str(request.count).encode()
            )
        finished = False
        try:
            for i in range(request.count):
                if request.fail_after > 0 and i == request.fail_after:
                    finished = True
                    raise streams.StreamServiceFailedPreconditionError(ctx.method, f"failing after {request.fail_after} numbers")
                if request.delay_ms > 0 and i > 0:
                    await asyncio.sleep(request.delay_ms / 1000)
                yield streams_pb2.Number(value=request.start + i)
            finished = True
        finally:
            if not finished:  # cancelled: the caller left, went silent or the deadline passed
                self.stopped_early += 1
        ctx.set_response_header("X-Counted", str(request.count))

    # snippet: python-stream-server
    async def sum(self, requests: AsyncIterator[streams_pb2.Number], ctx: rt.RequestContext) -> streams_pb2.SumResponse:
        total, count = 0, 0
        async for number in requests:
            if number.value < 0:
                raise streams.StreamServiceInvalidArgumentError(ctx.method, f"{number.value} is negative")
            total += number.value
            count += 1
        return streams_pb2.SumResponse(total=total, count=count)

    async def chat(
        self, requests: AsyncIterator[streams_pb2.ChatMessage], ctx: rt.RequestContext
    ) -> AsyncIterator[streams_pb2.ChatMessage]:
        async for message in requests:
            yield streams_pb2.ChatMessage(text=f"echo: {message.text}")
        yield streams_pb2.ChatMessage(text="bye")

    # end snippet

    async def ping(self, request: streams_pb2.ChatMessage, ctx: rt.RequestContext) -> streams_pb2.ChatMessage:
        if request.text == STOPPED_EARLY:
            return streams_pb2.ChatMessage(text=str(self.stopped_early))
        return request


async def main() -> None:
    # Failures the scenario provokes on purpose are not worth a log line here.
    logging.getLogger("nats_micro_runtime").setLevel(logging.CRITICAL)
    nc = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    service = await streams.register_stream_service(nc, StreamService())
    await serve_until_signalled(service)
    await nc.drain()


if __name__ == "__main__":
    asyncio.run(main())
