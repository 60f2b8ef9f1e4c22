"""The exceptions: :class:`NatsMicroError` above everything raised by the
runtime and generated code, :class:`ServiceError` for error replies (one
subclass per code), :class:`TransportError` for failures on the way, and the
duck-typed reading of codes across runtime copies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar, Protocol, runtime_checkable

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


INTERNAL_MESSAGE = "internal error"
"""What a caller reads for an exception that carries no code (its text is logged, not sent)."""


class NatsMicroError(Exception):
    """Base of every exception this runtime and generated code raise.

    Every one has a :attr:`code` (``NOT_FOUND``, ``ORDER_EXPIRED``, or a value
    kept verbatim from the wire), a :attr:`message`, the RPC :attr:`method` it
    belongs to (proto name, e.g. ``CreateOrder``), error :attr:`data` (the body
    of an error reply) and :attr:`headers` (of the reply on a client; sent with
    the reply when a handler raises it).

    A handler or server interceptor that raises one sends exactly its code,
    message, data and headers.
    """

    code: str
    method: str | None
    message: str
    data: bytes
    headers: dict[str, str]
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
    ) -> None:
        super().__init__(message)
        self.code = code
        self.method = method
        self.message = message
        self.data = data
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        where = f" {self.method}:" if self.method else ""
        return f"[{self.code}]{where} {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, method={self.method!r}, message={self.message!r}, data={self.data!r})"


    def nats_error_code(self) -> str:
        """The code, through the duck-typed accessor every runtime copy and
        language shares (see :class:`CodedError`)."""
        return self.code


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
    see :func:`error_code`), keeping message, data and headers; else ``None``."""
    if isinstance(err, NatsMicroError):
        return err
    code = error_code(err)
    if code is None:
        return None
    message = getattr(err, "message", None)
    data = getattr(err, "data", b"")
    headers = getattr(err, "headers", None)
    return ServiceError(
        code,
        getattr(err, "method", None) or method,
        message if isinstance(message, str) else str(err),
        data if isinstance(data, bytes) else b"",
        headers={str(k): str(v) for k, v in headers.items()} if isinstance(headers, Mapping) else None,
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
    ``NotFoundError(method, message, data)``."""

    CODE: ClassVar[str] = UNKNOWN

    def __init__(
        self,
        method: str | None,
        message: str,
        data: bytes = b"",
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(self.CODE, method, message, data, headers=headers)


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
        self, code: str, method: str | None, message: str, data: bytes, headers: Mapping[str, str]
    ) -> ServiceError:
        """The exception for an error reply."""
        coded = self._by_code.get(code)
        if coded is not None:
            return coded(method, message, data, headers=headers)
        return self._base(code, method, message, data, headers=headers)
