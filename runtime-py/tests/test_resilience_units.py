"""Retries, budget and circuit breaker (PROTOCOL §10.1, §10.2) on a clock and
a random source the tests control: backoff schedules, jitter bounds, deadline
capping, budget exhaustion and refill, the breaker's state machine,
idempotency gating and attempt numbering, and the generic :func:`retry`."""

from __future__ import annotations

import logging
from collections.abc import Callable

import nats_micro_runtime as rt
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from nats_micro_runtime._retry import _Plan, _run_attempts


class FakeClock:
    """Time that moves only when slept through (or when a test moves it)."""

    def __init__(self) -> None:
        self.time = 100.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.time += seconds


def constant(value: float) -> Callable[[], float]:
    return lambda: value


class Attempts:
    """An attempt function that fails with the errors given, in order, then succeeds;
    each attempt takes ``takes`` seconds (capped at its timeout)."""

    def __init__(self, clock: FakeClock, errors: list[rt.NatsMicroError], takes: float = 0.0) -> None:
        self.clock = clock
        self.errors = list(errors)
        self.takes = takes
        self.calls: list[tuple[int, float, float]] = []  # (attempt, timeout, start time)

    async def __call__(self, attempt: int, timeout: float) -> str:
        self.calls.append((attempt, timeout, self.clock.now()))
        self.clock.time += min(self.takes, timeout)
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def plan(
    policy: rt.RetryPolicy = rt.RetryPolicy(),
    *,
    idempotent: bool = False,
    budget: rt.RetryBudget | None = None,
    breaker: rt.CircuitBreaker | None = None,
) -> _Plan:
    return _Plan(policy=policy, idempotent=idempotent, budget=budget, breaker=breaker, circuit="t.Svc.Get")


def unavailable() -> rt.NatsMicroError:
    return rt.UnavailableError("Get", "down", b"data", headers={"X-Last": "yes"})


