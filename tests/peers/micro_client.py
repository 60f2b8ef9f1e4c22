"""An independent client: calls a Rust-served api.v1.create_order with nats-py
and prints, per code asked for, what it reads off the wire as JSON lines:
{"want": ..., "code": ..., "message": ..., "data": ...}.

usage: micro_client.py NATS_URL CODE [CODE ...]
"""

import asyncio
import json
import sys

import nats


async def main(url: str, codes: list[str]) -> None:
    nc = await nats.connect(url)
    for want in codes:
        reply = await nc.request("api.v1.create_order", b"", timeout=5, headers={"X-Want-Code": want})
        headers = reply.headers or {}
        print(json.dumps({
            "want": want,
            "code": headers.get("Nats-Service-Error-Code"),
            "message": headers.get("Nats-Service-Error"),
            "data": reply.data.decode(),
        }), flush=True)
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
