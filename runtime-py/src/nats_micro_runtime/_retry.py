"""Retries (PROTOCOL §10.1): the policy and budget of generated clients, the
attempt loop they run each unary call through, and :func:`retry` for any
other async operation."""

from __future__ import annotations

import asyncio
import random as _random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from ._breaker import CircuitBreaker
from ._codes import DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNAVAILABLE
from ._errors import (
    CircuitOpenError,
    ConfigError,
    ConnectionClosedError,
    ConnectionLostError,
    MaxPayloadExceededError,
    NatsMicroError,
    NoRespondersError,
    RequestTimeoutError,
    ServiceError,
    TransportError,
    error_code,
)
from ._typevars import T


OnRetry = Callable[[NatsMicroError, int, float], None]
"""``on_retry(error, next_attempt, delay)``: a retry is about to be slept for."""


@dataclass(frozen=True)
class RetryPolicy:
    """How a client retries a unary call that failed transiently (PROTOCOL
    §10.1). The defaults are the protocol's; ``RetryPolicy(max_attempts=1)``
    turns retries off.

    Before attempt *n* + 1 the client waits a random time in
    ``[0, min(max_delay, initial_delay * multiplier ** (n - 1))]`` (the upper
    bound exactly when ``jitter`` is off), at least what a ``RetryInfo`` of the
    failed reply asks. All attempts share the call's timeout: no attempt
    starts and no delay is slept past it::

        client = ChaosServiceClient(nc, retry_policy=RetryPolicy(max_attempts=5, max_delay=0.5))
        await client.get(ask, retry=RetryPolicy(max_attempts=1))  # this call only: no retry
    """

    max_attempts: int = 3
    """Attempts in all, the first one included."""
    initial_delay: float = 0.05
    """Seconds: the bound of the first delay."""
    multiplier: float = 2.0
    """Growth of the bound from one delay to the next."""
    max_delay: float = 1.0
    """Seconds: the largest bound."""
    jitter: bool = True
    """Full jitter: each delay is uniform in [0, bound]."""
    attempt_timeout: float | None = None
    """Seconds one attempt may take; ``None``: what is left of the call's timeout."""
    on_retry: OnRetry | None = None
    """Called before each retry's delay with the failed attempt's error, the
    number of the attempt to come and the delay in seconds (for metrics and
    logs; it must not block)."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.initial_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ConfigError("delays must not be negative and the multiplier must be at least 1")
        if self.attempt_timeout is not None and self.attempt_timeout <= 0:
            raise ConfigError(f"attempt_timeout must be positive, not {self.attempt_timeout}")

    def delay_bound(self, retry: int) -> float:
        """The upper bound of the delay before retry number ``retry`` (1 for the
        second attempt)."""
        # Past the cap the power is not computed: it would overflow for long runs.
        bound = self.initial_delay
        for _ in range(retry - 1):
            bound *= self.multiplier
            if bound >= self.max_delay:
                break
        return min(self.max_delay, bound)

    def delay(self, retry: int, random: Callable[[], float] = _random.random) -> float:
        """The delay before retry number ``retry``; ``random`` returns a float in [0, 1)."""
        bound = self.delay_bound(retry)
        return bound * random() if self.jitter else bound


class RetryBudget:
    """The retry budget of one client (PROTOCOL §10.1, gRPC retry throttling):
    a bucket of ``max_tokens`` that starts full; every failed attempt that
    would be retried takes one, every success gives back ``token_ratio`` (a
    service's answer that is not a transient failure, ``NOT_FOUND`` say,
    counts as a success, as for the circuit breaker). A
    retry is sent only while more than half the tokens remain, so an outage
    cannot multiply the load on a service::

        client = ChaosServiceClient(nc, retry_budget=RetryBudget(max_tokens=100, token_ratio=0.5))
    """

    def __init__(self, max_tokens: float = 10, token_ratio: float = 0.1) -> None:
        if max_tokens <= 0 or token_ratio < 0:
            raise ConfigError("max_tokens must be positive and token_ratio must not be negative")
        self._max = float(max_tokens)
        self._ratio = float(token_ratio)
        self._tokens = self._max

    @property
    def tokens(self) -> float:
        """Tokens left."""
        return self._tokens

    def withdraw(self) -> bool:
        """Takes a token for a failed attempt; whether a retry may be sent."""
        self._tokens = max(0.0, self._tokens - 1)
        return self._tokens > self._max / 2

    def deposit(self) -> None:
        """Gives back ``token_ratio`` for a success."""
        if self._tokens < self._max:  # full, as it mostly is: nothing to do
            self._tokens = min(self._max, self._tokens + self._ratio)


def retry_hint(err: BaseException) -> float | None:
    """Seconds the ``RetryInfo`` detail of an error reply asks the caller to
    wait (PROTOCOL §4.1), or ``None`` without one: the error's
    ``retry_delay()``, read duck-typed so that an error of another runtime
    copy is understood too."""
    accessor = getattr(err, "retry_delay", None)
    if not callable(accessor):
        return None
    try:
        delay = accessor()
    except Exception:  # a foreign accessor that fails gives no hint
        return None
    return max(0.0, float(delay)) if isinstance(delay, (int, float)) and not isinstance(delay, bool) else None


def is_transient(err: BaseException) -> bool:
    """Whether a failure may pass by itself (PROTOCOL §10.2): no responders,
    a lost connection, ``UNAVAILABLE``, ``DEADLINE_EXCEEDED`` or
    ``RESOURCE_EXHAUSTED`` — but not an open circuit, nor a request too large
    for the server. What a circuit breaker counts as a failure."""
    if isinstance(err, (CircuitOpenError, MaxPayloadExceededError)):
        return False
    return error_code(err) in (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED)


def is_retryable(err: BaseException, idempotent: bool) -> bool:
    """Whether a call that failed with ``err`` may be sent again (PROTOCOL
    §10.1): no responders, ``UNAVAILABLE`` and a ``RESOURCE_EXHAUSTED`` with a
    ``RetryInfo`` always; a timeout or a lost connection (the request may
    have run) only when the method is safe to repeat."""
    if isinstance(err, (CircuitOpenError, ConnectionClosedError, MaxPayloadExceededError)):
        return False  # never: the breaker decided, the connection is gone for good, or it can never fit
    if isinstance(err, NoRespondersError):
        return True  # nobody got the request
    if isinstance(err, (ConnectionLostError, RequestTimeoutError)):
        return idempotent
    if isinstance(err, TransportError):
        return idempotent and err.code == UNAVAILABLE  # another failure on the way: the request may be out
    code = error_code(err)
    if code == UNAVAILABLE:
        return True
    if code == RESOURCE_EXHAUSTED:
        return retry_hint(err) is not None
    if code == DEADLINE_EXCEEDED:
        return idempotent
    return False


class _Clock(Protocol):
    """Time as the attempt loop sees it (tests pass a clock they control)."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class _LoopClock:
    """The event loop's clock."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


LOOP_CLOCK: _Clock = _LoopClock()


@dataclass(frozen=True)
class _Plan:
    """How one call is retried: settled from the client, the method and the call."""

    policy: RetryPolicy
    idempotent: bool
    budget: RetryBudget | None
    breaker: CircuitBreaker | None
    circuit: str
    """``<service>.<method>``, for the circuit-open message."""


Attempt = Callable[[int, float], Awaitable[T]]
"""Sends attempt number ``n`` with ``timeout`` seconds: ``await attempt(n, timeout)``."""


async def _run_attempts(
    attempt: Attempt[T],
    plan: _Plan,
    timeout: float,
    method: str,
    *,
    clock: _Clock = LOOP_CLOCK,
    random: Callable[[], float] = _random.random,
) -> T:
    """Runs ``attempt`` until it succeeds, fails for good, runs out of attempts,
    of budget or of the call's ``timeout``; each attempt gets what is left of
    the timeout (or the policy's ``attempt_timeout`` if smaller) and goes
    through the breaker. The final error is the last attempt's, with
    ``attempts`` set."""
    policy, breaker = plan.policy, plan.breaker
    deadline = clock.now() + timeout
    left = timeout
    number = 1
    while True:
        if breaker is not None and not breaker.allow():
            raise _with_attempts(CircuitOpenError(method, f"circuit open for {plan.circuit}"), max(1, number - 1))
        try:
            result = await attempt(number, left if policy.attempt_timeout is None else min(left, policy.attempt_timeout))
        except NatsMicroError as err:
            transient = is_transient(err)
            if breaker is not None:
                breaker.record(transient)
            if not transient and isinstance(err, ServiceError) and plan.budget is not None:
                plan.budget.deposit()  # the service answered: as much a success for the budget as for the breaker
            err.attempts = number
            delay = _retry_delay(err, number, plan, deadline - clock.now(), random)
            if delay is None:
                raise
            await clock.sleep(delay)
            left = deadline - clock.now()
            if left <= 0:  # the sleep overran the deadline: no attempt starts past it
                raise
            number += 1
        except BaseException:
            if breaker is not None:
                breaker.release()
            raise
        else:
            if breaker is not None:
                breaker.record(False)
            if plan.budget is not None:
                plan.budget.deposit()
            return result


def _retry_delay(err: NatsMicroError, number: int, plan: _Plan, left: float, random: Callable[[], float]) -> float | None:
    """The delay before retrying a call whose attempt ``number`` failed with
    ``err`` with ``left`` seconds to go, or ``None`` when it is not retried:
    the error is final, no attempt or no time is left (a ``RetryInfo`` hint
    that does not fit fails the call), or the budget refuses."""
    policy = plan.policy
    if number >= policy.max_attempts or not is_retryable(err, plan.idempotent):
        return None
    delay = policy.delay(number, random)
    hint = retry_hint(err)
    if hint is not None:
        delay = max(delay, hint)
    if delay >= left:
        return None
    if plan.budget is not None and not plan.budget.withdraw():
        return None
    if policy.on_retry is not None:
        policy.on_retry(err, number + 1, delay)
    return delay


def _with_attempts(err: NatsMicroError, attempts: int) -> NatsMicroError:
    err.attempts = attempts
    return err


class RetriesExhaustedError(NatsMicroError):
    """:func:`retry` gave up: ``last_error`` is the last attempt's exception
    (also the ``__cause__``), ``attempts`` how many were made. Its code is the
    last error's when that carries one, else ``UNAVAILABLE``."""

    last_error: BaseException

    def __init__(self, last_error: BaseException, attempts: int) -> None:
        code = error_code(last_error) or UNAVAILABLE
        method = getattr(last_error, "method", None)
        super().__init__(
            code,
            method if isinstance(method, str) else None,
            f"gave up after {attempts} attempt{'s' if attempts != 1 else ''}: {last_error}",
        )
        self.last_error = last_error
        self.attempts = attempts


RetryOn = tuple[type[BaseException], ...] | Callable[[BaseException], bool]
"""What :func:`retry` retries: exception classes, or a predicate."""


async def retry(
    operation: Callable[[], Awaitable[T]],
    *,
    max_tries: int = 3,
    delay: float = 0.05,
    backoff: float = 2.0,
    max_delay: float = 1.0,
    jitter: bool = True,
    timeout: float | None = None,
    retry_on: RetryOn = is_transient,
    clock: _Clock = LOOP_CLOCK,
    random: Callable[[], float] = _random.random,
) -> T:
    """Awaits ``operation()`` until it succeeds, with the delays of
    :class:`RetryPolicy` between tries (``delay`` the first bound, ``backoff``
    the multiplier, full jitter unless ``jitter`` is off), for at most
    ``max_tries`` tries and, with ``timeout``, never sleeping past that many
    seconds from the start. An exception ``retry_on`` does not match
    (default: :func:`is_transient` failures) propagates as it is; when the
    tries or the time run out, :class:`RetriesExhaustedError` wraps the last
    one::

        order = await retry(lambda: fetch_order(order_id), max_tries=5, delay=0.1, retry_on=(ConnectionError,))

    A ``RetryInfo`` on a failed reply sets the minimum delay. ``clock`` and
    ``random`` are for tests.
    """
    policy = RetryPolicy(max_attempts=max_tries, initial_delay=delay, multiplier=backoff, max_delay=max_delay, jitter=jitter)
    matches: Callable[[BaseException], bool] = (
        (lambda err: isinstance(err, retry_on)) if isinstance(retry_on, tuple) else retry_on
    )
    deadline = None if timeout is None else clock.now() + timeout
    number = 1
    while True:
        try:
            return await operation()
        except Exception as err:
            if not matches(err):
                raise
            pause = policy.delay(number, random)
            hint = retry_hint(err)
            if hint is not None:
                pause = max(pause, hint)
            if number >= max_tries or (deadline is not None and clock.now() + pause >= deadline):
                raise RetriesExhaustedError(err, number) from err
        await clock.sleep(pause)
        number += 1
