"""The exceptions: :class:`NatsMicroError` above everything raised by the
runtime and generated code, :class:`ServiceError` for error replies (one
subclass per code), :class:`TransportError` for failures on the way, and the
duck-typed reading of codes across runtime copies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import ClassVar, Protocol, Self, runtime_checkable

from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from ._codes import (
    ABORTED,
    ALREADY_EXISTS,
    CANCELLED,
    DATA_LOSS,
    DEADLINE_EXCEEDED,
    FAILED_PRECONDITION,
    INTERNAL,
    INVALID_ARGUMENT,
    NOT_FOUND,
    OUT_OF_RANGE,
    PERMISSION_DENIED,
    RESOURCE_EXHAUSTED,
    UNAUTHENTICATED,
    UNAVAILABLE,
    UNIMPLEMENTED,
    UNKNOWN,
)
from ._details import decode_error_body, pack_detail, packed, type_name, unpack_detail
from ._typevars import MessageT


INTERNAL_MESSAGE = "internal error"
"""What a caller reads for an exception that carries no code (its text is logged, not sent)."""


class NatsMicroError(Exception):
    """Base of every exception this runtime and generated code raise.

    Every one has a :attr:`code` (``NOT_FOUND``, ``ORDER_EXPIRED``, or a value
    kept verbatim from the wire), a :attr:`message`, the RPC :attr:`method` it
    belongs to (proto name, e.g. ``CreateOrder``), error :attr:`data` (the body
    of an error reply), :attr:`headers` (of the reply on a client; sent with
    the reply when a handler raises it) and typed :attr:`details`
    (PROTOCOL §4.1).

    A handler or server interceptor that raises one sends exactly its code,
    message, data, details and headers (``DebugInfo`` only when the service
    exposes internal errors)::

        raise NotFoundError(ctx.method, "no such order", details=[ResourceInfo(resource_name="o-9")])
        raise InvalidArgumentError(ctx.method, "bad order").with_field_violation("items[0].qty", "must be positive")

    and a caller reads them back typed: ``err.bad_request()``,
    ``err.detail(MyHint)``, ``err.details_of(Help)``.
    """

    code: str
    method: str | None
    message: str
    data: bytes
    headers: dict[str, str]
    details: list[any_pb2.Any]
    """Every detail as an ``Any``, in order; types this process does not know
    stay here as received and are sent again verbatim when re-raised."""
    attempts: int = 1
    """How many times a client sent the call that failed with this error
    (more than 1 when its retry policy retried it, PROTOCOL §10.1)."""

    def __init__(
        self,
        code: str,
        method: str | None,
        message: str,
        data: bytes = b"",
        *,
        headers: Mapping[str, str] | None = None,
        details: Iterable[Message] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.method = method
        self.message = message
        self.data = data
        self.headers = dict(headers or {})
        self.details = packed(details)

    def __str__(self) -> str:
        where = f" {self.method}:" if self.method else ""
        return f"[{self.code}]{where} {self.message}"

    def __repr__(self) -> str:
        shown = f", details={[type_name(d) for d in self.details]!r}" if self.details else ""
        fields = f"code={self.code!r}, method={self.method!r}, message={self.message!r}, data={self.data!r}{shown}"
        return f"{type(self).__name__}({fields})"

    def nats_error_code(self) -> str:
        """The code, through the duck-typed accessor every runtime copy and
        language shares (see :class:`CodedError`)."""
        return self.code

    # Reading details.

    def detail(self, message_type: type[MessageT]) -> MessageT | None:
        """The first detail of ``message_type`` (any protobuf message class), or ``None``."""
        for detail in self.details:
            found = unpack_detail(detail, message_type)
            if found is not None:
                return found
        return None

    def details_of(self, message_type: type[MessageT]) -> list[MessageT]:
        """Every detail of ``message_type``, in order."""
        found = (unpack_detail(detail, message_type) for detail in self.details)
        return [message for message in found if message is not None]

    def error_info(self) -> error_details_pb2.ErrorInfo | None:
        """The first ``google.rpc.ErrorInfo`` detail."""
        return self.detail(error_details_pb2.ErrorInfo)

    def retry_info(self) -> error_details_pb2.RetryInfo | None:
        """The first ``google.rpc.RetryInfo`` detail."""
        return self.detail(error_details_pb2.RetryInfo)

    def retry_delay(self) -> float | None:
        """Seconds the service asks the caller to wait (its ``RetryInfo``), or ``None``."""
        info = self.retry_info()
        return None if info is None else info.retry_delay.seconds + info.retry_delay.nanos / 1e9

    def debug_info(self) -> error_details_pb2.DebugInfo | None:
        """The first ``google.rpc.DebugInfo`` detail (sent only by services exposing internal errors)."""
        return self.detail(error_details_pb2.DebugInfo)

    def quota_failure(self) -> error_details_pb2.QuotaFailure | None:
        """The first ``google.rpc.QuotaFailure`` detail."""
        return self.detail(error_details_pb2.QuotaFailure)

    def precondition_failure(self) -> error_details_pb2.PreconditionFailure | None:
        """The first ``google.rpc.PreconditionFailure`` detail."""
        return self.detail(error_details_pb2.PreconditionFailure)

    def bad_request(self) -> error_details_pb2.BadRequest | None:
        """The first ``google.rpc.BadRequest`` detail."""
        return self.detail(error_details_pb2.BadRequest)

    def request_info(self) -> error_details_pb2.RequestInfo | None:
        """The first ``google.rpc.RequestInfo`` detail."""
        return self.detail(error_details_pb2.RequestInfo)

    def resource_info(self) -> error_details_pb2.ResourceInfo | None:
        """The first ``google.rpc.ResourceInfo`` detail."""
        return self.detail(error_details_pb2.ResourceInfo)

    def help(self) -> error_details_pb2.Help | None:
        """The first ``google.rpc.Help`` detail."""
        return self.detail(error_details_pb2.Help)

    def localized_message(self) -> error_details_pb2.LocalizedMessage | None:
        """The first ``google.rpc.LocalizedMessage`` detail."""
        return self.detail(error_details_pb2.LocalizedMessage)

    # Adding details; each returns the error, so that they chain.

    def with_details(self, *details: Message) -> Self:
        """Appends details: any protobuf messages (an ``Any`` is kept as it is)."""
        self.details.extend(packed(details))
        return self

    def with_error_info(self, reason: str, domain: str, metadata: Mapping[str, str] | None = None) -> Self:
        """Appends an ``ErrorInfo``: why (UPPER_SNAKE ``reason``), in which ``domain``."""
        return self.with_details(error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata or {}))

    def with_retry_delay(self, seconds: float) -> Self:
        """Appends a ``RetryInfo`` asking the caller to wait ``seconds`` before retrying."""
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(seconds * 1e9))
        return self.with_details(error_details_pb2.RetryInfo(retry_delay=delay))

    def with_debug_info(self, stack_entries: Iterable[str], detail: str = "") -> Self:
        """Appends a ``DebugInfo``; it leaves the service only when internal errors are exposed."""
        return self.with_details(error_details_pb2.DebugInfo(stack_entries=list(stack_entries), detail=detail))

    def with_request_info(self, request_id: str, serving_data: str = "") -> Self:
        """Appends a ``RequestInfo``."""
        return self.with_details(error_details_pb2.RequestInfo(request_id=request_id, serving_data=serving_data))

    def with_resource_info(self, resource_type: str, resource_name: str, owner: str = "", description: str = "") -> Self:
        """Appends a ``ResourceInfo``."""
        info = error_details_pb2.ResourceInfo(
            resource_type=resource_type, resource_name=resource_name, owner=owner, description=description
        )
        return self.with_details(info)

    def with_localized_message(self, locale: str, message: str) -> Self:
        """Appends a ``LocalizedMessage``."""
        return self.with_details(error_details_pb2.LocalizedMessage(locale=locale, message=message))

    def with_field_violation(self, field: str, description: str) -> Self:
        """Adds a field violation to the ``BadRequest`` detail (appended if there is none yet)."""
        violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
        return self._extend(error_details_pb2.BadRequest, lambda d: d.field_violations.append(violation))

    def with_quota_violation(self, subject: str, description: str) -> Self:
        """Adds a violation to the ``QuotaFailure`` detail (appended if there is none yet)."""
        violation = error_details_pb2.QuotaFailure.Violation(subject=subject, description=description)
        return self._extend(error_details_pb2.QuotaFailure, lambda d: d.violations.append(violation))

    def with_precondition_violation(self, type: str, subject: str, description: str) -> Self:
        """Adds a violation to the ``PreconditionFailure`` detail (appended if there is none yet)."""
        violation = error_details_pb2.PreconditionFailure.Violation(type=type, subject=subject, description=description)
        return self._extend(error_details_pb2.PreconditionFailure, lambda d: d.violations.append(violation))

    def with_help_link(self, description: str, url: str) -> Self:
        """Adds a link to the ``Help`` detail (appended if there is none yet)."""
        link = error_details_pb2.Help.Link(description=description, url=url)
        return self._extend(error_details_pb2.Help, lambda d: d.links.append(link))

    def _extend(self, message_type: type[MessageT], add: Callable[[MessageT], None]) -> Self:
        """Changes the first detail of ``message_type`` in place, or appends a new one."""
        for index, detail in enumerate(self.details):
            found = unpack_detail(detail, message_type)
            if found is not None:
                add(found)
                self.details[index] = pack_detail(found)
                return self
        created = message_type()
        add(created)
        return self.with_details(created)


@runtime_checkable
class CodedError(Protocol):
    """What makes an exception carry a code across runtime copies: a
    ``nats_error_code()`` method (and, optionally, ``message``, ``data`` and
    ``headers`` attributes). A handler that raises any such exception replies
    with its code, even when its class comes from another copy of this
    runtime or from another library."""

    def nats_error_code(self) -> str: ...


def error_code(err: BaseException | None) -> str | None:
    """The code an exception carries, duck-typed: a :class:`NatsMicroError`'s
    ``code``, or any object's ``nats_error_code()``; ``None`` without one."""
    if isinstance(err, NatsMicroError):
        return err.code
    accessor = getattr(err, "nats_error_code", None)
    if callable(accessor):
        try:
            code = accessor()
        except Exception:  # a foreign accessor that fails carries no code
            return None
        return code if isinstance(code, str) and code else None
    return None


