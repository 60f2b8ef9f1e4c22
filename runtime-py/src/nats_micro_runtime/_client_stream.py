"""A caller's streams (PROTOCOL §9): the responses it reads, the requests it
sends, and the stream's end handed to its client interceptors (§9.7).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic

from google.protobuf.message import Message

from ._codes import CANCELLED, DEADLINE_EXCEEDED
from ._errors import ErrorTable, InternalError
from ._interceptor import Reply
from ._stream_link import _StreamLink
from ._streams import END_HEADER
from ._typevars import MessageT, T, U

if TYPE_CHECKING:
    from ._otel import ClientSpan


RequestSource = AsyncIterable[MessageT] | Iterable[MessageT]
"""What a caller streams to a client-streaming or bidirectional RPC: any
iterable or async iterable of request messages (an async generator, a list)."""


class ResponseStream(Generic[MessageT]):
    """The responses of a server-streaming or bidirectional call, in order:
    ``async for`` over it, or use it as an async context manager so that
    leaving early cancels the stream (``Nats-Stream-Cancel``); cancelling
    the task that reads it does too. Errors raise the service's error
    classes; :attr:`trailers` holds the end's headers once the stream ended.
    For a bidirectional call, the requests are sent in the background as the
    server grants credit; a request iterable that raises fails the stream."""

    def __init__(self, opened: _OpenedStream[MessageT]) -> None:
        self._opened = opened
        self.trailers: dict[str, str] = {}
        """Headers of the server's end message."""

    def __aiter__(self) -> ResponseStream[MessageT]:
        return self

    async def __anext__(self) -> MessageT:
        opened = self._opened
        link = opened.link
        try:
            message = await opened.within_deadline(link.receive())
        except Exception as err:
            # Raises the error, unless the client interceptors settle otherwise.
            self.trailers = dict((await opened.conclude(err)).headers)
            raise StopAsyncIteration from None
        except BaseException:
            await self.aclose()
            raise
        if message is None:
            self.trailers = dict((await opened.conclude(opened.end())).headers)
            raise StopAsyncIteration
        return message

    async def aclose(self) -> None:
        """Stops the stream: a stream that has not ended is cancelled."""
        await self._opened.close()

    async def __aenter__(self) -> ResponseStream[MessageT]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Dropped without aclose(): cancel the stream at the server rather than
        # keep it alive with keepalives for as long as the connection lives.
        self._opened.close_soon()


_CLOSING: set[asyncio.Task[None]] = set()
"""Closes of dropped response streams under way (the loop keeps only weak references to tasks)."""


ServerStream = ResponseStream
"""The responses of a server-streaming call (see :class:`ResponseStream`)."""


