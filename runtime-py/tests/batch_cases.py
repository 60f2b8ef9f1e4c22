"""Batch bodies (PROTOCOL §9.9) and the malformed batches every receiver
must refuse, shared by the link's unit tests and the end-to-end ones."""

from __future__ import annotations

import nats_micro_runtime as rt
from google.protobuf import wrappers_pb2


def framed(*bodies: bytes) -> bytes:
    """A batch body: each message behind its varint length."""
    return b"".join(rt.encode_varint(len(body)) + body for body in bodies)


def ints(*values: int) -> list[bytes]:
    """``Int64Value``s, encoded."""
    return [wrappers_pb2.Int64Value(value=v).SerializeToString() for v in values]


# (headers beside `Nats-Stream-Seq: 1`, body, the values delivered before the failure, the code), for a window of 4.
MALFORMED = [
    ({rt.BATCH_HEADER: "x"}, framed(*ints(1, 2)), [], "INVALID_ARGUMENT"),
    ({rt.BATCH_HEADER: "0"}, b"", [], "INVALID_ARGUMENT"),
    ({rt.BATCH_HEADER: "2"}, framed(*ints(1)) + b"\x80", [], "INVALID_ARGUMENT"),
    ({rt.BATCH_HEADER: "2"}, framed(*ints(1)) + b"\x05ab", [], "INVALID_ARGUMENT"),
    ({rt.BATCH_HEADER: "2"}, framed(*ints(1, 2, 3)), [], "INVALID_ARGUMENT"),
    ({rt.BATCH_HEADER: "3"}, framed(*ints(1, 2)), [], "INVALID_ARGUMENT"),
    ({rt.BATCH_HEADER: "5"}, framed(*ints(1, 2, 3, 4, 5)), [], "RESOURCE_EXHAUSTED"),
    ({rt.SEQ_HEADER: "2", rt.BATCH_HEADER: "2"}, framed(*ints(2, 3)), [], "DATA_LOSS"),
    ({rt.BATCH_HEADER: "3"}, framed(*ints(1, 2), b"\xff\xff"), [1, 2], "INVALID_ARGUMENT"),
]
MALFORMED_IDS = [
    "count does not parse", "count 0", "ends inside a length", "ends inside a message", "more than the count",
    "fewer than the count", "beyond the credit", "not the next sequence number", "a message does not decode",
]  # fmt: skip
