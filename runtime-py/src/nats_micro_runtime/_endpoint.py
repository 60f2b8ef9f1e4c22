"""What a service serves: the request context, server interceptors, and the
endpoint kinds (unary and the three streaming kinds) with their handlers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic

from google.protobuf.message import Message

from ._codec import decode_message, encode_message, failed_field
from ._details import malformed_request_detail
from ._errors import CodedServiceError, ConfigError, ErrorTable, InvalidArgumentError, NatsMicroError, ServiceError
from ._headers import ATTEMPT_HEADER, decode_attempt
from ._keys import KeyTemplate
from ._stream_link import StreamErrors, _StreamLink
from ._typevars import MessageT, RequestT, ResponseT


class RequestStream(Generic[MessageT]):
    """The caller's messages as a client-streaming or bidirectional handler
    reads them: ``async for request in requests``. Iteration ends when the
    caller has sent its last message; a stream failure (a message lost or
    out of order, one that does not decode) raises its error, and the
    stream ends with it whatever the handler does."""

    def __init__(self, link: _StreamLink[MessageT]) -> None:
        self._link = link

    def __aiter__(self) -> RequestStream[MessageT]:
        return self

    @property
    def method(self) -> str:
        """The proto method the stream belongs to (``Upload``)."""
        return self._link._method

    @property
    def trailers(self) -> dict[str, str]:
        """The headers of the caller's end (its half-close), once iteration
        ended; empty before, and for a caller that sent none."""
        end = self._link.end
        return dict(end.headers) if end is not None else {}

    async def __anext__(self) -> MessageT:
        message = await self._link.receive()
        if message is None:
            raise StopAsyncIteration
        return message


class RequestContext:
    """What a handler and a server interceptor know about one request: method,
    subject, incoming headers, the deadline, and the headers to send back (on
    success and on error)."""

    def __init__(
        self,
        method: str,
        endpoint: str,
        subject: str,
        headers: Mapping[str, str] | None = None,
        deadline: float | None = None,
    ) -> None:
        self._method = method
        self._endpoint = endpoint
        self._subject = subject
        self.headers: dict[str, str] = dict(headers or {})
        """Request headers; interceptors may change them."""
        self._deadline = deadline
        self._attempt = decode_attempt(self.headers.get(ATTEMPT_HEADER))
        self.response_headers: dict[str, str] = {}
        """Headers to send with the reply, success or error."""
        self._stream: _ServerStreamCall | None = None
        self._store_key: tuple[KeyTemplate, bool] | None = None
        """The key template of a persisting method, and whether it makes KV keys (PROTOCOL §12.1)."""
        self._chunking: tuple[int, int, bool] | None = None
        """A chunked stream's default chunk size, the connection's max_payload
        and whether the service speaks JSON (PROTOCOL §12.5)."""

    @property
    def method(self) -> str:
        """Proto method name (``CreateOrder``)."""
        return self._method

    @property
    def endpoint(self) -> str:
        """ADR-32 endpoint name (``create_order``)."""
        return self._endpoint

    @property
    def subject(self) -> str:
        """The subject the request arrived on."""
        return self._subject

    @property
    def deadline(self) -> float | None:
        """When the service stops waiting, on the event loop's clock: the earlier
        of the caller's budget and the endpoint's timeout."""
        return self._deadline

    @property
    def attempt(self) -> int:
        """Which attempt of the caller's call this request is: 1 for the first,
        2 for the first retry (the ``Nats-Micro-Attempt`` header, PROTOCOL
        §10.1; 1 when it is absent or invalid)."""
        return self._attempt

    def remaining(self) -> float | None:
        """Seconds left until the deadline (0 once it passed)."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    def header(self, name: str) -> str | None:
        """A request header, or ``None``."""
        return self.headers.get(name)

    def set_response_header(self, name: str, value: str) -> None:
        """Sets a header on the reply, success or error."""
        self.response_headers[name] = value

    def store_key(self, request: Message) -> str:
        """The key (``kv_store``) or object name (``object_store``) under
        which this method's response to ``request`` is kept, rendered exactly
        as the service renders it (PROTOCOL §12.1); ``INVALID_ARGUMENT``
        (with a ``BadRequest``) when the request gives none::

            session_key = ctx.store_key(request)   # "eu.7.n1.u2.s-3.f4.true.SESSION_KIND_WEB.x"
        """
        if self._store_key is None:
            raise ConfigError(f"{self._method} has neither kv_store nor object_store")
        template, kv = self._store_key
        return template.render(request, kv=kv, method=self._method)


