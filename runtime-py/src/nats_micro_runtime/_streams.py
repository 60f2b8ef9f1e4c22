"""The stream wire's bookkeeping (PROTOCOL §9), independent of NATS: header
names, the number format of sequence and credit headers, the sender's credit
(§9.4), the receiver's order, loss and window checks (§9.3, §9.6) and the
framing of batches (§9.9).

The server and client stream machinery build on these; keeping them apart
from the connection lets every rule be tested without a nats-server.
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

REPLY_TO_HEADER = "Reply-To"
INBOX_HEADER = "Nats-Stream-Inbox"
SEQ_HEADER = "Nats-Stream-Seq"
END_HEADER = "Nats-Stream-End"
CREDIT_HEADER = "Nats-Stream-Credit"
CANCEL_HEADER = "Nats-Stream-Cancel"
BATCH_HEADER = "Nats-Stream-Batch"
"""``true`` on an open or ack: that side accepts batches; on data: the batch's message count (§9.9)."""
ERROR_CODE_HEADER = "Nats-Service-Error-Code"
"""Header carrying the error code of an error reply or a failed stream's end (``404``, ``ORDER_EXPIRED``)."""
ERROR_MESSAGE_HEADER = "Nats-Service-Error"
"""Header carrying the human-readable message of an error reply or a failed stream's end."""

DEFAULT_WINDOW = 64
"""Messages a receiver accepts ahead when ``max_inflight`` is not set (§9.4)."""
UNCONTROLLED_BUFFER = 256
"""Messages from a peer without flow control (a Go-plugin caller) buffered
before the reader stops taking more and the NATS subscription's own pending
limits take over."""
DEFAULT_KEEPALIVE_INTERVAL = 5.0
"""Seconds without sending before a keepalive goes out (§9.5)."""
DEFAULT_PEER_TIMEOUT = 20.0
"""Seconds of silence from a peer with credit after which it is gone (§9.5)."""
MAX_STREAM_NUMBER = 2**31 - 1
MAX_BATCH_BYTES = 64 * 1024
"""The largest batch body a sender makes (§9.9): a receiver's memory stays
bounded by its window of small messages."""
BATCH_HEADER_ROOM = 72
"""The most a batch's header block takes beside its body: ``NATS/1.0``,
``Nats-Stream-Seq`` and ``Nats-Stream-Batch`` of 10 digits each, CRLFs."""

_STREAM_NUMBER = re.compile(r"[0-9]{1,10}", re.ASCII)


class StreamProtocolError(Exception):
    """A peer broke the stream wire; ``code`` is the canonical code the stream
    fails with (§9.6)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_stream_number(name: str, value: str) -> int:
    """A ``Nats-Stream-Seq`` or ``Nats-Stream-Credit`` value: 1 to 10 ASCII
    digits, at most 2^31 − 1. Anything else is ``INVALID_ARGUMENT``."""
    if not _STREAM_NUMBER.fullmatch(value) or int(value) > MAX_STREAM_NUMBER:
        raise StreamProtocolError("INVALID_ARGUMENT", f"invalid {name} header {value!r}")
    return int(value)


def header_number(headers: Mapping[str, str] | None, name: str) -> int | None:
    """The parsed number in header ``name``, ``None`` when it is absent."""
    if headers is None or name not in headers:
        return None
    return parse_stream_number(name, headers[name])


def header_flag(headers: Mapping[str, str] | None, name: str) -> bool:
    """Whether ``name`` is set to ``true`` (End, Cancel)."""
    return headers is not None and headers.get(name, "").strip().lower() == "true"


def announces_batches(headers: Mapping[str, str] | None) -> bool:
    """Whether an open or an ack announces batches: ``Nats-Stream-Batch``
    exactly ``true`` (any other value means none, §9.9)."""
    return headers is not None and headers.get(BATCH_HEADER) == "true"


class FrameKind(enum.Enum):
    """What one message on a stream inbox means (§9.1–§9.3)."""

    ACK = "ack"
    """The server accepted the open: ``inbox`` and ``number`` (its window, ``None`` without flow control)."""
    DATA = "data"
    """One message of the peer's direction, sequence number ``number``."""
    END = "end"
    """The peer's direction is finished; ``body`` and ``headers`` are its result and trailers."""
    ERROR = "error"
    """The stream's error (error headers, with or without ``Nats-Stream-End``)."""
    BATCH = "batch"
    """Several messages of the peer's direction (§9.9): ``number`` is the first
    one's sequence number, ``count`` how many, ``body`` their framed encodings."""
    CREDIT = "credit"
    """More credit for our direction, ``number`` messages (``0``: a keepalive)."""
    CANCEL = "cancel"
    """The caller abandons the stream."""
    PLAIN = "plain"
    """No stream header: a Go-plugin server's client-streaming result, else ignored."""


