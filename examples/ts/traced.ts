/**
 * The order service and a client in one process, traced with OpenTelemetry
 * (PROTOCOL §11): the spans go to memory and are printed as a tree, one line
 * per span (`trace <id>` first). Uses $NATS_URL (default
 * nats://127.0.0.1:4222).
 */

import { connect } from "@nats-io/transport-node";
import { type Logger } from "nats-micro-runtime";
import { registerOrderServiceHandlers, OrderServiceNatsClient } from "./gen/order/v1/order_nats.pb.js";
import { InMemoryOrders } from "./orders.js";
// snippet: otel
import { context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { openTelemetry } from "nats-micro-runtime/otel";

// Node needs a context manager so that a handler's own calls are children of its request's span.
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const spans = new InMemorySpanExporter();
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }));
const telemetry = openTelemetry(); // the global tracer and meter providers

// The §11.4 events (request_shed, handler_failed, ...) as structured records, to any logging library.
const logger: Logger = {
  event: (e) => console.error(JSON.stringify(e)),
  warn: (message) => console.error(message),
};

const nc = await connect({ servers: process.env["NATS_URL"] ?? "nats://127.0.0.1:4222" });
const service = await registerOrderServiceHandlers(nc, new InMemoryOrders(), { telemetry, logger });
const client = new OrderServiceNatsClient(nc, { telemetry });
await trace.getTracer("example").startActiveSpan("checkout", async (checkout) => {
  const { order } = await client.createOrder({ customerId: "cust-7", items: [{ productId: "book", quantity: 1, unitPriceCents: 1999n }], cardToken: "ok" });
  await client.getOrder({ id: order?.id ?? "" });
  checkout.end();
});
// end snippet

/** Prints `span` and, indented under it, its children. */
function print(span: ReadableSpan, all: readonly ReadableSpan[], depth: number): void {
  const kind = ["internal", "server", "client", "producer", "consumer"][span.kind] ?? "?";
  const subject = span.attributes["messaging.destination.name"];
  console.log(`${"  ".repeat(depth)}${kind} ${span.name}${subject === undefined ? "" : ` on ${String(subject)}`} (span ${span.spanContext().spanId})`);
  for (const child of all.filter((s) => s.parentSpanContext?.spanId === span.spanContext().spanId)) {
    print(child, all, depth + 1);
  }
}

await service.stop();
await nc.close();
const finished = spans.getFinishedSpans();
const roots = finished.filter((s) => s.parentSpanContext === undefined);
for (const root of roots) {
  console.log(`trace ${root.spanContext().traceId}`);
  print(root, finished, 1);
}
