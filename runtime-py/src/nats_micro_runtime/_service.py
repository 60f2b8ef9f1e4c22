"""The ADR-32 service layer: running endpoints (bounded concurrency, deadline,
reply, statistics), discovery on ``$SRV.*`` and :func:`start_service`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import re
import sys
import time
import traceback
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, TypedDict, cast

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.nuid import NUID

from ._codec import _decoder, decode_message, encode_message, failed_field
from ._codes import CANCELLED, CodeFormat, INTERNAL, PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNAVAILABLE, code_to_wire
from ._details import ERROR_DETAILS_HEADER, ERROR_DETAILS_MARKER, encode_error_body, malformed_request_detail
from ._discovery import EndpointInfo, EndpointStats, STREAM_METADATA_KEY
from ._endpoint import (
    _CODED_ERRORS,
    ClientStreamEndpoint,
    MalformedRequestError,
    RequestContext,
    RequestStream,
    ServedEndpoint,
    ServerInterceptor,
    ServerStreamEndpoint,
    StreamEndpoint,
    UnaryEndpoint,
    _STREAM_ENDPOINTS,
    _ServerStreamCall,
    _server_stream_error,
)
from ._errors import (
    ConfigError,
    DeadlineExceededError,
    INTERNAL_MESSAGE,
    InternalError,
    InvalidArgumentError,
    NatsMicroError,
    ResourceExhaustedError,
    ServiceError,
    StartError,
    UnavailableError,
    as_coded,
)
from ._guard import ConnectionGuard, MALFORMED_HEADER, guard
from ._headers import TIMEOUT_HEADER, _header_value, decode_timeout
from ._interceptor import _chain_interceptors
from ._observe import (
    DEADLINE_DROPPED,
    DISCOVERY_FAILED,
    HANDLER_FAILED,
    HANDLER_PANICKED,
    PERSIST_FAILED,
    REPLY_REFUSED,
    REQUEST_MALFORMED,
    REQUEST_SHED,
    RequestRecord,
    emit,
    record_request,
)
from ._reply_policy import ReplyPolicy, valid_subject
from ._spec import EndpointSpec, ServiceSpec
from ._store import KV_REVISION_HEADER, _Failure, _Writer, open_writers
from ._stream_link import _StreamLink
from ._streams import (
    BATCH_HEADER,
    CREDIT_HEADER,
    DEFAULT_WINDOW,
    END_HEADER,
    ERROR_CODE_HEADER,
    ERROR_MESSAGE_HEADER,
    INBOX_HEADER,
    REPLY_TO_HEADER,
    StreamProtocolError,
    StreamTimings,
    announces_batches,
    header_number,
)
from ._typevars import T

_log = logging.getLogger("nats_micro_runtime")


DEFAULT_QUEUE_GROUP = "q"
"""The queue group endpoints join unless it is disabled."""
DEFAULT_MAX_CONCURRENCY = 1024
"""Requests one endpoint handles at once unless set otherwise."""
DEFAULT_PENDING_LIMIT = 4096
"""Requests one endpoint keeps waiting for a handler slot unless the proto's
``pending_msg_limit``/``pending_bytes_limit`` or ``pending_limit`` say otherwise;
one more is refused with ``RESOURCE_EXHAUSTED``."""
DEFAULT_DRAIN_TIMEOUT = 10.0
"""Seconds :meth:`Service.stop` waits for in-flight and queued requests before cancelling them."""
DEFAULT_RETRY_AFTER_HINT = 0.1
"""Seconds a shed request's ``RetryInfo`` asks the caller to wait unless ``retry_after_hint`` says otherwise."""


class ServiceOverrides(TypedDict, total=False):
    """Run-time settings for a service, over what the proto declares."""

    name: str
    """ADR-32 service name."""
    version: str
    """ADR-32 version (SemVer)."""
    description: str
    """ADR-32 description."""
    metadata: Mapping[str, str]
    """Replaces the proto's service metadata."""
    merge_metadata: Mapping[str, str]
    """Merged over the (proto or replaced) metadata; its values win."""
    subject_prefix: str
    """Replaces the subject prefix."""
    queue_group: str | None
    """The queue group of every endpoint; ``None`` disables it. An endpoint whose proto disables it keeps it disabled."""
    timeout: float
    """Seconds, for every endpoint, over the proto's timeouts."""
    endpoint_timeouts: Mapping[str, float]
    """Seconds per endpoint name (``create_order``), over every other timeout."""
    code_format: CodeFormat
    """How the seven built-in codes are written (numbers by default)."""
    expose_internal_errors: bool
    """Send the text of exceptions without a code instead of ``internal error`` (off by default)."""
    max_concurrency: int
    """Requests each endpoint handles at once (default 1024); further ones wait."""
    interceptors: Sequence[ServerInterceptor]
    """Server interceptors, the first one outermost."""
    pending_limit: int | None
    """Requests per endpoint waiting for a slot (default 4096, or the proto's
    pending limits); ``None`` removes the bound. Beyond it: ``RESOURCE_EXHAUSTED``."""
    drain_timeout: float
    """Seconds :meth:`Service.stop` waits for requests before cancelling them (default 10)."""
    reply_allow_prefixes: Sequence[str]
    """Only reply subjects starting with one of these are served (e.g. ``["_INBOX."]``)."""
    reply_deny: Sequence[str]
    """Reply subject patterns (NATS wildcards ``*``/``>``) that are refused."""
    stream_timings: StreamTimings
    """Keepalive interval and peer timeout of streams (PROTOCOL §9.5)."""
    retry_after_hint: float
    """Seconds a shed request (backlog full) is told to wait, in its ``RetryInfo`` (default 0.1)."""
    jetstream_timeout: float
    """Seconds a JetStream request of the persistence (PROTOCOL §12) may take:
    the set-up of buckets at registration and each write (default 5)."""


