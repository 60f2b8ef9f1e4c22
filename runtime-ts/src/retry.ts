/**
 * Retries (PROTOCOL §10.1): the policy and its delays, what may be retried,
 * the client's retry budget, and {@link retry}, the same delays for any
 * async operation.
 */

import { fromBinary } from "@bufbuild/protobuf";
import { ErrorKind, isDetailOf, isNatsMicroError, type NatsMicroErrorLike } from "./errors.js";
import { RetryInfoSchema } from "./google-rpc-error_details_pb.js";

/**
 * How a failed call is retried. Every field is optional: what is not set
 * comes from the level below (call over method over client over
 * {@link DEFAULT_RETRY_POLICY}). `maxAttempts: 1` turns retries off.
 *
 * @example
 * ```ts
 * const client = new OrderServiceNatsClient(nc, {
 *   retryPolicy: { maxAttempts: 5, initialDelay: 20, maxDelay: 500 },
 *   methods: { createOrder: { retryPolicy: { maxAttempts: 1 } } },
 * });
 * await client.getOrder({ id: "42" }, { retry: { attemptTimeout: 200 } });
 * ```
 */
export interface RetryPolicy {
  /** Attempts in all, the first included. */
  maxAttempts?: number;
  /** The delay bound before the first retry (milliseconds). */
  initialDelay?: number;
  /** What each further delay bound is multiplied by. */
  multiplier?: number;
  /** The largest delay bound (milliseconds). */
  maxDelay?: number;
  /** `"full"`: each delay is uniform in [0, bound]; `"none"`: the bound itself. */
  jitter?: "full" | "none";
  /** Bounds a single attempt (milliseconds); by default an attempt may use all the time the call has left. */
  attemptTimeout?: number;
}

/** A policy with every field settled. */
export type ResolvedRetryPolicy = Required<Omit<RetryPolicy, "attemptTimeout">> & Pick<RetryPolicy, "attemptTimeout">;

/** The defaults of PROTOCOL §10.1, the same in every runtime. */
export const DEFAULT_RETRY_POLICY: Readonly<ResolvedRetryPolicy> = Object.freeze({
  maxAttempts: 3,
  initialDelay: 50,
  multiplier: 2,
  maxDelay: 1_000,
  jitter: "full",
});

/** `base` with the fields `over` sets. */
export function mergeRetryPolicy(base: ResolvedRetryPolicy, over: RetryPolicy | undefined): ResolvedRetryPolicy {
  if (over === undefined) {
    return base;
  }
  const merged: ResolvedRetryPolicy = { ...base };
  for (const [key, value] of Object.entries(over) as [keyof RetryPolicy, unknown][]) {
    if (value !== undefined) {
      (merged as Record<string, unknown>)[key] = value;
    }
  }
  merged.maxAttempts = Math.max(1, Math.floor(merged.maxAttempts));
  return merged;
}

/** Time and chance as retries see them; tests replace them. */
export interface RetryClock {
  /** Milliseconds on a monotonic clock. */
  now(): number;
  /** Resolves after `ms` milliseconds. */
  sleep(ms: number): Promise<void>;
  /** Uniform in [0, 1). */
  random(): number;
}

/** The real clock: `performance.now()`, `setTimeout` and `Math.random()`. */
export const systemClock: RetryClock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  random: () => Math.random(),
};

/**
 * The delay before retry number `retry` (1 before the second attempt):
 * uniform in [0, min(maxDelay, initialDelay × multiplier^(retry−1))] with
 * full jitter, else that bound.
 */
export function backoffDelay(policy: ResolvedRetryPolicy, retry: number, random: () => number): number {
  const bound = Math.max(0, Math.min(policy.maxDelay, policy.initialDelay * policy.multiplier ** (retry - 1)));
  return policy.jitter === "none" ? bound : random() * bound;
}

/** The retry budget of a client (PROTOCOL §10.1). */
export interface RetryBudgetOptions {
  /** Tokens the bucket holds, and starts with (default 10). */
  maxTokens?: number;
  /** Tokens each success gives back (default 0.1). */
  tokenRatio?: number;
}

