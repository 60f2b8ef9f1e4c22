"""Serves ``chaos.v1.ChaosService`` (proto/chaos/v1/chaos.proto) with the
generated Python code, as the proto's comments fix it, for the resilience
tests (PROTOCOL §10; the twin of tests/src/bin/chaos_server.rs and
tests/ts/chaos_server.ts): Get, Put, Flaky, SetDown and Slow, at most 4
handlers at once per endpoint.

usage: NATS_URL=nats://a,nats://b python chaos_server.py
(with the generated ``chaos.v1`` modules and the runtime on PYTHONPATH).
Reconnects forever; prints ``ready`` once serving; on SIGTERM (or Ctrl-C)
stops and prints ``put-ids <ids>``, every Put it executed.
"""

from __future__ import annotations

import asyncio
import os
import sys

import nats
import nats_micro_runtime as rt
from serving import serve_until_signalled
from chaos.v1 import chaos_nats_pb2 as chaos
from chaos.v1 import chaos_pb2

MAX_CONCURRENCY = 4


class ChaosService:
    """The ChaosService as the proto documents it."""

    def __init__(self) -> None:
        self.put_ids: list[int] = []
        self.down = False
        self.flaky_calls = 0

    async def get(self, request: chaos_pb2.Ask, ctx: rt.RequestContext) -> chaos_pb2.Answer:
        return chaos_pb2.Answer(id=request.id, text=request.text)

    async def put(self, request: chaos_pb2.Ask, ctx: rt.RequestContext) -> chaos_pb2.Answer:
        self.put_ids.append(request.id)
        return chaos_pb2.Answer(id=request.id, text=request.text)

    async def flaky(self, request: chaos_pb2.Ask, ctx: rt.RequestContext) -> chaos_pb2.Answer:
        self.flaky_calls += 1
        if self.down:
            raise chaos.new_chaos_service_unavailable_error(ctx.method, "dependency down")
        return chaos_pb2.Answer(id=request.id, text=request.text)

    async def set_down(self, request: chaos_pb2.Down, ctx: rt.RequestContext) -> chaos_pb2.Calls:
        self.down = request.down
        return chaos_pb2.Calls(flaky_calls=self.flaky_calls)

    async def slow(self, request: chaos_pb2.Ask, ctx: rt.RequestContext) -> chaos_pb2.Answer:
        await asyncio.sleep(request.sleep_ms / 1000)
        return chaos_pb2.Answer(id=request.id, text=request.text)


async def report_error(error: Exception) -> None:
    """One line per connection error (nats-py would log a traceback for each failed reconnect)."""
    print(f"nats: {type(error).__name__}: {error}", file=sys.stderr, flush=True)


async def main() -> None:
    servers = [url.strip() for url in os.environ.get("NATS_URL", "nats://127.0.0.1:4222").split(",") if url.strip()]
    # Reconnect forever, and quickly: the tests restart a nats-server under load.
    nc = await nats.connect(servers=servers, max_reconnect_attempts=-1, reconnect_time_wait=0.1, error_cb=report_error)
    handler = ChaosService()
    service = await chaos.register_chaos_service(nc, handler, max_concurrency=MAX_CONCURRENCY)
    await nc.flush()
    await serve_until_signalled(service)
    print("put-ids " + ",".join(str(id) for id in handler.put_ids), flush=True)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
