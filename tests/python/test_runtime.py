"""The shared runtime's pieces on their own: code wire forms (the same table
as the Rust runtime's), the deadline header, and message codecs."""

from __future__ import annotations

import json
from pathlib import Path

import doctest

import nats_micro_runtime as rt
import pytest
from order.v1 import order_pb2


def test_every_canonical_code_round_trips_in_both_formats() -> None:
    for code in rt.CANONICAL_CODES:
        assert rt.code_from_wire(code) == code
        assert rt.code_to_wire(code, rt.CodeFormat.NAMES) == code
        number = rt.BUILTIN_NUMBERS.get(code)
        if number is None:
            assert rt.code_to_wire(code) == code, "extras always travel by name"
        else:
            assert rt.code_from_wire(str(number)) == code
            assert rt.code_to_wire(code) == str(number)
    assert len(rt.CANONICAL_CODES) == 16 and rt.CANONICAL_CODES[:7] == tuple(rt.BUILTIN_NUMBERS)


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        ("404", "NOT_FOUND"),
        (" 404 ", "NOT_FOUND"),
        ("NOT_FOUND", "NOT_FOUND"),
        ("", "UNKNOWN"),
        ("  ", "UNKNOWN"),
        ("ORDER_EXPIRED", "ORDER_EXPIRED"),
        (" ORDER_EXPIRED ", "ORDER_EXPIRED"),
        ("418", "418"),
        ("not a code", "not a code"),
        ("Order-Expired", "Order-Expired"),
    ],
)
def test_codes_are_read_leniently_and_never_lost(wire: str, code: str) -> None:
    assert rt.code_from_wire(wire) == code
    assert rt.code_to_wire(rt.code_from_wire("418")) == "418", "unrecognised codes go back verbatim"


def test_the_deadline_header_is_whole_microseconds() -> None:
    assert rt.encode_timeout(1.5) == "1500000"
    assert rt.encode_timeout(0.000_000_4) == "0"
    assert rt.decode_timeout("1500000") == 1.5
    assert rt.decode_timeout(None) is None


_CASES = json.loads((Path(__file__).parents[2] / "tests/deadline_header_cases.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(("value", "micros"), _CASES["values"], ids=repr)
def test_the_deadline_header_follows_the_shared_table(value: str, micros: int | None) -> None:
    assert rt.decode_timeout(value) == (None if micros is None else micros / 1_000_000)


@pytest.mark.parametrize(("values", "micros"), _CASES["duplicates"], ids=repr)
def test_the_first_deadline_header_counts(values: list[str], micros: int | None) -> None:
    from nats_micro_runtime._guard import first_header

    block = b"NATS/1.0\r\n" + b"".join(b"Nats-Micro-Timeout: " + v.encode() + b"\r\n" for v in values) + b"\r\n"
    first = first_header(block, b"Nats-Micro-Timeout")
    assert rt.decode_timeout(first) == (None if micros is None else micros / 1_000_000)


def test_messages_encode_as_binary_or_proto3_json_and_empty_is_the_empty_message() -> None:
    order = order_pb2.Order(id="o-1", total_cents=12345678901)
    assert rt.decode_message(rt.encode_message(order, False), order_pb2.Order, False) == order
    text = rt.encode_message(order, True)
    assert b'"totalCents":"12345678901"' in text.replace(b" ", b"")
    assert rt.decode_message(text, order_pb2.Order, True) == order
    for use_json in (False, True):
        assert rt.decode_message(b"", order_pb2.Order, use_json) == order_pb2.Order()
    assert rt.decode_message(b'{"id":"x","future":1}', order_pb2.Order, True).id == "x", "unknown fields are ignored"
    with pytest.raises(ValueError):
        rt.decode_message(b"\xff\xff", order_pb2.Order, False)
    with pytest.raises(ValueError):
        rt.decode_message(b"{", order_pb2.Order, True)


def test_error_table_picks_the_class_for_the_code() -> None:
    class Base(rt.ServiceError):
        pass

    class Gone(Base, rt.NotFoundError):
        pass

    table = rt.ErrorTable(Base, {rt.NOT_FOUND: Gone})
    gone = table.error(rt.NOT_FOUND, "Get", "gone", b"d", {"h": "v"})
    assert type(gone) is Gone and (gone.code, gone.method, gone.message, gone.data, gone.headers) == (
        "NOT_FOUND", "Get", "gone", b"d", {"h": "v"}
    )
    other = table.error("418", "Get", "teapot", b"", {})
    assert type(other) is Base and other.code == "418"
    assert repr(other) == "Base(code='418', method='Get', message='teapot', data=b'')"


def test_runtime_doctests_pass() -> None:
    failures, tried = doctest.testmod(rt)
    assert (failures, tried > 0) == (0, True)
