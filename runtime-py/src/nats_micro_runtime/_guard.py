"""Containment of what nats-py does not survive, installed per connection by
:func:`guard` (idempotent) when a service starts on it.

- Malformed header blocks: nats-py parses a message's headers on its read
  loop (``Client._process_headers``); a block it cannot parse (the 5-byte
  ``NATS/``, reproduced in ``tests/upstream/nats_py_header_indexerror.py``)
  raises there and ends the read loop, so the connection stops delivering
  anything. The guard wraps that hook on the connection: a block that fails
  to parse is counted, logged and delivered with :data:`MALFORMED_HEADER`
  set, so the service answers ``INVALID_ARGUMENT`` and keeps serving.
- First occurrence of the deadline header: nats-py keeps the last of
  duplicated headers; the wire contract says the first counts. The guard
  reads the first ``Nats-Micro-Timeout`` from the raw block.
- Permission violations: the server reports a denied subscription
  asynchronously (``-ERR 'Permissions Violation for Subscription to ...'``)
  and nats-py only passes it to the error callback. The guard records them
  so that starting a service can fail instead of serving nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NatsClient

_log = logging.getLogger("nats_micro_runtime")

MALFORMED_HEADER = "Nats-Micro-Malformed-Headers"
"""Set (to the parse error) on a message whose header block nats-py could not parse."""

_TIMEOUT_NAME = b"Nats-Micro-Timeout"
_DENIED_SUBSCRIPTION = re.compile(r'permissions violation for subscription to "([^"]*)"', re.IGNORECASE)


@dataclass
class ConnectionGuard:
    """What the guard saw on one connection."""

    malformed_headers: int = 0
    """Messages whose header block could not be parsed."""
    denied_subscriptions: list[str] = field(default_factory=list)
    """Subjects the server refused to let this connection subscribe to."""


def first_header(raw: bytes, name: bytes) -> str | None:
    """The value of the first ``name:`` line of a raw header block (after the
    version line), or ``None``; a value that is not UTF-8 is ``None``."""
    lines = raw.split(b"\r\n")
    for line in lines[1:]:
        key, colon, value = line.partition(b":")
        if colon and key == name:
            try:
                return value.strip(b" \t").decode("utf-8")
            except UnicodeDecodeError:
                return None
    return None


def guard(nc: NatsClient) -> ConnectionGuard:
    """Installs the guard on ``nc`` once and returns what it records."""
    existing = getattr(nc, "_nats_micro_guard", None)
    if isinstance(existing, ConnectionGuard):
        return existing
    state = ConnectionGuard()
    parse: Callable[[Any], Awaitable[dict[str, str] | None]] = nc._process_headers
    on_error: Callable[[str], Awaitable[None]] = nc._process_err

    async def process_headers(headers: Any) -> dict[str, str] | None:
        try:
            parsed = await parse(headers)
        except Exception as err:  # nats-py's parser failed: contain it here, off its read loop
            state.malformed_headers += 1
            # At debug level: an endpoint receiving it logs request_malformed with its service and subject (§11.4).
            _log.debug("malformed message headers (%d so far): %r: %r", state.malformed_headers, bytes(headers[:64]), err)
            return {MALFORMED_HEADER: f"{type(err).__name__}: {err}"}
        if parsed is not None and headers and _TIMEOUT_NAME in headers:
            first = first_header(bytes(headers), _TIMEOUT_NAME)
            if first is None:
                parsed.pop(_TIMEOUT_NAME.decode(), None)
            else:
                parsed[_TIMEOUT_NAME.decode()] = first
        return parsed

    async def process_err(err_msg: str) -> None:
        denied = _DENIED_SUBSCRIPTION.search(err_msg)
        if denied is not None:
            state.denied_subscriptions.append(denied.group(1))
        await on_error(err_msg)

    # Instance attributes shadow the methods nats-py calls as self._process_*.
    setattr(nc, "_process_headers", process_headers)
    setattr(nc, "_process_err", process_err)
    setattr(nc, "_nats_micro_guard", state)
    return state
