"""A Python peer for the Rust tests (``tests/tests/py_interop.rs``): serves the
order service (``support.TestOrders``) and the project's JSON demo service
(``support.Echo``) with the generated Python code until stdin closes.

usage: serve.py NATS_URL   (prints "ready" once serving; the generated code
and tests/python must be on PYTHONPATH)
"""

from __future__ import annotations

import asyncio
import logging
import sys

import nats
from jsondemo.v1 import jsondemo_nats_pb2 as demo
from order.v1 import order_nats_pb2 as orders
from support import Echo, TestOrders


async def main(url: str) -> None:
    # The runtime logs the uncoded exceptions the tests provoke on purpose.
    logging.getLogger("nats_micro_runtime").disabled = True
    nc = await nats.connect(url)
    services = [
        await orders.register_order_service(nc, TestOrders()),
        await demo.register_json_service(nc, Echo()),
    ]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for service in services:
        await service.stop()
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