@dataclass(frozen=True)
class Frame:
    """One classified stream message."""

    kind: FrameKind
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    number: int | None = None
    inbox: str = ""
    count: int = 1
    """Messages a data frame holds: more than one in a batch."""


def classify(headers: Mapping[str, str] | None, body: bytes) -> Frame:
    """Classifies one message on a stream inbox, in the order every runtime
    reads them: error headers first, then data (a batch when it has a count),
    end, ack, credit, cancel. A sequence, count or credit header that does not
    parse raises :class:`StreamProtocolError` (``INVALID_ARGUMENT``)."""
    if not headers:
        return Frame(FrameKind.PLAIN, body, {})
    if ERROR_CODE_HEADER in headers or ERROR_MESSAGE_HEADER in headers:
        return Frame(FrameKind.ERROR, body, headers)
    if SEQ_HEADER in headers and END_HEADER not in headers:
        seq = parse_stream_number(SEQ_HEADER, headers[SEQ_HEADER])
        if BATCH_HEADER in headers:
            return Frame(FrameKind.BATCH, body, headers, seq, count=_batch_count(headers[BATCH_HEADER]))
        return Frame(FrameKind.DATA, body, headers, seq)
    if header_flag(headers, END_HEADER):
        return Frame(FrameKind.END, body, headers)
    credit = header_number(headers, CREDIT_HEADER)
    if INBOX_HEADER in headers:
        return Frame(FrameKind.ACK, body, headers, credit, headers[INBOX_HEADER])
    if credit is not None:
        return Frame(FrameKind.CREDIT, body, headers, credit)
    if header_flag(headers, CANCEL_HEADER):
        return Frame(FrameKind.CANCEL, body, headers)
    return Frame(FrameKind.PLAIN, body, headers)


def _batch_count(value: str) -> int:
    count = parse_stream_number(BATCH_HEADER, value)
    if count == 0:
        raise StreamProtocolError("INVALID_ARGUMENT", "a stream batch of 0 messages")
    return count


_ONE_BYTE_VARINTS = [bytes((n,)) for n in range(0x80)]


