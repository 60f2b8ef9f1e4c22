/**
 * Retries, the retry budget and the circuit breaker on their own
 * (PROTOCOL §10.1, §10.2), on a clock and a random source the test
 * drives: backoff schedules and jitter bounds, deadline capping, RetryInfo
 * as the least delay, budget exhaustion and refill, every transition of
 * the breaker, and which failures are retried for which methods.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { create } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";

import { ErrorKind, NatsMicroError, RetriesExhaustedError, retry, retryHint, type RetryClock } from "../src/index.js";
import { backoffDelay, DEFAULT_RETRY_POLICY, mergeRetryPolicy, RetryBudget, retryable, transientFailure } from "../src/retry.js";
import { CircuitBreaker, type CircuitStateChange } from "../src/breaker.js";

/** A clock that moves only when slept on, and a random source that returns what the test queued (else `fallback`). */
class FakeClock implements RetryClock {
  time = 0;
  readonly sleeps: number[] = [];
  readonly draws: number[] = [];
  fallback = 0.5;

  now = (): number => this.time;
  sleep = async (ms: number): Promise<void> => {
    this.sleeps.push(ms);
    this.time += ms;
  };
  random = (): number => this.draws.shift() ?? this.fallback;
}

/** A shed reply's error: RESOURCE_EXHAUSTED with a RetryInfo of `ms` (after another detail), or without one. */
function shed(ms: number | undefined): NatsMicroError {
  const error = new NatsMicroError("RESOURCE_EXHAUSTED", "Get", "endpoint get is overloaded").withErrorInfo("OVERLOADED", "test");
  return ms === undefined ? error : error.withRetryInfo(ms);
}

const transport = (code: string, kind: ErrorKind) => new NatsMicroError(code, "Get", kind, undefined, { kind });

test("backoff without jitter: initial × multiplier^(n−1), capped at the max delay", () => {
  const policy = mergeRetryPolicy(DEFAULT_RETRY_POLICY, { jitter: "none" });
  const schedule = [1, 2, 3, 4, 5, 6, 7].map((retry) => backoffDelay(policy, retry, () => 0));
  assert.deepEqual(schedule, [50, 100, 200, 400, 800, 1000, 1000]);
  const custom = mergeRetryPolicy(DEFAULT_RETRY_POLICY, { jitter: "none", initialDelay: 10, multiplier: 3, maxDelay: 200 });
  assert.deepEqual([1, 2, 3, 4].map((retry) => backoffDelay(custom, retry, () => 0)), [10, 30, 90, 200]);
});

test("full jitter: each delay is uniform in [0, bound]", () => {
  const policy = DEFAULT_RETRY_POLICY;
  assert.equal(backoffDelay(policy, 3, () => 0), 0);
  assert.equal(backoffDelay(policy, 3, () => 0.5), 100);
  assert.ok(backoffDelay(policy, 3, () => 0.999_999) < 200);
  for (let i = 0; i < 1000; i++) {
    const delay = backoffDelay(policy, 10, Math.random);
    assert.ok(delay >= 0 && delay <= 1000, String(delay));
  }
});

test("merging policies: a level overrides only what it sets, and at least one attempt is made", () => {
  const client = mergeRetryPolicy(DEFAULT_RETRY_POLICY, { maxAttempts: 5, maxDelay: 300 });
  const call = mergeRetryPolicy(client, { initialDelay: 5, attemptTimeout: 100 });
  assert.deepEqual(call, { maxAttempts: 5, initialDelay: 5, multiplier: 2, maxDelay: 300, jitter: "full", attemptTimeout: 100 });
  assert.equal(mergeRetryPolicy(DEFAULT_RETRY_POLICY, { maxAttempts: 0 }).maxAttempts, 1);
});

test("retry(): the schedule of the policy, then RetriesExhaustedError with the attempts and the last error", async () => {
  const clock = new FakeClock();
  clock.draws.push(1, 1, 0.5, 0.25);
  let calls = 0;
  const failure = await retry(
    async (attempt) => {
      calls += 1;
      throw new Error(`attempt ${attempt}`);
    },
    { maxAttempts: 5, clock },
  ).catch((err: unknown) => err);
  assert.ok(failure instanceof RetriesExhaustedError);
  assert.equal(failure.attempts, 5);
  assert.equal((failure.lastError as Error).message, "attempt 5");
  assert.equal(failure.cause, failure.lastError);
  assert.equal(calls, 5);
  assert.deepEqual(clock.sleeps, [50, 100, 100, 100]);
});

test("retry(): succeeds on a later attempt; failures retryOn rejects are thrown as they are", async () => {
  const clock = new FakeClock();
  assert.equal(await retry(async (attempt) => (attempt < 3 ? Promise.reject(new Error("not yet")) : attempt), { clock }), 3);
  const fatal = new TypeError("fatal");
  let calls = 0;
  await assert.rejects(
    retry(
      async () => {
        calls += 1;
        throw fatal;
      },
      { clock, retryOn: (err) => !(err instanceof TypeError) },
    ),
    (err: unknown) => err === fatal,
  );
  assert.equal(calls, 1);
});

