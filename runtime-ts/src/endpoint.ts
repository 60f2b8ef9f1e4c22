/** One endpoint of a service: its request path, limits and statistics. */

import type { Msg, MsgHdrs, Subscription } from "@nats-io/nats-core";
import type { DescMessage } from "@bufbuild/protobuf";
import type { CodeFormat } from "./codes.js";
import { describe, NatsMicroError, type ReplyError } from "./errors.js";
import type { Codec } from "./codec.js";
import type { EndpointInfo, MethodSpec, StreamMethodSpec } from "./spec.js";
import type { ServerInterceptor } from "./interceptors.js";
import type { RequestContext } from "./context.js";
import type { EndpointStats } from "./discovery.js";
import type { Logger } from "./observe.js";

/** A request as it arrived (its header block checked), its arrival time and deadline (monotonic milliseconds). */
export class Arrival {
  readonly message: Msg;
  /** When the runtime received it. */
  readonly received: number;
  /** When the caller's budget or the server's timeout runs out, counted from arrival. */
  readonly deadline: number | undefined;
  /** Whether it waited in the pending queue for a handler slot. */
  queued = false;

  constructor(message: Msg, received: number, deadline: number | undefined) {
    this.message = message;
    this.received = received;
    this.deadline = deadline;
  }

  /** The request headers, decoded on first use: their raw block was checked on arrival (`headerProblem`). */
  get headers(): MsgHdrs | undefined {
    return this.message.headers;
  }
}

/** Everything the request path of one endpoint needs. */
export class Endpoint {
  readonly info: EndpointInfo;
  readonly serving: Serving;
  readonly #handle: Handle;
  readonly #maxConcurrency: number;
  readonly #pendingMsgLimit: number;
  readonly #pendingBytesLimit: number | undefined;
  readonly #waiting: Arrival[] = [];
  /** Cancels a running request: aborts its signal and answers it (see {@link Service.stop}). */
  readonly running = new Set<() => void>();
  #waitingBytes = 0;
  #inFlight = 0;
  /** Whether {@link #release} is already starting waiting requests (further releases leave it to that loop). */
  #releasing = false;
  readonly #idle: (() => void)[] = [];
  subscription: Subscription | undefined;
  requests = 0;
  errors = 0;
  /** Requests refused because the backlog was full. */
  shed = 0;
  /** Whether the endpoint persists its responses (PROTOCOL §12): its STATS then count failed writes. */
  persists = false;
  /** Writes to a bucket that failed (PROTOCOL §12.2). */
  persistFailures = 0;
  lastError = "";
  processingNanos = 0;

  constructor(info: EndpointInfo, serving: Serving, limits: EndpointLimits, handle: Handle) {
    this.info = info;
    this.serving = serving;
    this.#handle = handle;
    this.#maxConcurrency = limits.maxConcurrency;
    this.#pendingMsgLimit = limits.pendingMsgLimit;
    this.#pendingBytesLimit = limits.pendingBytesLimit;
  }

  /** Whether a request that finds every slot taken must be refused. */
  overloaded(size: number): boolean {
    const overMessages = this.#waiting.length >= this.#pendingMsgLimit;
    const overBytes = this.#pendingBytesLimit !== undefined && this.#waitingBytes + size > this.#pendingBytesLimit;
    return overMessages || overBytes;
  }

  /** Serves the request now if a slot is free, else queues it (or returns false when the pending queue is full). */
  admit(arrival: Arrival): boolean {
    if (this.#inFlight < this.#maxConcurrency) {
      this.#run(arrival);
      return true;
    }
    if (this.overloaded(arrival.message.data.length)) {
      return false;
    }
    arrival.queued = true;
    this.#waiting.push(arrival);
    this.#waitingBytes += arrival.message.data.length;
    return true;
  }

  /** Empties the pending queue (the service is stopping): returns what waited. */
  takeWaiting(): Arrival[] {
    const waiting = this.#waiting.splice(0);
    this.#waitingBytes = 0;
    if (this.#inFlight === 0) {
      this.#wake();
    }
    return waiting;
  }

