"""The client: the untyped client under every generated client."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypedDict, cast

import nats.errors
from google.protobuf.message import Message
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ._breaker import CircuitBreaker
from ._client_stream import RequestSource, ResponseStream, _OpenedStream, _StreamOutcome, _pump_requests
from ._codec import _decoder, decode_message, encode_message
from ._codes import UNKNOWN, code_from_wire
from ._connection import watcher
from ._errors import (
    ConfigError,
    ConnectionClosedError,
    DecodeError,
    EncodeError,
    ErrorTable,
    InternalError,
    MaxPayloadExceededError,
    NatsMicroError,
    NoRespondersError,
    RequestTimeoutError,
    ServiceError,
    TransportError,
)
from ._headers import ATTEMPT_HEADER, TIMEOUT_HEADER, encode_timeout
from ._interceptor import ClientCall, ClientInterceptor, Reply, _chain_interceptors
from ._observe import telemetry
from ._reply_policy import valid_subject
from ._retry import RetryBudget, RetryPolicy, _Plan, _run_attempts
from ._spec import EndpointSpec, ServiceSpec
from ._chunked import (
    ByteSource,
    ByteWriter,
    ChunkedBytes,
    ChunkedTransfer,
    _Digest,
    check_chunk_size,
    chunk_field,
    chunks_of,
    write_to,
)
from ._store import KvHandle, ObjectHandle, open_kv, open_objects
from ._stream_link import _StreamLink
from ._streams import (
    BATCH_HEADER,
    CREDIT_HEADER,
    DEFAULT_WINDOW,
    ERROR_CODE_HEADER,
    ERROR_MESSAGE_HEADER,
    FrameKind,
    REPLY_TO_HEADER,
    StreamProtocolError,
    StreamTimings,
    announces_batches,
    classify,
)
from ._typevars import MessageT, RequestT, ResponseT, T


_DEFAULT_BUDGET = RetryBudget()
"""Marks "no budget given" (each client then makes its own)."""

DEFAULT_TIMEOUT = 10.0
"""Seconds a call waits when neither the call, the client nor the proto sets a timeout."""


class Response(NamedTuple, Generic[MessageT]):
    """What a client call returns: ``message, headers = await client.get_order(...)``."""

    message: MessageT
    """The decoded response."""
    headers: dict[str, str]
    """The reply's headers."""


@dataclass(frozen=True)
class MethodOptions:
    """What one method of a client does differently from the client's settings
    (``ClientOptions.methods``); ``None`` keeps the client's."""

    retry: RetryPolicy | None = None
    """The method's retry policy."""
    idempotent: bool | None = None
    """Whether the method is safe to repeat after a timeout or a lost
    connection (PROTOCOL §10.1); replaces the proto's ``idempotency_level``."""
    circuit_breaker: CircuitBreaker | None = None
    """A breaker of the method's own."""


class ClientOptions(TypedDict, total=False):
    """Settings of a generated client, all optional."""

    subject_prefix: str | None
    """Replaces the proto's subject prefix."""
    timeout: float | None
    """Seconds, for every call (a call's own ``timeout`` wins)."""
    headers: Mapping[str, str] | None
    """Sent with every call (a call's own headers win)."""
    interceptors: Sequence[ClientInterceptor]
    """Run around every call, the first one outermost."""
    stream_timings: StreamTimings
    """Keepalive interval and peer timeout of streams (PROTOCOL §9.5)."""
    retry_policy: RetryPolicy
    """How unary calls are retried (PROTOCOL §10.1); ``RetryPolicy()`` when unset."""
    retry_budget: RetryBudget | None
    """The token bucket all retries of the client draw from; ``RetryBudget()``
    when unset, ``None`` for no budget."""
    circuit_breaker: CircuitBreaker | None
    """A breaker shared by every method of the client (PROTOCOL §10.2); none by default."""
    methods: Mapping[str, MethodOptions]
    """Settings of single methods, by endpoint name (``get_order``) or proto
    method name (``GetOrder``)."""
    jetstream_timeout: float
    """Seconds a request of the key-value and object store handles may take (default 5)."""


_NO_METHOD_OPTIONS = MethodOptions()


