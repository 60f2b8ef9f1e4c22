"""The generated Python contender's server (``bench/src/external.rs``): the
generated EchoService, echoing the payload back.

usage: server.py NATS_URL   (prints "ready" once serving; stops when stdin
closes; the generated code must be on PYTHONPATH)
"""

from __future__ import annotations

import asyncio
import sys

import nats
import nats_micro_runtime
from bench.v1 import echo_nats_pb2, echo_pb2


class Echo:
    """An ``echo_nats_pb2.EchoServiceHandler`` that sends the payload back."""

    async def echo(self, request: echo_pb2.EchoRequest, ctx: nats_micro_runtime.RequestContext) -> echo_pb2.EchoResponse:
        return echo_pb2.EchoResponse(payload=request.payload)


async def main(url: str) -> None:
    nc = await nats.connect(url)
    service = await echo_nats_pb2.register_echo_service(nc, Echo())
    await nc.flush()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await service.stop()
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