def test_backoff_bounds_grow_by_the_multiplier_up_to_the_max_delay() -> None:
    policy = rt.RetryPolicy()
    assert [round(policy.delay_bound(n), 6) for n in range(1, 8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    slow = rt.RetryPolicy(initial_delay=0.1, multiplier=3, max_delay=2)
    assert [round(slow.delay_bound(n), 6) for n in range(1, 5)] == [0.1, 0.3, 0.9, 2.0]
    assert rt.RetryPolicy().delay_bound(10_000) == 1.0  # no overflow on long runs


def test_full_jitter_stays_within_zero_and_the_bound() -> None:
    policy = rt.RetryPolicy()
    for n in range(1, 8):
        assert policy.delay(n, constant(0.0)) == 0.0
        assert policy.delay(n, constant(0.5)) == pytest.approx(policy.delay_bound(n) / 2)
        assert policy.delay(n, constant(0.999999)) < policy.delay_bound(n)
    assert rt.RetryPolicy(jitter=False).delay(3, constant(0.0)) == pytest.approx(0.2)


def test_invalid_policies_and_budgets_are_refused() -> None:
    with pytest.raises(rt.ConfigError):
        rt.RetryPolicy(max_attempts=0)
    with pytest.raises(rt.ConfigError):
        rt.RetryPolicy(multiplier=0.5)
    with pytest.raises(rt.ConfigError):
        rt.RetryPolicy(attempt_timeout=0)
    with pytest.raises(rt.ConfigError):
        rt.RetryBudget(max_tokens=0)


async def test_attempts_are_numbered_and_the_delays_follow_the_schedule() -> None:
    clock = FakeClock()
    attempts = Attempts(clock, [unavailable(), unavailable()])
    seen: list[tuple[int, float]] = []
    policy = rt.RetryPolicy(jitter=False, on_retry=lambda err, n, delay: seen.append((n, delay)))
    assert await _run_attempts(attempts, plan(policy), 5.0, "Get", clock=clock) == "ok"
    assert [call[0] for call in attempts.calls] == [1, 2, 3]
    assert clock.sleeps == pytest.approx([0.05, 0.1])
    assert seen == [(2, pytest.approx(0.05)), (3, pytest.approx(0.1))]


async def test_the_final_error_is_the_last_attempts_with_the_attempt_count() -> None:
    clock = FakeClock()
    last = rt.UnavailableError("Get", "still down", b"last data", headers={"X-Attempt": "3"})
    attempts = Attempts(clock, [unavailable(), unavailable(), last, unavailable()])
    with pytest.raises(rt.UnavailableError) as caught:
        await _run_attempts(attempts, plan(), 5.0, "Get", clock=clock, random=constant(0.5))
    assert caught.value is last
    assert (caught.value.attempts, caught.value.message, caught.value.data) == (3, "still down", b"last data")
    assert caught.value.headers == {"X-Attempt": "3"}
    assert len(attempts.calls) == 3


async def test_attempts_share_the_deadline_and_no_delay_is_slept_past_it() -> None:
    clock = FakeClock()
    start = clock.now()
    # Each attempt uses 0.1 s; 20 attempts would need far more than the 0.5 s timeout.
    attempts = Attempts(clock, [unavailable() for _ in range(20)], takes=0.1)
    policy = rt.RetryPolicy(max_attempts=20, jitter=False)
    with pytest.raises(rt.UnavailableError) as caught:
        await _run_attempts(attempts, plan(policy), 0.5, "Get", clock=clock)
    assert caught.value.attempts == len(attempts.calls) < 20
    for number, timeout, started in attempts.calls:
        assert started < start + 0.5
        assert timeout == pytest.approx(start + 0.5 - started)  # each attempt carries what is left
    assert clock.now() <= start + 0.5 + 1e-9


async def test_no_attempt_starts_when_a_sleep_overran_the_deadline() -> None:
    class LateClock(FakeClock):
        async def sleep(self, seconds: float) -> None:
            self.sleeps.append(seconds)
            self.time += seconds + 1.0  # a loop too busy to wake in time

    clock = LateClock()
    attempts = Attempts(clock, [unavailable(), unavailable()])
    with pytest.raises(rt.UnavailableError) as caught:
        await _run_attempts(attempts, plan(), 0.5, "Get", clock=clock, random=constant(0.5))
    assert len(attempts.calls) == 1 and caught.value.attempts == 1


async def test_a_per_attempt_timeout_bounds_each_attempt() -> None:
    clock = FakeClock()
    attempts = Attempts(clock, [rt.RequestTimeoutError("Get", "slow")], takes=0.2)
    policy = rt.RetryPolicy(attempt_timeout=0.2, jitter=False)
    await _run_attempts(attempts, plan(policy, idempotent=True), 10.0, "Get", clock=clock)
    assert [call[1] for call in attempts.calls] == [pytest.approx(0.2), pytest.approx(0.2)]


async def test_a_retry_info_hint_sets_the_minimum_delay_and_must_fit_the_deadline() -> None:
    clock = FakeClock()
    shed = rt.ResourceExhaustedError("Get", "overloaded").with_retry_delay(0.3)
    attempts = Attempts(clock, [shed])
    await _run_attempts(attempts, plan(), 5.0, "Get", clock=clock, random=constant(0.0))
    assert clock.sleeps == pytest.approx([0.3])
    late = Attempts(clock, [shed])
    with pytest.raises(rt.ResourceExhaustedError):
        await _run_attempts(late, plan(), 0.2, "Get", clock=clock, random=constant(0.0))
    assert len(late.calls) == 1


@pytest.mark.parametrize(
    ("error", "when_idempotent", "otherwise"),
    [
        (rt.NoRespondersError("Get", "nobody"), True, True),
        (rt.UnavailableError("Get", "down"), True, True),
        (rt.ServiceError(rt.UNAVAILABLE, "Get", "down"), True, True),
        (rt.RequestTimeoutError("Get", "late"), True, False),
        (rt.DeadlineExceededError("Get", "server gave up"), True, False),
        (rt.ConnectionLostError("Get", "lost"), True, False),
        (rt.ResourceExhaustedError("Get", "no hint"), False, False),
        (rt.ResourceExhaustedError("Get", "shed").with_retry_delay(0.1), True, True),
        (rt.CircuitOpenError("Get", "open"), False, False),
        (rt.ConnectionClosedError("Get", "closed"), False, False),
        (rt.NotFoundError("Get", "gone"), False, False),
        (rt.InternalError("Get", "bug"), False, False),
        (rt.MaxPayloadExceededError("Get", "big"), False, False),
    ],
)
async def test_only_transient_failures_are_retried_and_some_only_when_safe_to_repeat(
    error: rt.NatsMicroError, when_idempotent: bool, otherwise: bool
) -> None:
    assert rt.is_retryable(error, True) is when_idempotent
    assert rt.is_retryable(error, False) is otherwise
    clock = FakeClock()
    attempts = Attempts(clock, [error])
    try:
        await _run_attempts(attempts, plan(idempotent=False), 5.0, "Get", clock=clock)
    except rt.NatsMicroError as raised:
        assert raised is error and not otherwise
    assert len(attempts.calls) == (2 if otherwise else 1)


async def test_max_attempts_one_turns_retries_off() -> None:
    clock = FakeClock()
    attempts = Attempts(clock, [unavailable()])
    with pytest.raises(rt.UnavailableError):
        await _run_attempts(attempts, plan(rt.RetryPolicy(max_attempts=1)), 5.0, "Get", clock=clock)
    assert len(attempts.calls) == 1


def test_the_budget_allows_retries_while_more_than_half_remains_and_refills_on_success() -> None:
    budget = rt.RetryBudget(max_tokens=10, token_ratio=0.5)
    assert [budget.withdraw() for _ in range(6)] == [True, True, True, True, False, False]
    assert budget.tokens == 4
    for _ in range(3):
        budget.deposit()
    assert budget.tokens == 5.5
    assert budget.withdraw() is False  # 4.5 left: at most half
    for _ in range(100):
        budget.deposit()
    assert budget.tokens == 10  # never above the maximum
    assert budget.withdraw() is True


async def test_an_exhausted_budget_stops_retrying_across_calls() -> None:
    clock = FakeClock()
    budget = rt.RetryBudget(max_tokens=4, token_ratio=1)
    policy = rt.RetryPolicy(max_attempts=10)
    first = Attempts(clock, [unavailable() for _ in range(10)])
    with pytest.raises(rt.UnavailableError) as caught:
        await _run_attempts(first, plan(policy, budget=budget), 60.0, "Get", clock=clock, random=constant(0.0))
    assert caught.value.attempts == 2  # 4 -> 3 allows one retry, 3 -> 2 is at half
    second = Attempts(clock, [unavailable()])
    with pytest.raises(rt.UnavailableError):
        await _run_attempts(second, plan(policy, budget=budget), 60.0, "Get", clock=clock)
    assert len(second.calls) == 1  # no tokens: no retry
    for _ in range(3):  # 1 -> 4
        assert await _run_attempts(Attempts(clock, []), plan(policy, budget=budget), 60.0, "Get", clock=clock) == "ok"
    third = Attempts(clock, [unavailable()])
    assert await _run_attempts(third, plan(policy, budget=budget), 60.0, "Get", clock=clock, random=constant(0.0)) == "ok"
    assert len(third.calls) == 2  # refilled by the successes


async def test_a_services_non_transient_answer_refills_the_budget_like_a_success() -> None:
    clock = FakeClock()
    budget = rt.RetryBudget(max_tokens=10, token_ratio=1)
    budget.withdraw()
    with pytest.raises(rt.NotFoundError):
        await _run_attempts(Attempts(clock, [rt.NotFoundError("Get", "no")]), plan(budget=budget), 5.0, "Get", clock=clock)
    assert budget.tokens == 10
    budget.withdraw()
    with pytest.raises(rt.EncodeError):  # not an answer of the service
        await _run_attempts(Attempts(clock, [rt.EncodeError("Get", "bad")]), plan(budget=budget), 5.0, "Get", clock=clock)
    assert budget.tokens == 9


class Changes:
    def __init__(self) -> None:
        self.seen: list[tuple[rt.CircuitState, rt.CircuitState]] = []

    def __call__(self, old: rt.CircuitState, new: rt.CircuitState) -> None:
        self.seen.append((old, new))


def test_the_breaker_opens_on_consecutive_failures(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    changes = Changes()
    breaker = rt.CircuitBreaker(failure_threshold=3, clock=clock.now, on_state_change=changes, name="t.Svc")
    for outcome in (True, True, False, True, True):  # a success resets the run
        assert breaker.allow()
        breaker.record(outcome)
    assert breaker.state is rt.CircuitState.CLOSED
    with caplog.at_level(logging.INFO, logger="nats_micro_runtime"):
        assert breaker.allow()
        breaker.record(True)
    assert breaker.state is rt.CircuitState.OPEN
    assert changes.seen == [(rt.CircuitState.CLOSED, rt.CircuitState.OPEN)]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.WARNING, "t.Svc: closed -> open")]
    assert not breaker.allow()


def test_the_breaker_opens_on_the_failure_ratio_once_the_window_has_enough_calls() -> None:
    clock = FakeClock()
    breaker = rt.CircuitBreaker(failure_threshold=100, failure_ratio=0.5, window=10, min_calls=6, clock=clock.now)
    for outcome in (True, False, True, False, True):  # 3 of 5, but the window is not full enough
        breaker.record(outcome)
    assert breaker.state is rt.CircuitState.CLOSED
    breaker.record(False)  # 3 of 6: the ratio is met
    assert breaker.state is rt.CircuitState.OPEN


def test_the_default_breaker_matches_the_protocol() -> None:
    breaker = rt.CircuitBreaker(clock=FakeClock().now)
    for _ in range(4):
        breaker.record(True)
    assert breaker.state is rt.CircuitState.CLOSED
    breaker.record(True)
    assert breaker.state is rt.CircuitState.OPEN  # 5 consecutive
    ratio = rt.CircuitBreaker(clock=FakeClock().now)
    for outcome in [True, False] * 4 + [True]:
        ratio.record(outcome)
    assert ratio.state is rt.CircuitState.CLOSED  # 5 of 9: under 10 calls
    ratio.record(False)
    assert ratio.state is rt.CircuitState.OPEN  # 5 of 10


def test_half_open_lets_a_probe_through_and_closes_on_its_success() -> None:
    clock = FakeClock()
    changes = Changes()
    breaker = rt.CircuitBreaker(failure_threshold=1, open_for=5.0, clock=clock.now, on_state_change=changes)
    breaker.record(True)
    clock.time += 4.9
    assert not breaker.allow()
    clock.time += 0.1
    assert breaker.state is rt.CircuitState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # one probe at a time
    breaker.record(False)
    assert breaker.state is rt.CircuitState.CLOSED
    assert [new for _, new in changes.seen] == [rt.CircuitState.OPEN, rt.CircuitState.HALF_OPEN, rt.CircuitState.CLOSED]


def test_half_open_reopens_on_a_failed_probe_and_a_cancelled_probe_frees_its_slot() -> None:
    clock = FakeClock()
    breaker = rt.CircuitBreaker(failure_threshold=1, open_for=1.0, probes=2, clock=clock.now)
    breaker.record(True)
    clock.time += 1.0
    assert breaker.allow() and breaker.allow() and not breaker.allow()
    breaker.release()  # a cancelled probe
    assert breaker.allow()
    breaker.record(False)
    breaker.record(True)
    assert breaker.state is rt.CircuitState.OPEN
    clock.time += 0.5
    assert not breaker.allow()  # a whole new interval
    clock.time += 0.5
    assert breaker.allow()


async def test_an_open_breaker_fails_calls_at_once_without_sending_and_is_not_retried() -> None:
    clock = FakeClock()
    breaker = rt.CircuitBreaker(failure_threshold=2, clock=clock.now)
    attempts = Attempts(clock, [unavailable() for _ in range(5)])
    with pytest.raises(rt.CircuitOpenError) as caught:
        await _run_attempts(attempts, plan(rt.RetryPolicy(max_attempts=5), breaker=breaker), 60.0, "Get", clock=clock)
    assert len(attempts.calls) == 2  # the third attempt met the open breaker
    assert caught.value.code == rt.UNAVAILABLE and caught.value.KIND == "circuit open"
    assert caught.value.message == "circuit open for t.Svc.Get"
    assert caught.value.attempts == 2
    again = Attempts(clock, [])
    with pytest.raises(rt.CircuitOpenError):
        await _run_attempts(again, plan(breaker=breaker), 60.0, "Get", clock=clock)
    assert again.calls == []


async def test_the_breaker_counts_only_transient_failures() -> None:
    clock = FakeClock()
    breaker = rt.CircuitBreaker(failure_threshold=2, clock=clock.now)
    for _ in range(5):
        with pytest.raises(rt.NotFoundError):
            await _run_attempts(Attempts(clock, [rt.NotFoundError("Get", "no")]), plan(breaker=breaker), 5.0, "Get", clock=clock)
    assert breaker.state is rt.CircuitState.CLOSED
    transient = (rt.NoRespondersError("G", ""), rt.ConnectionLostError("G", ""), rt.RequestTimeoutError("G", ""))
    assert all(rt.is_transient(error) for error in transient)
    assert not rt.is_transient(rt.CircuitOpenError("G", "")) and not rt.is_transient(rt.NotFoundError("G", ""))


def test_retry_hint_reads_a_retry_info_detail() -> None:
    error = rt.UnavailableError("Get", "later")
    assert rt.retry_hint(error) is None
    error.with_error_info("BUSY", "test").with_retry_delay(1.25)
    assert rt.retry_hint(error) == pytest.approx(1.25)
    wire = rt.UnavailableError("Get", "later", details=[error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=5))])
    assert rt.retry_hint(wire) == pytest.approx(5e-9)


