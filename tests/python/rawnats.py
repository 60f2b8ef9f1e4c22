"""A raw NATS client on an asyncio TCP socket, for what nats-py will not
send: arbitrary header blocks (``HPUB``), duplicated headers, any reply
subject."""

from __future__ import annotations

import asyncio
from urllib.parse import urlparse


class RawClient:
    """Speaks just enough of the protocol to publish anything."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(cls, url: str, user: str | None = None, password: str | None = None) -> RawClient:
        parsed = urlparse(url)
        reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
        await reader.readline()  # INFO
        auth = f',"user":"{user}","pass":"{password}"' if user else ""
        connect = f'CONNECT {{"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1{auth}}}\r\n'
        writer.write(connect.encode())
        client = cls(reader, writer)
        await client.ping()
        return client

    async def ping(self) -> None:
        """Round trip: everything sent before has been processed by the server."""
        self._writer.write(b"PING\r\n")
        await self._writer.drain()
        while (line := await self._reader.readline()) != b"PONG\r\n":
            assert line and not line.startswith(b"-ERR"), line

    async def hpub(self, subject: str, reply: str, header_block: bytes, payload: bytes = b"") -> None:
        """``HPUB subject reply hdr_len total_len``: the header block sent as is."""
        total = len(header_block) + len(payload)
        self._writer.write(f"HPUB {subject} {reply} {len(header_block)} {total}\r\n".encode() + header_block + payload + b"\r\n")
        await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()
