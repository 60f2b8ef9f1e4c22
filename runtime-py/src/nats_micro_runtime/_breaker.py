"""The circuit breaker of PROTOCOL §10.2: stops calling a service that keeps
failing for a while, then lets a probe through to see whether it recovered."""

from __future__ import annotations

import collections
import enum
import logging
import time
from collections.abc import Callable

from ._errors import ConfigError

_log = logging.getLogger("nats_micro_runtime")


class CircuitState(enum.Enum):
    """Where a :class:`CircuitBreaker` is."""

    CLOSED = "closed"
    """Calls pass; failures are counted."""
    OPEN = "open"
    """Calls fail at once with :class:`CircuitOpenError`, without touching the network."""
    HALF_OPEN = "half_open"
    """After the open interval: a few probe calls pass and decide."""


StateChange = Callable[[CircuitState, CircuitState], None]
"""Called with the old and the new state at every change."""


class CircuitBreaker:
    """Opens after too many transient failures (no responders, connection
    loss, ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, ``RESOURCE_EXHAUSTED``; any
    other reply counts as a success), fails calls at once while open, and
    closes again when the probes of its half-open state succeed.

    It opens on ``failure_threshold`` consecutive failures, or when the
    failures among the last ``window`` calls reach ``failure_ratio`` (once
    ``min_calls`` calls are in the window); it stays open ``open_for``
    seconds, then lets ``probes`` calls through.

    A breaker is the state of one dependency: give a client one
    (``circuit_breaker=``) and every method of that client shares it, or give
    a method its own (``methods={"get": MethodOptions(circuit_breaker=...)}``)::

        breaker = CircuitBreaker(open_for=2.0, on_state_change=lambda old, new: print(old, "->", new))
        client = ChaosServiceClient(nc, circuit_breaker=breaker)

    Each change is logged on the ``nats_micro_runtime`` logger (warning when
    it opens, info otherwise). ``clock`` (monotonic seconds) is for tests.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        failure_ratio: float = 0.5,
        window: int = 20,
        min_calls: int = 10,
        open_for: float = 5.0,
        probes: int = 1,
        on_state_change: StateChange | None = None,
        name: str = "circuit breaker",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or window < 1 or probes < 1 or min_calls < 1:
            raise ConfigError("failure_threshold, window, min_calls and probes of a circuit breaker must be at least 1")
        if not 0.0 < failure_ratio <= 1.0:
            raise ConfigError(f"failure_ratio must be in (0, 1], not {failure_ratio}")
        if open_for < 0:
            raise ConfigError(f"open_for must not be negative, not {open_for}")
        self._failure_threshold = failure_threshold
        self._failure_ratio = failure_ratio
        self._min_calls = min(min_calls, window)
        self._open_for = open_for
        self._probes = probes
        self._on_state_change = on_state_change
        self._name = name
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._window: collections.deque[bool] = collections.deque(maxlen=window)  # True: a failure
        self._opened_at = 0.0
        self._probes_out = 0
        self._probes_ok = 0

    @property
    def state(self) -> CircuitState:
        """The state now (an open breaker whose interval has passed is half-open)."""
        self._leave_open_if_due()
        return self._state

    def allow(self) -> bool:
        """Whether a call may go out now; a ``True`` in half-open takes a probe
        slot, which :meth:`record` (or :meth:`release`) gives back."""
        self._leave_open_if_due()
        if self._state is CircuitState.CLOSED:
            return True
        if self._state is CircuitState.HALF_OPEN and self._probes_out + self._probes_ok < self._probes:
            self._probes_out += 1
            return True
        return False

    def record(self, failure: bool) -> None:
        """The outcome of a call :meth:`allow` let through: ``failure`` when it
        failed transiently."""
        if self._state is CircuitState.HALF_OPEN:
            self._probes_out = max(0, self._probes_out - 1)
            if failure:
                self._open()
                return
            self._probes_ok += 1
            if self._probes_ok >= self._probes:
                self._consecutive = 0
                self._window.clear()
                self._change(CircuitState.CLOSED)
            return
        if self._state is CircuitState.OPEN:  # a call sent before it opened
            return
        self._window.append(failure)
        self._consecutive = self._consecutive + 1 if failure else 0
        if self._consecutive >= self._failure_threshold:
            self._open()
        elif len(self._window) >= self._min_calls and sum(self._window) >= self._failure_ratio * len(self._window):
            self._open()

    def release(self) -> None:
        """Gives back a probe slot of a call that ended without an outcome (cancelled)."""
        if self._state is CircuitState.HALF_OPEN:
            self._probes_out = max(0, self._probes_out - 1)

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._consecutive = 0
        self._window.clear()
        self._probes_out = self._probes_ok = 0
        self._change(CircuitState.OPEN)

    def _leave_open_if_due(self) -> None:
        if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self._open_for:
            self._probes_out = self._probes_ok = 0
            self._change(CircuitState.HALF_OPEN)

    def _change(self, new: CircuitState) -> None:
        old, self._state = self._state, new
        if old is new:
            return
        level = logging.WARNING if new is CircuitState.OPEN else logging.INFO
        _log.log(level, "%s: %s -> %s", self._name, old.value, new.value)
        if self._on_state_change is not None:
            try:
                self._on_state_change(old, new)
            except Exception:  # a failing observer must not break calls
                _log.exception("%s: the on_state_change callback failed", self._name)