ServerNext = Callable[[RequestContext, bytes], Awaitable[bytes]]
"""The rest of a server chain: further interceptors, then the handler."""
ServerInterceptor = Callable[[RequestContext, bytes, ServerNext], Awaitable[bytes]]
"""Runs around every request of a service: ``async def f(ctx, payload, call_next) -> bytes``.
Inspect or change ``ctx`` and ``return await call_next(ctx, payload)``, or raise a
:class:`NatsMicroError` to answer with it without running the handler."""


class MalformedRequestError(InvalidArgumentError):
    """A request body that does not decode: ``INVALID_ARGUMENT``, told apart
    so that the service logs it as ``request_malformed`` (PROTOCOL §11.4)."""


class UnaryEndpoint(Generic[RequestT, ResponseT]):
    """A handler method with its request type: decodes the request (a malformed
    one is ``INVALID_ARGUMENT``), calls the handler, encodes its response."""

    def __init__(
        self, handler: Callable[[RequestT, RequestContext], Awaitable[ResponseT]], request_type: type[RequestT]
    ) -> None:
        self._handler = handler
        self._request_type = request_type

    async def serve(self, ctx: RequestContext, payload: bytes, use_json: bool) -> bytes:
        """Serves one request body: :meth:`decode`, then :meth:`respond`'s work
        in this same coroutine (every request comes through here)."""
        response = await self._handler(self.decode(ctx, payload, use_json), ctx)
        return encode_message(response, use_json)

    def decode(self, ctx: RequestContext, payload: bytes, use_json: bool) -> RequestT:
        """The request in ``payload``; a malformed one is ``INVALID_ARGUMENT`` with a ``BadRequest``."""
        try:
            return decode_message(payload, self._request_type, use_json)
        except ValueError as err:
            detail = malformed_request_detail(f"{self._request_type.DESCRIPTOR.full_name}: {err}", failed_field(str(err)))
            raise MalformedRequestError(ctx.method, f"malformed request for {ctx.method}: {err}", details=[detail]) from err

    async def respond(self, request: RequestT, ctx: RequestContext, use_json: bool) -> bytes:
        """Runs the handler on a decoded request and encodes its response."""
        response = await self._handler(request, ctx)
        return encode_message(response, use_json)


@dataclass(frozen=True)
class ServerStreamEndpoint(Generic[RequestT, ResponseT]):
    """A server-streaming handler with its request type (PROTOCOL §9): the
    handler is typically an async generator yielding the responses."""

    kind: ClassVar[str] = "server"
    """The endpoint's ``nats_micro.stream`` kind in INFO."""

    handler: Callable[[RequestT, RequestContext], AsyncIterator[ResponseT]]
    request_type: type[RequestT]


@dataclass(frozen=True)
class ClientStreamEndpoint(Generic[RequestT, ResponseT]):
    """A client-streaming handler with its request type (PROTOCOL §9): the
    handler reads the caller's messages (``async for request in requests``)
    and returns one response."""

    kind: ClassVar[str] = "client"
    """The endpoint's ``nats_micro.stream`` kind in INFO."""

    handler: Callable[[AsyncIterator[RequestT], RequestContext], Awaitable[ResponseT]]
    request_type: type[RequestT]


@dataclass(frozen=True)
class BidiStreamEndpoint(Generic[RequestT, ResponseT]):
    """A bidirectional handler with its request type (PROTOCOL §9): the
    handler reads the caller's messages and produces the responses, typically
    as an async generator (``async for request in requests: yield ...``)."""

    kind: ClassVar[str] = "bidirectional"
    """The endpoint's ``nats_micro.stream`` kind in INFO."""

    handler: Callable[[AsyncIterator[RequestT], RequestContext], AsyncIterator[ResponseT]]
    request_type: type[RequestT]


StreamEndpoint = ServerStreamEndpoint[Any, Any] | ClientStreamEndpoint[Any, Any] | BidiStreamEndpoint[Any, Any]
"""A streaming endpoint of any kind."""
_STREAM_ENDPOINTS = (ServerStreamEndpoint, ClientStreamEndpoint, BidiStreamEndpoint)

ServedEndpoint = UnaryEndpoint[Any, Any] | StreamEndpoint
"""What ``start_service`` accepts per endpoint."""


@dataclass(frozen=True)
class _ServerStreamCall:
    """What a stream's handler runs with, handed through its context: the
    endpoint, the request of a server-streaming call and the link."""

    endpoint: StreamEndpoint
    request: Message | None
    link: _StreamLink[Any]


_CODED_ERRORS = ErrorTable(ServiceError, {sub.CODE: sub for sub in CodedServiceError.__subclasses__()})


def _server_stream_error(method: str) -> StreamErrors:
    """How a server's stream fails: the runtime's per-code error classes."""

    def make(code: str, message: str, data: bytes, headers: Mapping[str, str]) -> NatsMicroError:
        return _CODED_ERRORS.error(code, method, message, data, headers)

    return make