/** The defaults of PROTOCOL §10.1. */
export const DEFAULT_RETRY_BUDGET: Readonly<Required<RetryBudgetOptions>> = Object.freeze({ maxTokens: 10, tokenRatio: 0.1 });

/**
 * A token bucket shared by every call of a client, as gRPC's retry
 * throttling: each failure that would be retried takes a token, each
 * answer of the service that is not a transient failure gives back `tokenRatio`, and a retry goes out only while more
 * than half the tokens remain. An outage therefore cannot multiply the
 * load a client sends.
 */
export class RetryBudget {
  readonly #max: number;
  readonly #ratio: number;
  #tokens: number;

  constructor(options: RetryBudgetOptions = {}) {
    this.#max = options.maxTokens ?? DEFAULT_RETRY_BUDGET.maxTokens;
    this.#ratio = options.tokenRatio ?? DEFAULT_RETRY_BUDGET.tokenRatio;
    this.#tokens = this.#max;
  }

  /** Tokens left. */
  get tokens(): number {
    return this.#tokens;
  }

  /** A failed attempt that could be retried: takes a token, then says whether the retry may go. */
  takeForRetry(): boolean {
    this.#tokens = Math.max(0, this.#tokens - 1);
    return this.#tokens > this.#max / 2;
  }

  /** An attempt the service answered (a success, or an error that is not transient) gives `tokenRatio` back. */
  succeeded(): void {
    this.#tokens = Math.min(this.#max, this.#tokens + this.#ratio);
  }
}

/**
 * The delay (milliseconds) a failed reply's `RetryInfo` detail asks for
 * (PROTOCOL §4.1): that of the first one, 0 for one without a delay, and
 * `undefined` when the error carries none.
 */
export function retryHint(error: unknown): number | undefined {
  if (!isNatsMicroError(error)) {
    return undefined;
  }
  const detail = error.detailsAny?.find((any) => isDetailOf(any, RetryInfoSchema.typeName));
  if (detail === undefined) {
    return undefined;
  }
  try {
    const delay = fromBinary(RetryInfoSchema, detail.value).retryDelay;
    const ms = delay === undefined ? 0 : Number(delay.seconds) * 1_000 + delay.nanos / 1_000_000;
    // A negative or absurd hint is no wait rather than a failure of the error path.
    return Number.isFinite(ms) && ms > 0 ? ms : 0;
  } catch {
    // A detail that claims the type but does not decode is no such detail (as `err.retryInfo()` reads it).
    return undefined;
  }
}

/**
 * Whether a failed attempt may be sent again (PROTOCOL §10.1). For every
 * method: no responders, `UNAVAILABLE` (but not an open circuit, nor a
 * closed connection, which will not come back), `RESOURCE_EXHAUSTED` with
 * a `RetryInfo`. Only when the call is safe to repeat (`idempotent`): a
 * single attempt's `DEADLINE_EXCEEDED` and the loss of the connection
 * while the request was out, as the service may have executed it.
 */
export function retryable(error: unknown, idempotent: boolean): boolean {
  if (!isNatsMicroError(error)) {
    return false;
  }
  switch (error.kind as ErrorKind) {
    case ErrorKind.NoResponders:
      return true;
    case ErrorKind.CircuitOpen:
    case ErrorKind.ConnectionClosed:
    case ErrorKind.MaxPayloadExceeded:
    case ErrorKind.PermissionViolation:
    case ErrorKind.Encode:
    case ErrorKind.Decode:
      return false;
    case ErrorKind.ConnectionLost:
    case ErrorKind.Transport:
    case ErrorKind.Timeout:
      return idempotent;
    case ErrorKind.Service:
      break;
  }
  switch (error.code) {
    case "UNAVAILABLE":
      return true;
    case "RESOURCE_EXHAUSTED":
      return retryHint(error) !== undefined;
    case "DEADLINE_EXCEEDED":
      return idempotent;
    default:
      return false;
  }
}

