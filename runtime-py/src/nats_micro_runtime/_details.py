"""Typed error details on the wire (PROTOCOL §4.1): an error body that is a
``google.rpc.Status``, marked by the ``Nats-Micro-Error-Details`` header.

Independent of NATS and of the exception classes, so that every rule
(marking, error data beside details, DebugInfo withholding, truncation,
lenient reading) can be tested on bytes alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from google.protobuf import any_pb2, wrappers_pb2
from google.protobuf.message import DecodeError as _ProtobufDecodeError, Message
from google.rpc import error_details_pb2, status_pb2

from ._typevars import MessageT

ERROR_DETAILS_HEADER = "Nats-Micro-Error-Details"
"""Header marking an error reply whose body is a ``google.rpc.Status``."""
ERROR_DETAILS_MARKER = "google.rpc.Status"
"""The one value of :data:`ERROR_DETAILS_HEADER` this protocol defines."""
ERROR_DATA_TYPE = "natsmicro.ErrorData"
"""Full name of the detail carrying an error's opaque data beside details."""
TYPE_URL_PREFIX = "type.googleapis.com/"
DETAILS_TRUNCATED = "DETAILS_TRUNCATED"
"""``ErrorInfo.reason`` of the marker appended when details were dropped to fit ``max_payload``."""
TRUNCATION_DOMAIN = "nats-micro"

# google.rpc.Code numbers of the canonical codes; custom and unrecognised codes are UNKNOWN (2).
_GRPC_NUMBERS = {
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}


def grpc_code_number(code: str) -> int:
    """The ``google.rpc.Code`` number of a canonical code; ``2`` (UNKNOWN) for any other.

    >>> grpc_code_number("NOT_FOUND"), grpc_code_number("ORDER_EXPIRED")
    (5, 2)
    """
    return _GRPC_NUMBERS.get(code, 2)


def type_name(detail: any_pb2.Any) -> str:
    """The full message name of a detail: its type URL after the last ``/``
    (any prefix is accepted)."""
    return detail.type_url.rpartition("/")[2]


def pack_detail(detail: Message) -> any_pb2.Any:
    """A detail as an ``Any`` (an ``Any`` is kept as it is, so unknown details travel verbatim)."""
    if isinstance(detail, any_pb2.Any):
        return detail
    packed = any_pb2.Any()
    packed.type_url = TYPE_URL_PREFIX + detail.DESCRIPTOR.full_name
    packed.value = detail.SerializeToString()
    return packed


def unpack_detail(detail: any_pb2.Any, message_type: type[MessageT]) -> MessageT | None:
    """``detail`` as a ``message_type`` when it is one and decodes; else ``None``."""
    if type_name(detail) != message_type.DESCRIPTOR.full_name:
        return None
    try:
        return message_type.FromString(detail.value)
    except _ProtobufDecodeError:
        return None


@dataclass(frozen=True)
class ErrorBody:
    """What an error reply carries besides its code and message headers."""

    data: bytes
    """The error's opaque data."""
    details: list[any_pb2.Any]
    """The typed details, in order (without the error data's own detail)."""


def decode_error_body(headers: Mapping[str, str] | None, body: bytes) -> ErrorBody:
    """Reads an error reply's body: a ``Status`` when the marker header says
    so, else the data byte for byte. Lenient: a wrong marker or a body that
    does not decode leaves the body as data without details."""
    if headers is None or headers.get(ERROR_DETAILS_HEADER) != ERROR_DETAILS_MARKER:
        return ErrorBody(body, [])
    try:
        status = status_pb2.Status.FromString(body)
    except _ProtobufDecodeError:
        return ErrorBody(body, [])
    data = b""
    details: list[any_pb2.Any] = []
    for detail in status.details:
        carried = _error_data(detail)
        if carried is None:
            details.append(detail)
        else:
            data = carried
    return ErrorBody(data, details)


def _error_data(detail: any_pb2.Any) -> bytes | None:
    """The data of a ``natsmicro.ErrorData`` detail (``None`` for any other
    detail, or one that does not decode, which stays a detail)."""
    if type_name(detail) != ERROR_DATA_TYPE:
        return None
    try:
        # natsmicro.ErrorData is `bytes data = 1`: the wire form of BytesValue.
        return wrappers_pb2.BytesValue.FromString(detail.value).value
    except _ProtobufDecodeError:
        return None


def _error_data_detail(data: bytes) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.type_url = TYPE_URL_PREFIX + ERROR_DATA_TYPE
    packed.value = wrappers_pb2.BytesValue(value=data).SerializeToString()
    return packed


def _field_size(length: int) -> int:
    """Bytes a length-delimited field with a one-byte tag takes in the Status."""
    return 1 + _varint_size(length) + length


def _varint_size(value: int) -> int:
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


def truncation_marker(dropped: int) -> any_pb2.Any:
    """The ``ErrorInfo`` appended when ``dropped`` details did not fit."""
    info = error_details_pb2.ErrorInfo(reason=DETAILS_TRUNCATED, domain=TRUNCATION_DOMAIN, metadata={"dropped": str(dropped)})
    return pack_detail(info)


def encode_error_body(
    code: str,
    message: str,
    data: bytes,
    details: Sequence[any_pb2.Any],
    *,
    expose_debug: bool,
    room: int | None,
) -> tuple[bytes, bool]:
    """The body of an error reply and whether it is marked as a ``Status``.

    Without details (after removing ``DebugInfo`` unless ``expose_debug``)
    the body is ``data``, exactly as an error without details. Otherwise a
    ``Status`` with the data as a ``natsmicro.ErrorData`` detail first; when
    it exceeds ``room`` bytes, details are dropped from the last backwards
    and a ``DETAILS_TRUNCATED`` ``ErrorInfo`` says how many.
    """
    debug_info = error_details_pb2.DebugInfo.DESCRIPTOR.full_name
    sent = [detail for detail in details if expose_debug or type_name(detail) != debug_info]
    if not sent:
        return data, False
    if data:
        sent.insert(0, _error_data_detail(data))
    head = status_pb2.Status(code=grpc_code_number(code), message=message).SerializeToString()
    sizes = [_field_size(detail.ByteSize()) for detail in sent]
    total = len(head) + sum(sizes)
    kept = len(sent)
    if room is not None and total > room:
        while kept > 0:
            total -= sizes[kept - 1]
            kept -= 1
            marker = _field_size(truncation_marker(len(sent) - kept).ByteSize())
            if total + marker <= room:
                break
    status = status_pb2.Status(code=grpc_code_number(code), message=message, details=sent[:kept])
    if kept < len(sent):
        status.details.append(truncation_marker(len(sent) - kept))
    return status.SerializeToString(), True


def malformed_request_detail(description: str, field: str = "") -> error_details_pb2.BadRequest:
    """The ``BadRequest`` of a request that does not decode (§4.1)."""
    violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
    return error_details_pb2.BadRequest(field_violations=[violation])


def packed(details: Iterable[Message]) -> list[any_pb2.Any]:
    """Every detail as an ``Any``, in order."""
    return [pack_detail(detail) for detail in details]