def as_coded(err: BaseException, method: str | None) -> NatsMicroError | None:
    """``err`` as a :class:`NatsMicroError` if it carries a code (duck-typed,
    see :func:`error_code`), keeping message, data, headers and details; else ``None``."""
    if isinstance(err, NatsMicroError):
        return err
    code = error_code(err)
    if code is None:
        return None
    message = getattr(err, "message", None)
    data = getattr(err, "data", b"")
    headers = getattr(err, "headers", None)
    details = getattr(err, "details", None)
    return ServiceError(
        code,
        getattr(err, "method", None) or method,
        message if isinstance(message, str) else str(err),
        data if isinstance(data, bytes) else b"",
        headers={str(k): str(v) for k, v in headers.items()} if isinstance(headers, Mapping) else None,
        details=[d for d in details if isinstance(d, Message)] if isinstance(details, list) else (),
    )


class ServiceError(NatsMicroError):
    """An error reply: raised by clients when a service answers with one, and
    raised by handlers to send one. ``ServiceError(code, method, message, data)``.

    Each generated service has its own subclass (``OrderServiceError``) and
    one subclass of that per code (``OrderServiceNotFoundError``), which also
    derives from the code's class here (:class:`NotFoundError`), so both
    ``except OrderServiceError`` and ``except NotFoundError`` catch it.
    """

    @classmethod
    def checker(cls, code: str) -> Callable[[BaseException | None], bool]:
        """``is_<service>_<code>``: whether an exception is an error reply of
        this service class with ``code``."""

        def check(err: BaseException | None) -> bool:
            return isinstance(err, cls) and err.code == code

        return check


