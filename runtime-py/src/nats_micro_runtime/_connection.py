"""Calls in flight fail fast when their NATS connection is lost (PROTOCOL
§10.1): one watcher per nats-py connection.

nats-py reports connection changes only through callbacks given to
``connect()``, which belong to the application, and keeps them in private
attributes; wrapping those would break with any change of nats-py's
internals. Its public state does say everything needed: ``is_connected`` and
``stats["reconnects"]`` (which counts completed reconnections). So a watcher
task polls them every :data:`POLL_INTERVAL` seconds while calls are in flight
(and exits when none is), and cancels the calls whose request went out on a
connection that is now down or replaced; those calls raise
:class:`ConnectionLostError` instead of waiting out their timeout. A call
pays for one set insertion and removal; there is one timer per connection,
never one per call.

A request sent while the connection is down is kept by nats-py and sent after
reconnecting: it belongs to the next connection and is not failed.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable
from typing import Any

from nats.aio.client import Client as NatsClient

from ._errors import ConnectionLostError
from ._typevars import T

POLL_INTERVAL = 0.005
"""Seconds between two looks at the connection's state while calls are in flight."""


class _InFlight:
    """One call waiting for its reply."""

    __slots__ = ("task", "connection", "cancelling", "lost")

    def __init__(self, task: asyncio.Task[Any], connection: int) -> None:
        self.task = task
        self.connection = connection
        """Which connection the request goes out on: nats-py's reconnect count then."""
        self.cancelling = task.cancelling()
        self.lost = False


class _ConnectionWatcher:
    """Watches one NATS connection for the calls in flight on it."""

    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self._calls: set[_InFlight] = set()
        self._task: asyncio.Task[None] | None = None
        self._seen: tuple[int, bool] | None = None

    def _state(self) -> tuple[int, bool]:
        reconnects = self._nc.stats.get("reconnects", 0)
        return (reconnects if isinstance(reconnects, int) else 0), self._nc.is_connected

    async def call(self, method: str, request: Awaitable[T]) -> T:
        """Awaits ``request`` (sent on the watched connection); raises
        :class:`ConnectionLostError` if the connection it went out on is lost first."""
        task = asyncio.current_task()
        if task is None:  # not in a task: nothing to cancel, no fast failure
            return await request
        reconnects, connected = self._state()
        entry = _InFlight(task, reconnects if connected else reconnects + 1)
        self._calls.add(entry)
        if self._task is None:
            self._seen = (reconnects, connected)
            self._task = asyncio.get_running_loop().create_task(self._watch())
        try:
            result = await request
        except asyncio.CancelledError:
            if entry.lost and task.uncancel() <= entry.cancelling:
                raise ConnectionLostError(method, "the NATS connection was lost while the request was in flight") from None
            raise
        finally:
            self._calls.discard(entry)
        if entry.lost:  # the reply won the race against the cancellation, which was absorbed on the way
            task.uncancel()
        return result

    async def _watch(self) -> None:
        try:
            while self._calls:
                await asyncio.sleep(POLL_INTERVAL)
                state = self._state()
                if state == self._seen:
                    continue
                self._seen = state
                current, connected = state
                for entry in self._calls:
                    if not entry.lost and (entry.connection < current or (entry.connection == current and not connected)):
                        entry.lost = True
                        entry.task.cancel()
        finally:
            self._task = None


_WATCHERS: weakref.WeakKeyDictionary[NatsClient, _ConnectionWatcher] = weakref.WeakKeyDictionary()


def watcher(nc: NatsClient) -> _ConnectionWatcher:
    """The watcher of ``nc``, shared by every client on it."""
    found = _WATCHERS.get(nc)
    if found is None:
        found = _WATCHERS[nc] = _ConnectionWatcher(nc)
    return found
