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
- Cost: every request carries a header block (the deadline), and nats-py
  parses it in Python with a generator per character of each name. A plain
  block (no inline status, nats-py's own parser in use) is parsed here
  instead, in one pass that gives exactly nats-py's result with the
  first-occurrence rule applied (:func:`parse_plain_block`); anything else
  goes to nats-py.
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

from nats.aio import client as nats_client
from nats.aio.client import Client as NatsClient

_log = logging.getLogger("nats_micro_runtime")

MALFORMED_HEADER = "Nats-Micro-Malformed-Headers"
"""Set (to the parse error) on a message whose header block nats-py could not parse."""

_TIMEOUT_NAME = b"Nats-Micro-Timeout"
_TIMEOUT_KEY = _TIMEOUT_NAME.decode()
_VERSION_LINE = b"NATS/1.0\r\n"
"""How a header block without an inline status starts."""
_WHITESPACE = re.compile(r"\s")
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


def _utf8_or_none(value: bytes) -> str | None:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_plain_block(block: bytes) -> dict[str, str] | None:
    """The headers of a block that starts with ``NATS/1.0`` CRLF (no inline
    status), as nats-py 2.16's ``Client._process_headers`` gives them
    (``_parse_header_lines``: names stripped and ASCII without whitespace,
    values stripped and decoded with replacement; the last of duplicates
    wins; ``None`` when empty), except that ``Nats-Micro-Timeout`` is its
    first occurrence, as :func:`first_header` reads it (dropped when that is
    not UTF-8). One pass, where nats-py's parse and the first-occurrence
    lookup took two (``runtime-py/tests/test_hot_path_units.py`` holds the
    two to the same results)."""
    if len(block) <= len(_VERSION_LINE):  # nats-py: nothing after the version line is no headers
        return None
    parsed: dict[str, str] = {}
    first_timeout: str | None = None
    timeout_seen = False
    for line in block[len(_VERSION_LINE) :].split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        if name == _TIMEOUT_NAME and not timeout_seen:
            timeout_seen = True
            first_timeout = _utf8_or_none(value.strip(b" \t"))
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if _WHITESPACE.search(key):
            continue
        parsed[key] = value.strip().decode("utf-8", "replace")
    if not parsed:
        return None
    if _TIMEOUT_NAME in block:
        if first_timeout is None:
            parsed.pop(_TIMEOUT_KEY, None)
        else:
            parsed[_TIMEOUT_KEY] = first_timeout
    return parsed


def _parses_like_nats_py(nc: NatsClient) -> bool:
    """Whether ``nc`` parses blocks as :func:`parse_plain_block` does: with
    nats-py's own parser (not ``fast_mail_parser``, which nats-py prefers when
    it is installed, nor a subclass's)."""
    own = getattr(type(nc), "_process_headers", None) is NatsClient._process_headers
    return own and getattr(nats_client, "parse_email", None) is None


def guard(nc: NatsClient) -> ConnectionGuard:
    """Installs the guard on ``nc`` once and returns what it records."""
    existing = getattr(nc, "_nats_micro_guard", None)
    if isinstance(existing, ConnectionGuard):
        return existing
    state = ConnectionGuard()
    parse: Callable[[Any], Awaitable[dict[str, str] | None]] = nc._process_headers
    on_error: Callable[[str], Awaitable[None]] = nc._process_err

    parse_plain = _parses_like_nats_py(nc)

    async def process_headers(headers: Any) -> dict[str, str] | None:
        if parse_plain and type(headers) is bytes and headers.startswith(_VERSION_LINE):
            return parse_plain_block(headers)
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
