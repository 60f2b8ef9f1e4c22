/**
 * Serves `trace.v1.TraceService` (proto/trace/v1/trace.proto) as its
 * comments fix it, for the cross-language trace test (PROTOCOL §11): a hop
 * that forwards the request to the next hop of its route from inside its
 * handler, with OpenTelemetry recording into memory.
 *
 * usage: NATS_URL=nats://... HOP_NAME=ts node trace_server.js. Serves on
 * `trace.v1.<HOP_NAME>`, prints `ready` once serving; at SIGTERM stops,
 * flushes and prints `spans <json>` (stdin is not watched: the test may
 * start it without one).
 */

import { connect } from "@nats-io/transport-node";
import { context, SpanKind } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { openTelemetry } from "nats-micro-runtime/otel";
import { type ITraceServiceNats, registerTraceServiceHandlers, TraceServiceNatsClient } from "./gen/trace/v1/trace_nats.pb.js";

const hopName = process.env["HOP_NAME"];
if (hopName === undefined || hopName === "") {
  console.error("trace_server: HOP_NAME is not set");
  process.exit(2);
}
const url = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";

// Node needs a context manager for a handler's calls to see its server span as current.
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const exporter = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const telemetry = openTelemetry({ tracerProvider });

const nc = await connect({ servers: url });
/** One client per next hop, all traced. */
const clients = new Map<string, TraceServiceNatsClient>();
function clientFor(hop: string): TraceServiceNatsClient {
  let client = clients.get(hop);
  if (client === undefined) {
    client = new TraceServiceNatsClient(nc, { subjectPrefix: `trace.v1.${hop}`, telemetry });
    clients.set(hop, client);
  }
  return client;
}

const handlers: ITraceServiceNats = {
  async hop(request) {
    const [next, ...rest] = request.route;
    if (next === undefined) {
      return { visited: [hopName] };
    }
    const answer = await clientFor(next).hop({ route: rest });
    return { visited: [hopName, ...answer.visited] };
  },
};

const service = await registerTraceServiceHandlers(nc, handlers, { subjectPrefix: `trace.v1.${hopName}`, telemetry });
console.log("ready");

/** A finished span in the shape trace.proto fixes. */
function spanJson(span: ReadableSpan): Record<string, unknown> {
  const own = span.spanContext();
  return {
    name: span.name,
    kind: span.kind === SpanKind.SERVER ? "server" : span.kind === SpanKind.CLIENT ? "client" : "internal",
    trace_id: own.traceId,
    span_id: own.spanId,
    parent_span_id: span.parentSpanContext?.spanId ?? "",
    attributes: span.attributes,
  };
}

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) {
    return;
  }
  stopping = true;
  await service.stop({ drainTimeout: 2_000 });
  await nc.drain();
  await tracerProvider.forceFlush();
  // process.exit does not wait for a pipe to take a long line: exit once it is written.
  process.stdout.write(`spans ${JSON.stringify(exporter.getFinishedSpans().map(spanJson))}\n`, () => process.exit(0));
}
process.on("SIGTERM", () => void stop());
