"""Type variables shared by the runtime's modules."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import Message


T = TypeVar("T")
MessageT = TypeVar("MessageT", bound=Message)
RequestT = TypeVar("RequestT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)
U = TypeVar("U")