class Client:
    """The untyped client under every generated client: a NATS connection, the
    service's spec, a client-wide timeout and headers, and interceptors.

    Timeout of a call (first set wins): the call's ``timeout``, the client's
    ``timeout``, the endpoint's proto ``timeout``, the service's proto
    ``timeout``, :data:`DEFAULT_TIMEOUT`. The budget travels in the
    ``Nats-Micro-Timeout`` header so the server stops once the caller gave up.

    Unary calls are retried as PROTOCOL §10.1 says (``retry_policy``, by
    default 3 attempts, 50 ms doubling up to 1 s with full jitter, within the
    call's timeout, under a ``retry_budget``); a timeout or a lost connection
    only for methods safe to repeat. An optional ``circuit_breaker`` (§10.2)
    fails calls at once while the service keeps failing. Calls in flight when
    the connection is lost fail at once with :class:`ConnectionLostError`.
    Interceptors run once around a call, whatever its attempts.
    """

    def __init__(
        self,
        nc: NatsClient,
        service: ServiceSpec,
        errors: ErrorTable | type[ServiceError],
        *,
        subject_prefix: str | None = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        interceptors: Sequence[ClientInterceptor] = (),
        stream_timings: StreamTimings = StreamTimings(),
        retry_policy: RetryPolicy = RetryPolicy(),
        retry_budget: RetryBudget | None = _DEFAULT_BUDGET,
        circuit_breaker: CircuitBreaker | None = None,
        methods: Mapping[str, MethodOptions] | None = None,
        jetstream_timeout: float = 5.0,
    ) -> None:
        self._nc = nc
        self._jetstream_timeout = jetstream_timeout
        self._stream_timings = stream_timings
        self._service = service
        self._errors = errors if isinstance(errors, ErrorTable) else ErrorTable(errors)
        self._subject_prefix = subject_prefix if subject_prefix is not None else service.subject_prefix
        if not valid_subject(self._subject_prefix):
            raise ConfigError(f"subject prefix {self._subject_prefix!r} has an empty token, a space, '*' or '>'")
        self._timeout = timeout
        self._headers = dict(headers or {})
        self._interceptors = tuple(interceptors)
        self._endpoints = {spec.endpoint: spec for spec in service.endpoints}
        self._retry_policy = retry_policy
        # The default is a marker: each client gets a budget of its own.
        self._retry_budget = RetryBudget() if retry_budget is _DEFAULT_BUDGET else retry_budget
        self._circuit_breaker = circuit_breaker
        self._methods: dict[str, MethodOptions] = {}
        self._plans: dict[str, _Plan] = {}
        """The retry plan of each method's calls that set no retry options (:meth:`_default_plan`)."""
        self._watcher = watcher(nc)
        """Fails calls in flight when the connection is lost (one per connection, shared)."""
        for name, options in (methods or {}).items():
            found = [spec.endpoint for spec in service.endpoints if name in (spec.endpoint, spec.method)]
            if not found:
                raise ConfigError(f"{service.proto_name} has no method {name!r} (methods=)")
            self._methods[found[0]] = options

    @property
    def subject_prefix(self) -> str:
        """The subject prefix calls go to."""
        return self._subject_prefix

    def subject(self, endpoint: str) -> str:
        """The subject of an endpoint: ``{subject_prefix}.{endpoint}``."""
        return f"{self._subject_prefix}.{endpoint}"

    def effective_timeout(self, endpoint: str) -> float:
        """Seconds a call to ``endpoint`` waits when the call sets no timeout."""
        return self._default_timeout(self._endpoint(endpoint))

    def _default_timeout(self, spec: EndpointSpec) -> float:
        for timeout in (self._timeout, spec.timeout):
            if timeout is not None:
                return timeout
        return DEFAULT_TIMEOUT

    def _endpoint(self, endpoint: str) -> EndpointSpec:
        """The spec of ``endpoint``; ``ConfigError`` if the service has none by that name."""
        spec = self._endpoints.get(endpoint)
        return spec if spec is not None else self._service.endpoint(endpoint)

    def _encode_request(self, spec: EndpointSpec, request: Message) -> bytes:
        try:
            return encode_message(request, self._service.json)
        except Exception as err:  # a message that cannot be encoded
            raise EncodeError(spec.method, f"encoding the request: {err}") from err

    async def unary(
        self,
        endpoint: str,
        request: Message,
        response_type: type[MessageT],
        *,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        idempotent: bool | None = None,
    ) -> Response[MessageT]:
        """Sends one request to ``endpoint`` and decodes the reply, retrying
        transient failures as the call's ``retry`` policy (else the method's,
        else the client's) says (PROTOCOL §10.1). ``idempotent`` replaces the
        method's safe-to-repeat setting for this call."""
        spec = self._endpoint(endpoint)
        payload = self._encode_request(spec, request)
        call = ClientCall(
            method=spec.method,
            subject=self.subject(endpoint),
            headers={**self._headers, **(headers or {})},
            timeout=timeout if timeout is not None else self._default_timeout(spec),
            payload=payload,
        )
        plan = self._default_plan(spec) if retry is None and idempotent is None else self._plan(spec, retry, idempotent)
        if self._interceptors or telemetry() is not None:
            # Interceptors see the call once; its attempts happen under them.
            attempts = functools.partial(self._attempts, plan)
            send = _chain_interceptors(self._interceptors, attempts) if self._interceptors else attempts
            reply = await self._traced(spec, call, send)
        else:  # nothing around the attempts: run them here (two coroutines fewer per call)
            reply = await _run_attempts(functools.partial(self._send, call), plan, call.timeout, call.method)
        try:
            message = decode_message(reply.payload, response_type, self._service.json)
        except ValueError as err:
            raise DecodeError(spec.method, f"decoding the reply: {err}", headers=reply.headers) from err
        return Response(message, reply.headers)

    def _stream_timeout(self, spec: EndpointSpec, timeout: float | None) -> float | None:
        """A stream's budget: the call's, the client's or the proto's timeout;
        none otherwise, since streams may run for hours (§9.5)."""
        for candidate in (timeout, self._timeout, spec.timeout):
            if candidate is not None:
                return candidate
        return None

    async def server_stream(
        self,
        endpoint: str,
        request: Message,
        response_type: type[MessageT],
        *,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        window: int = DEFAULT_WINDOW,
    ) -> ResponseStream[MessageT]:
        """Opens a server-streaming call (PROTOCOL §9.2) and returns its
        responses as an async iterator; leaving it early cancels the stream."""
        spec = self._endpoint(endpoint)
        payload = self._encode_request(spec, request)
        opened = await self._open_stream(spec, payload, response_type, timeout, headers, window)
        return ResponseStream(opened)

    async def client_stream(
        self,
        endpoint: str,
        requests: RequestSource[Message],
        response_type: type[MessageT],
        *,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        window: int = DEFAULT_WINDOW,
        trailers: Callable[[], Mapping[str, str]] | None = None,
    ) -> Response[MessageT]:
        """Calls a client-streaming RPC (PROTOCOL §9.3): sends ``requests`` as
        the server grants credit, then returns the server's one response.
        Cancelling the awaiting task cancels the stream at the server.
        ``trailers``, called once the requests are exhausted, gives headers
        for the half-close (the server reads them as ``requests.trailers``)."""
        spec = self._endpoint(endpoint)
        opened = await self._open_stream(spec, b"", response_type, timeout, headers, window, plain_is_result=True)
        self._start_pump(spec, opened, requests, trailers)
        try:
            try:
                while await opened.within_deadline(opened.link.receive()) is not None:
                    pass  # a client-streaming server sends no data messages; its result is the end
            except Exception as err:
                end = await opened.conclude(err)
            else:
                end = await opened.conclude(opened.end())
            try:
                message = decode_message(end.payload, response_type, self._service.json)
            except ValueError as err:
                raise DecodeError(spec.method, f"decoding the reply: {err}", headers=end.headers) from err
            return Response(message, end.headers)
        finally:
            await opened.close()

    async def bidi_stream(
        self,
        endpoint: str,
        requests: RequestSource[Message],
        response_type: type[MessageT],
        *,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        window: int = DEFAULT_WINDOW,
    ) -> ResponseStream[MessageT]:
        """Opens a bidirectional call (PROTOCOL §9.3): sends ``requests`` in
        the background as the server grants credit and returns the responses
        as an async iterator; leaving it early cancels the stream."""
        spec = self._endpoint(endpoint)
        opened = await self._open_stream(spec, b"", response_type, timeout, headers, window)
        self._start_pump(spec, opened, requests)
        return ResponseStream(opened)

    def _start_pump(
        self,
        spec: EndpointSpec,
        opened: _OpenedStream[Any],
        requests: RequestSource[Message],
        trailers: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        """Starts sending ``requests``; a failure of the stream stops it."""
        encode = functools.partial(self._encode_request, spec)
        opened.pump = asyncio.get_running_loop().create_task(_pump_requests(opened.link, requests, encode, trailers))

    def _chunked(self, endpoint: str) -> tuple[EndpointSpec, int]:
        spec = self._endpoint(endpoint)
        if spec.chunked is None:
            raise ConfigError(f"{self._service.proto_name}.{spec.method} has no chunked_io")
        return spec, spec.chunked.chunk_size

    async def send_chunks(
        self,
        endpoint: str,
        source: ByteSource,
        chunk_type: type[Message],
        response_type: type[MessageT],
        *,
        chunk_size: int | None = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        window: int = DEFAULT_WINDOW,
    ) -> Response[MessageT]:
        """Uploads ``source`` over a client-streaming ``chunked_io`` RPC
        (PROTOCOL §12.5): cut into chunks of ``chunk_size`` bytes (the
        proto's by default) as it is read, the size and SHA-256 on the
        half-close; returns the server's response. A chunk that would not
        fit ``max_payload`` fails with ``INVALID_ARGUMENT`` before anything
        is sent; a source that fails cancels the upload. Generated clients
        offer it as ``<method>_send_bytes``, ``_send_reader`` and ``_send_file``."""
        spec, default_size = self._chunked(endpoint)
        size = chunk_size if chunk_size is not None else default_size
        try:
            check_chunk_size(size, chunk_type, self._service.json, self._nc.max_payload, spec.method)
        except NatsMicroError as err:
            raise self._service_error(err) from None
        name = chunk_field(chunk_type)
        digest = _Digest()

        async def messages() -> AsyncIterator[Message]:
            async for data in chunks_of(source, size):
                digest.update(data)
                message = chunk_type()
                setattr(message, name, data)
                yield message

        return await self.client_stream(
            endpoint, messages(), response_type, timeout=timeout, headers=headers, window=window, trailers=digest.trailers
        )

    async def send_file(
        self,
        endpoint: str,
        path: str | os.PathLike[str],
        chunk_type: type[Message],
        response_type: type[MessageT],
        *,
        chunk_size: int | None = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        window: int = DEFAULT_WINDOW,
    ) -> Response[MessageT]:
        """:meth:`send_chunks` from the file at ``path``, read chunk by chunk."""
        with open(path, "rb") as file:
            return await self.send_chunks(
                endpoint, file, chunk_type, response_type, chunk_size=chunk_size, timeout=timeout, headers=headers, window=window
            )

    async def receive_chunks(
        self,
        endpoint: str,
        request: Message,
        chunk_type: type[Message],
        writer: ByteWriter,
        *,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        window: int = DEFAULT_WINDOW,
    ) -> ChunkedTransfer:
        """Downloads over a server-streaming ``chunked_io`` RPC (PROTOCOL
        §12.5) into ``writer`` (``write(data)``, awaited when it is a
        coroutine, then ``drain()`` if it has one), chunk by chunk; at the
        end checks the server's size and digest (``DATA_LOSS`` on a
        mismatch). An interrupted stream raises its error. Generated clients
        offer it as ``<method>_receive_bytes``, ``_receive_to_writer`` and
        ``_receive_to_file``."""
        spec, _ = self._chunked(endpoint)
        name = chunk_field(chunk_type)
        digest = _Digest()
        stream = await self.server_stream(endpoint, request, chunk_type, timeout=timeout, headers=headers, window=window)
        async with stream:
            async for message in stream:
                data = bytes(getattr(message, name))
                digest.update(data)
                await write_to(writer, data)
        try:
            return digest.verify(stream.trailers, spec.method)
        except NatsMicroError as err:
            raise self._service_error(err) from None

    def _service_error(self, err: NatsMicroError) -> NatsMicroError:
        """A runtime error as the service's error class of its code."""
        return self._errors.error(err.code, err.method, err.message, err.data, err.headers)

    async def receive_bytes(
        self,
        endpoint: str,
        request: Message,
        chunk_type: type[Message],
        *,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        window: int = DEFAULT_WINDOW,
    ) -> ChunkedBytes:
        """:meth:`receive_chunks` into memory: the payload once it arrived whole and checked."""
        buffer = bytearray()

        class _Buffer:
            def write(self, data: bytes) -> None:
                buffer.extend(data)

        done = await self.receive_chunks(endpoint, request, chunk_type, _Buffer(), timeout=timeout, headers=headers, window=window)
        return ChunkedBytes(done.size, done.sha256, done.digest_verified, done.headers, bytes(buffer))

    async def receive_file(
        self,
        endpoint: str,
        request: Message,
        chunk_type: type[Message],
        path: str | os.PathLike[str],
        *,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        window: int = DEFAULT_WINDOW,
    ) -> ChunkedTransfer:
        """:meth:`receive_chunks` into the file at ``path``: written to a
        temporary file beside it, renamed over ``path`` only once the
        transfer is complete and checked, removed when it fails."""
        target = os.fspath(path)
        fd, temporary = tempfile.mkstemp(dir=os.path.dirname(target) or ".", prefix=f".{os.path.basename(target)}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as file:
                done = await self.receive_chunks(endpoint, request, chunk_type, file, timeout=timeout, headers=headers, window=window)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        return done

    def _jetstream(self) -> JetStreamContext:
        return self._nc.jetstream(timeout=self._jetstream_timeout)

    async def kv_store(
        self, endpoint: str, request_type: type[RequestT], response_type: type[ResponseT]
    ) -> KvHandle[RequestT, ResponseT]:
        """A typed handle on the key-value bucket of ``endpoint``'s
        ``kv_store`` (PROTOCOL §12.4), bound to the bucket (created with the
        proto's settings for a ``client_only`` method). Generated clients
        offer it as ``<method>_kv()``."""
        spec = self._endpoint(endpoint)
        if spec.kv_store is None:
            raise ConfigError(f"{self._service.proto_name}.{spec.method} has no kv_store")
        handle = await open_kv(self._jetstream(), spec.kv_store, spec.method, response_type, self._service.json, self._errors)
        return cast("KvHandle[RequestT, ResponseT]", handle)

    async def object_store(
        self, endpoint: str, request_type: type[RequestT], response_type: type[ResponseT]
    ) -> ObjectHandle[RequestT, ResponseT]:
        """A typed handle on the object store of ``endpoint``'s
        ``object_store`` (PROTOCOL §12.4). Generated clients offer it as
        ``<method>_objects()``."""
        spec = self._endpoint(endpoint)
        if spec.object_store is None:
            raise ConfigError(f"{self._service.proto_name}.{spec.method} has no object_store")
        handle = await open_objects(
            self._jetstream(), spec.object_store, spec.method, response_type, self._service.json, self._errors
        )
        return cast("ObjectHandle[RequestT, ResponseT]", handle)

    async def _open_stream(
        self,
        spec: EndpointSpec,
        payload: bytes,
        response_type: type[MessageT],
        timeout: float | None,
        headers: Mapping[str, str] | None,
        window: int,
        *,
        plain_is_result: bool = False,
    ) -> _OpenedStream[MessageT]:
        """Opens a stream through the client's interceptors (§9.7): they see
        the open as a call (headers, timeout, the request of a
        server-streaming RPC; ``timeout`` is ``math.inf`` for a stream without
        a deadline) and may change it or refuse the call; their
        ``call_next`` returns the stream's end (its body and trailing
        headers) or raises its error (``CANCELLED`` when the caller leaves),
        and what the chain settles with is what the caller sees at the end.
        The chain runs as a task of its own, since the caller streams while
        it waits."""
        budget = self._stream_timeout(spec, timeout)
        call = ClientCall(
            method=spec.method,
            subject=self.subject(spec.endpoint),
            headers={**self._headers, **(headers or {})},
            timeout=budget if budget is not None else math.inf,
            payload=payload,
        )
        open_chain = functools.partial(
            self._open_chain, response_type=response_type, window=window, plain_is_result=plain_is_result
        )
        instrumentation = telemetry()
        if instrumentation is None:
            return await open_chain(call)
        # A stream's CLIENT span lasts until its outcome (§11.2): the stream ends it, not the open.
        span = instrumentation.client_span(self._service.proto_name, spec.endpoint, call)
        try:
            with span.current():
                opened = await open_chain(call)
        except BaseException as err:
            span.end(err)
            raise
        opened.span = span
        return opened

    async def _traced(self, spec: EndpointSpec, call: ClientCall, send: Callable[[ClientCall], Awaitable[T]]) -> T:
        """Where every unary call starts: with OpenTelemetry on (PROTOCOL
        §11), under a CLIENT span whose trace context goes out in the call's
        headers, before the interceptors see them."""
        instrumentation = telemetry()
        if instrumentation is None:
            return await send(call)
        return await instrumentation.client_call(self._service.proto_name, spec.endpoint, call, send)

    async def _open_chain(
        self, call: ClientCall, *, response_type: type[MessageT], window: int, plain_is_result: bool
    ) -> _OpenedStream[MessageT]:
        """Runs the client interceptors around a stream open (see :meth:`_open_stream`)."""
        method = call.method
        if not self._interceptors:
            return await self._open_call(call, response_type, window, plain_is_result)
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[_OpenedStream[MessageT]] = loop.create_future()
        reported: asyncio.Future[Reply] = loop.create_future()

        async def open_call(call: ClientCall) -> Reply:
            if opened.done():
                raise InternalError(method, "a client interceptor opened the stream twice")
            opened.set_result(await self._open_call(call, response_type, window, plain_is_result))
            return await reported

        chain = loop.create_task(_chain_interceptors(self._interceptors, open_call)(call))
        # Nobody may wait for the chain (a caller that left): its outcome is still retrieved.
        chain.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            await asyncio.wait((opened, chain), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            chain.cancel()
            if opened.done():
                await opened.result().close()
            raise
        if opened.done():
            stream = opened.result()
            stream.interceptors = _StreamOutcome(reported, chain, stream)
            return stream
        chain.result()  # refused, or failed to open: raises
        raise InternalError(method, "a client interceptor answered a stream open without opening the stream")

    async def _open_call(
        self, call: ClientCall, response_type: type[MessageT], window: int, plain_is_result: bool
    ) -> _OpenedStream[MessageT]:
        """Sends the open (§9.2) and waits for the ack, or for the first
        message of a server that sends no ack (§9.8)."""
        nc, loop = self._nc, asyncio.get_running_loop()
        deadline = None if math.isinf(call.timeout) else loop.time() + call.timeout
        errors = self._errors
        method, subject = call.method, call.subject

        def error(code: str, message: str, data: bytes, reply_headers: Mapping[str, str]) -> NatsMicroError:
            return errors.error(code, method, message, data, reply_headers)

        ack: asyncio.Future[_StreamLink[MessageT]] = loop.create_future()
        link: _StreamLink[MessageT] | None = None
        opened: _OpenedStream[MessageT] | None = None

        def abort(reason: NatsMicroError) -> None:
            # Stop sending and tell the server at once (§9.6); the reader gets the reason.
            if opened is not None:
                opened.abort()

        def start(peer_inbox: str | None, peer_window: int | None, peer_takes_batches: bool = False) -> _StreamLink[MessageT]:
            nonlocal link
            link = _StreamLink(
                nc,
                method,
                peer_inbox,
                peer_window,
                window if peer_window is not None else None,
                _decoder(response_type, self._service.json),
                error,
                self._stream_timings,
                abort,
                plain_is_result=plain_is_result,
                takes_batches=True,  # the open announces them (§9.9)
                peer_takes_batches=peer_takes_batches,
            )
            return link

        async def on_message(msg: Msg) -> None:
            if link is not None:
                await link.on_message(msg)
                return
            if ack.done():
                return
            if (msg.headers or {}).get("Status") == "503":
                ack.set_exception(NoRespondersError(method, f"no responders on {subject}"))
                return
            try:
                frame = classify(msg.headers, msg.data)
            except StreamProtocolError as err:
                ack.set_exception(error(err.code, err.message, b"", {}))
                return
            if frame.kind is FrameKind.ACK:
                ack.set_result(start(frame.inbox, frame.number, announces_batches(frame.headers)))
            elif frame.kind is FrameKind.ERROR:  # a refused open
                code = frame.headers.get(ERROR_CODE_HEADER)
                message = frame.headers.get(ERROR_MESSAGE_HEADER, "")
                ack.set_exception(error(code_from_wire(code) if code else UNKNOWN, message, frame.body, dict(frame.headers)))
            else:  # a server without acks (§9.8): its first message is the stream's, without flow control
                ack.set_result(start(None, None))
                await on_message(msg)

        inbox = nc.new_inbox()
        subscription = await nc.subscribe(inbox, cb=on_message)
        open_headers = {**call.headers, REPLY_TO_HEADER: inbox, CREDIT_HEADER: str(window), BATCH_HEADER: "true"}
        if deadline is not None:
            open_headers[TIMEOUT_HEADER] = encode_timeout(deadline - loop.time())
        try:
            try:
                await nc.publish(subject, call.payload, reply=inbox, headers=open_headers)
            except nats.errors.MaxPayloadError as err:
                raise MaxPayloadExceededError(method, "the request exceeds the server's max_payload") from err
            except nats.errors.BadSubjectError as err:
                raise ConfigError(f"{method}: invalid subject {subject!r}") from err
            except nats.errors.Error as err:
                raise ConnectionClosedError(method, f"sending the stream open: {type(err).__name__}: {err}") from err
            # Without a deadline a live server acks at once; a missing one is reported by NATS (503).
            ack_by = deadline if deadline is not None else loop.time() + self._stream_timings.peer_timeout
            try:
                async with asyncio.timeout_at(ack_by) as scope:
                    started = await ack
            except TimeoutError as err:
                if not scope.expired():
                    raise
                raise RequestTimeoutError(method, "no stream ack before the deadline") from err
        except BaseException:
            if link is not None:
                await link.close()
            await subscription.unsubscribe()
            raise
        started.subscription = subscription
        opened = _OpenedStream(started, deadline, method, errors)
        return opened

    def _default_plan(self, spec: EndpointSpec) -> _Plan:
        """:meth:`_plan` of a call that sets neither ``retry`` nor
        ``idempotent`` (most): the same for every call of the method, so made once."""
        plan = self._plans.get(spec.endpoint)
        if plan is None:
            plan = self._plans[spec.endpoint] = self._plan(spec, None, None)
        return plan

    def _plan(self, spec: EndpointSpec, retry: RetryPolicy | None, idempotent: bool | None) -> _Plan:
        """How a call is retried: the call's settings, else the method's, else the client's and the proto's."""
        method = self._methods.get(spec.endpoint, _NO_METHOD_OPTIONS)
        if idempotent is None:
            idempotent = method.idempotent if method.idempotent is not None else spec.idempotent
        return _Plan(
            policy=retry or method.retry or self._retry_policy,
            idempotent=idempotent,
            budget=self._retry_budget,
            breaker=method.circuit_breaker or self._circuit_breaker,
            circuit=f"{self._service.proto_name}.{spec.method}",
        )

    async def _attempts(self, plan: _Plan, call: ClientCall) -> Reply:
        """The end of the chain: the call's attempts (PROTOCOL §10.1)."""
        return await _run_attempts(functools.partial(self._send, call), plan, call.timeout, call.method)

    async def _send(self, call: ClientCall, attempt: int, timeout: float) -> Reply:
        """One attempt: the NATS request, its failures and error replies."""
        instrumentation = telemetry()
        if instrumentation is not None:
            instrumentation.attempt_started(attempt)
        headers = {**call.headers, TIMEOUT_HEADER: encode_timeout(timeout)}
        if attempt > 1:
            headers[ATTEMPT_HEADER] = str(attempt)
        try:
            msg = await self._watcher.call(
                call.method, self._nc.request(call.subject, call.payload, timeout=timeout, headers=headers)
            )
        except nats.errors.NoRespondersError as err:
            raise NoRespondersError(call.method, f"no responders on {call.subject}") from err
        except nats.errors.TimeoutError as err:
            raise RequestTimeoutError(call.method, f"no reply within {timeout:g}s") from err
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError) as err:
            raise ConnectionClosedError(call.method, "the NATS connection is closed") from err
        except nats.errors.MaxPayloadError as err:
            raise MaxPayloadExceededError(call.method, "the request exceeds the server's max_payload") from err
        except nats.errors.BadSubjectError as err:
            raise ConfigError(f"{call.method}: invalid subject {call.subject!r}") from err
        except nats.errors.Error as err:
            raise TransportError(call.method, f"{type(err).__name__}: {err}") from err
        reply_headers = dict(msg.headers or {})
        code = reply_headers.get(ERROR_CODE_HEADER)
        text = reply_headers.get(ERROR_MESSAGE_HEADER)
        if code is None and text is None:
            return Reply(msg.data, reply_headers)
        raise self._errors.error(
            code_from_wire(code) if code is not None else UNKNOWN, call.method, text or "", msg.data, reply_headers
        )
