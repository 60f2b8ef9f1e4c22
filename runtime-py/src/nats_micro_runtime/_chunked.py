"""Chunked transfer (PROTOCOL §12.5): one payload larger than ``max_payload``
carried over a client-streaming (upload) or server-streaming (download) RPC
whose streamed message has one ``bytes`` field. The sender's end carries the
payload's size and SHA-256; the receiver checks them (``DATA_LOSS`` on a
mismatch). Every helper reads and writes in chunks, never the whole payload.

The client side lives on :class:`Client` (``send_chunks`` and
``receive_chunks``, which generated clients wrap as ``<method>_send_bytes``,
``<method>_receive_to_file``, ...); the server side is :class:`ChunkReader`
for an upload handler and :func:`chunk_stream` for a download handler.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import inspect
import math
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast, runtime_checkable

from google.protobuf.message import Message

from ._codec import encode_message
from ._errors import DataLossError, InvalidArgumentError
from ._typevars import MessageT

CHUNKED_SIZE_HEADER = "Nats-Micro-Chunked-Size"
"""On the sender's end: the payload's size in bytes."""
CHUNKED_DIGEST_HEADER = "Nats-Micro-Chunked-Digest"
"""On the sender's end: ``sha-256=<base64 of the payload's SHA-256>`` (standard alphabet, padded)."""
DEFAULT_CHUNK_SIZE = 64 * 1024
"""Bytes per chunk when neither the proto nor the transfer sets a size (the Go plugin's)."""
MAX_CHUNK_SIZE = 64 * 1024 * 1024
"""The largest chunk: NATS's own ceiling on ``max_payload``."""
_DIGEST_PREFIX = "sha-256="
_DATA_HEADER_ROOM = 64
"""What a data message's header block takes beside its body: ``NATS/1.0``, ``Nats-Stream-Seq``, CRLFs."""


@runtime_checkable
class AsyncReader(Protocol):
    """What an upload can read from: ``read(n)`` returning up to ``n`` bytes,
    ``b""`` at the end, awaitable (``asyncio.StreamReader``) or not (a file)."""

    def read(self, n: int = -1, /) -> Awaitable[bytes] | bytes: ...


class ByteWriter(Protocol):
    """What a download can write to: ``write(data)``, awaitable or not (a
    file, ``asyncio.StreamWriter``, whose ``drain()`` is then awaited)."""

    def write(self, data: bytes, /) -> object: ...


ByteSource = bytes | bytearray | memoryview | AsyncReader | AsyncIterable[bytes] | Iterable[bytes]
"""A payload to send: bytes, a reader (``read(n)``, async or not), or an
(async) iterable of byte strings of any sizes, cut into chunks as it is read."""


@dataclass(frozen=True)
class ChunkedTransfer:
    """A finished transfer: the payload's size and SHA-256 (hex) as this side
    counted them, whether the peer's size and digest were there to check
    (a Go-plugin peer sends neither: order and completeness only), and the
    headers of the sender's end."""

    size: int
    sha256: str
    digest_verified: bool
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChunkedBytes(ChunkedTransfer):
    """A finished download into memory: :class:`ChunkedTransfer` and the payload."""

    data: bytes = b""


class _Digest:
    """Size and SHA-256 of the bytes seen so far."""

    def __init__(self) -> None:
        self.size = 0
        self._sha = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self.size += len(data)
        self._sha.update(data)

    def digest(self) -> bytes:
        return self._sha.digest()

    def trailers(self) -> dict[str, str]:
        """The end headers of a sender (PROTOCOL §12.5)."""
        return {
            CHUNKED_SIZE_HEADER: str(self.size),
            CHUNKED_DIGEST_HEADER: _DIGEST_PREFIX + base64.b64encode(self.digest()).decode(),
        }

    def verify(self, headers: Mapping[str, str], method: str | None) -> ChunkedTransfer:
        """Checks the sender's size and digest in ``headers`` against what was
        received: ``DATA_LOSS`` on a mismatch or a malformed value; without
        either header (a Go-plugin sender), the transfer is not verified."""
        size, digest = headers.get(CHUNKED_SIZE_HEADER), headers.get(CHUNKED_DIGEST_HEADER)
        if size is not None:
            if not (size.isascii() and size.isdigit() and len(size) <= 20):
                raise DataLossError(method, f"the chunked transfer's {CHUNKED_SIZE_HEADER} {size!r} is not a size")
            if int(size) != self.size:
                raise DataLossError(method, f"the chunked transfer sent {size} bytes but {self.size} arrived")
        if digest is not None:
            expected = _parse_digest(digest)
            if expected is None:
                raise DataLossError(method, f"the chunked transfer's {CHUNKED_DIGEST_HEADER} {digest!r} is not a SHA-256")
            if expected != self.digest():
                raise DataLossError(method, "the chunked transfer's SHA-256 digest does not match what arrived")
        return ChunkedTransfer(self.size, self.digest().hex(), digest is not None, dict(headers))


def _parse_digest(value: str) -> bytes | None:
    """The SHA-256 in a ``sha-256=<base64>`` value, or ``None``."""
    if not value[: len(_DIGEST_PREFIX)].lower() == _DIGEST_PREFIX:
        return None
    try:
        raw = base64.b64decode(value[len(_DIGEST_PREFIX) :].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def _varint_size(value: int) -> int:
    return max(1, math.ceil(value.bit_length() / 7))


def chunk_field(message_type: type[Message]) -> str:
    """The one field of a chunked stream's message."""
    fields = message_type.DESCRIPTOR.fields
    if len(fields) != 1:
        raise TypeError(f"{message_type.DESCRIPTOR.full_name} is not a chunk message (one bytes field)")
    name: str = fields[0].name
    return name


def check_chunk_size(
    chunk_size: int, message_type: type[Message], use_json: bool, max_payload: int, method: str | None
) -> None:
    """Fails with ``INVALID_ARGUMENT``, before anything is sent, when a chunk
    of ``chunk_size`` bytes would not fit the connection's ``max_payload`` as
    a stream data message (its encoded body and stream headers)."""
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise InvalidArgumentError(method, f"chunk size {chunk_size} is not between 1 B and 64 MiB")
    if max_payload <= 0:
        return
    probe = message_type()
    setattr(probe, chunk_field(message_type), b"\x00")
    one = len(encode_message(probe, use_json))
    if use_json:  # one byte is "AA==" in base64
        body = one - 4 + 4 * math.ceil(chunk_size / 3)
    else:  # tag, length 1, one byte
        body = one - 2 + _varint_size(chunk_size) + chunk_size
    if body + _DATA_HEADER_ROOM > max_payload:
        raise InvalidArgumentError(
            method,
            f"a chunk of {chunk_size} bytes takes {body + _DATA_HEADER_ROOM} bytes on the wire, "
            f"over the connection's max_payload of {max_payload}: use a smaller chunk size",
        )


async def chunks_of(source: ByteSource, chunk_size: int) -> AsyncIterator[bytes]:
    """``source`` cut into pieces of ``chunk_size`` bytes (the last one
    shorter), holding at most one chunk and one piece of the source at a time:
    ``[b"abc", b"defg"]`` in chunks of 3 gives ``b"abc"``, ``b"def"``, ``b"g"``.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source).cast("B")
        for start in range(0, len(view), chunk_size):
            yield bytes(view[start : start + chunk_size])
        return
    buffer = bytearray()
    if _is_reader(source):
        reader: Any = source
        while True:
            read = reader.read(chunk_size - len(buffer))
            data = await read if inspect.isawaitable(read) else read
            if not data:
                break
            buffer += data
            if len(buffer) >= chunk_size:
                yield bytes(buffer)
                buffer.clear()
    elif isinstance(source, AsyncIterable):
        async for piece in source:
            buffer += piece
            while len(buffer) >= chunk_size:
                yield bytes(buffer[:chunk_size])
                del buffer[:chunk_size]
    else:
        for piece in cast(Iterable[bytes], source):
            buffer += piece
            while len(buffer) >= chunk_size:
                yield bytes(buffer[:chunk_size])
                del buffer[:chunk_size]
    if buffer:
        yield bytes(buffer)


def _is_reader(source: object) -> bool:
    """A reader takes precedence over iteration (a file iterates by lines)."""
    return callable(getattr(source, "read", None))


async def write_to(writer: ByteWriter, data: bytes) -> None:
    """Writes ``data``, awaiting the write or the writer's ``drain()`` when they are coroutines."""
    written = writer.write(data)
    if inspect.isawaitable(written):
        await written
    drain = getattr(writer, "drain", None)
    if drain is not None:
        drained = drain()
        if inspect.isawaitable(drained):
            await drained


class ChunkReader:
    """An upload handler's request stream as bytes (PROTOCOL §12.5): iterate
    over the chunks (``async for data in reader``) or :meth:`read` them; once
    the caller's end arrived, its size and digest are checked, and a
    mismatch raises ``DATA_LOSS`` (which, uncaught, ends the call with it).
    Nothing is buffered beyond one chunk::

        async def upload(self, requests, ctx):
            reader = rt.ChunkReader(requests)
            digest = hashlib.sha256()
            async for data in reader:
                digest.update(data)
            return UploadResult(size=reader.result.size, sha256=digest.hexdigest())
    """

    def __init__(self, requests: AsyncIterator[Message], method: str | None = None) -> None:
        self._requests = requests
        self._method = method or getattr(requests, "method", None)
        self._digest = _Digest()
        self._pending = b""
        self._done = False
        self.result: ChunkedTransfer | None = None
        """The finished transfer (size, digest, whether it was verified), once the end was read."""

    def __aiter__(self) -> ChunkReader:
        return self

    async def __anext__(self) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        if self._done:
            raise StopAsyncIteration
        try:
            message = await self._requests.__anext__()
        except StopAsyncIteration:
            self._done = True
            trailers: Mapping[str, str] = getattr(self._requests, "trailers", {})
            self.result = self._digest.verify(trailers, self._method)
            raise
        data = bytes(getattr(message, chunk_field(type(message))))
        self._digest.update(data)
        return data

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (``-1``: the rest, which buffers it all); ``b""`` at the verified end."""
        if n < 0:
            return b"".join([data async for data in self])
        while not self._pending and not self._done:
            try:
                self._pending = await self.__anext__()
            except StopAsyncIteration:
                break
        data, self._pending = self._pending[:n], self._pending[n:]
        return data


async def chunk_stream(
    ctx: Any, source: ByteSource, message_type: type[MessageT], *, chunk_size: int | None = None
) -> AsyncIterator[MessageT]:
    """A download handler's response stream (PROTOCOL §12.5): ``source`` cut
    into chunk messages of ``chunk_size`` bytes (the proto's
    ``default_chunk_size`` by default), with the payload's size and digest
    set on the stream's end. A chunk that would not fit the connection's
    ``max_payload`` fails with ``INVALID_ARGUMENT`` before anything is sent::

        def download(self, request, ctx):
            return rt.chunk_stream(ctx, open("report.bin", "rb"), Chunk)
    """
    default_size, max_payload, use_json = ctx._chunking or (DEFAULT_CHUNK_SIZE, 0, False)
    size = chunk_size if chunk_size is not None else default_size
    check_chunk_size(size, message_type, use_json, max_payload, ctx.method)
    name = chunk_field(message_type)
    digest = _Digest()
    async for data in chunks_of(source, size):
        digest.update(data)
        message = message_type()
        setattr(message, name, data)
        yield message
    ctx.response_headers.update(digest.trailers())
