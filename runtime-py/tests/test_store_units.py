"""The parts of persistence and chunked transfer (PROTOCOL §12) that need no
nats-server: key rendering (§12.1), the bucket configurations (§12.2,
§12.3), chunking, the end's size and digest, and the max_payload check
(§12.5). tests/python/test_store.py runs them on a real server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
from collections.abc import AsyncIterator

import pytest
from google.protobuf import wrappers_pb2

import nats_micro_runtime as rt
from nats_micro_runtime._chunked import _Digest, check_chunk_size, chunks_of
from nats_micro_runtime._store import _object_digest, _ttl_header, kv_stream_config, object_stream_config

SESSION = (
    rt.KeyField("region"),
    ".n",
    rt.KeyField("number"),
    ".",
    rt.KeyField("active"),
    ".",
    rt.KeyField("kind", {0: "UNSPECIFIED", 1: "WEB"}),
)


def test_keys_render_every_kind_as_the_protocol_says() -> None:
    assert rt.render_key(SESSION, ["eu", 2**64 - 1, False, 1]) == "eu.n18446744073709551615.false.WEB"
    assert rt.render_key(SESSION, ["eu", -5, True, 0]) == "eu.n-5.true.UNSPECIFIED"
    assert rt.render_key(SESSION, ["eu", 0, True, 42]) == "eu.n0.true.42", "an undeclared enum number is decimal"
    assert rt.render_key(("report ", rt.KeyField("id"), ".bin"), ["a b/ü"], kv=False) == "report a b/ü.bin"


@pytest.mark.parametrize(
    ("values", "field", "why"),
    [
        ([None, 1, True, 1], "region", "missing"),
        (["", 1, True, 1], "region", "missing"),
        (["e u", 1, True, 1], "region", "' '"),
        (["eu*", 1, True, 1], "region", "'*'"),
        (["eu.", 1, True, 1], "region", "empty token"),
        (["a..b", 1, True, 1], "region", "empty token"),
        (["eu", None, True, 1], "number", "missing"),
    ],
)
def test_a_key_that_cannot_be_rendered_names_its_placeholder(values: list[object], field: str, why: str) -> None:
    with pytest.raises(rt.InvalidArgumentError) as failed:
        rt.render_key(SESSION, values, method="OpenSession")
    assert why in failed.value.message and failed.value.method == "OpenSession"
    bad_request = failed.value.bad_request()
    assert bad_request is not None and [v.field for v in bad_request.field_violations] == [field]


def test_object_names_need_only_their_placeholders_set() -> None:
    with pytest.raises(rt.InvalidArgumentError):
        rt.render_key(("report ", rt.KeyField("id")), [""], kv=False)


def test_templates_render_from_parts_and_filter_with_wildcards() -> None:
    template = rt.KeyTemplate("{region}.n{number}.{active}.{kind}", SESSION, lambda r: (r.region, r.number, r.active, r.kind))
    assert template.render_parts({"region": "eu", "number": 7, "active": True, "kind": 1}) == "eu.n7.true.WEB"
    assert template.filter({"kind": 1}) == "*.*.*.WEB"
    assert template.filter({"region": "eu", "number": 7}) == "eu.n7.*.*"
    assert template.matches("eu.n7.true.WEB", {"number": 7}) and not template.matches("eu.x7.true.WEB", {})
    with pytest.raises(ValueError, match="no placeholder"):
        template.filter({"nope": 1})


def test_kv_buckets_are_configured_as_nats_go_configures_them() -> None:
    bucket = rt.KvBucketSpec("b", "d", history=5, ttl=60, compression=True, metadata={"k": "v"}, limit_marker_ttl=2)
    config = kv_stream_config(bucket)
    assert (config.name, config.subjects, config.max_msgs_per_subject, config.max_age) == ("KV_b", ["$KV.b.>"], 5, 60)
    assert (config.duplicate_window, config.compression, config.metadata) == (60, "s2", {"k": "v"})
    assert (config.subject_delete_marker_ttl, config.allow_msg_ttl, config.allow_direct, config.deny_delete) == (2, True, True, True)
    plain = kv_stream_config(rt.KvBucketSpec("p"))
    assert (plain.duplicate_window, plain.compression, plain.allow_msg_ttl, plain.description) == (120, "none", None, None)
    objects = object_stream_config(rt.ObjectBucketSpec("o", "r", ttl=5, compression=True))
    assert (objects.name, objects.subjects, objects.max_age) == ("OBJ_o", ["$O.o.C.>", "$O.o.M.>"], 5)


def test_ttls_and_object_digests_are_read_and_written_as_nats_does() -> None:
    assert (_ttl_header(1.0), _ttl_header(90), _ttl_header(1.5)) == ("1s", "90s", "1500ms")
    digest = hashlib.sha256(b"x").digest()
    assert _object_digest("SHA-256=" + base64.urlsafe_b64encode(digest).decode()) == digest
    assert _object_digest("SHA-256=" + base64.urlsafe_b64encode(digest).decode().rstrip("=")) == digest
    assert _object_digest("MD5=abc") is None and _object_digest("SHA-256=!!") is None


async def collect(source: rt.ByteSource, size: int) -> list[bytes]:
    return [piece async for piece in chunks_of(source, size)]


async def test_sources_are_cut_into_chunks_of_the_size_asked() -> None:
    data = bytes(range(256)) * 40
    expected = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    assert await collect(data, 1000) == expected
    assert await collect(memoryview(data), 1000) == expected
    assert await collect([data[:3], data[3:5000], data[5000:]], 1000) == expected
    assert await collect(io.BytesIO(data), 1000) == expected

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 333):
            yield data[i : i + 333]

    assert await collect(pieces(), 1000) == expected
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    assert await collect(reader, 1000) == expected
    assert await collect(b"", 1000) == [] and await collect([], 10) == []


def test_the_end_carries_size_and_digest_and_the_receiver_checks_them() -> None:
    sent = _Digest()
    sent.update(b"hello ")
    sent.update(b"world")
    trailers = sent.trailers()
    assert trailers == {
        rt.CHUNKED_SIZE_HEADER: "11",
        rt.CHUNKED_DIGEST_HEADER: "sha-256=" + base64.b64encode(hashlib.sha256(b"hello world").digest()).decode(),
    }
    received = _Digest()
    received.update(b"hello world")
    done = received.verify(trailers, "M")
    assert (done.size, done.sha256, done.digest_verified) == (11, hashlib.sha256(b"hello world").hexdigest(), True)
    assert not received.verify({}, "M").digest_verified, "a Go-plugin sender: order and completeness only"
    for wrong in (
        {**trailers, rt.CHUNKED_SIZE_HEADER: "12"},
        {**trailers, rt.CHUNKED_SIZE_HEADER: "eleven"},
        {**trailers, rt.CHUNKED_DIGEST_HEADER: "sha-256=" + base64.b64encode(b"\0" * 32).decode()},
        {**trailers, rt.CHUNKED_DIGEST_HEADER: "md5=abc"},
        {**trailers, rt.CHUNKED_DIGEST_HEADER: "sha-256=not base64!"},
    ):
        with pytest.raises(rt.DataLossError):
            received.verify(wrong, "M")


def test_a_chunk_that_cannot_fit_max_payload_is_refused_before_sending() -> None:
    message = wrappers_pb2.BytesValue
    check_chunk_size(1000, message, False, 1000 + 4 + 64, "M")  # body 1003 + room 64
    with pytest.raises(rt.InvalidArgumentError, match="max_payload"):
        check_chunk_size(1000, message, False, 1000 + 2 + 64, "M")
    with pytest.raises(rt.InvalidArgumentError, match="max_payload"):
        check_chunk_size(1000, message, True, 1100, "M")  # base64 in JSON: 1336 bytes
    with pytest.raises(rt.InvalidArgumentError, match="chunk size"):
        check_chunk_size(0, message, False, 0, "M")