class CodedServiceError(ServiceError):
    """A :class:`ServiceError` whose class fixes the code (in :attr:`CODE`):
    ``NotFoundError(method, message, data, details=[...])``."""

    CODE: ClassVar[str] = UNKNOWN

    def __init__(
        self,
        method: str | None,
        message: str,
        data: bytes = b"",
        *,
        headers: Mapping[str, str] | None = None,
        details: Iterable[Message] = (),
    ) -> None:
        super().__init__(self.CODE, method, message, data, headers=headers, details=details)


class InvalidArgumentError(CodedServiceError):
    """``INVALID_ARGUMENT`` (400): the request is malformed or fails validation."""

    CODE = INVALID_ARGUMENT


class UnauthenticatedError(CodedServiceError):
    """``UNAUTHENTICATED`` (401): the caller has no valid credentials."""

    CODE = UNAUTHENTICATED


class PermissionDeniedError(CodedServiceError):
    """``PERMISSION_DENIED`` (403): the caller may not do this."""

    CODE = PERMISSION_DENIED


class NotFoundError(CodedServiceError):
    """``NOT_FOUND`` (404): the entity does not exist."""

    CODE = NOT_FOUND


class AlreadyExistsError(CodedServiceError):
    """``ALREADY_EXISTS`` (409): the entity exists already."""

    CODE = ALREADY_EXISTS


class InternalError(CodedServiceError):
    """``INTERNAL`` (500): a fault inside the service."""

    CODE = INTERNAL


class UnavailableError(CodedServiceError):
    """``UNAVAILABLE`` (503): the service cannot serve now; the caller may retry."""

    CODE = UNAVAILABLE


class CancelledError(CodedServiceError):
    """``CANCELLED``: the operation was cancelled (not :class:`asyncio.CancelledError`)."""

    CODE = CANCELLED


class UnknownError(CodedServiceError):
    """``UNKNOWN``: an error without a code (e.g. a reply with only ``Nats-Service-Error``)."""

    CODE = UNKNOWN


class DeadlineExceededError(CodedServiceError):
    """``DEADLINE_EXCEEDED``: the service gave up at the deadline. A client that
    gave up first raises :class:`RequestTimeoutError` instead."""

    CODE = DEADLINE_EXCEEDED