DEFAULT_JETSTREAM_TIMEOUT = 5.0
"""Seconds a JetStream request of the persistence may take unless ``jetstream_timeout`` says otherwise."""

_SERVICE_NAME = re.compile(r"[A-Za-z0-9_-]+")
_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)


@dataclass
class _Settings:
    """What every endpoint of one running service shares."""

    nc: NatsClient
    service_name: str
    proto_name: str
    use_json: bool
    code_format: CodeFormat
    expose_internal_errors: bool
    max_concurrency: int
    chain: Sequence[ServerInterceptor]
    reply_policy: ReplyPolicy
    pending_limit: int | None
    stream_timings: StreamTimings
    retry_after_hint: float


def _earliest(a: float | None, b: float | None) -> float | None:
    """The smaller of two optional limits."""
    if a is None:
        return b
    return a if b is None else min(a, b)


class _Resumed(Generic[T]):
    """The rest of a coroutine that was started by hand and is waiting on
    ``waiting_on`` (what its first ``send(None)`` yielded). Awaiting this hands
    ``waiting_on`` to the running task and then passes whatever the task sends
    or throws in (results, cancellation) on to the coroutine, exactly as
    awaiting the coroutine from the start would have."""

    __slots__ = ("_call", "_waiting_on")

    def __init__(self, call: Coroutine[Any, Any, T], waiting_on: Any) -> None:
        self._call = call
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, T]:
        call, waiting_on = self._call, self._waiting_on
        while True:
            sent: Any = None
            thrown: BaseException | None = None
            try:
                sent = yield waiting_on
            except GeneratorExit:
                call.close()
                raise
            except BaseException as exc:  # cancellation, mostly: the coroutine decides what it means
                thrown = exc
            # Passed on outside the except block, so nothing the coroutine raises gets it as __context__.
            try:
                waiting_on = call.send(sent) if thrown is None else call.throw(thrown)
            except StopIteration as finished:
                return cast(T, finished.value)
            finally:
                del thrown


class _Permits:
    """The handler slots of an endpoint: a counting semaphore whose free path
    is one comparison (``asyncio.Semaphore`` costs a scan of its waiters and
    a coroutine per request). First come, first served: a request that finds
    others waiting waits behind them."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, count: int) -> None:
        self._free = count
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def take_now(self) -> bool:
        """Takes a slot if one is free and nobody waits for one."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        """Takes a slot, waiting for one in turn."""
        if self.take_now():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot as it was cancelled: the next in line gets it
            raise
        finally:
            if not waiter.done() or waiter.cancelled():
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def release(self) -> None:
        """Gives a slot back: to the first waiter still waiting, else to the free ones."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


