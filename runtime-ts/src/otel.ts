/**
 * `nats-micro-runtime/otel`: {@link Telemetry} on OpenTelemetry (PROTOCOL
 * §11). A separate entry point, so that the main one never imports
 * `@opentelemetry/api` (an optional peer dependency): applications that do
 * not trace neither install nor load it.
 *
 * ```ts
 * import { openTelemetry } from "nats-micro-runtime/otel";
 * const telemetry = openTelemetry();
 * await registerOrderServiceHandlers(nc, handlers, { telemetry });
 * const client = new OrderServiceClient(nc, { telemetry });
 * ```
 *
 * Spans go to the global tracer provider (or the one given), metrics to the
 * global meter provider. A handler's outgoing calls become children of its
 * server span through OpenTelemetry's context: on Node, register a context
 * manager (`AsyncLocalStorageContextManager` from
 * `@opentelemetry/context-async-hooks`; the Node SDK does it for you).
 */

import {
  type Attributes,
  context,
  createTraceState,
  type Histogram,
  type MeterProvider,
  metrics,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  type TracerProvider,
} from "@opentelemetry/api";
import {
  type ClientSpan,
  type ClientSpanStart,
  formatTraceparent,
  SERVER_ERROR_CODES,
  type ServerSpan,
  type ServerSpanStart,
  type SpanEnd,
  spanName,
  type Telemetry,
} from "./observe.js";
import { RUNTIME_VERSION } from "./index.js";

/** Where {@link openTelemetry} sends spans and metrics; each defaults to OpenTelemetry's global provider. */
export interface OpenTelemetryOptions {
  tracerProvider?: TracerProvider;
  meterProvider?: MeterProvider;
}

/** The instrumentation scope name of every span and instrument this package makes. */
export const INSTRUMENTATION_NAME = "nats-micro-runtime";

/** The attributes of PROTOCOL §11.2 shared by both sides. */
function rpcAttributes(start: ClientSpanStart): Attributes {
  return {
    "rpc.system": "nats_micro",
    "rpc.service": start.protoService,
    "rpc.method": start.method,
    "messaging.system": "nats",
    "messaging.destination.name": start.subject,
    "nats_micro.endpoint": start.endpoint,
  };
}

/**
 * Ends a span as PROTOCOL §11.2 says: `nats_micro.error_code` on error,
 * error status when `failed`; and records its duration (milliseconds) with
 * `nats_micro.error_code` (`OK` on success) in `duration`.
 */
function finish(span: Span, attributes: Attributes, duration: Histogram, end: SpanEnd, failed: boolean): void {
  if (end.code !== undefined) {
    span.setAttribute("nats_micro.error_code", end.code);
  }
  if (failed) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: end.code ?? "" });
  }
  duration.record(end.durationMs, { ...attributes, "nats_micro.error_code": end.code ?? "OK" });
  span.end();
}

/**
 * Server and client spans, their W3C trace context and the
 * `rpc.server.duration` / `rpc.client.duration` histograms, on
 * OpenTelemetry. Give the result to services and clients as `telemetry`.
 */
export function openTelemetry(options: OpenTelemetryOptions = {}): Telemetry {
  const tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer(INSTRUMENTATION_NAME, RUNTIME_VERSION);
  const meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter(INSTRUMENTATION_NAME, RUNTIME_VERSION);
  const serverDuration = meter.createHistogram("rpc.server.duration", { unit: "ms", description: "Duration of requests served" });
  const clientDuration = meter.createHistogram("rpc.client.duration", { unit: "ms", description: "Duration of calls made" });
  return {
    startServer(start: ServerSpanStart): ServerSpan {
      const remote = start.remote;
      // A request without a valid traceparent starts a new trace: never a child of whatever is current here.
      const parent =
        remote === undefined
          ? ROOT_CONTEXT
          : trace.setSpanContext(ROOT_CONTEXT, {
              traceId: remote.parent.traceId,
              spanId: remote.parent.spanId,
              traceFlags: remote.parent.flags,
              isRemote: true,
              ...(remote.tracestate !== undefined && { traceState: createTraceState(remote.tracestate) }),
            });
      const attributes = rpcAttributes(start);
      const spanAttributes: Attributes = {
        ...attributes,
        "nats_micro.service": start.service,
        "nats_micro.request_id": start.requestId,
        ...(start.attempt > 1 && { "nats_micro.attempt": start.attempt }),
        ...(start.deadline !== undefined && { "nats_micro.deadline": new Date(start.deadline).toISOString() }),
        ...(start.stream !== undefined && { "nats_micro.stream": start.stream }),
      };
      const span = tracer.startSpan(spanName(start.protoService, start.method), { kind: SpanKind.SERVER, attributes: spanAttributes }, parent);
      const active = trace.setSpan(parent, span);
      return {
        run: (fn) => context.with(active, fn),
        end: (end) => finish(span, attributes, serverDuration, end, end.code !== undefined && SERVER_ERROR_CODES.has(end.code)),
      };
    },
    startClient(start: ClientSpanStart): ClientSpan {
      const attributes = rpcAttributes(start);
      const spanAttributes: Attributes = { ...attributes, ...(start.stream !== undefined && { "nats_micro.stream": start.stream }) };
      const span = tracer.startSpan(spanName(start.protoService, start.method), { kind: SpanKind.CLIENT, attributes: spanAttributes }, context.active());
      const spanContext = span.spanContext();
      // A non-recording tracer (no provider installed) gives an invalid context: then nothing is sent.
      const valid = trace.isSpanContextValid(spanContext);
      return {
        traceparent: valid ? formatTraceparent({ traceId: spanContext.traceId, spanId: spanContext.spanId, flags: spanContext.traceFlags }) : undefined,
        tracestate: valid ? spanContext.traceState?.serialize() : undefined,
        attempt: (attempt) => span.addEvent("attempt", { "nats_micro.attempt": attempt }),
        end: (end) => finish(span, attributes, clientDuration, end, end.code !== undefined),
      };
    },
  };
}
