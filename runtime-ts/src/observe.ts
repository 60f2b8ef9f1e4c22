/**
 * Observability (PROTOCOL §11) without any tracing library: the events a
 * service logs, the logger that receives them, W3C trace context in
 * headers, and the {@link Telemetry} hooks through which spans are made.
 *
 * Nothing here imports OpenTelemetry: the package's `nats-micro-runtime/otel`
 * entry implements {@link Telemetry} on `@opentelemetry/api`. A service or
 * client given no telemetry makes no span, reads no trace header and
 * allocates nothing for tracing.
 */

import type { MsgHdrs } from "@nats-io/nats-core";

/** W3C trace context header: version, trace id, parent id and flags (PROTOCOL §11.1). */
export const TRACEPARENT_HEADER = "traceparent";
/** W3C vendor trace state, kept only beside a valid {@link TRACEPARENT_HEADER}. */
export const TRACESTATE_HEADER = "tracestate";

/** Where an event happened: the ADR-32 service name, the endpoint name (empty for discovery) and the subject of the request. */
export interface EventSource {
  readonly service: string;
  readonly endpoint: string;
  readonly subject: string;
}

/**
 * One of the events every runtime logs (PROTOCOL §11.4), with its level and
 * structured fields. `event` is the name shared by the Rust, TypeScript and
 * Python runtimes. `reply_refused` also says why (`reason`), as the Rust and
 * Python runtimes do.
 */
export type ServiceEvent = EventSource &
  (
    | { readonly event: "request_malformed"; readonly level: "warn"; readonly error: string }
    | { readonly event: "deadline_dropped"; readonly level: "warn"; readonly waited_ms: number }
    | { readonly event: "request_shed"; readonly level: "warn"; readonly queued: number }
    | { readonly event: "handler_failed"; readonly level: "error"; readonly error: string }
    | { readonly event: "handler_panicked"; readonly level: "error"; readonly panic: string }
    | { readonly event: "reply_refused"; readonly level: "warn"; readonly reply: string; readonly reason: string }
    | { readonly event: "discovery_failed"; readonly level: "warn"; readonly error: string }
    | {
        readonly event: "persist_failed";
        /** `warn` for a best-effort write (the reply stood), `error` for a required one (the caller got the error). */
        readonly level: "warn" | "error";
        readonly bucket: string;
        /** The key or object name; empty when it could not be rendered. */
        readonly key: string;
        readonly error: string;
      }
  );

/** The name of a {@link ServiceEvent}. */
export type ServiceEventName = ServiceEvent["event"];

/**
 * Receives what a service reports: the named events of PROTOCOL §11.4, and
 * free-form warnings about everything else (a connection that stopped
 * delivering, a reply that could not be sent).
 *
 * ```ts
 * const logger: Logger = {
 *   event: (e) => pino[e.level](e, e.event),
 *   warn: (message) => pino.warn(message),
 * };
 * await registerOrderServiceHandlers(nc, handlers, { logger });
 * ```
 */
export interface Logger {
  event(event: ServiceEvent): void;
  warn(message: string): void;
}

/** The default {@link Logger}: one line per event on `console.error`, the event name then its fields as JSON. */
export const consoleLogger: Logger = {
  event: (event) => console.error(`${event.level} ${event.event} ${JSON.stringify(event)}`),
  warn: (message) => console.error(message),
};

/** A valid W3C `traceparent`: ids as lowercase hex, flags as a number. */
export interface TraceParent {
  /** 32 lowercase hex digits, not all zeros. */
  readonly traceId: string;
  /** 16 lowercase hex digits, not all zeros: the caller's span. */
  readonly spanId: string;
  /** The trace flags (bit 0: sampled). */
  readonly flags: number;
}

/** The trace context a request carried: a valid parent and, only beside one, its `tracestate`. */
export interface RemoteTraceContext {
  readonly parent: TraceParent;
  readonly tracestate: string | undefined;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * Parses a `traceparent` by the W3C rules PROTOCOL §11.1 names (version
 * `00`, lowercase hex, neither id all zeros); `undefined` when invalid,
 * which starts a new trace rather than failing the request.
 *
 * ```ts
 * parseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")?.spanId; // "00f067aa0ba902b7"
 * parseTraceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"); // undefined
 * ```
 */
export function parseTraceparent(value: string | undefined): TraceParent | undefined {
  const match = value === undefined ? null : TRACEPARENT.exec(value);
  if (match === null) {
    return undefined;
  }
  const [, traceId = "", spanId = "", flags = ""] = match;
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) {
    return undefined;
  }
  return { traceId, spanId, flags: parseInt(flags, 16) };
}