  #run(arrival: Arrival): void {
    this.#inFlight += 1;
    try {
      this.#handle(arrival, this.#release);
    } catch (err) {
      // Never reached by design (#handle answers every failure); keeps the slot count right if it is.
      this.serving.logger.warn(`endpoint ${this.info.name}: ${describe(err)}`);
      this.#release();
    }
  }

  /**
   * Frees the slot of a request that was answered and starts waiting ones.
   * A request may be answered before `#handle` returns, so this loops
   * rather than recursing through requests answered at once.
   */
  readonly #release = (): void => {
    this.#inFlight -= 1;
    if (this.#releasing) {
      return;
    }
    this.#releasing = true;
    while (this.#inFlight < this.#maxConcurrency) {
      const next = this.#waiting.shift();
      if (next === undefined) {
        break;
      }
      this.#waitingBytes -= next.message.data.length;
      this.#run(next);
    }
    this.#releasing = false;
    if (this.#inFlight === 0 && this.#waiting.length === 0) {
      this.#wake();
    }
  };

  /** Requests waiting for a handler slot. */
  get queued(): number {
    return this.#waiting.length;
  }

  /** Resolves every {@link idle} promise. */
  #wake(): void {
    for (const resolve of this.#idle.splice(0)) {
      resolve();
    }
  }

  /** Resolves once no request is in flight or waiting. */
  idle(): Promise<void> {
    if (this.#inFlight === 0 && this.#waiting.length === 0) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.#idle.push(resolve);
    });
  }

  /** The answer to a request shed for a full backlog (PROTOCOL §5), counted as shed. */
  shedError(): NatsMicroError {
    this.shed += 1;
    return new NatsMicroError("RESOURCE_EXHAUSTED", this.serving.method.method, `endpoint ${this.info.name} is overloaded`).withRetryInfo(
      this.serving.retryAfterHint,
    );
  }

  record(nanos: number, error: NatsMicroError | undefined): void {
    this.requests += 1;
    this.processingNanos += nanos;
    if (error !== undefined) {
      this.errors += 1;
      this.lastError = `${error.code}:${error.message}`;
    }
  }

  stats(): EndpointStats {
    return {
      name: this.info.name,
      subject: this.info.subject,
      ...(this.info.queue_group !== undefined && { queue_group: this.info.queue_group }),
      num_requests: this.requests,
      num_errors: this.errors,
      last_error: this.lastError,
      processing_time: this.processingNanos,
      average_processing_time: this.requests === 0 ? 0 : Math.floor(this.processingNanos / this.requests),
      data: this.persists ? { shed: this.shed, persist_failures: this.persistFailures } : { shed: this.shed },
    };
  }
}

/** How many requests one endpoint runs and queues. */
export interface EndpointLimits {
  readonly maxConcurrency: number;
  readonly pendingMsgLimit: number;
  readonly pendingBytesLimit: number | undefined;
}

/** Publishes a reply: a request's `respond`, or a stream's end to the caller's inbox. */
export type Respond = (body: Uint8Array, options: { headers?: MsgHdrs }) => void;

/** How a finished request is answered: a body, or an error (with text withheld from the caller). */
export type Outcome = { body: Uint8Array } | ReplyError;

/** Serves one request of an endpoint and calls `done` once it is answered. */
type Handle = (arrival: Arrival, done: () => void) => void;

/** How one endpoint serves requests and replies. */
export interface Serving {
  readonly method: MethodSpec;
  /** The server's own limit in milliseconds (before the caller's budget). */
  readonly timeout: number | undefined;
  readonly codeFormat: CodeFormat;
  readonly exposeInternalErrors: boolean;
  /** Milliseconds a shed request is told to wait before retrying. */
  readonly retryAfterHint: number;
  readonly logger: Logger;
  /** How a streaming endpoint serves; absent for unary ones. */
  readonly stream?: StreamServing;
}

/** What a streaming endpoint needs beyond a unary one. */
export interface StreamServing {
  readonly spec: StreamMethodSpec;
  /** The service's interceptors: they wrap each stream as they wrap a unary request. */
  readonly interceptors: readonly ServerInterceptor[];
  readonly handler: (input: unknown, ctx: RequestContext) => unknown;
  readonly requests: Codec<DescMessage>;
  readonly responses: Codec<DescMessage>;
  readonly window: number;
  readonly keepaliveInterval: number;
  readonly peerTimeout: number;
}