class ResourceExhaustedError(CodedServiceError):
    """``RESOURCE_EXHAUSTED``: a quota or a size limit was hit."""

    CODE = RESOURCE_EXHAUSTED


class FailedPreconditionError(CodedServiceError):
    """``FAILED_PRECONDITION``: the system is not in a state that allows this."""

    CODE = FAILED_PRECONDITION


class AbortedError(CodedServiceError):
    """``ABORTED``: a concurrency conflict aborted the operation."""

    CODE = ABORTED


class OutOfRangeError(CodedServiceError):
    """``OUT_OF_RANGE``: a value is past the valid range."""

    CODE = OUT_OF_RANGE


class UnimplementedError(CodedServiceError):
    """``UNIMPLEMENTED``: the operation is not implemented."""

    CODE = UNIMPLEMENTED


class DataLossError(CodedServiceError):
    """``DATA_LOSS``: unrecoverable data loss or corruption."""

    CODE = DATA_LOSS


class TransportError(NatsMicroError):
    """The call failed on the way: no reply from a service came back.
    ``TransportError(method, message)``; the code says what a caller would
    otherwise have been told (``UNAVAILABLE`` unless a subclass says better)."""

    CODE: ClassVar[str] = UNAVAILABLE

    def __init__(self, method: str | None, message: str) -> None:
        super().__init__(self.CODE, method, message)


class NoRespondersError(TransportError):
    """Nobody listens on the subject (code ``UNAVAILABLE``)."""


class RequestTimeoutError(TransportError, TimeoutError):
    """No reply before the deadline (code ``DEADLINE_EXCEEDED``); also a :class:`TimeoutError`."""

    CODE = DEADLINE_EXCEEDED


class ConnectionClosedError(TransportError):
    """The NATS connection is closed or draining (code ``UNAVAILABLE``)."""


class ConnectionLostError(TransportError):
    """The NATS connection was lost while the request was in flight (code
    ``UNAVAILABLE``, kind "connection lost"): the call fails at once instead
    of waiting out its timeout, and the request may have been executed.
    Retried only for methods that are safe to repeat (PROTOCOL §10.1)."""

    KIND: ClassVar[str] = "connection lost"


class CircuitOpenError(TransportError):
    """The call's circuit breaker is open (code ``UNAVAILABLE``, kind "circuit
    open"): failed at once without touching the network, and never retried
    (PROTOCOL §10.2)."""

    KIND: ClassVar[str] = "circuit open"


class MaxPayloadExceededError(TransportError):
    """The request is larger than the server's ``max_payload`` (code ``RESOURCE_EXHAUSTED``)."""

    CODE = RESOURCE_EXHAUSTED


class EncodeError(NatsMicroError):
    """The request could not be encoded (code ``INTERNAL``)."""

    def __init__(self, method: str | None, message: str) -> None:
        super().__init__(INTERNAL, method, message)


class DecodeError(NatsMicroError):
    """The reply could not be decoded as the response message (code ``INTERNAL``)."""

    def __init__(self, method: str | None, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(INTERNAL, method, message, headers=headers)


class StartError(NatsMicroError):
    """A service could not start: e.g. the server denied a subscription (code ``PERMISSION_DENIED``)."""

    def __init__(self, message: str) -> None:
        super().__init__(PERMISSION_DENIED, None, message)


class ConfigError(NatsMicroError, ValueError):
    """A service or client setting is invalid (code ``INVALID_ARGUMENT``)."""

    def __init__(self, message: str) -> None:
        super().__init__(INVALID_ARGUMENT, None, message)


class ErrorTable:
    """How a client of one service turns an error reply into an exception: the
    per-code class when the service declares the code, else the service's base
    class with the code as received. Without ``by_code``, the per-code classes
    are the base's :class:`CodedServiceError` subclasses declared next to it
    (what generated modules declare)."""

    def __init__(self, base: type[ServiceError], by_code: Mapping[str, type[CodedServiceError]] | None = None) -> None:
        self._base = base
        if by_code is None:
            by_code = {
                sub.CODE: sub
                for sub in base.__subclasses__()
                if issubclass(sub, CodedServiceError) and sub.__module__ == base.__module__
            }
        self._by_code = dict(by_code)

    def error(
        self, code: str, method: str | None, message: str, body: bytes, headers: Mapping[str, str]
    ) -> ServiceError:
        """The exception for an error reply; ``body`` is read as §4.1 says
        (a ``Status`` with details when the headers mark it, else the data)."""
        read = decode_error_body(headers, body)
        coded = self._by_code.get(code)
        if coded is not None:
            return coded(method, message, read.data, headers=headers, details=read.details)
        return self._base(code, method, message, read.data, headers=headers, details=read.details)