/** Writes a `traceparent` value. */
export function formatTraceparent(parent: TraceParent): string {
  return `00-${parent.traceId}-${parent.spanId}-${(parent.flags & 0xff).toString(16).padStart(2, "0")}`;
}

/** The trace context of request headers, or `undefined` when `traceparent` is missing or invalid (a new trace starts). */
export function extractTraceContext(headers: MsgHdrs | undefined): RemoteTraceContext | undefined {
  if (headers === undefined || !headers.has(TRACEPARENT_HEADER)) {
    return undefined;
  }
  const parent = parseTraceparent(headers.get(TRACEPARENT_HEADER));
  if (parent === undefined) {
    return undefined;
  }
  const tracestate = headers.has(TRACESTATE_HEADER) ? headers.get(TRACESTATE_HEADER) : undefined;
  return { parent, tracestate: tracestate === "" ? undefined : tracestate };
}

/** Sets the trace headers of an outgoing call, unless the caller set them (its headers win, PROTOCOL §11.1). */
export function injectTraceContext(headers: MsgHdrs, traceparent: string | undefined, tracestate: string | undefined): void {
  if (traceparent === undefined || headers.has(TRACEPARENT_HEADER)) {
    return;
  }
  headers.set(TRACEPARENT_HEADER, traceparent);
  if (tracestate !== undefined && tracestate !== "" && !headers.has(TRACESTATE_HEADER)) {
    headers.set(TRACESTATE_HEADER, tracestate);
  }
}

/** What a server span is started with (PROTOCOL §11.2). */
export interface ServerSpanStart {
  /** Proto service full name (`order.v1.OrderService`). */
  readonly protoService: string;
  /** ADR-32 service name. */
  readonly service: string;
  /** Proto method name. */
  readonly method: string;
  /** ADR-32 endpoint name. */
  readonly endpoint: string;
  /** The subject the request arrived on. */
  readonly subject: string;
  /** Unique per request (a NUID), to find one request among the logs. */
  readonly requestId: string;
  /** When the caller stops waiting (milliseconds since the epoch), if known. */
  readonly deadline: number | undefined;
  /** The attempt number of the caller (`Nats-Micro-Attempt`, PROTOCOL §10.1; 1 for a first attempt). */
  readonly attempt: number;
  /** The kind of stream the request opens; `undefined` for a unary request. */
  readonly stream: string | undefined;
  /** The caller's trace context, when its headers carried a valid one. */
  readonly remote: RemoteTraceContext | undefined;
}

/** What a client span is started with. */
export interface ClientSpanStart {
  readonly protoService: string;
  readonly method: string;
  readonly endpoint: string;
  readonly subject: string;
  readonly stream: string | undefined;
}

/** How a span ended: the error code as sent or received (`undefined` on success) and how long it took. */
export interface SpanEnd {
  readonly code: string | undefined;
  readonly durationMs: number;
}

/** A request's span on the service (kind SERVER). */
export interface ServerSpan {
  /** Runs `fn` (interceptors and handler) with this span current, so calls made inside are its children. */
  run<T>(fn: () => T): T;
  end(end: SpanEnd): void;
}

/** A call's span on the client (kind CLIENT). */
export interface ClientSpan {
  /** The `traceparent` to send (this span as the parent), if tracing is on for the call. */
  readonly traceparent: string | undefined;
  readonly tracestate: string | undefined;
  /** Records one attempt of a (retried) call as an event of the span. */
  attempt(attempt: number): void;
  end(end: SpanEnd): void;
}

/**
 * Where spans go: given to a service ({@link ServiceOptions.telemetry}) or
 * a client ({@link ClientOptions.telemetry}). `openTelemetry()` from
 * `nats-micro-runtime/otel` is the implementation on OpenTelemetry;
 * anything else that records requests can implement it too.
 */
export interface Telemetry {
  startServer(start: ServerSpanStart): ServerSpan;
  startClient(start: ClientSpanStart): ClientSpan;
}

/** The span name of PROTOCOL §11.2: `<proto service full name>/<method>`. */
export function spanName(protoService: string, method: string): string {
  return `${protoService}/${method}`;
}

/** Codes that mark a server span as failed: the service's own failures, as in gRPC's conventions (PROTOCOL §11.2). */
export const SERVER_ERROR_CODES: ReadonlySet<string> = new Set(["UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"]);