async def test_retry_retries_matching_failures_then_wraps_the_last_one() -> None:
    clock = FakeClock()
    tries: list[float] = []

    async def flaky() -> int:
        tries.append(clock.now())
        raise ConnectionError(f"try {len(tries)}")

    with pytest.raises(rt.RetriesExhaustedError) as caught:
        await rt.retry(flaky, max_tries=4, delay=0.1, backoff=3, retry_on=(ConnectionError,), jitter=False, clock=clock)
    assert caught.value.attempts == 4
    assert isinstance(caught.value.last_error, ConnectionError) and str(caught.value.last_error) == "try 4"
    assert caught.value.__cause__ is caught.value.last_error
    assert clock.sleeps == pytest.approx([0.1, 0.3, 0.9])


async def test_retry_returns_the_first_success_and_lets_other_errors_through() -> None:
    clock = FakeClock()
    results = iter([rt.UnavailableError("Get", "down"), 7])

    async def op() -> int:
        result = next(results)
        if isinstance(result, Exception):
            raise result
        return result

    assert await rt.retry(op, clock=clock, random=constant(0.5)) == 7  # default: transient failures
    assert clock.sleeps == pytest.approx([0.025])

    async def wrong() -> int:
        raise ValueError("not transient")

    with pytest.raises(ValueError):
        await rt.retry(wrong, clock=clock)


async def test_retry_keeps_the_code_of_the_last_error_and_stops_at_its_timeout() -> None:
    clock = FakeClock()

    async def down() -> None:
        raise rt.UnavailableError("Get", "down")

    with pytest.raises(rt.RetriesExhaustedError) as caught:
        await rt.retry(down, max_tries=100, delay=0.1, backoff=1, timeout=0.35, jitter=False, clock=clock)
    assert caught.value.code == rt.UNAVAILABLE and caught.value.method == "Get"
    assert caught.value.attempts == 4  # at 0, 0.1, 0.2, 0.3; the fifth would start past 0.35
