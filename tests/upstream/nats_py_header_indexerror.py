"""Minimal reproduction for an upstream nats-py report (nats-py 2.16.0).

A message whose header block is the 5 bytes ``NATS/`` (which nats-server
forwards unchanged from an ``HPUB``) makes ``Client._process_headers`` raise
``IndexError`` (``raw_headers[0]`` on an empty slice) on the connection's
read loop; the loop ends and the subscriber never receives another message
although the connection still reports itself connected.

Run: ``python tests/upstream/nats_py_header_indexerror.py nats://127.0.0.1:4222``
(prints ``BROKEN`` with nats-py 2.16.0). nats_micro_runtime contains this
(see ``nats_micro_runtime/_guard.py``); this script uses plain nats-py only.
"""

from __future__ import annotations

import asyncio
import sys
from urllib.parse import urlparse

import nats
import nats.aio.msg


async def main(url: str) -> None:
    nc = await nats.connect(url)
    received: list[bytes] = []

    async def on_message(msg: nats.aio.msg.Msg) -> None:
        received.append(msg.data)

    await nc.subscribe("repro", cb=on_message)
    await nc.flush()

    parsed = urlparse(url)
    reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
    await reader.readline()
    writer.write(b'CONNECT {"verbose":false,"headers":true,"protocol":1}\r\n')
    writer.write(b"HPUB repro 5 5\r\nNATS/\r\n")  # the malformed message
    writer.write(b"PUB repro 5\r\nafter\r\nPING\r\n")  # a normal one after it
    await writer.drain()
    await reader.readline()

    await asyncio.sleep(1)
    print("connected:", nc.is_connected, "received:", received)
    print("OK" if received == [b"after"] else "BROKEN")
    writer.close()
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"))
