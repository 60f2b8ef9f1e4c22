"""An independent ADR-32 peer: an order service written with nats-py's nats.micro.

It answers api.v1.create_order with the error code named in the request's
X-Want-Code header (string codes, custom codes included), or with an empty
(valid) CreateOrderResponse when the header is absent.

usage: micro_order_server.py NATS_URL   (prints "ready" once serving)
"""

import asyncio
import sys

import nats
from nats import micro


async def main(url: str) -> None:
    nc = await nats.connect(url)
    service = await micro.add_service(nc, name="py_orders", version="1.0.0", description="nats.micro peer")

    async def create_order(request: micro.Request) -> None:
        want = (request.headers or {}).get("X-Want-Code")
        if want:
            await request.respond_error(want, f"python says {want}", data=f"py:{want}".encode())
        else:
            await request.respond(b"")

    await service.add_endpoint(name="create_order", subject="api.v1.create_order", handler=create_order)
    await nc.flush()
    print("ready", flush=True)
    # Serve until the test closes our stdin.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await service.stop()
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
