"""The Python contenders' server (``bench/src/external.rs``): the generated
EchoService, echoing the payload back; or, with ``raw``, a plain nats-py
responder that sends each request's bytes back (the floor).

usage: server.py NATS_URL [raw]   (prints "ready" once serving; stops when
stdin closes; the generated code must be on PYTHONPATH)
"""

from __future__ import annotations

import asyncio
import sys

import nats
from nats.aio.msg import Msg
import nats_micro_runtime
from bench.v1 import echo_nats_pb2, echo_pb2

RAW_SUBJECT = "bench.raw_py.echo"
"""The raw responder's subject (load.py sends to it)."""


class Echo:
    """An ``echo_nats_pb2.EchoServiceHandler`` that sends the payload back."""

    async def echo(self, request: echo_pb2.EchoRequest, ctx: nats_micro_runtime.RequestContext) -> echo_pb2.EchoResponse:
        return echo_pb2.EchoResponse(payload=request.payload)


async def main(url: str, raw: bool) -> None:
    nc = await nats.connect(url)
    if raw:

        async def respond(msg: Msg) -> None:
            await nc.publish(msg.reply, msg.data)

        subscription = await nc.subscribe(RAW_SUBJECT, cb=respond)
        stop = subscription.unsubscribe
    else:
        service = await echo_nats_pb2.register_echo_service(nc, Echo())
        stop = service.stop
    await nc.flush()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await stop()
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:3] == ["raw"]))
