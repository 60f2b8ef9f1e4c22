"""Messages on the wire: binary protobuf, or the proto3 JSON mapping."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from google.protobuf import json_format
from google.protobuf.message import DecodeError as _ProtobufDecodeError, Message

from ._typevars import MessageT


def encode_message(message: Message, use_json: bool) -> bytes:
    """Binary protobuf, or the proto3 JSON mapping for ``json: true`` services."""
    if use_json:
        return json_format.MessageToJson(message, indent=None, ensure_ascii=False).encode()
    return message.SerializeToString()


def decode_message(data: bytes, message_type: type[MessageT], use_json: bool) -> MessageT:
    """Decodes a body; an empty body is the empty message in both encodings.
    Raises ``ValueError`` (with the reason) when the body does not decode."""
    message = message_type()
    if not data:
        return message
    try:
        if use_json:
            return json_format.Parse(data.decode(), message, ignore_unknown_fields=True)
        message.ParseFromString(data)
    except (_ProtobufDecodeError, json_format.ParseError, UnicodeDecodeError) as err:
        raise ValueError(str(err) or type(err).__name__) from err
    return message


_JSON_FIELD = re.compile(r"Failed to parse (\S+) field: ")


def failed_field(reason: str) -> str:
    """The field path a decoding failure names (``items.qty``): protobuf's JSON
    parser names each field it was inside; the binary parser names none (``""``).

    >>> failed_field("Failed to parse items field: Failed to parse qty field: not an int")
    'items.qty'
    """
    return ".".join(_JSON_FIELD.findall(reason))


def _decoder(message_type: type[MessageT], use_json: bool) -> Callable[[bytes], MessageT]:
    """Decodes bodies as ``message_type``; ``ValueError`` when one does not decode."""
    return functools.partial(decode_message, message_type=message_type, use_json=use_json)
