"""Headers of the wire contract: the caller's deadline (``Nats-Micro-Timeout``)
and how header values are kept on one line.
"""

from __future__ import annotations

import logging
import re

_log = logging.getLogger("nats_micro_runtime")


TIMEOUT_HEADER = "Nats-Micro-Timeout"
"""Header carrying the caller's remaining budget, in whole microseconds."""

ATTEMPT_HEADER = "Nats-Micro-Attempt"
"""Header numbering the attempts of a retried call: ``2`` on the first retry
(absent on the first attempt, PROTOCOL §10.1)."""

MAX_TIMEOUT_MICROS = 86_400_000_000
"""The largest ``Nats-Micro-Timeout`` value honoured (24 h)."""


def encode_timeout(seconds: float) -> str:
    """The ``Nats-Micro-Timeout`` value for a budget: whole microseconds."""
    return str(max(0, round(seconds * 1_000_000)))


_TIMEOUT_VALUE = re.compile(r"[0-9]{1,12}", re.ASCII)
"""What a ``Nats-Micro-Timeout`` value may be (:func:`decode_timeout` checks it without this)."""


def decode_timeout(value: str | None) -> float | None:
    """Seconds from a ``Nats-Micro-Timeout`` value (the first occurrence of the
    header): 1 to 12 ASCII digits, at most :data:`MAX_TIMEOUT_MICROS`; ``0``
    means the budget is spent. Anything else is ``None`` (ignored: the server's
    own timeout applies), logged at debug level."""
    if value is None:
        return None
    # isdigit() on ASCII text is [0-9]: the rule of _TIMEOUT_VALUE without the regex engine.
    if len(value) <= 12 and value.isascii() and value.isdigit():
        micros = int(value)
        if micros <= MAX_TIMEOUT_MICROS:
            return micros / 1_000_000
    _log.debug("ignoring invalid %s value %r", TIMEOUT_HEADER, value)
    return None


_ATTEMPT_VALUE = re.compile(r"[0-9]{1,9}", re.ASCII)


def decode_attempt(value: str | None) -> int:
    """The attempt number a ``Nats-Micro-Attempt`` value says: 1 when it is
    absent or not a positive decimal number (at most 9 ASCII digits)."""
    if value is None or not _ATTEMPT_VALUE.fullmatch(value) or int(value) < 1:
        return 1
    return int(value)


def _header_value(text: str) -> str:
    """Header values cannot hold line breaks: keeps a message on one line."""
    return text.replace("\r", " ").replace("\n", " ")
