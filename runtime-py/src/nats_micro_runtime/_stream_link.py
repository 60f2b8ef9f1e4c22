"""Streams: one side's link to its peer (PROTOCOL §9), shared by the caller
and the server and by the three streaming kinds.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ._codes import INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE, UNKNOWN, code_from_wire
from ._errors import CancelledError, InternalError, NatsMicroError
from ._interceptor import Reply
from ._streams import (
    BATCH_HEADER,
    BATCH_HEADER_ROOM,
    CANCEL_HEADER,
    CREDIT_HEADER,
    ERROR_CODE_HEADER,
    ERROR_MESSAGE_HEADER,
    Frame,
    FrameKind,
    Liveness,
    MAX_BATCH_BYTES,
    ReceiveWindow,
    SEQ_HEADER,
    SendCredit,
    StreamProtocolError,
    StreamTimings,
    UNCONTROLLED_BUFFER,
    classify,
    encode_varint,
    split_batch,
)
from ._typevars import T

_log = logging.getLogger("nats_micro_runtime")


StreamErrors = Callable[[str, str, bytes, Mapping[str, str]], NatsMicroError]
"""Makes the exception a stream fails with from ``(code, message, data, headers)``:
the service's error classes on a client, the runtime's per-code classes on a server."""


@dataclass(frozen=True)
class _StreamEvent:
    """What the link passes on to the side that reads besides messages: the
    peer's end (body and trailers), or the stream's failure."""

    end: Reply | None = None
    error: BaseException | None = None


class _StreamLink(Generic[T]):
    """One side of a running stream, shared by the caller and the server and
    by the three streaming kinds (§9.3–§9.6).

    Sending: data messages to the peer's inbox under the peer's credit with
    their sequence numbers; credit grants, keepalives, the end and the cancel.
    To a peer that announced batches and credit, data messages are packed
    into batches (§9.9): see :meth:`send`.
    Reading (:meth:`on_message`, the callback of this side's inbox): each
    message is classified; data is checked (order, credit) and decoded, a
    batch split into its messages, then queued with the end for
    :meth:`receive`; credit from the peer is added.
    A protocol error, a cancel from the caller or a silent peer fails the
    link: the failure is queued for the reader and ``on_abort`` is called,
    once, so that the side stops its handler or its request pump."""

    def __init__(
        self,
        nc: NatsClient,
        method: str,
        peer_inbox: str | None,
        peer_window: int | None,
        window: int | None,
        decode: Callable[[bytes], T],
        errors: StreamErrors,
        timings: StreamTimings,
        on_abort: Callable[[NatsMicroError], None],
        *,
        plain_is_result: bool = False,
        takes_batches: bool = False,
        peer_takes_batches: bool = False,
    ) -> None:
        """``takes_batches``: this side announced batches (§9.9), so the peer
        may send them; ``peer_takes_batches``: the peer announced them, so
        data goes to it in batches when it also announced credit."""
        self._nc = nc
        self._method = method
        self._peer_inbox = peer_inbox
        self._credit = SendCredit(peer_window)
        self._window = ReceiveWindow(window)
        self._decode = decode
        self._errors = errors
        self._on_abort = on_abort
        self._plain_is_result = plain_is_result
        self._liveness = Liveness(timings)
        # What the reader has still to take, in order: messages, then the end or the failure.
        self._ready: collections.deque[T | _StreamEvent] = collections.deque()
        self._readable: asyncio.Future[None] | None = None  # the waiting reader's wake-up
        self._buffer_has_room = asyncio.Event()
        self._next_seq = 1
        self._takes_batches = takes_batches
        self._batching = peer_takes_batches and self._credit.limited and peer_inbox is not None
        # The batch being filled (§9.9): length prefixes and encodings, alternating.
        self._batch: list[bytes] = []
        self._batch_first_seq = 0
        self._batch_count = 0
        self._batch_bytes = 0
        self._flusher: asyncio.Task[None] | None = None
        self._send_failure: NatsMicroError | None = None  # a batch that could not be sent: the stream is broken
        self._peer_ended = False  # the peer's direction ended: later data is ignored
        self._read_done = False  # receive() returned the end or raised the failure
        self._closed = False
        self._cancel_sent = False
        self.failure: NatsMicroError | None = None
        """Why the link failed (protocol error, cancel, silence), once it did."""
        self.end: Reply | None = None
        """The peer's end message (result body and trailing headers), once read."""
        self.subscription: Subscription | None = None
        """This side's inbox, left by :meth:`close`."""
        self._watcher: asyncio.Task[None] | None = None
        if self._credit.limited:  # a peer with flow control keeps the stream alive, and so do we (§9.5)
            self._watcher = asyncio.get_running_loop().create_task(self._liveness.watch(self._keepalive, self._peer_gone))

    @property
    def peer_has_flow_control(self) -> bool:
        """Whether the peer announced credit (and so takes cancels and keepalives)."""
        return self._credit.limited

    # Sending -----------------------------------------------------------------

    async def send(self, payload: bytes) -> None:
        """Sends one data message, waiting for the peer's credit first (§9.4).
        A message over the connection's ``max_payload`` is refused with
        ``RESOURCE_EXHAUSTED`` and nothing is sent (§9.3).

        To a peer that takes batches (§9.9) the message joins the batch being
        filled, which goes out as one NATS message when the event loop gets a
        turn, before waiting for credit, when the next message would not fit,
        and before an end (:meth:`flush`): batches hold only messages that
        were ready, within the credit, 64 KiB and ``max_payload``. A batch
        that could not be sent fails this and every later send."""
        max_payload = self._nc.max_payload
        if max_payload and len(payload) > max_payload:
            raise self._errors(
                RESOURCE_EXHAUSTED,
                f"a stream message of {len(payload)} bytes exceeds the server's max_payload of {max_payload}",
                b"",
                {},
            )
        if not self._batching:
            await self._send_alone(payload)
            return
        if self._send_failure is not None:
            raise self._send_failure
        prefix = encode_varint(len(payload))
        size = len(prefix) + len(payload)
        room = min(MAX_BATCH_BYTES, max_payload - BATCH_HEADER_ROOM) if max_payload else MAX_BATCH_BYTES
        if size > room:  # does not fit a batch alone: ordinary data, after the batch before it
            await self.flush()
            await self._send_alone(payload)
            return
        if self._batch_bytes + size > room or not self._credit.take():
            await self.flush()  # full, or out of credit: what is ready goes now
            await self._credit.acquire()
        self._add_to_batch(prefix, payload, size)

    async def _send_alone(self, payload: bytes) -> None:
        """One data message in a NATS message of its own, under the credit."""
        await self._credit.acquire()
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        await self.publish({SEQ_HEADER: str(seq)}, payload)

    def _add_to_batch(self, prefix: bytes, payload: bytes, size: int) -> None:
        """Adds a message (its credit taken) to the batch being filled; the
        batch's first message starts the task that sends it (§9.9)."""
        if not self._batch_count:
            self._batch_first_seq = self._next_seq
            if self._flusher is None:
                self._flusher = asyncio.get_running_loop().create_task(self._flush_batches())
        self._next_seq += 1
        self._batch += (prefix, payload)
        self._batch_count += 1
        self._batch_bytes += size

    async def flush(self) -> None:
        """Sends the batch being filled now, so that what this side sends next
        follows it (ordinary data, an end), and raises the error a batch
        failed with (§9.9): an end must not follow a lost batch."""
        await self._batches_sent()
        if self._send_failure is not None:
            raise self._send_failure

    async def _batches_sent(self) -> None:
        """Returns once the batch being filled is sent, or failed."""
        if self._batch_count and self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_batches())
        flusher = self._flusher
        if flusher is not None:
            # Waited for, not awaited: a sender cancelled meanwhile does not cancel the batch.
            await asyncio.wait((flusher,))

    async def flush_before_end(self) -> None:
        """:meth:`flush` before this side's end or error; a failure is only
        logged: the end meets it too."""
        try:
            await self.flush()
        except NatsMicroError as err:
            _log.debug("%s: sending the last stream batch: %r", self._method, err)

    async def _flush_batches(self) -> None:
        """The flush task, started by a batch's first message: runs once the
        event loop gets a turn and sends what is ready, until nothing is."""
        try:
            while self._batch_count and self._send_failure is None and not self._closed:
                headers, body = self._take_batch()
                assert self._peer_inbox is not None
                self._liveness.sent()
                try:
                    await self._nc.publish(self._peer_inbox, body, headers=headers)
                except Exception as err:  # kept for the sender: this task has no one to raise it to
                    self._send_failure = self._errors(UNAVAILABLE, f"sending on the stream: {type(err).__name__}: {err}", b"", {})
        finally:
            self._flusher = None

    def _take_batch(self) -> tuple[dict[str, str], bytes]:
        """The batch being filled as a NATS message's headers and body (a
        batch of one message as ordinary data, §9.9), and a new one begun."""
        batch, count, first = self._batch, self._batch_count, self._batch_first_seq
        self._batch, self._batch_count, self._batch_bytes = [], 0, 0
        if count == 1:
            return {SEQ_HEADER: str(first)}, batch[1]
        return {SEQ_HEADER: str(first), BATCH_HEADER: str(count)}, b"".join(batch)

    async def publish(self, headers: dict[str, str], payload: bytes = b"") -> None:
        """Sends a control or end message (no credit needed) to the peer's
        inbox, after the batch being filled (§9.9)."""
        if self._peer_inbox is None:  # a server that sent no ack takes nothing from us (§9.8)
            return
        if self._flusher is not None:
            await self._batches_sent()
        self._liveness.sent()
        try:
            await self._nc.publish(self._peer_inbox, payload, headers=headers)
        except nats.errors.MaxPayloadError as err:
            raise self._errors(RESOURCE_EXHAUSTED, "the stream message exceeds the server's max_payload", b"", {}) from err
        except nats.errors.Error as err:
            raise self._errors(UNAVAILABLE, f"sending on the stream: {type(err).__name__}: {err}", b"", {}) from err

    async def cancel(self) -> None:
        """Tells a peer with flow control, once, that the caller abandons the stream (§9.5)."""
        if self.peer_has_flow_control and not self._cancel_sent:
            self._cancel_sent = True
            try:
                await self.publish({CANCEL_HEADER: "true"})
            except NatsMicroError as err:
                _log.debug("%s: sending the cancel: %r", self._method, err)

    async def _keepalive(self) -> None:
        try:
            await self.publish({CREDIT_HEADER: "0"})
        except NatsMicroError as err:
            _log.debug("%s: sending a keepalive: %r", self._method, err)

    def _peer_gone(self) -> None:
        self.fail(self._errors(UNAVAILABLE, f"{self._method}: the stream's peer was silent", b"", {}))

    # Reading -----------------------------------------------------------------

    async def on_message(self, msg: Msg) -> None:
        """Takes one message from this side's inbox; never raises on what the peer sent."""
        if self.failure is not None or self._closed:
            return
        self._liveness.heard()
        try:
            frame = classify(msg.headers, msg.data)
        except StreamProtocolError as err:  # §9.6
            self.fail(self._errors(err.code, err.message, b"", {}))
            return
        if (frame.kind is FrameKind.DATA or frame.kind is FrameKind.BATCH) and not self._peer_ended:
            if not self._take_data(frame):
                return
            if self._window.window is None and len(self._ready) >= UNCONTROLLED_BUFFER:
                # A peer without credit is not held back by the window: hold it back here.
                self._buffer_has_room.clear()
                await self._buffer_has_room.wait()
        elif frame.kind is FrameKind.ERROR and not self._peer_ended:
            self._peer_ended = True
            code = frame.headers.get(ERROR_CODE_HEADER)
            error = self._errors(
                code_from_wire(code) if code is not None else UNKNOWN,
                frame.headers.get(ERROR_MESSAGE_HEADER, ""),
                frame.body,
                dict(frame.headers),
            )
            self._queue(_StreamEvent(error=error))
        elif (frame.kind is FrameKind.END or (frame.kind is FrameKind.PLAIN and self._plain_is_result)) and not self._peer_ended:
            self._peer_ended = True
            self._queue(_StreamEvent(end=Reply(frame.body, dict(frame.headers))))
        elif frame.kind is FrameKind.CREDIT:
            assert frame.number is not None
            self._credit.grant(frame.number)
        elif frame.kind is FrameKind.CANCEL:
            self.fail(CancelledError(self._method, "the caller cancelled the stream"))
        # anything else (a repeated ack, a message without stream headers) means nothing here (§9.2)

    def _take_data(self, frame: Frame) -> bool:
        """Checks a data message or a batch and queues its messages, one by
        one as if each had come alone (§9.9); ``False`` once it failed the
        stream (§9.6)."""
        assert frame.number is not None
        try:
            if frame.kind is FrameKind.BATCH:
                if not self._takes_batches:
                    raise StreamProtocolError(INVALID_ARGUMENT, "a stream batch from a peer that was not told batches are taken")
                bodies = split_batch(frame.body, frame.count)
            else:
                bodies = [frame.body]
            self._window.received(frame.number, frame.count)
        except StreamProtocolError as err:
            self.fail(self._errors(err.code, err.message, b"", {}))
            return False
        decode, ready = self._decode, self._ready
        for body in bodies:
            try:
                ready.append(decode(body))
            except ValueError as err:
                self.fail(self._errors(INVALID_ARGUMENT, f"decoding a stream message: {err}", b"", {}))
                return False
        self._wake_reader()
        return True

    def _queue(self, item: T | _StreamEvent) -> None:
        """Hands ``item`` to the reader after what it has still to take."""
        self._ready.append(item)
        self._wake_reader()

    def _wake_reader(self) -> None:
        readable = self._readable
        if readable is not None:
            self._readable = None
            if not readable.done():
                readable.set_result(None)

    def fail(self, error: BaseException) -> None:
        """Fails the stream (once): the reader gets ``error``, the side is told
        through ``on_abort`` (a non-runtime exception, e.g. from a caller's
        request iterator, reaches the reader as it is)."""
        if self.failure is not None or self._closed:
            return
        coded = error if isinstance(error, NatsMicroError) else InternalError(self._method, f"{type(error).__name__}: {error}")
        self.failure = coded
        self._queue(_StreamEvent(error=error))
        self._on_abort(coded)

    async def receive(self) -> T | None:
        """The peer's next message; ``None`` once its direction ended (see
        :attr:`end`); raises the stream's error. Consuming a message grants
        credit back to the peer as §9.4 asks. One reader at a time."""
        if self._read_done:
            if self.failure is not None:
                raise self.failure
            return None
        ready = self._ready
        while not ready:
            self._readable = readable = asyncio.get_running_loop().create_future()
            await readable
        item = ready.popleft()
        if len(ready) < UNCONTROLLED_BUFFER and not self._buffer_has_room.is_set():
            self._buffer_has_room.set()
        if isinstance(item, _StreamEvent):
            self._read_done = True
            if item.error is not None:
                raise item.error
            self.end = item.end
            return None
        grant = self._window.consumed()
        if grant:
            try:
                await self.publish({CREDIT_HEADER: str(grant)})
            except NatsMicroError as err:
                _log.debug("%s: granting credit: %r", self._method, err)
        return item

    @property
    def peer_ended(self) -> bool:
        """Whether the peer ended its direction (with its end or its error)."""
        return self._peer_ended

    async def close(self) -> None:
        """Stops the keepalives, drops a batch not sent yet (:meth:`flush` sends
        it) and leaves this side's inbox; later messages are ignored."""
        self._read_done = self._closed = True
        self._batch, self._batch_count, self._batch_bytes = [], 0, 0
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        if self.subscription is not None:
            subscription, self.subscription = self.subscription, None
            try:
                await subscription.unsubscribe()
            except nats.errors.Error as err:
                _log.debug("%s: leaving the stream inbox: %r", self._method, err)
