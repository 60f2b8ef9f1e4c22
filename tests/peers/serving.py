"""What every server of ``tests/peers`` does around its services: say
``ready`` (the harness waits for that line), serve until SIGTERM or SIGINT,
then stop its services (draining for at most two seconds each)."""

from __future__ import annotations

import asyncio
import signal

import nats_micro_runtime as rt


async def serve_until_signalled(*services: rt.Service) -> None:
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for service in services:
        await service.stop(2)
