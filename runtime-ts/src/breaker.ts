/** The circuit breaker of a client or of one of its methods (PROTOCOL §10.2). */

/** Where a breaker stands: calls pass (`closed`), fail at once (`open`), or a few probe the service (`half-open`). */
export type CircuitState = "closed" | "open" | "half-open";

/** A breaker changing state, as {@link CircuitBreakerOptions.onStateChange} hears of it. */
export interface CircuitStateChange {
  /** What the breaker guards: `<service>` for a client's, `<service>.<method>` for a method's. */
  name: string;
  from: CircuitState;
  to: CircuitState;
}

/**
 * When a breaker opens and how it recovers. Defaults are PROTOCOL §10.2's:
 * open after 5 transient failures in a row, or when half of the last 20
 * calls failed (once 10 are counted); stay open 5 s; then let 1 probe pass.
 *
 * @example
 * ```ts
 * const client = new OrderServiceNatsClient(nc, {
 *   circuitBreaker: { consecutiveFailures: 3, openInterval: 2_000, onStateChange: (c) => metrics.breaker(c.to) },
 * });
 * ```
 */
export interface CircuitBreakerOptions {
  /** Transient failures in a row that open the breaker. */
  consecutiveFailures?: number;
  /** The share of failures in the window that opens the breaker. */
  failureRatio?: number;
  /** How many of the last calls the ratio is taken over. */
  window?: number;
  /** Calls the window must hold before the ratio counts. */
  minimumCalls?: number;
  /** How long the breaker stays open before probing (milliseconds). */
  openInterval?: number;
  /** Calls let through while half-open; all must succeed to close. */
  probes?: number;
  /** Told of every state change (also logged: a warning when opening, info otherwise). */
  onStateChange?: (change: CircuitStateChange) => void;
  /** Receives the state-change log lines; defaults to `console.warn` and `console.info`. */
  log?: (level: "warn" | "info", message: string) => void;
  /** Milliseconds on a monotonic clock; tests replace it. */
  now?: () => number;
}

/** The defaults of PROTOCOL §10.2. */
export const DEFAULT_CIRCUIT_BREAKER = Object.freeze({
  consecutiveFailures: 5,
  failureRatio: 0.5,
  window: 20,
  minimumCalls: 10,
  openInterval: 5_000,
  probes: 1,
});

/**
 * Counts transient failures and, past a threshold, refuses calls for a
 * while so that a failing service is not hammered. A call asks
 * {@link admit} first and reports its outcome with {@link record}, giving
 * back what `admit` returned: an outcome of a call admitted before the
 * last state change no longer counts.
 */
export class CircuitBreaker {
  readonly name: string;
  readonly #settings: typeof DEFAULT_CIRCUIT_BREAKER;
  readonly #options: CircuitBreakerOptions;
  readonly #now: () => number;
  #state: CircuitState = "closed";
  /** Increases at every state change. */
  #generation = 0;
  #consecutive = 0;
  /** The last outcomes while closed, `true` for a failure (a ring of `window` entries). */
  #outcomes: boolean[] = [];
  #next = 0;
  #failures = 0;
  #openedAt = 0;
  #probesOut = 0;
  #probesSucceeded = 0;

  constructor(name: string, options: CircuitBreakerOptions = {}) {
    this.name = name;
    this.#options = options;
    this.#now = options.now ?? (() => performance.now());
    const defined = Object.fromEntries(Object.entries(options).filter(([key, value]) => value !== undefined && key in DEFAULT_CIRCUIT_BREAKER));
    this.#settings = { ...DEFAULT_CIRCUIT_BREAKER, ...defined };
  }

  /** The current state (an open breaker whose interval has passed is half-open). */
  get state(): CircuitState {
    this.#halfOpenWhenDue();
    return this.#state;
  }

  /** Whether a call may go now: a ticket to give to {@link record}, or `undefined` when the breaker refuses it. */
  admit(): number | undefined {
    this.#halfOpenWhenDue();
    if (this.#state === "open") {
      return undefined;
    }
    if (this.#state === "half-open") {
      if (this.#probesOut >= this.#settings.probes) {
        return undefined;
      }
      this.#probesOut += 1;
    }
    return this.#generation;
  }

  /** The outcome of an admitted call: `failed` when it failed transiently. */
  record(ticket: number, failed: boolean): void {
    if (ticket !== this.#generation) {
      return;
    }
    if (this.#state === "half-open") {
      if (failed) {
        this.#open();
      } else if (++this.#probesSucceeded >= this.#settings.probes) {
        this.#change("closed");
      }
      return;
    }
    if (this.#state !== "closed") {
      return;
    }
    this.#consecutive = failed ? this.#consecutive + 1 : 0;
    const size = Math.max(1, this.#settings.window);
    if (this.#outcomes.length < size) {
      this.#outcomes.push(failed);
    } else {
      this.#failures -= this.#outcomes[this.#next] === true ? 1 : 0;
      this.#outcomes[this.#next] = failed;
      this.#next = (this.#next + 1) % size;
    }
    this.#failures += failed ? 1 : 0;
    const byRatio =
      this.#outcomes.length >= this.#settings.minimumCalls && this.#failures / this.#outcomes.length >= this.#settings.failureRatio;
    if (failed && (this.#consecutive >= this.#settings.consecutiveFailures || byRatio)) {
      this.#open();
    }
  }

  #halfOpenWhenDue(): void {
    if (this.#state === "open" && this.#now() - this.#openedAt >= this.#settings.openInterval) {
      this.#change("half-open");
    }
  }

  #open(): void {
    this.#openedAt = this.#now();
    this.#change("open");
  }

  #change(to: CircuitState): void {
    const from = this.#state;
    this.#state = to;
    this.#generation += 1;
    this.#probesOut = 0;
    this.#probesSucceeded = 0;
    if (to === "closed") {
      // A closed breaker starts counting afresh.
      this.#consecutive = 0;
      this.#outcomes = [];
      this.#next = 0;
      this.#failures = 0;
    }
    const message = `circuit breaker for ${this.name}: ${from} -> ${to}`;
    const level = to === "open" ? "warn" : "info";
    if (this.#options.log !== undefined) {
      this.#options.log(level, message);
    } else if (level === "warn") {
      console.warn(message);
    } else {
      console.info(message);
    }
    this.#options.onStateChange?.({ name: this.name, from, to });
  }
}
