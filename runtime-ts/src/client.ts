/** The client: the untyped client under every generated client, its options, and the streams its calls return. */

import type { MsgHdrs, NatsConnection } from "@nats-io/nats-core";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { ATTEMPT_HEADER, copyHeaders, type HeadersInit, toHeaders } from "./headers.js";
import { describe, type ErrorClass, ErrorKind, isNatsMicroError, NatsMicroError, type NatsMicroErrorOptions } from "./errors.js";
import { type Codec, codec } from "./codec.js";
import { type EndpointInfo, endpointMetadata, endpointSpecs, type MethodSpec, type ServiceSpec, type StreamMethodSpec } from "./spec.js";
import { chain, type ClientCall, type ClientInterceptor, type ClientReply } from "./interceptors.js";
import { send } from "./request.js";
import { DEFAULT_STREAM_WINDOW, type StreamTiming } from "./stream-wire.js";
import { CallerStream } from "./client-stream.js";
import {
  backoffDelay,
  DEFAULT_RETRY_POLICY,
  mergeRetryPolicy,
  type ResolvedRetryPolicy,
  RetryBudget,
  type RetryBudgetOptions,
  retryable,
  retryHint,
  type RetryPolicy,
  systemClock,
  transientFailure,
  withAttempts,
} from "./retry.js";
import { CircuitBreaker, type CircuitBreakerOptions } from "./breaker.js";
import { ConnectionEvents } from "./connection-watch.js";
import { type ClientSpan, injectTraceContext, type Telemetry } from "./observe.js";
import { now } from "./clock.js";
import type { JetStreamOptions } from "@nats-io/jetstream";
import { KvHandle, ObjectHandle } from "./store.js";
import {
  type ByteSink,
  type ByteSource,
  type ChunkedResult,
  ChunkDigest,
  chunkField,
  chunkSizeFor,
  ChunkVerifier,
  concat,
  rechunk,
} from "./chunked.js";

/** Used when neither the call, the client nor the proto sets a timeout. */
export const DEFAULT_TIMEOUT = 10_000;

/** Per-call settings of a generated client method. */
export interface CallOptions {
  /** Timeout in milliseconds for this call; wins over every other timeout. */
  timeout?: number;
  /** Headers to send with this call (over the client's). */
  headers?: HeadersInit;
  /** Receives the reply's headers when the call succeeds. */
  onHeaders?: (headers: MsgHdrs) => void;
  /** Retry settings for this call, over the method's and the client's (unary calls only). */
  retry?: RetryPolicy;
  /**
   * Whether this call is safe to repeat after a timeout or a lost connection,
   * over the method's setting and the proto's `idempotency_level`.
   */
  idempotent?: boolean;
}

/** Settings of one method of a client, under its TypeScript name in {@link ClientOptions.methods}. */
export interface MethodOptions {
  /** Retry settings for this method's calls, over the client's. */
  retryPolicy?: RetryPolicy;
  /** Whether the method is safe to repeat after a timeout or a lost connection, over the proto's `idempotency_level`. */
  idempotent?: boolean;
  /** A breaker of this method's own; `false` keeps the method out of the client's breaker. */
  circuitBreaker?: CircuitBreakerOptions | false;
}