test("retry(): no delay is slept past the timeout", async () => {
  const clock = new FakeClock();
  clock.fallback = 1;
  const failure = await retry(
    async () => {
      clock.time += 30;
      throw new Error("slow failure");
    },
    { maxAttempts: 10, timeout: 250, clock },
  ).catch((err: unknown) => err);
  assert.ok(failure instanceof RetriesExhaustedError);
  // 30 + 50 + 30 + 100 + 30 = 240; the next delay (200) would end past 250.
  assert.equal(failure.attempts, 3);
  assert.deepEqual(clock.sleeps, [50, 100]);
  assert.ok(clock.time <= 250);
});

test("RetryInfo: read from the error's details, and the least delay before the next attempt", async () => {
  assert.equal(retryHint(shed(1_500)), 1_500);
  assert.equal(retryHint(shed(0)), 0);
  assert.equal(retryHint(shed(undefined)), undefined);
  assert.equal(retryHint(new Error("plain")), undefined);
  const garbled = new NatsMicroError("RESOURCE_EXHAUSTED", "Get", "busy", undefined, {
    details: [create(AnySchema, { typeUrl: "type.googleapis.com/google.rpc.RetryInfo", value: Uint8Array.of(0x0a, 0xff) })],
  });
  assert.equal(retryHint(garbled), undefined);
  assert.equal(retryable(garbled, true), false);

  const clock = new FakeClock();
  clock.fallback = 0.1;
  await retry(async (attempt) => (attempt === 1 ? Promise.reject(shed(700)) : "ok"), { clock });
  assert.deepEqual(clock.sleeps, [700]);
});

test("retry budget: a retry goes only while more than half the tokens remain; successes refill it", () => {
  const budget = new RetryBudget({ maxTokens: 10, tokenRatio: 0.5 });
  const allowed = Array.from({ length: 7 }, () => budget.takeForRetry());
  assert.deepEqual(allowed, [true, true, true, true, false, false, false]);
  assert.equal(budget.tokens, 3);
  budget.succeeded();
  budget.succeeded();
  budget.succeeded();
  budget.succeeded();
  budget.succeeded();
  assert.equal(budget.tokens, 5.5);
  assert.equal(budget.takeForRetry(), false, "5.5 - 1 is not above half of 10");
  for (let i = 0; i < 100; i++) {
    budget.succeeded();
  }
  assert.equal(budget.tokens, 10, "never above the maximum");
  assert.equal(budget.takeForRetry(), true);
  const defaults = new RetryBudget();
  assert.equal(defaults.tokens, 10);
});

/** A breaker on a clock the test moves, recording its state changes and log lines. */
function breaker(options: ConstructorParameters<typeof CircuitBreaker>[1] = {}) {
  const clock = { time: 0 };
  const changes: string[] = [];
  const logs: string[] = [];
  const b = new CircuitBreaker("ChaosService.Flaky", {
    now: () => clock.time,
    onStateChange: (change: CircuitStateChange) => changes.push(`${change.from}->${change.to}`),
    log: (level, message) => logs.push(`${level}: ${message}`),
    ...options,
  });
  const outcome = (failed: boolean) => {
    const ticket = b.admit();
    assert.notEqual(ticket, undefined, "admitted");
    b.record(ticket as number, failed);
  };
  return { b, clock, changes, logs, outcome };
}

test("breaker: consecutive transient failures open it; an open breaker refuses at once", () => {
  const { b, changes, logs, outcome } = breaker();
  for (let i = 0; i < 4; i++) {
    outcome(true);
  }
  outcome(false);
  for (let i = 0; i < 4; i++) {
    outcome(true);
  }
  assert.equal(b.state, "closed", "a success resets the run, and 4 failures in a row are not 5");
  outcome(true);
  assert.equal(b.state, "open");
  assert.equal(b.admit(), undefined);
  assert.deepEqual(changes, ["closed->open"]);
  assert.deepEqual(logs, ["warn: circuit breaker for ChaosService.Flaky: closed -> open"]);
});

test("breaker: the failure ratio over the window opens it once the window holds enough calls", () => {
  const { b, outcome } = breaker({ consecutiveFailures: 100 });
  // Alternating: half the calls fail, never two in a row.
  for (let i = 0; i < 9; i++) {
    outcome(i % 2 === 0);
  }
  assert.equal(b.state, "closed", "9 calls are fewer than the 10 the ratio needs");
  outcome(false);
  assert.equal(b.state, "closed", "the ratio is checked when a failure is counted");
  outcome(true);
  assert.equal(b.state, "open", "6 failures in 11 calls");

  const sparse = breaker({ consecutiveFailures: 100 });
  // One failure in three stays under 0.5 for ever, also as old outcomes leave the window of 20.
  for (let i = 0; i < 60; i++) {
    sparse.outcome(i % 3 === 0);
  }
  assert.equal(sparse.b.state, "closed");
});

