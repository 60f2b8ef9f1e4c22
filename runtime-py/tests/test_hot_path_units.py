"""The fast paths of a unary request hold to the rules they shortcut: the
guard's one-pass header parse against nats-py's parse plus the
first-occurrence rule, the reply policy's fast admission against its full
check, the deadline value's digit test against its regular expression, and
the endpoint's handler slots."""

from __future__ import annotations

import asyncio
import itertools
import random
import re

import pytest
from nats.aio.client import Client as NatsClient
from nats_micro_runtime._guard import first_header, parse_plain_block
from nats_micro_runtime._headers import MAX_TIMEOUT_MICROS, decode_timeout
from nats_micro_runtime._reply_policy import ReplyPolicy, valid_subject
from nats_micro_runtime._service import _Permits

_TIMEOUT = b"Nats-Micro-Timeout"
_UNCONNECTED = NatsClient.__new__(NatsClient)
"""nats-py's parser needs nothing of its client but the error callback, unused on these blocks."""


async def reference_parse(block: bytes) -> dict[str, str] | None:
    """What the guard gave before its fast path: nats-py's parse, then the first
    ``Nats-Micro-Timeout`` read from the raw block."""
    parsed = await NatsClient._process_headers(_UNCONNECTED, block)
    if parsed is not None and _TIMEOUT in block:
        first = first_header(block, _TIMEOUT)
        if first is None:
            parsed.pop(_TIMEOUT.decode(), None)
        else:
            parsed[_TIMEOUT.decode()] = first
    return parsed


_NAMES = [b"Nats-Micro-Timeout", b" Nats-Micro-Timeout", b"Nats-Micro-Timeout ", b"X-Nats-Micro-Timeout", b"traceparent",
          b"A", b"a b", b"a\x1cb", b"\xc3\xa9t\xc3\xa9", b"", b"Nats-Micro-Attempt", b"K\t"]
_VALUES = [b" 1500000", b"1500000", b" 0", b"  7 ", b" \xff\xfe", b" caf\xc3\xa9", b"", b" a:b", b"\t9\x0b", b" Nats-Micro-Timeout"]


def random_block(rng: random.Random) -> bytes:
    lines = []
    for _ in range(rng.randrange(0, 5)):
        shape = rng.randrange(10)
        if shape == 0:
            lines.append(b"")  # an empty line
        elif shape == 1:
            lines.append(rng.choice(_NAMES))  # no colon
        else:
            lines.append(rng.choice(_NAMES) + b":" + rng.choice(_VALUES))
    return b"NATS/1.0\r\n" + b"".join(line + b"\r\n" for line in lines) + rng.choice([b"\r\n", b"", b"\r\n\r\n"])


@pytest.mark.parametrize(
    "block",
    [
        b"NATS/1.0\r\n",
        b"NATS/1.0\r\n\r\n",
        b"NATS/1.0\r\nNats-Micro-Timeout: 1500000\r\n\r\n",
        b"NATS/1.0\r\nNats-Micro-Timeout: 0\r\nNats-Micro-Timeout: 5000000\r\n\r\n",
        b"NATS/1.0\r\nNats-Micro-Timeout: \xff\r\nNats-Micro-Timeout: 5\r\n\r\n",
        b"NATS/1.0\r\n Nats-Micro-Timeout: 5\r\n\r\n",
        b"NATS/1.0\r\nA: 1\r\nA: 2\r\nB:3\r\n\r\n",
        b"NATS/1.0\r\nFoo: Nats-Micro-Timeout\r\n\r\n",
    ],
)
async def test_the_plain_block_parse_is_nats_pys_with_the_first_deadline(block: bytes) -> None:
    reference = await reference_parse(block)
    assert parse_plain_block(block) == reference
    assert list((parse_plain_block(block) or {}).items()) == list((reference or {}).items())