def _start_task(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """A task for ``work``; from Python 3.12 on it starts at once (eagerly), so
    that a request that never waits is served without a trip through the
    event loop (and its task is done on return)."""
    if sys.version_info >= (3, 12):
        return asyncio.Task(work, loop=loop, eager_start=True)
    return loop.create_task(work)


class _Endpoint:
    """One subscribed endpoint: bounded concurrency, deadline, reply, statistics."""

    def __init__(
        self, info: EndpointInfo, spec: EndpointSpec, timeout: float | None, handler: ServedEndpoint, settings: _Settings
    ) -> None:
        self.info = info
        self._spec = spec
        self._timeout = timeout
        self._settings = settings
        self._handler = handler
        self._is_stream = isinstance(handler, _STREAM_ENDPOINTS)
        self._chain = _chain_interceptors(settings.chain, self._call_handler)
        self._permits = _Permits(settings.max_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._queued = 0
        self._queued_bytes = 0
        self._subscription: Subscription | None = None
        self._loop: asyncio.AbstractEventLoop
        """The event loop the endpoint serves on, from :meth:`start`."""
        self.num_requests = 0
        self.num_errors = 0
        self.last_error = ""
        self.processing_time = 0
        self.num_shed = 0
        self._store_key = (
            (spec.kv_store.key, True)
            if spec.kv_store is not None
            else (spec.object_store.key, False)
            if spec.object_store is not None
            else None
        )
        self.writers: list[_Writer] = []
        """The endpoint's writes to JetStream (PROTOCOL §12.2, §12.3), set before it starts."""

    async def start(self) -> None:
        # Asked once here: asyncio.get_running_loop() makes a system call (getpid) on Python 3.11.
        self._loop = asyncio.get_running_loop()
        if isinstance(self._handler, UnaryEndpoint) and not self.writers and not self._settings.chain:
            # Nothing around the handler: the chain is the handler's own serve (one coroutine, not three).
            self._chain = functools.partial(self._handler.serve, use_json=self._settings.use_json)
        self._subscription = await self._settings.nc.subscribe(
            self.info.subject, queue=self.info.queue_group or "", cb=self._on_message
        )

    async def drain(self, timeout: float) -> None:
        """Stops taking requests, then waits up to ``timeout`` seconds for the
        requests in flight and queued; cancels what is left and returns."""
        loop = asyncio.get_running_loop()
        until = loop.time() + max(0.0, timeout)
        if self._subscription is not None:
            try:
                # Hands what nats-py already received to _on_message, which never waits.
                # nats-py leaves Subscription.drain unannotated.
                await asyncio.wait_for(self._subscription.drain(), max(0.0, until - loop.time()))  # type: ignore[no-untyped-call]
            except (nats.errors.Error, TimeoutError) as err:
                _log.warning("draining endpoint %s: %r", self.info.name, err)
            self._subscription = None
        if not self._tasks:
            return
        _, left = await asyncio.wait(set(self._tasks), timeout=max(0.0, until - loop.time()))
        if left:
            _log.warning("endpoint %s: cancelling %d requests after the drain timeout", self.info.name, len(left))
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)

    def stats(self) -> EndpointStats:
        average = self.processing_time // self.num_requests if self.num_requests else 0
        return EndpointStats(
            self.info.name,
            self.info.subject,
            self.info.queue_group,
            self.num_requests,
            self.num_errors,
            self.last_error,
            self.processing_time,
            average,
            {"shed": self.num_shed, "persist_failures": sum(w.failures for w in self.writers)}
            if self.writers
            else {"shed": self.num_shed},
        )

    async def _on_message(self, msg: Msg) -> None:
        """Takes one request off the subscription without ever waiting, so that
        the moment it runs is the request's arrival: refuses it by the reply
        policy or for malformed headers, runs it when a slot is free, queues it
        while the pending bound allows, and refuses it with
        ``RESOURCE_EXHAUSTED`` beyond."""
        received = (time.perf_counter_ns(), self._loop.time())
        settings = self._settings
        record = record_request(
            settings.service_name, settings.proto_name, self._spec.method, self.info.name, msg.subject, msg.headers, received[0]
        )
        target = self._reply_target(msg)
        refused = target
        refusal = settings.reply_policy.refusal(target)
        if refusal is None and msg.reply and msg.reply != target:
            # A stream open's reply subject (where its ack goes) must pass as well (§9.2).
            refused = msg.reply
            refusal = settings.reply_policy.refusal(msg.reply)
        if refusal is not None:
            self._event(REPLY_REFUSED, msg.subject, reply=refused, reason=refusal)
            error = ServiceError(PERMISSION_DENIED, self._spec.method, refusal)
            self._record(time.perf_counter_ns() - received[0], error, record)
            return
        if msg.headers and MALFORMED_HEADER in msg.headers:
            self._event(REQUEST_MALFORMED, msg.subject, error=f"malformed headers: {msg.headers[MALFORMED_HEADER]}")
            bad = InvalidArgumentError(self._spec.method, f"malformed headers: {msg.headers[MALFORMED_HEADER]}")
            await self._reply(msg, None, bad, {}, received[0], record)
            return
        if self._permits.take_now():
            self._spawn(self._serve(msg, received, record))
            return
        size = len(msg.data)
        if self._over_pending_limit(size):
            self._event(REQUEST_SHED, msg.subject, queued=self._queued)
            overloaded = ResourceExhaustedError(self._spec.method, f"endpoint {self.info.name} is overloaded")
            overloaded.with_retry_delay(settings.retry_after_hint)
            self.num_shed += 1
            await self._reply(msg, None, overloaded, {}, received[0], record)
            return
        self._queued += 1
        self._queued_bytes += size
        self._spawn(self._serve_when_free(msg, received, size, record))

    def _event(
        self, event: str, subject: str, exc_info: BaseException | None = None, *, level: int | None = None, **fields: object
    ) -> None:
        """Logs one of the events of PROTOCOL §11.4 about a request to this endpoint."""
        emit(event, self._settings.service_name, self.info.name, subject, exc_info, level=level, **fields)

    def _reply_target(self, msg: Msg) -> str:
        """Where answers go: the reply subject, or for a stream its ``Reply-To``
        (a Go-plugin open has no reply subject, §9.2)."""
        if not self._is_stream:
            return msg.reply or ""
        reply_to = (msg.headers or {}).get(REPLY_TO_HEADER)
        return reply_to if reply_to is not None else msg.reply or ""

    def _over_pending_limit(self, size: int) -> bool:
        msg_limit, bytes_limit = self._spec.pending_msg_limit, self._spec.pending_bytes_limit
        if msg_limit is None and bytes_limit is None:
            msg_limit = self._settings.pending_limit
        over_msgs = msg_limit is not None and self._queued >= msg_limit
        over_bytes = bytes_limit is not None and self._queued_bytes + size > bytes_limit
        return over_msgs or over_bytes

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Runs ``work`` (a ``_serve``, which takes its task out of ``_tasks``
        when it ends: cheaper than a done callback) as a task that
        :meth:`drain` waits for."""
        task = _start_task(self._loop, work)
        if not task.done():
            self._tasks.add(task)

    async def _serve_when_free(self, msg: Msg, received: tuple[int, float], size: int, record: RequestRecord | None) -> None:
        try:
            await self._permits.take()
        except BaseException:
            self._tasks.discard(cast("asyncio.Task[None]", asyncio.current_task(self._loop)))
            raise
        finally:
            self._queued -= 1
            self._queued_bytes -= size
        await self._serve(msg, received, record)

    async def _call_handler(self, ctx: RequestContext, payload: bytes) -> bytes:
        if isinstance(self._handler, UnaryEndpoint):
            if self.writers:
                return await self._serve_persisting(self._handler, ctx, payload)
            return await self._handler.serve(ctx, payload, self._settings.use_json)
        return await self._run_stream(ctx)

    async def _serve_persisting(self, handler: UnaryEndpoint[Any, Any], ctx: RequestContext, payload: bytes) -> bytes:
        """A unary request whose response is kept in JetStream (PROTOCOL
        §12.2, §12.3): the compare-and-set revision is read before the
        handler, the response written after it and before the reply. A
        failed write is logged (``persist_failed``) and counted; under
        ``REQUIRED`` the caller gets its error instead of the response."""
        use_json, method = self._settings.use_json, self._spec.method
        request = handler.decode(ctx, payload, use_json)
        states = [await writer.before(request, ctx.headers, method) for writer in self.writers]
        body = await handler.respond(request, ctx, use_json)
        for writer, state in zip(self.writers, states):
            revision, failure, key = await writer.after(request, body, state, method)
            if failure is None:
                if revision is not None:
                    ctx.set_response_header(KV_REVISION_HEADER, str(revision))
                continue
            writer.failures += 1
            required = writer.required
            self._event(
                PERSIST_FAILED,
                ctx.subject,
                level=logging.ERROR if required else logging.WARNING,
                bucket=writer.bucket,
                key=key,
                error=failure.message,
            )
            if required:
                raise self._persist_error(failure)
        return body

    def _persist_error(self, failure: _Failure) -> NatsMicroError:
        """The error a ``REQUIRED`` write that failed replies with: its code;
        the text of an ``INTERNAL`` one only when internal errors are exposed."""
        method = self._spec.method
        if failure.error is not None:  # e.g. a key that cannot be rendered: INVALID_ARGUMENT with its BadRequest
            return failure.error
        if failure.code == INTERNAL and not self._settings.expose_internal_errors:
            return InternalError(method, INTERNAL_MESSAGE)
        return _CODED_ERRORS.error(failure.code, method, failure.message, b"", {})

    async def _serve(self, msg: Msg, received: tuple[int, float], record: RequestRecord | None) -> None:
        """One request, holding a permit it releases at the end: deadline
        (counted from arrival; an expired one never starts the handler),
        interceptors and handler, reply, statistics.

        The chain runs by hand up to its first wait: a handler that answers
        without waiting needs no deadline timer (nothing could interrupt it
        anyway); one that waits continues under ``asyncio.timeout_at``, on
        this same task, as a plain ``await`` would. With OpenTelemetry on,
        the request's span is current meanwhile, so that the handler's own
        calls are its children.
        """
        try:
            started_ns, arrived_at = received
            budget = decode_timeout(msg.headers.get(TIMEOUT_HEADER)) if msg.headers else None
            limit = _earliest(budget, self._timeout)
            deadline = None if limit is None else arrived_at + limit
            if record is not None and limit is not None:
                record.deadline_ms = limit * 1000
            if deadline is not None and self._loop.time() >= deadline:
                self._event(DEADLINE_DROPPED, msg.subject, waited_ms=(time.perf_counter_ns() - started_ns) / 1e6)
                expired = DeadlineExceededError(self._spec.method, f"{self._spec.method} expired while queued")
                await self._reply(msg, None, expired, {}, started_ns, record)
                return
            ctx = RequestContext(self._spec.method, self.info.name, msg.subject, msg.headers, deadline)
            ctx._store_key = self._store_key
            if record is not None and record.span is not None:
                record.span.activate()
            if not isinstance(self._handler, UnaryEndpoint):
                await self._serve_stream(self._handler, msg, ctx, started_ns, record)
                return
            body, error = await self._run_chain(ctx, msg.data, deadline, started_ns)
            await self._reply(msg, body, error, ctx.response_headers, started_ns, record)
        finally:
            if record is not None and record.span is not None:
                record.span.deactivate()
            self._permits.release()
            self._tasks.discard(cast("asyncio.Task[None]", asyncio.current_task(self._loop)))

    async def _run_chain(
        self, ctx: RequestContext, payload: bytes, deadline: float | None, started_ns: int
    ) -> tuple[bytes | None, NatsMicroError | None]:
        scope: asyncio.Timeout | None = None
        try:
            call = self._chain(ctx, payload)
            try:
                waiting_on = call.send(None)
            except StopIteration as answered:
                return cast(bytes, answered.value), None
            scope = asyncio.timeout_at(deadline)
            async with scope:
                return await _Resumed(call, waiting_on), None
        except Exception as err:
            if scope is not None and scope.expired():
                self._event(DEADLINE_DROPPED, ctx.subject, waited_ms=(time.perf_counter_ns() - started_ns) / 1e6)
                return None, DeadlineExceededError(self._spec.method, f"{self._spec.method} did not finish before its deadline")
            if isinstance(err, MalformedRequestError):
                self._event(REQUEST_MALFORMED, ctx.subject, error=str(err.__cause__ or err.message))
            return None, as_coded(err, self._spec.method) or self._uncoded(err, ctx)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except BaseException as err:  # e.g. a bare BaseException: it would end the task and leave the caller waiting
            return None, self._panicked(err, ctx)

    async def _serve_stream(
        self, endpoint: StreamEndpoint, msg: Msg, ctx: RequestContext, started_ns: int, record: RequestRecord | None
    ) -> None:
        """One stream of any kind (§9.2–§9.6): checks the open, subscribes the
        server's inbox and acks the open on its reply subject (a Go-plugin
        server-streaming open has none: no ack, no flow control), runs the
        interceptors and the handler under the deadline, and ends the stream
        with the handler's result and trailing headers, or its error. A cancel
        or a silent caller stops the handler and ends nothing; a protocol error
        (a lost, malformed or excess message) stops it and ends the stream
        with that error."""
        nc, method, use_json = self._settings.nc, self._spec.method, self._settings.use_json
        try:
            announced = header_number(msg.headers, CREDIT_HEADER)
            request = decode_message(msg.data, endpoint.request_type, use_json) if endpoint.kind == "server" else None
        except (ValueError, StreamProtocolError) as err:
            self._event(REQUEST_MALFORMED, msg.subject, error=str(err))
            bad_request = malformed_request_detail(str(err), failed_field(str(err)))
            malformed = InvalidArgumentError(method, f"malformed open for {method}: {err}", details=[bad_request])
            await self._reply(msg, None, malformed, {}, started_ns, record)
            return
        if endpoint.kind != "server" and not msg.reply:
            self._event(REQUEST_MALFORMED, msg.subject, error="a stream open that sends requests has no reply subject")
            refused = InvalidArgumentError(method, "a stream open that sends requests needs a reply subject for its ack")
            await self._reply(msg, None, refused, {}, started_ns, record)
            return
        handler_task = asyncio.current_task()
        handler_running = True
        stopped_by: NatsMicroError | None = None  # the caller's cancel, its silence, or a protocol error

        def stop_handler(reason: NatsMicroError) -> None:
            nonlocal stopped_by
            if handler_running and stopped_by is None and handler_task is not None:
                stopped_by = reason
                if reason.code == UNAVAILABLE:
                    _log.warning("%s: the caller went silent; cancelling the stream", method)
                handler_task.cancel()

        window = self._spec.max_inflight or DEFAULT_WINDOW
        link: _StreamLink[Any] = _StreamLink(
            nc,
            method,
            self._reply_target(msg),
            # Only a caller that announced credit and gets an ack speaks flow control (and keepalives).
            announced if msg.reply else None,
            window if announced is not None and msg.reply else None,
            _decoder(endpoint.request_type, use_json),
            _server_stream_error(method),
            self._settings.stream_timings,
            stop_handler,
            takes_batches=bool(msg.reply),  # the ack announces them (§9.9)
            peer_takes_batches=announces_batches(msg.headers),
        )
        ctx._stream = _ServerStreamCall(endpoint, request, link)
        if self._spec.chunked is not None:
            ctx._chunking = (self._spec.chunked.chunk_size, nc.max_payload, use_json)
        acked = False
        try:
            if msg.reply:
                try:
                    link.subscription = await nc.subscribe(nc.new_inbox(), cb=link.on_message)
                    # The ack goes to the open's reply subject (it may differ from Reply-To, §9.2).
                    ack = {INBOX_HEADER: link.subscription.subject, CREDIT_HEADER: str(window), BATCH_HEADER: "true"}
                    await nc.publish(msg.reply, b"", headers=ack)
                except nats.errors.Error as err:
                    _log.warning("%s: acknowledging the stream: %r", method, err)
                    failed = UnavailableError(method, f"acknowledging the stream: {err!r}")
                    self._record(time.perf_counter_ns() - started_ns, failed, record)
                    return
                acked = True
            body: bytes | None = None
            error: NatsMicroError | None = None
            scope = asyncio.timeout_at(ctx.deadline)
            try:
                async with scope:
                    body = await self._chain(ctx, msg.data)
            except asyncio.CancelledError:
                if stopped_by is None:  # the service stops (§9.5): end with UNAVAILABLE, then stop
                    stopping = UnavailableError(method, "the service is stopping")
                    await link.flush_before_end()
                    await self._reply(msg, None, stopping, {}, started_ns, record, acked)
                    raise
            except Exception as err:
                if scope.expired():
                    self._event(DEADLINE_DROPPED, msg.subject, waited_ms=(time.perf_counter_ns() - started_ns) / 1e6)
                    error = DeadlineExceededError(method, f"{method} did not finish before its deadline")
                else:
                    error = as_coded(err, method) or self._uncoded(err, ctx)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as err:  # a bare BaseException: end the stream rather than leave the caller waiting
                error = self._panicked(err, ctx)
            finally:
                handler_running = False
            if stopped_by is not None:  # whatever the handler made of the cancel, the link decided
                if handler_task is not None and handler_task.cancelling():
                    handler_task.uncancel()
                if stopped_by.code in (CANCELLED, UNAVAILABLE):  # nothing further goes to a caller that left
                    self._record(time.perf_counter_ns() - started_ns, stopped_by, record)
                    return
                error = stopped_by  # a protocol error: tell the caller (§9.6)
            result = body if endpoint.kind == "client" else None
            await link.flush_before_end()  # an end follows the last batch (§9.9)
            await self._reply(msg, result, error, ctx.response_headers, started_ns, record, acked)
        finally:
            await link.close()

    async def _run_stream(self, ctx: RequestContext) -> bytes:
        """The end of a stream's interceptor chain: the handler. Returns the
        encoded response of a client-streaming handler, else nothing."""
        call = ctx._stream
        if call is None:
            raise InternalError(ctx.method, "a stream handler ran without a stream open")
        endpoint, link, use_json = call.endpoint, call.link, self._settings.use_json
        if isinstance(endpoint, ClientStreamEndpoint):
            return encode_message(await endpoint.handler(RequestStream(link), ctx), use_json)
        if isinstance(endpoint, ServerStreamEndpoint):
            responses = endpoint.handler(call.request, ctx)
        else:
            responses = endpoint.handler(RequestStream(link), ctx)
        try:
            async for response in responses:
                try:
                    await link.send(encode_message(response, use_json))
                except NatsMicroError as err:
                    if not await self._throw_back(link, responses, err):
                        break
        except BaseException as err:
            await _stop_handler_stream(responses, err)
            raise
        await link.flush()  # the last batch goes before the end; one that failed fails the stream (§9.9)
        return b""

    async def _throw_back(self, link: _StreamLink[Any], responses: AsyncIterator[Any], err: NatsMicroError) -> bool:
        """A response that could not be sent: ``False`` once the handler has
        finished. One over ``max_payload`` is not sent and the stream stays
        open (§9.3): a generator handler gets the ``RESOURCE_EXHAUSTED`` error
        thrown in at its ``yield``, so it can catch it and go on (what it
        yields next is sent, and returning ends the stream); uncaught, or from
        a plain async iterable, or any other failure, the error ends the
        stream."""
        while True:
            if err.code != RESOURCE_EXHAUSTED or not isinstance(responses, types.AsyncGeneratorType):
                raise err
            try:
                response = await responses.athrow(err)
            except StopAsyncIteration:
                return False
            try:
                await link.send(encode_message(response, self._settings.use_json))
                return True
            except NatsMicroError as failed:
                err = failed

    def _uncoded(self, err: Exception, ctx: RequestContext) -> NatsMicroError:
        """An exception without a code: INTERNAL, its text logged
        (``handler_failed``) and withheld; a service exposing internal errors
        sends the text, with the traceback as a ``DebugInfo``."""
        self._event(HANDLER_FAILED, ctx.subject, err, error=f"{type(err).__name__}: {err}")
        return self._internal(err)

    def _panicked(self, err: BaseException, ctx: RequestContext) -> NatsMicroError:
        """A handler that raised a ``BaseException`` outside ``Exception``
        (Python's nearest thing to a panic): logged as ``handler_panicked`` and
        answered like an uncoded failure."""
        self._event(HANDLER_PANICKED, ctx.subject, err, panic=f"{type(err).__name__}: {err}")
        return self._internal(err)

    def _internal(self, err: BaseException) -> NatsMicroError:
        if not self._settings.expose_internal_errors:
            return InternalError(self._spec.method, INTERNAL_MESSAGE)
        text = f"{type(err).__name__}: {err}"
        frames = [line.rstrip("\n") for line in traceback.format_tb(err.__traceback__)]
        return InternalError(self._spec.method, text).with_debug_info(frames, text)

    async def _reply(
        self,
        msg: Msg,
        body: bytes | None,
        error: NatsMicroError | None,
        response_headers: Mapping[str, str],
        started_ns: int,
        record: RequestRecord | None,
        acked: bool = False,
    ) -> None:
        """Answers a unary request, refuses a stream open, or ends an
        ``acked`` stream (on Reply-To, §9.2), and counts it."""
        elapsed = time.perf_counter_ns() - started_ns
        headers: dict[str, str] | None = dict(response_headers) or None
        if error is not None:
            headers = {**(headers or {}), **error.headers, **self._error_headers(error)}
            body = self._error_body(error, headers)
        reply_to = self._reply_target(msg)
        if self._is_stream:
            headers = {**(headers or {}), END_HEADER: "true"}  # a refused open is an end too (§9.2)
            if not acked and msg.reply:  # refused: where the caller waits for the ack
                reply_to = msg.reply
        if reply_to:
            try:
                await self._settings.nc.publish(reply_to, body or b"", headers=headers)
            except Exception as err:  # e.g. a reply over max_payload: tell the caller rather than leave it waiting
                _log.warning("%s: sending the reply: %r", self._spec.method, err)
                if error is None:
                    error = ResourceExhaustedError(self._spec.method, f"the response could not be sent: {err!r}")
                    await self._send_bare_error(reply_to, error)
        self._record(elapsed, error, record)

    def _error_body(self, error: NatsMicroError, headers: dict[str, str]) -> bytes:
        """The body of an error reply (§4.1), marking ``headers`` when it is a
        ``Status``: details sized to fit ``max_payload`` beside the headers."""
        # A re-raised caller-side error brings the marker of the reply it came from: decide afresh.
        headers.pop(ERROR_DETAILS_HEADER, None)
        if not error.details:
            return error.data
        marked = {**headers, ERROR_DETAILS_HEADER: ERROR_DETAILS_MARKER}
        if self._is_stream:
            marked[END_HEADER] = "true"
        # NATS/1.0 CRLF, one `name: value` CRLF per header, CRLF: what max_payload counts beside the body.
        header_block = 12 + sum(len(k.encode()) + len(v.encode()) + 4 for k, v in marked.items())
        room = self._settings.nc.max_payload - header_block if self._settings.nc.max_payload else None
        body, is_status = encode_error_body(
            error.code,
            error.message,
            error.data,
            error.details,
            expose_debug=self._settings.expose_internal_errors,
            room=room,
        )
        if is_status:
            headers[ERROR_DETAILS_HEADER] = ERROR_DETAILS_MARKER
        return body

    def _error_headers(self, error: NatsMicroError) -> dict[str, str]:
        return {
            ERROR_CODE_HEADER: code_to_wire(error.code, self._settings.code_format),
            ERROR_MESSAGE_HEADER: _header_value(error.message),
        }

    async def _send_bare_error(self, reply_to: str, error: NatsMicroError) -> None:
        try:
            await self._settings.nc.publish(reply_to, b"", headers=self._error_headers(error))
        except Exception as err:
            _log.warning("%s: sending the error reply: %r", self._spec.method, err)

    def _record(self, elapsed_ns: int, error: NatsMicroError | None, record: RequestRecord | None) -> None:
        """Counts a finished request in STATS and ends its span and record."""
        self.num_requests += 1
        self.processing_time += elapsed_ns
        if error is not None:
            self.num_errors += 1
            self.last_error = f"{error.code}:{error.message}"
        if record is not None:
            record.finish(None if error is None else error.code, "" if error is None else error.message, elapsed_ns)


async def _stop_handler_stream(responses: AsyncIterator[Any], reason: BaseException) -> None:
    """Ends a handler's response generator that is suspended at a ``yield``
    (the stream was cancelled, or sending failed, while it waited): a cancel
    is thrown in at the ``yield`` so that the handler sees it as it would see
    any cancellation, then the generator is closed, so that its ``finally``
    blocks run now rather than whenever it is collected."""
    if not isinstance(responses, types.AsyncGeneratorType) or responses.ag_running:
        return
    try:
        if isinstance(reason, asyncio.CancelledError) and responses.ag_frame is not None:
            try:
                await responses.athrow(asyncio.CancelledError())
            except BaseException:  # the handler ended with the cancel, or otherwise: nothing more goes out
                return
        await responses.aclose()
    except Exception as err:  # a handler that fails while closing: the stream's outcome is decided already
        _log.debug("closing a stream handler: %r", err)


class Service:
    """A running service: discoverable through ``$SRV.PING``, ``$SRV.INFO`` and
    ``$SRV.STATS`` (bare, ``.<name>`` and ``.<name>.<id>``) until :meth:`stop`.
    Use it as an async context manager to stop it on exit."""

    def __init__(
        self,
        nc: NatsClient,
        name: str,
        version: str,
        description: str,
        metadata: Mapping[str, str],
        endpoints: Sequence[_Endpoint],
    ) -> None:
        self._nc = nc
        self.id: str = NUID().next().decode()
        """The instance id, unique per start."""
        self.name = name
        """ADR-32 service name."""
        self.version = version
        self.description = description
        self.metadata: Mapping[str, str] = dict(metadata)
        self._endpoints = list(endpoints)
        self.started = datetime.now(timezone.utc)
        """When the service started (UTC)."""
        self._discovery: list[Subscription] = []
        self._stopped = False
        self.drain_timeout = DEFAULT_DRAIN_TIMEOUT
        """Seconds :meth:`stop` waits for requests before cancelling them."""

    @property
    def endpoints(self) -> list[EndpointInfo]:
        """Names, subjects, queue groups and metadata of the endpoints, in proto order."""
        return [endpoint.info for endpoint in self._endpoints]

    def stats(self) -> list[EndpointStats]:
        """Current statistics per endpoint (what STATS reports)."""
        return [endpoint.stats() for endpoint in self._endpoints]

    def ping_json(self) -> dict[str, Any]:
        """The ``$SRV.PING`` reply."""
        return self._identity("io.nats.micro.v1.ping_response")

    def info_json(self) -> dict[str, Any]:
        """The ``$SRV.INFO`` reply."""
        return {
            **self._identity("io.nats.micro.v1.info_response"),
            "description": self.description,
            "endpoints": [info.to_json() for info in self.endpoints],
        }

    def stats_json(self) -> dict[str, Any]:
        """The ``$SRV.STATS`` reply."""
        return {
            **self._identity("io.nats.micro.v1.stats_response"),
            "started": self.started.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "endpoints": [stats.to_json() for stats in self.stats()],
        }

    def _identity(self, kind: str) -> dict[str, Any]:
        return {"type": kind, "name": self.name, "id": self.id, "version": self.version, "metadata": dict(self.metadata)}

    async def _start(self, watch: ConnectionGuard) -> None:
        denied_before = len(watch.denied_subscriptions)
        for endpoint in self._endpoints:
            await endpoint.start()
        for verb, document in (("PING", self.ping_json), ("INFO", self.info_json), ("STATS", self.stats_json)):
            for subject in (f"$SRV.{verb}", f"$SRV.{verb}.{self.name}", f"$SRV.{verb}.{self.name}.{self.id}"):
                self._discovery.append(await self._nc.subscribe(subject, cb=self._discovery_responder(document)))
        # The server answers a PING after any -ERR for the subscriptions before it. nats-py
        # may write flush()'s PING ahead of SUBs still in its pending buffer, so the first
        # round trip only guarantees they are written; the second one follows them.
        await self._nc.flush()
        await self._nc.flush()
        ours = {endpoint.info.subject for endpoint in self._endpoints} | {s.subject for s in self._discovery}
        denied = sorted(set(watch.denied_subscriptions[denied_before:]) & ours)
        if denied:
            raise StartError(f"service {self.name}: the server denied subscribing to {', '.join(denied)}")

    def _discovery_responder(self, document: Callable[[], dict[str, Any]]) -> Callable[[Msg], Awaitable[None]]:
        # Discovery replies follow the endpoints' reply-subject policy: a PING
        # must not be aimed at, say, $JS.API.STREAM.DELETE.x either.
        policy = self._endpoints[0]._settings.reply_policy if self._endpoints else ReplyPolicy()

        async def respond(msg: Msg) -> None:
            refusal = policy.refusal(msg.reply or "")
            if refusal is not None:
                emit(REPLY_REFUSED, self.name, "", msg.subject, reply=msg.reply or "", reason=refusal)
                return
            try:
                await self._nc.publish(msg.reply, json.dumps(document()).encode())
            except Exception as err:  # e.g. a closed connection or an INFO over max_payload
                emit(DISCOVERY_FAILED, self.name, "", msg.subject, error=f"{type(err).__name__}: {err}")

        return respond

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Stops within a bound: stops taking requests, waits up to
        ``drain_timeout`` seconds (default: the service's ``drain_timeout``
        setting, 10 s) for requests in flight and queued, cancels what is
        left, then leaves discovery."""
        if self._stopped:
            return
        self._stopped = True
        timeout = self.drain_timeout if drain_timeout is None else drain_timeout
        await asyncio.gather(*(endpoint.drain(timeout) for endpoint in self._endpoints))
        for subscription in self._discovery:
            try:
                await subscription.unsubscribe()
            except nats.errors.Error as err:
                _log.warning("leaving discovery: %s", err)
        self._discovery.clear()

    async def __aenter__(self) -> Service:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def start_service(
    nc: NatsClient,
    spec: ServiceSpec,
    handlers: Mapping[str, ServedEndpoint],
    overrides: ServiceOverrides,
) -> Service:
    """Validates the settings, subscribes every endpoint and the discovery
    subjects, and starts serving. Generated ``register_*`` functions call it.

    Server timeout of a request (first set wins), capped by the caller's budget
    from its ``Nats-Micro-Timeout`` header: ``endpoint_timeouts[name]``,
    ``timeout``, the endpoint's proto timeout, the service's proto timeout.
    """
    name = overrides.get("name", spec.name)
    version = overrides.get("version", spec.version)
    metadata = {**overrides.get("metadata", spec.metadata), **overrides.get("merge_metadata", {})}
    prefix = overrides.get("subject_prefix", spec.subject_prefix)
    default_group = None if spec.queue_group_disabled else DEFAULT_QUEUE_GROUP
    queue_group = overrides.get("queue_group", default_group)
    endpoint_timeouts = dict(overrides.get("endpoint_timeouts", {}))
    max_concurrency = overrides.get("max_concurrency", DEFAULT_MAX_CONCURRENCY)

    if not _SERVICE_NAME.fullmatch(name):
        raise ConfigError(f"service name {name!r} must match [A-Za-z0-9_-]+")
    if not _SEMVER.fullmatch(version):
        raise ConfigError(f"service version {version!r} is not SemVer")
    if queue_group is not None and not valid_subject(queue_group):
        raise ConfigError(f"queue group {queue_group!r} is not a valid token")
    if max_concurrency < 1:
        raise ConfigError(f"max_concurrency must be at least 1, not {max_concurrency}")
    pending_limit = overrides.get("pending_limit", DEFAULT_PENDING_LIMIT)
    if pending_limit is not None and pending_limit < 0:
        raise ConfigError(f"pending_limit must not be negative, not {pending_limit}")
    retry_after_hint = overrides.get("retry_after_hint", DEFAULT_RETRY_AFTER_HINT)
    if not retry_after_hint >= 0:
        raise ConfigError(f"retry_after_hint must not be negative, not {retry_after_hint}")
    unknown = sorted(set(endpoint_timeouts) - {e.endpoint for e in spec.endpoints})
    if unknown:
        raise ConfigError(f"endpoint_timeouts names no endpoint of {spec.proto_name}: {unknown}")
    if set(handlers) != {e.endpoint for e in spec.endpoints}:
        raise ConfigError(f"handlers {sorted(handlers)} do not match the endpoints of {spec.proto_name}")

    settings = _Settings(
        nc=nc,
        service_name=name,
        proto_name=spec.proto_name,
        use_json=spec.json,
        code_format=overrides.get("code_format", CodeFormat.NUMBERS),
        expose_internal_errors=overrides.get("expose_internal_errors", False),
        max_concurrency=max_concurrency,
        chain=tuple(overrides.get("interceptors", ())),
        reply_policy=ReplyPolicy(
            own_subjects=tuple(f"{prefix}.{endpoint.endpoint}" for endpoint in spec.endpoints),
            allow_prefixes=tuple(overrides.get("reply_allow_prefixes", ())),
            deny=tuple(overrides.get("reply_deny", ())),
        ),
        pending_limit=pending_limit,
        stream_timings=overrides.get("stream_timings", StreamTimings()),
        retry_after_hint=retry_after_hint,
    )
    endpoints = []
    for endpoint in spec.endpoints:
        subject = f"{prefix}.{endpoint.endpoint}"
        if not valid_subject(subject):
            raise ConfigError(f"endpoint subject {subject!r} has an empty token, a space, '*' or '>'")
        group = None if endpoint.queue_group_disabled else queue_group
        endpoint_metadata = dict(endpoint.metadata)
        handler = handlers[endpoint.endpoint]
        if isinstance(handler, _STREAM_ENDPOINTS):
            endpoint_metadata[STREAM_METADATA_KEY] = handler.kind  # PROTOCOL §9: a stream endpoint says its kind in INFO
        info = EndpointInfo(endpoint.endpoint, subject, group, endpoint_metadata)
        timeout = endpoint_timeouts.get(endpoint.endpoint, overrides.get("timeout", endpoint.timeout))
        endpoints.append(_Endpoint(info, endpoint, timeout, handlers[endpoint.endpoint], settings))

    await _open_persistence(nc, spec, endpoints, overrides.get("jetstream_timeout", DEFAULT_JETSTREAM_TIMEOUT))
    service = Service(nc, name, version, overrides.get("description", spec.description), metadata, endpoints)
    service.drain_timeout = overrides.get("drain_timeout", DEFAULT_DRAIN_TIMEOUT)
    watch = guard(nc)
    try:
        await service._start(watch)
    except BaseException:
        await service.stop()
        raise
    return service


async def _open_persistence(nc: NatsClient, spec: ServiceSpec, endpoints: Sequence[_Endpoint], timeout: float) -> None:
    """Creates or updates the buckets of the persisting methods (PROTOCOL
    §12.2, §12.3) and gives their endpoints their writes. JetStream that
    does not answer within ``timeout`` fails the registration with
    ``FAILED_PRECONDITION`` naming JetStream and the bucket."""
    persisting = [
        (endpoint, e)
        for endpoint, e in zip(endpoints, spec.endpoints)
        if (e.kv_store is not None and not e.kv_store.client_only)
        or (e.object_store is not None and not e.object_store.client_only)
    ]
    if not persisting:
        return
    if not timeout > 0:
        raise ConfigError(f"jetstream_timeout must be positive, not {timeout}")
    js = nc.jetstream(timeout=timeout)
    ready: set[str] = set()
    for endpoint, endpoint_spec in persisting:
        try:
            endpoint.writers = await open_writers(js, endpoint_spec.kv_store, endpoint_spec.object_store, ready)
        except _Failure as failure:
            raise _CODED_ERRORS.error(failure.code, endpoint_spec.method, f"{spec.proto_name}: {failure.message}", b"", {}) from None