test("breaker: half-open after the interval lets one probe through; its success closes, its failure re-opens", () => {
  const { b, clock, changes, logs, outcome } = breaker({ consecutiveFailures: 2, openInterval: 1_000 });
  outcome(true);
  outcome(true);
  clock.time = 999;
  assert.equal(b.admit(), undefined, "still open");
  clock.time = 1_000;
  const probe = b.admit();
  assert.notEqual(probe, undefined);
  assert.equal(b.state, "half-open");
  assert.equal(b.admit(), undefined, "one probe at a time");
  b.record(probe as number, true);
  assert.equal(b.state, "open", "a failed probe re-opens");
  clock.time = 1_500;
  assert.equal(b.admit(), undefined, "for another whole interval");
  clock.time = 2_000;
  const second = b.admit() as number;
  b.record(second, false);
  assert.equal(b.state, "closed");
  outcome(true);
  assert.equal(b.state, "closed", "closing clears the count");
  assert.deepEqual(changes, ["closed->open", "open->half-open", "half-open->open", "open->half-open", "half-open->closed"]);
  assert.deepEqual(
    logs.map((line) => line.split(":")[0]),
    ["warn", "info", "warn", "info", "info"],
  );
});

test("breaker: outcomes of calls admitted before a state change do not count", () => {
  const { b, clock, outcome } = breaker({ consecutiveFailures: 1, openInterval: 10 });
  const early = b.admit() as number;
  outcome(true);
  clock.time = 10;
  const probe = b.admit() as number;
  b.record(early, true);
  assert.equal(b.state, "half-open", "the early failure belongs to the closed breaker");
  b.record(probe, false);
  assert.equal(b.state, "closed");
});

test("what is retried: every method for no responders, UNAVAILABLE and RESOURCE_EXHAUSTED with RetryInfo; timeouts and lost connections only when safe to repeat", () => {
  const unavailable = new NatsMicroError("UNAVAILABLE", "Put", "dependency down");
  const cases: [string, NatsMicroError, boolean, boolean][] = [
    ["no responders", transport("UNAVAILABLE", ErrorKind.NoResponders), true, true],
    ["UNAVAILABLE from the service", unavailable, true, true],
    ["circuit open", transport("UNAVAILABLE", ErrorKind.CircuitOpen), false, false],
    ["connection closed", transport("UNAVAILABLE", ErrorKind.ConnectionClosed), false, false],
    ["RESOURCE_EXHAUSTED with RetryInfo", shed(100), true, true],
    ["RESOURCE_EXHAUSTED without", shed(undefined), false, false],
    ["request over max_payload", transport("RESOURCE_EXHAUSTED", ErrorKind.MaxPayloadExceeded), false, false],
    ["attempt timeout", transport("DEADLINE_EXCEEDED", ErrorKind.Timeout), false, true],
    ["DEADLINE_EXCEEDED from the service", new NatsMicroError("DEADLINE_EXCEEDED", "Put", "late"), false, true],
    ["connection lost", transport("UNAVAILABLE", ErrorKind.ConnectionLost), false, true],
    ["NOT_FOUND", new NatsMicroError("NOT_FOUND", "Put", "no such thing"), false, false],
    ["INTERNAL", new NatsMicroError("INTERNAL", "Put", "internal error"), false, false],
  ];
  for (const [name, error, always, whenIdempotent] of cases) {
    assert.equal(retryable(error, false), always, `${name}, not idempotent`);
    assert.equal(retryable(error, true), whenIdempotent, `${name}, idempotent`);
  }
  assert.equal(retryable(new Error("not ours"), true), false);
});

test("what the breaker counts: transient failures only", () => {
  assert.equal(transientFailure(transport("UNAVAILABLE", ErrorKind.NoResponders)), true);
  assert.equal(transientFailure(transport("UNAVAILABLE", ErrorKind.ConnectionLost)), true);
  assert.equal(transientFailure(transport("DEADLINE_EXCEEDED", ErrorKind.Timeout)), true);
  assert.equal(transientFailure(shed(undefined)), true);
  assert.equal(transientFailure(new NatsMicroError("UNAVAILABLE", "Flaky", "dependency down")), true);
  assert.equal(transientFailure(transport("UNAVAILABLE", ErrorKind.CircuitOpen)), false);
  assert.equal(transientFailure(new NatsMicroError("NOT_FOUND", "Flaky", "gone")), false);
  assert.equal(transientFailure(new Error("not ours")), false);
});