/**
 * Whether a failure counts against a circuit breaker (PROTOCOL §10.2): no
 * responders, connection loss, `UNAVAILABLE`, `DEADLINE_EXCEEDED`,
 * `RESOURCE_EXHAUSTED`. Every other outcome is the service's answer, a
 * success for the breaker.
 */
export function transientFailure(error: unknown): boolean {
  if (!isNatsMicroError(error)) {
    return false;
  }
  switch (error.kind as ErrorKind) {
    case ErrorKind.CircuitOpen:
    case ErrorKind.MaxPayloadExceeded:
    case ErrorKind.PermissionViolation:
    case ErrorKind.Encode:
    case ErrorKind.Decode:
      return false;
    default:
      return error.code === "UNAVAILABLE" || error.code === "DEADLINE_EXCEEDED" || error.code === "RESOURCE_EXHAUSTED";
  }
}

/** Sets the number of attempts a failed call made on its final error. */
export function withAttempts<T>(error: T, attempts: number): T {
  if (isNatsMicroError(error)) {
    (error as NatsMicroErrorLike & { attempts: number }).attempts = attempts;
  }
  return error;
}

/** Settings of {@link retry}: the delays of {@link RetryPolicy} and what to retry. */
export interface RetryOptions extends Omit<RetryPolicy, "attemptTimeout"> {
  /** Whether a failure is worth another attempt; by default every failure is. Others are thrown as they are. */
  retryOn?: (error: unknown, attempt: number) => boolean;
  /** Milliseconds for all attempts and delays together: no attempt starts and no delay is slept past it. */
  timeout?: number;
  /** Aborting it stops retrying: the last failure is thrown as it is. */
  signal?: AbortSignal;
  /** Told before each delay: the failure, the attempt that failed and the delay chosen. */
  onRetry?: (error: unknown, attempt: number, delay: number) => void;
  /** Replaces the real clock and random source (tests). */
  clock?: RetryClock;
}

/** Thrown by {@link retry} when the attempts or the time ran out: wraps the last failure. */
export class RetriesExhaustedError extends Error {
  /** How many attempts were made. */
  readonly attempts: number;
  /** The last attempt's failure (also the `cause`). */
  readonly lastError: unknown;

  constructor(attempts: number, lastError: unknown) {
    const last = lastError instanceof Error ? lastError.message : String(lastError);
    super(`retries exhausted after ${attempts} attempt${attempts === 1 ? "" : "s"}: ${last}`, { cause: lastError });
    this.name = "RetriesExhaustedError";
    this.attempts = attempts;
    this.lastError = lastError;
  }
}

/**
 * Runs `operation` until it succeeds, waiting between attempts as a
 * {@link RetryPolicy} does (defaults of PROTOCOL §10.1: 3 attempts, 50 ms
 * doubling up to 1 s, full jitter). A failure's `RetryInfo`
 * ({@link retryHint}) sets the least delay. Failures `retryOn` rejects are
 * thrown unchanged; when the attempts or the time run out,
 * {@link RetriesExhaustedError} wraps the last one.
 *
 * @example
 * ```ts
 * const orders = await retry(() => fetchOrders(), { maxAttempts: 5, initialDelay: 100, retryOn: (e) => e instanceof TypeError });
 * ```
 */
export async function retry<T>(operation: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const policy = mergeRetryPolicy(DEFAULT_RETRY_POLICY, options);
  const clock = options.clock ?? systemClock;
  const deadline = options.timeout === undefined ? Infinity : clock.now() + options.timeout;
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation(attempt);
    } catch (error) {
      if (options.signal?.aborted === true || !(options.retryOn?.(error, attempt) ?? true)) {
        throw error;
      }
      if (attempt >= policy.maxAttempts) {
        throw new RetriesExhaustedError(attempt, error);
      }
      const delay = Math.max(backoffDelay(policy, attempt, clock.random), retryHint(error) ?? 0);
      if (clock.now() + delay >= deadline) {
        throw new RetriesExhaustedError(attempt, error);
      }
      options.onRetry?.(error, attempt, delay);
      await clock.sleep(delay);
    }
  }
}
