"""The stream wire's bookkeeping without NATS (PROTOCOL §9.1, §9.3, §9.4,
§9.6): number headers, send credit, and the receiver's order, loss and
window checks."""

from __future__ import annotations

import asyncio

import nats_micro_runtime as rt
import pytest


@pytest.mark.parametrize(("value", "number"), [("1", 1), ("0", 0), ("0064", 64), ("2147483647", 2**31 - 1)])
def test_valid_stream_numbers(value: str, number: int) -> None:
    assert rt.parse_stream_number(rt.SEQ_HEADER, value) == number


@pytest.mark.parametrize("value", ["", "-1", "+1", " 1", "1 ", "1.0", "x", "１", "2147483648", "12345678901"])
def test_invalid_stream_numbers_are_invalid_argument(value: str) -> None:
    with pytest.raises(rt.StreamProtocolError) as failure:
        rt.parse_stream_number(rt.CREDIT_HEADER, value)
    assert failure.value.code == "INVALID_ARGUMENT" and rt.CREDIT_HEADER in failure.value.message


def test_header_lookups() -> None:
    headers = {rt.SEQ_HEADER: "3", rt.END_HEADER: "true", rt.CANCEL_HEADER: "no"}
    assert rt.header_number(headers, rt.SEQ_HEADER) == 3
    assert rt.header_number(headers, rt.CREDIT_HEADER) is None and rt.header_number(None, rt.SEQ_HEADER) is None
    assert rt.header_flag(headers, rt.END_HEADER) and not rt.header_flag(headers, rt.CANCEL_HEADER)
    assert not rt.header_flag(None, rt.END_HEADER)
    with pytest.raises(rt.StreamProtocolError):
        rt.header_number({rt.SEQ_HEADER: "x"}, rt.SEQ_HEADER)


async def test_send_credit_waits_for_a_grant_and_keepalives_grant_nothing() -> None:
    credit = rt.SendCredit(2)
    await credit.acquire()
    await credit.acquire()
    waiting = asyncio.ensure_future(credit.acquire())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    credit.grant(0)
    await asyncio.sleep(0.01)
    assert not waiting.done()
    credit.grant(3)
    await asyncio.wait_for(waiting, 1)
    assert credit.available == 2 and credit.limited


async def test_a_peer_without_credit_is_sent_to_without_waiting() -> None:
    credit = rt.SendCredit(None)
    for _ in range(1000):
        await asyncio.wait_for(credit.acquire(), 0.1)
    assert not credit.limited


def test_out_of_order_is_data_loss() -> None:
    window = rt.ReceiveWindow(8)
    window.received(1)
    with pytest.raises(rt.StreamProtocolError) as failure:
        window.received(3)
    assert failure.value.code == "DATA_LOSS"
    with pytest.raises(rt.StreamProtocolError, match="expected stream message 1"):
        rt.ReceiveWindow(None).received(0)


def test_beyond_the_granted_credit_is_resource_exhausted() -> None:
    window = rt.ReceiveWindow(2)
    window.received(1)
    window.received(2)
    with pytest.raises(rt.StreamProtocolError) as failure:
        window.received(3)
    assert failure.value.code == "RESOURCE_EXHAUSTED"


def test_credit_is_granted_when_half_the_window_was_consumed() -> None:
    window = rt.ReceiveWindow(4)
    for seq in range(1, 5):
        window.received(seq)
    assert [window.consumed() for _ in range(4)] == [0, 2, 0, 2]
    for seq in range(5, 9):
        window.received(seq)
    with pytest.raises(rt.StreamProtocolError):
        window.received(9)


def test_a_window_of_one_grants_every_message_and_no_window_grants_nothing() -> None:
    one = rt.ReceiveWindow(1)
    for seq in range(1, 4):
        one.received(seq)
        assert one.consumed() == 1
    unlimited = rt.ReceiveWindow(None)
    for seq in range(1, 200):
        unlimited.received(seq)
        assert unlimited.consumed() == 0