async def test_the_plain_block_parse_matches_on_random_blocks() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        block = random_block(rng)
        assert list((parse_plain_block(block) or {}).items()) == list(((await reference_parse(block)) or {}).items()), block


async def test_every_ascii_byte_in_a_name_or_value_parses_alike() -> None:
    for byte, where in itertools.product(range(128), ("name", "value")):
        if byte in (10, 13):  # line breaks split lines: covered above
            continue
        char = bytes([byte])
        line = (b"N" + char + b"x: v" + char) if where == "name" else (b"Name: " + char + b"v" + char)
        block = b"NATS/1.0\r\n" + line + b"\r\nNats-Micro-Timeout:" + char + b"5" + char + b"\r\n\r\n"
        assert list((parse_plain_block(block) or {}).items()) == list(((await reference_parse(block)) or {}).items()), block


def test_the_whitespace_rule_is_str_isspace_on_ascii() -> None:
    assert [c for c in map(chr, range(128)) if c.isspace()] == [c for c in map(chr, range(128)) if re.search(r"\s", c)]


def old_valid_subject(subject: str) -> bool:
    """The token-by-token rule :func:`valid_subject` shortcuts."""
    return all(token and not re.search(r"[\s*>]", token) for token in subject.split("."))


def test_valid_subject_keeps_the_token_rule() -> None:
    alphabet = ["a", ".", " ", "*", ">", "\t", "\u00a0", "\x00", "\x1c", "é"]
    for length in range(5):
        for chars in itertools.product(alphabet, repeat=length):
            subject = "".join(chars)
            assert valid_subject(subject) == old_valid_subject(subject), repr(subject)


@pytest.mark.parametrize(
    "policy",
    [
        ReplyPolicy(own_subjects=("svc.get", "svc.put")),
        ReplyPolicy(own_subjects=("svc.get",), allow_prefixes=("_INBOX.", "reply.")),
        ReplyPolicy(own_subjects=("svc.get",), deny=("bad.*", "worse.>")),
    ],
    ids=["default", "allow", "deny"],
)
def test_the_fast_admission_gives_the_full_checks_answer(policy: ReplyPolicy) -> None:
    replies = ["", "_INBOX.abc.1", "svc.get", "svc.get.x", "svc.getter", "$JS.API.X", "$SRV.PING", "reply.x", "bad.x",
               "bad.x.y", "worse.a.b", "a..b", ".a", "a.", "a b", "a.*", "a.>", "x\u00a0y", "ok\x00"]
    for reply in replies:
        assert policy.refusal(reply) == policy._reason(reply), reply


@pytest.mark.parametrize("value", ["0", "1", "29999976", "999999999999", "86400000000", "86400000001", "", " 1", "1 ",
                                   "+1", "-1", "1.5", "0x1", "\uff11", "\u0661", "1" * 13, "00000000000001"])
def test_the_deadline_value_keeps_its_rule(value: str) -> None:
    fits = re.fullmatch(r"[0-9]{1,12}", value, re.ASCII) is not None and int(value) <= MAX_TIMEOUT_MICROS
    assert decode_timeout(value) == (int(value) / 1_000_000 if fits else None)


async def test_permits_are_first_come_first_served_and_survive_cancellation() -> None:
    permits = _Permits(1)
    assert permits.take_now() and not permits.take_now()
    order: list[str] = []

    async def wait(name: str) -> None:
        await permits.take()
        order.append(name)

    first, second, third = (asyncio.create_task(wait(n)) for n in ("first", "second", "third"))
    await asyncio.sleep(0)
    second.cancel()  # cancelled while waiting: leaves the line
    permits.release()  # to the first in line
    assert not permits.take_now(), "a slot handed to a waiter is not free"
    first.cancel()  # cancelled after it was handed the slot, before it ran: passes it on
    await asyncio.gather(first, second, return_exceptions=True)
    await asyncio.wait_for(third, 1.0)
    assert order == ["third"]
    permits.release()
    assert permits.take_now() and not permits.take_now()