/** Client-wide settings. */
export interface ClientOptions {
  /** Sends to another subject prefix than the proto's. */
  subjectPrefix?: string;
  /** Timeout in milliseconds for every call, over the proto's. */
  timeout?: number;
  /** Headers sent with every call. */
  headers?: HeadersInit;
  /** Run around every call, the first outermost. */
  interceptors?: readonly ClientInterceptor[];
  /** Keepalive and peer-gone intervals of streams (milliseconds). */
  streamTiming?: StreamTiming;
  /**
   * How failed unary calls are retried (PROTOCOL §10.1); unset fields keep
   * the defaults ({@link DEFAULT_RETRY_POLICY}: 3 attempts, 50 ms doubling
   * up to 1 s, full jitter). `{ maxAttempts: 1 }` turns retries off.
   */
  retryPolicy?: RetryPolicy;
  /** The token bucket every retry of this client draws from (default 10 tokens, 0.1 back per answer of the service); pass a `RetryBudget` to share one between clients. */
  retryBudget?: RetryBudgetOptions | RetryBudget;
  /** A circuit breaker shared by the client's unary calls (PROTOCOL §10.2); none by default. */
  circuitBreaker?: CircuitBreakerOptions;
  /** Per-method settings, by TypeScript method name (`getOrder`). */
  methods?: Readonly<Record<string, MethodOptions>>;
  /** Told of every retry before its delay: for metrics and logs. */
  onRetry?: (retry: RetryEvent) => void;
  /**
   * Makes a client span per call and sends its W3C trace context
   * (PROTOCOL §11): `openTelemetry()` from `nats-micro-runtime/otel`. Off by
   * default, and then costs nothing per call.
   */
  telemetry?: Telemetry;
  /** JetStream settings (domain, API prefix, timeout) of the persistence handles (PROTOCOL §12.4); the timeout defaults to the connection's. */
  jetStream?: JetStreamOptions;
}

/** A failed attempt about to be retried, as {@link ClientOptions.onRetry} hears of it. */
export interface RetryEvent {
  /** Proto method name (`CreateOrder`). */
  method: string;
  /** The attempt that failed (1 for the first). */
  attempt: number;
  /** Why it failed. */
  error: unknown;
  /** Milliseconds the client waits before the next attempt. */
  delay: number;
}

/** What one unary call retries by: the settled policy, whether it is safe to repeat, and its breaker. */
interface CallPolicy {
  policy: ResolvedRetryPolicy;
  idempotent: boolean;
  breaker: CircuitBreaker | undefined;
}

/** What every call of one unary method shares, settled once per client: its codecs, subject and retry settings (before call options). */
interface UnaryMethod {
  readonly requests: Codec<DescMessage>;
  readonly responses: Codec<DescMessage>;
  readonly subject: string;
  readonly policy: CallPolicy;
}

/** The untyped client under every generated client. */
export class Client<E extends NatsMicroError> {
  readonly #nc: NatsConnection;
  readonly #spec: ServiceSpec;
  readonly #errorClass: ErrorClass<E>;
  readonly #options: ClientOptions;
  readonly #interceptors: readonly ClientInterceptor[];
  readonly #connection: ConnectionEvents;
  readonly #budget: RetryBudget;
  readonly #policy: ResolvedRetryPolicy;
  /** The client-wide breaker, if any. */
  readonly #breaker: CircuitBreaker | undefined;
  /** What each method's calls share, by method spec. */
  readonly #methods = new Map<MethodSpec, UnaryMethod>();