class _OpenedStream(Generic[T]):
    """A caller's stream after the open: its link and its deadline."""

    def __init__(self, link: _StreamLink[T], deadline: float | None, method: str, errors: ErrorTable) -> None:
        self.link = link
        self.deadline = deadline
        self.pump: asyncio.Task[None] | None = None
        """The task sending the caller's requests (client-streaming and bidirectional)."""
        self.interceptors: _StreamOutcome | None = None
        """The client interceptors waiting for the stream's outcome, if there are any."""
        self.span: ClientSpan | None = None
        """The stream's CLIENT span (OpenTelemetry on), ended with the stream's outcome."""
        self._concluding = False
        self._method = method
        self._errors = errors
        self._closed = False
        self._cancelling: asyncio.Task[None] | None = None

    def abort(self) -> None:
        """The link failed: stops sending and cancels the stream at the server
        at once, whether or not anyone is reading the responses (§9.6)."""
        if self.pump is not None and self.pump is not asyncio.current_task():
            self.pump.cancel()
        if not self.link.peer_ended and self._cancelling is None:
            self._cancelling = asyncio.get_running_loop().create_task(self.link.cancel())

    async def within_deadline(self, work: Awaitable[U]) -> U:
        """``work``, failed with ``DEADLINE_EXCEEDED`` at the stream's deadline (§9.5)."""
        if self.deadline is None:  # most streams: no timeout scope per message
            return await work
        try:
            async with asyncio.timeout_at(self.deadline) as scope:
                return await work
        except TimeoutError as err:
            if not scope.expired():
                raise
            raise self._errors.error(DEADLINE_EXCEEDED, self._method, f"{self._method} did not finish before its deadline", b"", {}) from err

    def end(self) -> Reply:
        """The peer's end (its body and trailing headers) once it arrived."""
        return self.link.end if self.link.end is not None else Reply(b"", {})

    async def conclude(self, ending: Reply | Exception) -> Reply:
        """Closes the stream with ``ending`` (the peer's end, or the error it
        failed with) and returns the end or raises the error; with client
        interceptors, what they settle with instead (§9.7). The span records
        what the caller sees."""
        self._concluding = True  # close() must not record the caller leaving
        try:
            if self.interceptors is not None:
                self.interceptors.report(ending)  # before close() would report a cancel
            await self.close()
            if self.interceptors is not None:
                ending = await self.interceptors.settled()
            if isinstance(ending, Exception):
                raise ending
        except BaseException as err:
            if self.span is not None:
                self.span.end(err)
            raise
        if self.span is not None:
            self.span.end(None)
        return ending

    def close_soon(self) -> None:
        """:meth:`close` from synchronous code (a finalizer), on the running loop if there is one."""
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop here (interpreter exit, another thread): nothing to send with
            return
        task = loop.create_task(self.close())
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)

    async def close(self) -> None:
        """Stops sending, cancels the stream at the server unless it ended, leaves the inbox."""
        if self._closed:
            return
        self._closed = True
        pump = self.pump
        if pump is not None and not pump.done():
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        if self._cancelling is not None:
            await asyncio.gather(self._cancelling, return_exceptions=True)
        if not self.link.peer_ended:
            await self.link.cancel()
        await self.link.close()
        if self._concluding:
            return
        # Closed before its end was reported: the caller left.
        left = self._errors.error(CANCELLED, self._method, "the caller closed the stream", b"", {})
        if self.interceptors is not None:
            self.interceptors.report(left)
        if self.span is not None:
            self.span.end(left)


class _StreamOutcome:
    """A caller's stream ending, handed to its client interceptors (whose
    ``call_next`` awaits it as the call's reply), and what they settle with:
    that is what the caller sees (§9.7). An interceptor that settles before
    the stream ended fails the stream."""

    def __init__(self, reported: asyncio.Future[Reply], chain: asyncio.Task[Reply], opened: _OpenedStream[Any]) -> None:
        self._reported = reported
        self._chain = chain
        chain.add_done_callback(lambda _: self._settled_early(opened))

    def _settled_early(self, opened: _OpenedStream[Any]) -> None:
        if self._reported.done():
            return
        error = None if self._chain.cancelled() else self._chain.exception()
        if error is None:
            error = InternalError(opened._method, "a client interceptor settled the stream before it ended")
        opened.link.fail(error)

    def report(self, ending: Reply | BaseException) -> None:
        """Passes the stream's end (or its error) to the interceptors, once."""
        if self._reported.done() or self._chain.done():
            return
        if isinstance(ending, Reply):
            self._reported.set_result(ending)
        else:
            self._reported.set_exception(ending)
            self._reported.exception()  # retrieved: the chain may have stopped waiting for it

    async def settled(self) -> Reply:
        """What the interceptors settle with (returned, or raised)."""
        return await asyncio.shield(self._chain)


async def _pump_requests(
    link: _StreamLink[Any],
    requests: RequestSource[Message],
    encode: Callable[[Message], bytes],
    trailers: Callable[[], Mapping[str, str]] | None = None,
) -> None:
    """Sends the caller's requests as the server grants credit, then the
    half-close with ``trailers()`` (called once the requests are exhausted)
    as its headers; a failure (an iterable that raises, a message that does
    not encode, a lost connection) fails the stream with that error."""
    try:
        if isinstance(requests, AsyncIterable):
            async for request in requests:
                await link.send(encode(request))
        else:
            for request in requests:
                await link.send(encode(request))
        await link.flush()  # the end follows the last batch, which must have gone out (§9.9)
        end = {**(trailers() if trailers is not None else {}), END_HEADER: "true"}
        await link.publish(end)
    except asyncio.CancelledError:
        raise
    except Exception as err:
        link.fail(err)