def encode_varint(value: int) -> bytes:
    """``value`` (0 to 2^32 − 1) as an unsigned base-128 varint, the length
    prefix of a batch's messages (§9.9).

    >>> encode_varint(5), encode_varint(300)
    (b'\\x05', b'\\xac\\x02')
    """
    if value < 0x80:
        return _ONE_BYTE_VARINTS[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def split_batch(body: bytes, count: int) -> list[bytes]:
    """The ``count`` encoded messages of a batch's body (§9.9). A body that
    ends inside a length or a message, whose length prefix is longer than 5
    bytes, or that holds more or fewer messages than ``count``, raises
    :class:`StreamProtocolError` (``INVALID_ARGUMENT``)."""
    messages: list[bytes] = []
    at, end = 0, len(body)
    while at < end:
        if len(messages) == count:
            raise StreamProtocolError("INVALID_ARGUMENT", f"a stream batch holds more than its {count} messages")
        length = body[at]
        if length < 0x80:  # most messages of a batch are small: a one-byte length
            at += 1
        else:
            length, at = _read_varint(body, at)
        if at + length > end:
            raise StreamProtocolError("INVALID_ARGUMENT", "a stream batch ends inside a message")
        messages.append(body[at : at + length])
        at += length
    if len(messages) != count:
        raise StreamProtocolError("INVALID_ARGUMENT", f"a stream batch holds {len(messages)} of its {count} messages")
    return messages


def _read_varint(body: bytes, at: int) -> tuple[int, int]:
    """The varint at ``at`` and where what follows it starts."""
    value = shift = 0
    end = len(body)
    for index in range(at, at + 5):
        if index == end:
            raise StreamProtocolError("INVALID_ARGUMENT", "a stream batch ends inside a length")
        byte = body[index]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, index + 1
        shift += 7
    raise StreamProtocolError("INVALID_ARGUMENT", "a stream batch has a length longer than 5 bytes")


class SendCredit:
    """What a sender may still send (§9.4). ``None`` as the announced credit
    means a peer without flow control: sending never waits. Otherwise
    :meth:`acquire` waits until the peer grants more."""

    def __init__(self, announced: int | None) -> None:
        self._limited = announced is not None
        self._available = announced or 0
        self._granted = asyncio.Event()

    @property
    def limited(self) -> bool:
        """Whether the peer announced credit (has flow control)."""
        return self._limited

    @property
    def available(self) -> int:
        """Data messages that may be sent now without waiting."""
        return self._available

    def take(self) -> bool:
        """Takes one message's credit if there is one now (always with a
        peer without flow control); ``False``: :meth:`acquire` would wait."""
        if not self._limited:
            return True
        if self._available == 0:
            return False
        self._available -= 1
        return True

    def grant(self, more: int) -> None:
        """Adds a peer's credit grant (``0`` is a keepalive and adds nothing)."""
        if more > 0:
            self._available += more
            self._granted.set()

    async def acquire(self) -> None:
        """Takes one message's credit, waiting while there is none."""
        if not self._limited:
            return
        while self._available == 0:
            self._granted.clear()
            await self._granted.wait()
        self._available -= 1


@dataclass
class ReceiveWindow:
    """The receiving side of one direction: checks each data message's
    sequence number against the next expected one (``DATA_LOSS``) and against
    the credit granted (``RESOURCE_EXHAUSTED``), and says when to grant more
    credit: once half the window was consumed, what was consumed (§9.4).
    ``window`` ``None`` means no flow control was offered (a Go-plugin peer)."""

    window: int | None
    _next_seq: int = 1
    _outstanding: int = 0
    _consumed: int = 0

    def __post_init__(self) -> None:
        self._outstanding = self.window or 0

    def received(self, seq: int, count: int = 1) -> None:
        """Accepts data message ``seq``, or the ``count`` messages from ``seq``
        on of a batch (§9.9), or raises the §9.6 failure."""
        if seq != self._next_seq:
            raise StreamProtocolError("DATA_LOSS", f"expected stream message {self._next_seq}, got {seq}")
        if self.window is not None:
            if self._outstanding < count:
                what = f"stream message {seq}" if count == 1 else f"stream messages {seq} to {seq + count - 1}"
                raise StreamProtocolError("RESOURCE_EXHAUSTED", f"{what} beyond the granted credit")
            self._outstanding -= count
        self._next_seq += count

    def consumed(self) -> int:
        """Records that the application took one message; returns the credit
        to grant now (``0``: none yet)."""
        if self.window is None:
            return 0
        self._consumed += 1
        if self._consumed * 2 < self.window:
            return 0
        grant, self._consumed = self._consumed, 0
        self._outstanding += grant
        return grant


@dataclass(frozen=True)
class StreamTimings:
    """Keepalive interval and peer timeout in seconds (§9.5); tests shorten them."""

    keepalive_interval: float = DEFAULT_KEEPALIVE_INTERVAL
    peer_timeout: float = DEFAULT_PEER_TIMEOUT


class Liveness:
    """One side's keepalive duty and its view of the peer (§9.5): records when
    it last sent to and heard from the peer; :meth:`watch` sends a keepalive
    after ``keepalive_interval`` without sending and calls ``gone`` once the
    peer was silent for ``peer_timeout``."""

    def __init__(self, timings: StreamTimings) -> None:
        self._timings = timings
        now = asyncio.get_running_loop().time()
        self._last_sent = now
        self._last_heard = now

    def sent(self) -> None:
        """Something went to the peer."""
        self._last_sent = asyncio.get_running_loop().time()

    def heard(self) -> None:
        """Something came from the peer."""
        self._last_heard = asyncio.get_running_loop().time()

    def peer_deadline(self) -> float:
        """When the peer counts as gone unless it is heard from first (loop time)."""
        return self._last_heard + self._timings.peer_timeout

    async def watch(self, keepalive: Callable[[], Awaitable[None]], gone: Callable[[], None]) -> None:
        """Runs until cancelled or until the peer is gone."""
        loop = asyncio.get_running_loop()
        tick = min(self._timings.keepalive_interval, self._timings.peer_timeout) / 4
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            if now - self._last_heard >= self._timings.peer_timeout:
                gone()
                return
            if now - self._last_sent >= self._timings.keepalive_interval:
                self.sent()
                await keepalive()