  constructor(nc: NatsConnection, spec: ServiceSpec, errorClass: ErrorClass<E>, options: ClientOptions = {}) {
    this.#nc = nc;
    this.#spec = spec;
    this.#errorClass = errorClass;
    this.#options = options;
    this.#interceptors = options.interceptors ?? [];
    this.#connection = ConnectionEvents.of(nc);
    this.#budget = options.retryBudget instanceof RetryBudget ? options.retryBudget : new RetryBudget(options.retryBudget);
    this.#policy = mergeRetryPolicy(DEFAULT_RETRY_POLICY, options.retryPolicy);
    this.#breaker = options.circuitBreaker === undefined ? undefined : new CircuitBreaker(spec.name, options.circuitBreaker);
    for (const [key, method] of Object.entries(spec.methods)) {
      const own = options.methods?.[key];
      const breakerOptions = own?.circuitBreaker;
      this.#methods.set(
        method,
        this.#unaryMethod(method, {
          policy: mergeRetryPolicy(this.#policy, own?.retryPolicy),
          idempotent: own?.idempotent ?? method.idempotent ?? false,
          breaker: breakerOptions === false ? undefined : breakerOptions === undefined ? this.#breaker : new CircuitBreaker(`${spec.name}.${method.method}`, breakerOptions),
        }),
      );
    }
  }

  /** What the calls of `method` share; `policy` defaults to the client's (a method not in the spec). */
  #unaryMethod(method: MethodSpec, policy?: CallPolicy): UnaryMethod {
    return {
      requests: codec(method.input, this.#spec.json),
      responses: codec(method.output, this.#spec.json),
      subject: `${this.subjectPrefix}.${method.endpoint}`,
      policy: policy ?? { policy: this.#policy, idempotent: method.idempotent ?? false, breaker: this.#breaker },
    };
  }

  /** The subject prefix in use. */
  get subjectPrefix(): string {
    return this.#options.subjectPrefix ?? this.#spec.subjectPrefix;
  }

  /** Endpoint names and the subjects this client sends to, in proto order. */
  endpoints(): EndpointInfo[] {
    return endpointSpecs(this.#spec).map((m) => ({
      name: m.endpoint,
      subject: `${this.subjectPrefix}.${m.endpoint}`,
      metadata: endpointMetadata(m),
    }));
  }

  /**
   * The timeout of a call to `method` that sets none: the client's, else the
   * endpoint's proto timeout, else the service's, else {@link DEFAULT_TIMEOUT}.
   */
  effectiveTimeout(method: MethodSpec): number {
    return this.#options.timeout ?? method.timeout ?? DEFAULT_TIMEOUT;
  }

  /** Sends one unary request. Every failure rejects with the service's error class. */
  async unary<I extends DescMessage, O extends DescMessage>(
    method: MethodSpec<I, O>,
    request: MessageInitShape<I>,
    options: CallOptions = {},
  ): Promise<MessageShape<O>> {
    const shared = this.#methods.get(method) ?? this.#unaryMethod(method);
    let payload: Uint8Array;
    try {
      payload = shared.requests.encode(request);
    } catch (err) {
      throw this.#failure(method, "INTERNAL", ErrorKind.Encode, `encoding the request: ${describe(err)}`, err);
    }
    const call: ClientCall = {
      method: method.method,
      subject: shared.subject,
      headers: this.#callHeaders(options.headers),
      timeout: options.timeout ?? this.effectiveTimeout(method),
      payload,
    };
    const settings = this.#callPolicy(shared.policy, options);
    let reply: ClientReply;
    try {
      if (this.#interceptors.length === 0 && this.#options.telemetry === undefined) {
        // Nothing around the attempts: no chain or span closures per call.
        reply = await this.#attempts(call, settings);
      } else {
        reply = await this.#traced(method, call, (traced, span) =>
          chain(this.#interceptors, (sent: ClientCall) => this.#attempts(sent, settings, span))(traced),
        );
      }
    } catch (err) {
      throw this.#typed(err, method.method);
    }
    let response: MessageShape<O>;
    try {
      response = shared.responses.decode(reply.payload) as MessageShape<O>;
    } catch (err) {
      throw this.#failure(method, "INTERNAL", ErrorKind.Decode, `decoding the reply: ${describe(err)}`, err, reply.headers);
    }
    options.onHeaders?.(reply.headers);
    return response;
  }

  /** A call's headers: the client's, then the call's over them (each name the call sets replaces the client's). */
  #callHeaders(own: HeadersInit | undefined): MsgHdrs {
    return copyHeaders(toHeaders(this.#options.headers), own, true);
  }

  /** The retry settings of one call: the method's, unless the call's options set their own. */
  #callPolicy(method: CallPolicy, options: CallOptions): CallPolicy {
    if (options.retry === undefined && options.idempotent === undefined) {
      return method;
    }
    return { policy: mergeRetryPolicy(method.policy, options.retry), idempotent: options.idempotent ?? method.idempotent, breaker: method.breaker };
  }

  /** A failure of this client's own (encoding, decoding) as the service's error class. */
  #failure(method: MethodSpec, code: string, kind: ErrorKind, message: string, cause: unknown, headers?: MsgHdrs): E {
    return new this.#errorClass(code, method.method, message, undefined, { kind, cause, ...(headers && { headers }) });
  }

  /**
   * The attempts of one unary call (PROTOCOL §10.1, §10.2): each through
   * the breaker, failing at once when the connection is lost, and retried
   * while the policy, the budget and the call's deadline allow.
   */
  async #attempts(call: ClientCall, settings: CallPolicy, span?: ClientSpan): Promise<ClientReply> {
    const { policy, idempotent, breaker } = settings;
    const clock = systemClock;
    const deadline = clock.now() + call.timeout;
    for (let attempt = 1; ; attempt++) {
      if (attempt > 1) {
        call.headers.set(ATTEMPT_HEADER, String(attempt));
        span?.attempt(attempt);
      }
      const ticket = breaker?.admit();
      if (breaker !== undefined && ticket === undefined) {
        const message = `circuit open for ${this.#spec.name}.${call.method}`;
        throw new NatsMicroError("UNAVAILABLE", call.method, message, undefined, { kind: ErrorKind.CircuitOpen, attempts: attempt });
      }
      let reply: ClientReply;
      try {
        reply = await this.#attempt(call, attempt === 1 ? undefined : deadline, policy.attemptTimeout);
      } catch (err) {
        const transient = transientFailure(err);
        if (ticket !== undefined) {
          breaker?.record(ticket, transient);
        }
        if (!transient && isNatsMicroError(err) && err.kind === ErrorKind.Service) {
          // The service answered: as much a success for the budget as for the breaker (gRPC throttling).
          this.#budget.succeeded();
        }
        if (attempt >= policy.maxAttempts || !retryable(err, idempotent) || !this.#budget.takeForRetry()) {
          throw withAttempts(err, attempt);
        }
        const delay = Math.max(backoffDelay(policy, attempt, clock.random), retryHint(err) ?? 0);
        if (clock.now() + delay >= deadline) {
          throw withAttempts(err, attempt);
        }
        this.#options.onRetry?.({ method: call.method, attempt, error: err, delay });
        await clock.sleep(delay);
        continue;
      }
      if (ticket !== undefined) {
        breaker?.record(ticket, false);
      }
      this.#budget.succeeded();
      return reply;
    }
  }

  /**
   * One attempt, until the call's `deadline` at most (`undefined` for the
   * first attempt: the call's whole timeout): sent once the connection is
   * up, failed at once if it is lost.
   */
  #attempt(call: ClientCall, deadline: number | undefined, attemptTimeout: number | undefined): Promise<ClientReply> {
    if (!this.#connection.connected && !this.#nc.isClosed()) {
      return this.#attemptOnceConnected(call, deadline ?? systemClock.now() + call.timeout, attemptTimeout);
    }
    return this.#send(call, deadline, attemptTimeout);
  }

  /** {@link #attempt} once the connection is back: nothing was sent yet, so waiting for the reconnect is safe for every method. */
  async #attemptOnceConnected(call: ClientCall, deadline: number, attemptTimeout: number | undefined): Promise<ClientReply> {
    if (!(await this.#connection.whenConnected(deadline - systemClock.now()))) {
      throw new NatsMicroError("UNAVAILABLE", call.method, "no connection to NATS before the deadline", undefined, { kind: ErrorKind.ConnectionLost });
    }
    return this.#send(call, deadline, attemptTimeout);
  }

  /** Sends an attempt with what is left of the time (see {@link #attempt}), failed at once if the connection is lost while it is out. */
  #send(call: ClientCall, deadline: number | undefined, attemptTimeout: number | undefined): Promise<ClientReply> {
    const method = call.method;
    const left = deadline === undefined ? call.timeout : deadline - systemClock.now();
    const timeout = Math.min(left, attemptTimeout ?? Infinity);
    if (timeout <= 0) {
      return Promise.reject(new NatsMicroError("DEADLINE_EXCEEDED", method, "no reply before the deadline", undefined, { kind: ErrorKind.Timeout }));
    }
    const lost = () =>
      this.#nc.isClosed()
        ? new NatsMicroError("UNAVAILABLE", method, "connection closed while the request was out", undefined, { kind: ErrorKind.ConnectionClosed })
        : new NatsMicroError("UNAVAILABLE", method, "connection lost while the request was out", undefined, { kind: ErrorKind.ConnectionLost });
    return this.#connection.guard(send(this.#nc, call, timeout), lost);
  }

  /** Opens a server-streaming call: iterate the responses; breaking out cancels the stream. */
  serverStream<I extends DescMessage, O extends DescMessage>(
    method: StreamMethodSpec<I, O, "server">,
    request: MessageInitShape<I>,
    options: StreamCallOptions = {},
  ): ResponseStream<O> {
    let body: Uint8Array;
    try {
      body = codec(method.input, this.#spec.json).encode(request);
    } catch (err) {
      throw new this.#errorClass("INTERNAL", method.method, `encoding the request: ${describe(err)}`, undefined, { kind: ErrorKind.Encode, cause: err });
    }
    return this.#openStream(method, body, options) as unknown as ResponseStream<O>;
  }

  /** Opens a client-streaming call: send the requests, then `closeAndReceive()` the response. */
  clientStream<I extends DescMessage, O extends DescMessage>(method: StreamMethodSpec<I, O, "client">, options: StreamCallOptions = {}): RequestStream<I, O> {
    return this.#openStream(method, new Uint8Array(0), options) as unknown as RequestStream<I, O>;
  }

  /** Opens a bidirectional call: send requests and iterate responses at once. */
  bidiStream<I extends DescMessage, O extends DescMessage>(method: StreamMethodSpec<I, O, "bidi">, options: StreamCallOptions = {}): BidiStream<I, O> {
    return this.#openStream(method, new Uint8Array(0), options) as unknown as BidiStream<I, O>;
  }

  /** Opens a stream through the client's interceptors (the same chain as unary calls, ended by the open). */
  #openStream(method: StreamMethodSpec, body: Uint8Array, options: StreamCallOptions): CallerStream {
    const call: ClientCall = {
      method: method.method,
      subject: `${this.subjectPrefix}.${method.endpoint}`,
      headers: this.#callHeaders(options.headers),
      // A stream has a deadline only when the call, the client or the proto sets one.
      timeout: options.timeout ?? this.#options.timeout ?? method.timeout ?? Infinity,
      payload: body,
      stream: method.kind,
    };
    const stream = new CallerStream({
      nc: this.#nc,
      method,
      window: Math.max(1, options.window ?? method.window ?? DEFAULT_STREAM_WINDOW),
      timing: { ...this.#options.streamTiming, ...options.timing },
      signal: options.signal,
      onHeaders: options.onHeaders,
      requests: codec(method.input, this.#spec.json),
      responses: codec(method.output, this.#spec.json),
      typed: (error) => this.#typed(error, method.method),
    });
    const open = chain(this.#interceptors, (opening) => stream.open(opening));
    stream.start(this.#options.telemetry === undefined ? open : (opening) => this.#traced(method, opening, open), call);
    return stream;
  }

  /**
   * Runs a call (a unary call, or a stream's open until its end) in a client
   * span whose trace context the call's headers carry, unless they already
   * carry one (PROTOCOL §11.1). The one place client spans are made.
   */
  #traced(method: MethodSpec, call: ClientCall, send: (call: ClientCall, span?: ClientSpan) => Promise<ClientReply>): Promise<ClientReply> {
    const telemetry = this.#options.telemetry;
    if (telemetry === undefined) {
      return send(call);
    }
    const started = now();
    const span = telemetry.startClient({
      protoService: this.#spec.protoName,
      method: method.method,
      endpoint: method.endpoint,
      subject: call.subject,
      stream: call.stream,
    });
    injectTraceContext(call.headers, span.traceparent, span.tracestate);
    span.attempt(1);
    return send(call, span).then(
      (reply) => {
        span.end({ code: undefined, durationMs: now() - started });
        return reply;
      },
      (err: unknown) => {
        span.end({ code: isNatsMicroError(err) ? err.code : "UNKNOWN", durationMs: now() - started });
        throw err;
      },
    );
  }

  /**
   * The typed handle on the key-value bucket of a `kv_store` RPC (PROTOCOL
   * §12.4), bound once per client (a failed open is tried again next time).
   */
  kv<I extends DescMessage, O extends DescMessage>(method: MethodSpec<I, O>): Promise<KvHandle<I, O>> {
    return this.#handle(method, "kv", () => KvHandle.open(this.#nc, this.#spec, method, this.#storeOptions()));
  }

  /** The typed handle on the object store of an `object_store` RPC (PROTOCOL §12.4), bound once per client. */
  objects<I extends DescMessage, O extends DescMessage>(method: MethodSpec<I, O>): Promise<ObjectHandle<I, O>> {
    return this.#handle(method, "objects", () => ObjectHandle.open(this.#nc, this.#spec, method, this.#storeOptions()));
  }

  readonly #handles = new Map<string, Promise<unknown>>();

  #storeOptions(): { jetStream?: JetStreamOptions } {
    return this.#options.jetStream === undefined ? {} : { jetStream: this.#options.jetStream };
  }

  #handle<T>(method: MethodSpec, kind: string, open: () => Promise<T>): Promise<T> {
    const key = `${kind}:${method.method}`;
    const known = this.#handles.get(key) as Promise<T> | undefined;
    if (known !== undefined) {
      return known;
    }
    const opening = open().catch((err: unknown) => {
      this.#handles.delete(key);
      throw this.#typed(err, method.method);
    });
    this.#handles.set(key, opening);
    return opening;
  }

  /**
   * Uploads a payload over a chunked client-streaming RPC (PROTOCOL §12.5):
   * `source` (bytes, an async iterable of bytes or a `ReadableStream`) cut
   * into chunks, its size and SHA-256 on the half-close; resolves with the
   * server's response. Reads the source as it sends: memory holds about a
   * window of chunks whatever the payload's size. A chunk that cannot fit
   * max_payload fails before anything is sent (INVALID_ARGUMENT).
   */
  async upload<I extends DescMessage, O extends DescMessage>(
    method: StreamMethodSpec<I, O, "client">,
    source: ByteSource,
    options: ChunkedCallOptions = {},
  ): Promise<MessageShape<O>> {
    const requests = codec(method.input, this.#spec.json);
    let size: number;
    let local: string;
    try {
      local = chunkField(method.input, method).localName;
      size = chunkSizeFor(method, requests as unknown as Codec<DescMessage>, local, this.#nc.info?.max_payload, options.chunkSize);
    } catch (err) {
      throw this.#typed(err, method.method);
    }
    const stream = this.clientStream(method, options);
    const digest = new ChunkDigest();
    try {
      for await (const chunk of rechunk(source, size)) {
        digest.update(chunk);
        await stream.send({ [local]: chunk } as MessageInitShape<I>);
      }
    } catch (err) {
      stream.cancel();
      throw this.#typed(err, method.method);
    }
    return stream.closeAndReceive(digest.headers());
  }

  /**
   * Downloads a payload over a chunked server-streaming RPC (PROTOCOL
   * §12.5) into `sink`, chunk by chunk as they arrive (each `write` awaited
   * before the next chunk is read): the order, the size and the SHA-256
   * are checked at the end (DATA_LOSS on a mismatch). On success
   * `sink.close()` runs, on any failure `sink.abort(error)`, then the
   * error is thrown.
   */
  async download<I extends DescMessage, O extends DescMessage>(
    method: StreamMethodSpec<I, O, "server">,
    request: MessageInitShape<I>,
    sink: ByteSink,
    options: StreamCallOptions = {},
  ): Promise<ChunkedResult> {
    let trailers: MsgHdrs | undefined;
    const verifier = new ChunkVerifier(method.method);
    let result: ChunkedResult;
    try {
      const local = chunkField(method.output, method).localName;
      const stream = this.serverStream(method, request, {
        ...options,
        onHeaders: (headers) => {
          trailers = headers;
          options.onHeaders?.(headers);
        },
      });
      for await (const message of stream) {
        const chunk = (message as unknown as Record<string, unknown>)[local];
        if (chunk instanceof Uint8Array && chunk.length > 0) {
          verifier.update(chunk);
          await sink.write(chunk);
        }
      }
      result = verifier.finish(trailers);
    } catch (err) {
      const error = this.#typed(err, method.method);
      await sink.abort?.(error);
      throw error;
    }
    await sink.close?.();
    return result;
  }

  /** {@link download} into memory: the whole payload, checked (only for payloads known to fit in memory). */
  async downloadBytes<I extends DescMessage, O extends DescMessage>(
    method: StreamMethodSpec<I, O, "server">,
    request: MessageInitShape<I>,
    options: StreamCallOptions = {},
  ): Promise<ChunkedResult & { data: Uint8Array }> {
    const parts: Uint8Array[] = [];
    const result = await this.download(method, request, { write: (chunk) => void parts.push(chunk) }, options);
    return { ...result, data: concat(parts) };
  }

  /** A runtime error as the service's error class, with the method filled in. */
  #typed(err: unknown, method: string): unknown {
    if (!isNatsMicroError(err) || (err instanceof this.#errorClass && err.method !== "")) {
      return err;
    }
    const options: NatsMicroErrorOptions = {
      kind: err.kind as ErrorKind,
      cause: err.cause ?? err,
      attempts: err.attempts ?? 1,
      ...(err.headers && { headers: err.headers }),
      ...(err.detailsAny !== undefined && { details: err.detailsAny }),
    };
    return new this.#errorClass(err.code, err.method || method, err.message, err.data, options);
  }
}

/** Per-call settings of a streaming client method. */
export interface StreamCallOptions extends CallOptions {
  /** Aborting it cancels the stream (PROTOCOL §9.5). */
  signal?: AbortSignal;
  /** The flow-control window offered for the server's messages, over the proto's. */
  window?: number;
  /** Keepalive and peer-gone intervals (milliseconds), over the client's. */
  timing?: StreamTiming;
}

/** Per-call settings of a chunked upload. */
export interface ChunkedCallOptions extends StreamCallOptions {
  /** Bytes per chunk for this transfer, over the proto's `default_chunk_size`. */
  chunkSize?: number;
}

/** The responses of a server-streaming call; breaking out of `for await` cancels it. */
export interface ResponseStream<O extends DescMessage> extends AsyncIterable<MessageShape<O>> {
  /** Abandons the stream: the server's handler is cancelled. */
  cancel(): void;
}

/** The request side of a client-streaming call. */
export interface RequestStream<I extends DescMessage, O extends DescMessage> {
  /** Sends one request once the server's credit allows it. */
  send(request: MessageInitShape<I>): Promise<void>;
  /** Ends the requests (with trailing `headers` on the end, if given) and waits for the response. */
  closeAndReceive(headers?: HeadersInit): Promise<MessageShape<O>>;
  /** Abandons the stream. */
  cancel(): void;
}

/** Both sides of a bidirectional call: iterate the responses, send the requests. */
export interface BidiStream<I extends DescMessage, O extends DescMessage> extends ResponseStream<O> {
  /** Sends one request once the server's credit allows it. */
  send(request: MessageInitShape<I>): Promise<void>;
  /** Ends the requests (with trailing `headers` on the end, if given); responses keep coming until the server ends. */
  closeSend(headers?: HeadersInit): Promise<void>;
}
