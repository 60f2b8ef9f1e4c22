"""The stream wire's bookkeeping without NATS (PROTOCOL §9.1, §9.3, §9.4,
§9.6, §9.9): number headers, send credit, the receiver's order, loss and
window checks, and batches: their framing, and the link packing and
reading them on a stand-in connection."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import nats.errors
import nats_micro_runtime as rt
import pytest
from batch_cases import MALFORMED, MALFORMED_IDS, framed, ints
from google.protobuf import wrappers_pb2
from nats_micro_runtime._client_stream import _pump_requests
from nats_micro_runtime._codec import decode_message
from nats_micro_runtime._endpoint import _server_stream_error
from nats_micro_runtime._stream_link import _StreamLink


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


# Batches (§9.9) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"), (2**32 - 1, b"\xff\xff\xff\xff\x0f")],
)
def test_lengths_are_protobuf_varints(value: int, encoded: bytes) -> None:
    assert rt.encode_varint(value) == encoded
    # protobuf's own length-delimited framing of a bytes field: tag, varint length, bytes
    if value < 100_000:
        assert wrappers_pb2.BytesValue(value=b"x" * value).SerializeToString()[1:] == (encoded + b"x" * value if value else b"")


def test_a_batch_body_splits_into_its_messages() -> None:
    bodies = [b"", b"a", b"b" * 127, b"c" * 128, b"d" * 70_000]
    assert rt.split_batch(framed(*bodies), len(bodies)) == bodies


@pytest.mark.parametrize(
    ("body", "count", "reason"),
    [
        (framed(b"one") + b"\x80", 2, "ends inside a length"),
        (framed(b"one") + b"\x05abc", 2, "ends inside a message"),
        (b"\xff\xff\xff\xff\xff\x01", 1, "longer than 5 bytes"),
        (framed(b"1", b"2", b"3"), 2, "more than its 2"),
        (framed(b"1"), 2, "1 of its 2"),
        (b"", 1, "0 of its 1"),
    ],
)
def test_a_malformed_batch_body_is_invalid_argument(body: bytes, count: int, reason: str) -> None:
    with pytest.raises(rt.StreamProtocolError, match=reason) as failure:
        rt.split_batch(body, count)
    assert failure.value.code == "INVALID_ARGUMENT"


def test_only_true_announces_batches() -> None:
    assert rt.announces_batches({rt.BATCH_HEADER: "true", rt.CREDIT_HEADER: "8"})
    for other in ({rt.BATCH_HEADER: "True"}, {rt.BATCH_HEADER: "yes"}, {rt.BATCH_HEADER: "1"}, {rt.CREDIT_HEADER: "8"}, None):
        assert not rt.announces_batches(other)


def test_a_data_message_with_a_count_is_a_batch() -> None:
    frame = rt.classify({rt.SEQ_HEADER: "3", rt.BATCH_HEADER: "2"}, b"body")
    assert (frame.kind, frame.number, frame.count, frame.body) == (rt.FrameKind.BATCH, 3, 2, b"body")
    assert rt.classify({rt.SEQ_HEADER: "3"}, b"").count == 1
    # a count on an end or a credit means nothing
    assert rt.classify({rt.END_HEADER: "true", rt.BATCH_HEADER: "2"}, b"").kind is rt.FrameKind.END


@pytest.mark.parametrize("count", ["0", "x", "-1", "true", "2147483648"])
def test_a_batch_count_that_does_not_parse_or_is_zero_is_invalid_argument(count: str) -> None:
    with pytest.raises(rt.StreamProtocolError) as failure:
        rt.classify({rt.SEQ_HEADER: "1", rt.BATCH_HEADER: count}, framed(b"x"))
    assert failure.value.code == "INVALID_ARGUMENT"


def test_a_batch_takes_one_credit_per_message_and_its_sequence_numbers() -> None:
    window = rt.ReceiveWindow(4)
    window.received(1, 3)
    window.received(4)
    with pytest.raises(rt.StreamProtocolError, match="5 to 6") as beyond:
        window.received(5, 2)
    assert beyond.value.code == "RESOURCE_EXHAUSTED"
    assert [window.consumed() for _ in range(4)] == [0, 2, 0, 2]
    window.received(5, 4)
    with pytest.raises(rt.StreamProtocolError) as gap:
        rt.ReceiveWindow(8).received(2, 2)
    assert gap.value.code == "DATA_LOSS"


def test_taking_credit_without_waiting() -> None:
    credit = rt.SendCredit(1)
    assert credit.take() and not credit.take() and credit.available == 0
    assert rt.SendCredit(None).take()


# The link's batches, on a stand-in connection --------------------------------


class FakeNats:
    """Records what the link publishes; ``fail`` makes publishing raise,
    ``fail_batches`` publishing a batch."""

    def __init__(self, max_payload: int = 1024 * 1024) -> None:
        self.max_payload = max_payload
        self.published: list[tuple[dict[str, str], bytes]] = []
        self.fail = False
        self.fail_batches = False

    async def publish(self, subject: str, payload: bytes = b"", reply: str = "", headers: dict[str, str] | None = None) -> None:
        if self.fail or (self.fail_batches and rt.BATCH_HEADER in (headers or {})):
            raise nats.errors.ConnectionClosedError
        self.published.append((dict(headers or {}), payload))

    def kinds(self) -> list[str]:
        """Each published message as ``seq`` (data), ``seq+count`` (batch) or ``end``/``credit``."""
        out = []
        for headers, _ in self.published:
            if rt.BATCH_HEADER in headers:
                out.append(f"{headers[rt.SEQ_HEADER]}+{headers[rt.BATCH_HEADER]}")
            elif rt.SEQ_HEADER in headers:
                out.append(headers[rt.SEQ_HEADER])
            else:
                out.append("end" if rt.END_HEADER in headers else "credit")
        return out


def link_to(
    fake: FakeNats, *, credit: int | None = 100, window: int | None = 4, batches: bool = True, takes: bool = True
) -> _StreamLink[wrappers_pb2.Int64Value]:
    return _StreamLink(
        cast(Any, fake),
        "M",
        "_INBOX.peer",
        credit,
        window,
        lambda body: decode_message(body, wrappers_pb2.Int64Value, False),
        _server_stream_error("M"),
        rt.StreamTimings(),
        lambda _: None,
        takes_batches=takes,
        peer_takes_batches=batches,
    )


async def test_ready_messages_go_in_one_batch_when_the_loop_gets_a_turn_and_an_end_follows_it() -> None:
    fake = FakeNats()
    link = link_to(fake)
    for value in range(3):
        await link.send(bytes([value]))
    assert fake.published == [], "nothing goes out before the loop gets a turn"
    await asyncio.sleep(0)
    assert fake.published == [({rt.SEQ_HEADER: "1", rt.BATCH_HEADER: "3"}, framed(b"\x00", b"\x01", b"\x02"))]
    await link.send(b"\x03")
    await link.send(b"\x04")
    await link.publish({rt.END_HEADER: "true"})
    assert fake.kinds() == ["1+3", "4+2", "end"]
    await link.close()


async def test_a_batch_of_one_goes_as_ordinary_data() -> None:
    fake = FakeNats()
    link = link_to(fake)
    await link.send(b"only")
    await link.flush()
    assert fake.published == [({rt.SEQ_HEADER: "1"}, b"only")]
    await link.close()


async def test_the_batch_goes_before_waiting_for_credit_and_never_holds_more_than_the_credit() -> None:
    fake = FakeNats()
    link = link_to(fake, credit=3)
    async def send_five() -> None:
        for value in range(5):
            await link.send(bytes([value]))

    sender = asyncio.ensure_future(send_five())
    await asyncio.sleep(0.01)
    assert fake.kinds() == ["1+3"] and not sender.done()
    link._credit.grant(1)
    await asyncio.sleep(0.01)
    link._credit.grant(5)
    await asyncio.wait_for(sender, 1)
    await link.flush()
    assert fake.kinds() == ["1+3", "4", "5"]
    await link.close()


async def test_batches_stay_within_64_kib_and_max_payload_and_a_message_too_big_for_one_goes_alone() -> None:
    fake = FakeNats()
    link = link_to(fake, credit=1000)
    for _ in range(20):
        await link.send(b"x" * 10_000)
    await link.send(b"y" * rt.MAX_BATCH_BYTES)
    await link.send(b"z")
    await link.flush()
    assert fake.kinds() == ["1+6", "7+6", "13+6", "19+2", "21", "22"]
    assert all(len(body) <= rt.MAX_BATCH_BYTES for headers, body in fake.published if rt.BATCH_HEADER in headers)
    small = FakeNats(max_payload=25_000)
    link = link_to(small, credit=1000)
    for _ in range(5):
        await link.send(b"x" * 10_000)
    await link.flush()
    assert small.kinds() == ["1+2", "3+2", "5"]
    await link.close()


@pytest.mark.parametrize(("credit", "batches"), [(100, False), (None, True)])
async def test_a_peer_that_did_not_announce_batches_and_credit_gets_one_message_per_nats_message(
    credit: int | None, batches: bool
) -> None:
    fake = FakeNats()
    link = link_to(fake, credit=credit, batches=batches)
    for value in range(3):
        await link.send(bytes([value]))
    assert fake.kinds() == ["1", "2", "3"]
    await link.close()


async def test_a_batch_that_fails_to_go_out_fails_the_sender() -> None:
    fake = FakeNats()
    link = link_to(fake)
    await link.send(b"1")
    await link.send(b"2")
    fake.fail = True
    await asyncio.sleep(0)
    fake.fail = False
    with pytest.raises(rt.NatsMicroError) as failed:
        await link.send(b"3")
    assert failed.value.code == "UNAVAILABLE"
    with pytest.raises(rt.NatsMicroError):
        await link.flush()
    assert fake.published == []
    await link.close()


async def test_no_end_follows_a_batch_that_failed_to_go_out() -> None:
    fake = FakeNats()
    fake.fail_batches = True
    link = link_to(fake)
    requests = [wrappers_pb2.Int64Value(value=v) for v in (1, 2, 3)]
    await _pump_requests(link, requests, lambda message: message.SerializeToString())
    assert link.failure is not None and link.failure.code == "UNAVAILABLE"
    assert fake.published == [], "the caller's end would hide the lost requests"
    await link.close()


async def test_closing_drops_a_batch_not_sent_yet() -> None:
    fake = FakeNats()
    link = link_to(fake)
    await link.send(b"1")
    await link.send(b"2")
    await link.close()
    await asyncio.sleep(0)
    assert fake.published == []


class Message:
    """What the link reads from its inbox."""

    def __init__(self, headers: dict[str, str], data: bytes = b"") -> None:
        self.headers = headers
        self.data = data


async def read_all(link: _StreamLink[wrappers_pb2.Int64Value]) -> tuple[list[int], str | None]:
    got: list[int] = []
    try:
        while (message := await asyncio.wait_for(link.receive(), 1)) is not None:
            got.append(message.value)
    except rt.NatsMicroError as err:
        return got, err.code
    return got, None


async def test_a_batch_is_read_one_message_at_a_time_with_credit_granted_per_message() -> None:
    fake = FakeNats()
    link = link_to(fake, credit=None, window=4)
    await link.on_message(cast(Any, Message({rt.SEQ_HEADER: "1", rt.BATCH_HEADER: "3"}, framed(*ints(1, 2, 3)))))
    await link.on_message(cast(Any, Message({rt.SEQ_HEADER: "4"}, ints(4)[0])))
    await link.on_message(cast(Any, Message({rt.END_HEADER: "true"})))
    grants: list[str] = []
    got = []
    for _ in range(4):
        message = await link.receive()
        assert message is not None
        got.append(message.value)
        grants.append(",".join(h[rt.CREDIT_HEADER] for h, _ in fake.published))
    assert got == [1, 2, 3, 4] and grants == ["", "2", "2", "2,2"]
    assert await link.receive() is None
    await link.close()


@pytest.mark.parametrize(("headers", "body", "delivered", "code"), MALFORMED, ids=MALFORMED_IDS)
async def test_a_malformed_batch_fails_the_stream_with_its_code(
    headers: dict[str, str], body: bytes, delivered: list[int], code: str
) -> None:
    link = link_to(FakeNats(), credit=None, window=4)
    await link.on_message(cast(Any, Message({rt.SEQ_HEADER: "1", **headers}, body)))
    assert await read_all(link) == (delivered, code)
    await link.close()


async def test_a_batch_to_a_side_that_did_not_announce_batches_is_invalid_argument() -> None:
    link = link_to(FakeNats(), credit=None, window=4, takes=False)
    await link.on_message(cast(Any, Message({rt.SEQ_HEADER: "1", rt.BATCH_HEADER: "2"}, framed(*ints(1, 2)))))
    assert await read_all(link) == ([], "INVALID_ARGUMENT")
    await link.close()
