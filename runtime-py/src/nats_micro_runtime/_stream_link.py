"""Streams: one side's link to its peer (PROTOCOL §9), shared by the caller
and the server and by the three streaming kinds.
"""

from __future__ import annotations

import asyncio
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
    CANCEL_HEADER,
    CREDIT_HEADER,
    ERROR_CODE_HEADER,
    ERROR_MESSAGE_HEADER,
    FrameKind,
    Liveness,
    ReceiveWindow,
    SEQ_HEADER,
    SendCredit,
    StreamProtocolError,
    StreamTimings,
    UNCONTROLLED_BUFFER,
    classify,
)
from ._typevars import T

_log = logging.getLogger("nats_micro_runtime")


StreamErrors = Callable[[str, str, bytes, Mapping[str, str]], NatsMicroError]
"""Makes the exception a stream fails with from ``(code, message, data, headers)``:
the service's error classes on a client, the runtime's per-code classes on a server."""


@dataclass(frozen=True)
class _StreamEvent(Generic[T]):
    """What the link passes on to the side that reads: one message, the
    peer's end (body and trailers), or the stream's failure."""

    message: T | None = None
    end: Reply | None = None
    error: BaseException | None = None


class _StreamLink(Generic[T]):
    """One side of a running stream, shared by the caller and the server and
    by the three streaming kinds (§9.3–§9.6).

    Sending: data messages to the peer's inbox under the peer's credit with
    their sequence numbers; credit grants, keepalives, the end and the cancel.
    Reading (:meth:`on_message`, the callback of this side's inbox): each
    message is classified; data is checked (order, credit) and decoded, then
    queued with the end for :meth:`receive`; credit from the peer is added.
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
    ) -> None:
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
        self._events: asyncio.Queue[_StreamEvent[T]] = asyncio.Queue()
        self._buffer_has_room = asyncio.Event()
        self._next_seq = 1
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
        ``RESOURCE_EXHAUSTED`` and nothing is sent (§9.3)."""
        if self._nc.max_payload and len(payload) > self._nc.max_payload:
            raise self._errors(
                RESOURCE_EXHAUSTED,
                f"a stream message of {len(payload)} bytes exceeds the server's max_payload of {self._nc.max_payload}",
                b"",
                {},
            )
        await self._credit.acquire()
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        await self.publish({SEQ_HEADER: str(seq)}, payload)

    async def publish(self, headers: dict[str, str], payload: bytes = b"") -> None:
        """Sends a control or end message (no credit needed) to the peer's inbox."""
        if self._peer_inbox is None:  # a server that sent no ack takes nothing from us (§9.8)
            return
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
        if frame.kind is FrameKind.DATA and not self._peer_ended:
            assert frame.number is not None
            try:
                self._window.received(frame.number)
                message = self._decode(frame.body)
            except StreamProtocolError as err:
                self.fail(self._errors(err.code, err.message, b"", {}))
                return
            except ValueError as err:
                self.fail(self._errors(INVALID_ARGUMENT, f"decoding a stream message: {err}", b"", {}))
                return
            self._events.put_nowait(_StreamEvent(message=message))
            if self._window.window is None and self._events.qsize() >= UNCONTROLLED_BUFFER:
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
            self._events.put_nowait(_StreamEvent(error=error))
        elif (frame.kind is FrameKind.END or (frame.kind is FrameKind.PLAIN and self._plain_is_result)) and not self._peer_ended:
            self._peer_ended = True
            self._events.put_nowait(_StreamEvent(end=Reply(frame.body, dict(frame.headers))))
        elif frame.kind is FrameKind.CREDIT:
            assert frame.number is not None
            self._credit.grant(frame.number)
        elif frame.kind is FrameKind.CANCEL:
            self.fail(CancelledError(self._method, "the caller cancelled the stream"))
        # anything else (a repeated ack, a message without stream headers) means nothing here (§9.2)

    def fail(self, error: BaseException) -> None:
        """Fails the stream (once): the reader gets ``error``, the side is told
        through ``on_abort`` (a non-runtime exception, e.g. from a caller's
        request iterator, reaches the reader as it is)."""
        if self.failure is not None or self._closed:
            return
        coded = error if isinstance(error, NatsMicroError) else InternalError(self._method, f"{type(error).__name__}: {error}")
        self.failure = coded
        self._events.put_nowait(_StreamEvent(error=error))
        self._on_abort(coded)

    async def receive(self) -> T | None:
        """The peer's next message; ``None`` once its direction ended (see
        :attr:`end`); raises the stream's error. Consuming a message grants
        credit back to the peer as §9.4 asks."""
        if self._read_done:
            if self.failure is not None:
                raise self.failure
            return None
        event = await self._events.get()
        if self._events.qsize() < UNCONTROLLED_BUFFER:
            self._buffer_has_room.set()
        if event.error is not None:
            self._read_done = True
            raise event.error
        if event.end is not None:
            self._read_done = True
            self.end = event.end
            return None
        grant = self._window.consumed()
        if grant:
            try:
                await self.publish({CREDIT_HEADER: str(grant)})
            except NatsMicroError as err:
                _log.debug("%s: granting credit: %r", self._method, err)
        return event.message

    @property
    def peer_ended(self) -> bool:
        """Whether the peer ended its direction (with its end or its error)."""
        return self._peer_ended

    async def close(self) -> None:
        """Stops the keepalives and leaves this side's inbox; later messages are ignored."""
        self._read_done = self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        if self.subscription is not None:
            subscription, self.subscription = self.subscription, None
            try:
                await subscription.unsubscribe()
            except nats.errors.Error as err:
                _log.debug("%s: leaving the stream inbox: %r", self._method, err)
