"""Client interceptors (what they see of a call and its reply) and the chain
that runs interceptors, client or server, around a call.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from ._typevars import T


@dataclass
class ClientCall:
    """One outgoing call as client interceptors see it; they may change any field."""

    method: str
    """Proto method name (``CreateOrder``)."""
    subject: str
    """The subject the request goes to."""
    headers: dict[str, str]
    """Request headers."""
    timeout: float
    """Seconds to wait for the reply; sent to the server as its budget. For a
    stream it covers the whole stream; ``math.inf`` when the stream has no deadline."""
    payload: bytes
    """The encoded request."""


@dataclass
class Reply:
    """A successful reply as client interceptors see it."""

    payload: bytes
    """The encoded response."""
    headers: dict[str, str]
    """Reply headers."""


ClientNext = Callable[[ClientCall], Awaitable[Reply]]
"""The rest of a client chain: further interceptors, then the NATS request."""
ClientInterceptor = Callable[[ClientCall, ClientNext], Awaitable[Reply]]
"""Runs around every call of a client, and around every stream (whose reply is
the stream's end, §9.7): ``async def f(call, call_next) -> Reply``.
Change ``call`` and ``return await call_next(call)``, or raise a
:class:`NatsMicroError` to fail the call without sending it."""


def _chain_interceptors(
    interceptors: Sequence[Callable[..., Awaitable[T]]], last: Callable[..., Coroutine[Any, Any, T]]
) -> Callable[..., Coroutine[Any, Any, T]]:
    """Chains interceptors around ``last``, the first one outermost: each is
    called with the call's arguments and, last, the rest of the chain."""
    chain = last
    for interceptor in reversed(interceptors):
        chain = functools.partial(_link, interceptor, chain)
    return chain


async def _link(interceptor: Callable[..., Awaitable[T]], call_next: Callable[..., Awaitable[T]], *call: object) -> T:
    return await interceptor(*call, call_next)
