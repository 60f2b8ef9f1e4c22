/**
 * Observability (PROTOCOL §11) on a real nats-server: every named event
 * driven for real and its fields asserted; W3C trace context parsing; and,
 * with OpenTelemetry's in-memory exporter, spans, their parent links and
 * attributes, trace context through a handler's own calls, and the
 * duration histograms.
 */

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import test from "node:test";

import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics";
import { headers as createHeaders, type NatsConnection } from "@nats-io/nats-core";
import { Int64ValueSchema } from "@bufbuild/protobuf/wkt";

import {
  Client,
  extractTraceContext,
  formatTraceparent,
  NatsMicroError,
  parseTraceparent,
  type ServiceEvent,
  Service,
  type ServiceOptions,
  type ServiceHandlers,
  type ServiceSpec,
  TRACEPARENT_HEADER,
  TRACESTATE_HEADER,
} from "../src/index.js";
import { openTelemetry } from "../src/otel.js";
import { ECHO_SUBJECT, HANG_SUBJECT, logSink, NatsServer, RawClient, REPO, SPEC, sleep, stringValue, within } from "./harness.js";

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
/** The attempt header of PROTOCOL §10.1, as a retrying client sends it. */
const ATTEMPT_HEADER = "Nats-Micro-Attempt";
const SPAN_ID = "00f067aa0ba902b7";

test("the main entry never imports OpenTelemetry: only the nats-micro-runtime/otel entry does", () => {
  const src = join(REPO, "runtime-ts", "src");
  const importers = readdirSync(src)
    .filter((name) => name.endsWith(".ts") && /from "(@opentelemetry\/[^"]+|\.\/otel\.js)"/.test(readFileSync(join(src, name), "utf8")))
    .sort();
  assert.deepEqual(importers, ["otel.ts"]);
  const manifest = JSON.parse(readFileSync(join(REPO, "runtime-ts", "package.json"), "utf8")) as Record<string, Record<string, unknown>>;
  assert.deepEqual(manifest["peerDependenciesMeta"]?.["@opentelemetry/api"], { optional: true });
  assert.ok(manifest["exports"]?.["./otel"] !== undefined);
});

test("traceparent: only version 00, lowercase hex of the right lengths, and non-zero ids are valid", () => {
  assert.deepEqual(parseTraceparent(`00-${TRACE_ID}-${SPAN_ID}-01`), { traceId: TRACE_ID, spanId: SPAN_ID, flags: 1 });
  assert.deepEqual(parseTraceparent(`00-${TRACE_ID}-${SPAN_ID}-00`)?.flags, 0);
  for (const invalid of [
    "",
    "garbage",
    `01-${TRACE_ID}-${SPAN_ID}-01`,
    `ff-${TRACE_ID}-${SPAN_ID}-01`,
    `00-${TRACE_ID.toUpperCase()}-${SPAN_ID}-01`,
    `00-${"0".repeat(32)}-${SPAN_ID}-01`,
    `00-${TRACE_ID}-${"0".repeat(16)}-01`,
    `00-${TRACE_ID.slice(1)}-${SPAN_ID}-01`,
    `00-${TRACE_ID}-${SPAN_ID}-1`,
    `00-${TRACE_ID}-${SPAN_ID}-01-extra`,
    ` 00-${TRACE_ID}-${SPAN_ID}-01`,
    `00-${TRACE_ID}-${SPAN_ID.slice(0, 15)}g-01`,
  ]) {
    assert.equal(parseTraceparent(invalid), undefined, JSON.stringify(invalid));
  }
  assert.equal(formatTraceparent({ traceId: TRACE_ID, spanId: SPAN_ID, flags: 1 }), `00-${TRACE_ID}-${SPAN_ID}-01`);
});

test("tracestate is kept only beside a valid traceparent", () => {
  const headers = createHeaders();
  headers.set(TRACESTATE_HEADER, "vendor=x");
  assert.equal(extractTraceContext(headers), undefined, "tracestate alone");
  headers.set(TRACEPARENT_HEADER, `00-${"0".repeat(32)}-${SPAN_ID}-01`);
  assert.equal(extractTraceContext(headers), undefined, "beside an invalid traceparent");
  headers.set(TRACEPARENT_HEADER, `00-${TRACE_ID}-${SPAN_ID}-01`);
  assert.deepEqual(extractTraceContext(headers), { parent: { traceId: TRACE_ID, spanId: SPAN_ID, flags: 1 }, tracestate: "vendor=x" });
  headers.delete(TRACESTATE_HEADER);
  assert.deepEqual(extractTraceContext(headers)?.tracestate, undefined);
  assert.equal(extractTraceContext(undefined), undefined);
});

/**
 * A service on the test spec whose echo handler fails as its request says:
 * `fail` (an uncoded Error), `panic` (a TypeError, a bug); `hang` never
 * answers.
 */
async function eventService(nc: NatsConnection, options: ServiceOptions): Promise<Service> {
  return Service.start(
    nc,
    SPEC,
    {
      echo: (request) => {
        if (request.value === "fail") {
          throw new Error("the database is down");
        }
        if (request.value === "panic") {
          const missing = undefined as unknown as { call(): void };
          missing.call();
        }
        return { value: request.value };
      },
      hang: () => new Promise(() => undefined),
    },
    options,
  );
}

/** Waits until an event of that name was logged, and returns it. */
async function waitEvent(events: ServiceEvent[], name: ServiceEvent["event"]): Promise<ServiceEvent> {
  for (let i = 0; i < 100; i += 1) {
    const found = events.find((e) => e.event === name);
    if (found !== undefined) {
      return found;
    }
    await sleep(20);
  }
  throw new Error(`no ${name} event; got ${JSON.stringify(events)}`);
}

test("every named event is logged with its level and fields, for situations driven on a real server", async () => {
  const server = await NatsServer.start();
  const nc = await server.connect();
  const sink = logSink();
  const service = await eventService(nc, { logger: sink.logger, maxConcurrency: 1, pendingMsgLimit: 0 });
  const where = { service: "TestService", endpoint: "echo", subject: ECHO_SUBJECT };
  try {
    const client = new Client(nc, SPEC, NatsMicroError);

    // A body that does not decode.
    const answer = await nc.request(ECHO_SUBJECT, Uint8Array.from([0xff, 0xff, 0xff]), { timeout: 2_000 });
    assert.equal(answer.headers?.get("Nats-Service-Error-Code"), "400");
    const malformed = await waitEvent(sink.events, "request_malformed");
    assert.equal(malformed.level, "warn");
    assert.deepEqual({ ...malformed, error: "" }, { ...where, event: "request_malformed", level: "warn", error: "" });
    assert.ok("error" in malformed && malformed.error.length > 0, "the decoder's complaint is the error field");

    // An uncoded failure and a bug.
    await assert.rejects(client.unary(SPEC.methods.echo, { value: "fail" }, { timeout: 2_000 }), { code: "INTERNAL" });
    assert.deepEqual(await waitEvent(sink.events, "handler_failed"), { ...where, event: "handler_failed", level: "error", error: "the database is down" });
    await assert.rejects(client.unary(SPEC.methods.echo, { value: "panic" }, { timeout: 2_000 }), { code: "INTERNAL" });
    const panicked = await waitEvent(sink.events, "handler_panicked");
    assert.equal(panicked.level, "error");
    assert.ok("panic" in panicked && panicked.panic.startsWith("TypeError: "), JSON.stringify(panicked));
    assert.deepEqual({ ...panicked, panic: "" }, { ...where, event: "handler_panicked", level: "error", panic: "" });

    // A deadline that passes while the handler runs, then a request shed while it still does (one slot, no queue).
    const hang = { service: "TestService", endpoint: "hang", subject: HANG_SUBJECT };
    await assert.rejects(client.unary(SPEC.methods.hang, { value: "x" }, { timeout: 150 }), { code: "DEADLINE_EXCEEDED" });
    const dropped = await waitEvent(sink.events, "deadline_dropped");
    assert.ok("waited_ms" in dropped && dropped.waited_ms >= 100 && dropped.waited_ms < 2_000, JSON.stringify(dropped));
    assert.deepEqual({ ...dropped, waited_ms: 0 }, { ...hang, event: "deadline_dropped", level: "warn", waited_ms: 0 });
    const stuck = client.unary(SPEC.methods.hang, { value: "x" }, { timeout: 3_000 }).catch(() => undefined);
    await sleep(100);
    await assert.rejects(client.unary(SPEC.methods.hang, { value: "y" }, { timeout: 2_000 }), { code: "RESOURCE_EXHAUSTED" });
    assert.deepEqual(await waitEvent(sink.events, "request_shed"), { ...hang, event: "request_shed", level: "warn", queued: 0 });

    // A reply subject the service refuses to publish to.
    const raw = await RawClient.connect(server.port);
    raw.hpub(ECHO_SUBJECT, "$JS.API.STREAM.DELETE.orders", Buffer.from("NATS/1.0\r\n\r\n"), stringValue("aimed"));
    assert.ok(await raw.ping());
    raw.close();
    const refused = await waitEvent(sink.events, "reply_refused");
    assert.ok("reason" in refused && refused.reason.length > 0, JSON.stringify(refused));
    assert.deepEqual({ ...refused, reason: "" }, { ...where, event: "reply_refused", level: "warn", reply: "$JS.API.STREAM.DELETE.orders", reason: "" });

    await within(5_000, service.stop({ drainTimeout: 100 }), "stop()");
    await stuck;
  } finally {
    await nc.close();
    server.stop();
  }
});

/** An OpenTelemetry pipeline kept in memory: spans, the duration histograms, and async context for Node. */
function otelPipeline() {
  const spans = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
  const metricsOut = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter: metricsOut, exportIntervalMillis: 3_600_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const telemetry = openTelemetry({ tracerProvider, meterProvider });
  return { spans, tracerProvider, reader, meterProvider, telemetry };
}

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());

function byKind(spans: ReadableSpan[], kind: SpanKind): ReadableSpan[] {
  return spans.filter((s) => s.kind === kind);
}

test("OpenTelemetry: client span, server span and a handler's own call share one trace with the right parents", async () => {
  const server = await NatsServer.start();
  const nc = await server.connect();
  const { spans, tracerProvider, reader, meterProvider, telemetry } = otelPipeline();
  const client = new Client(nc, SPEC, NatsMicroError, { telemetry });
  const service = await Service.start(
    nc,
    SPEC,
    {
      // echo "outer" calls echo "inner" from inside the handler: a child of this request's span.
      echo: async (request) => (request.value === "outer" ? { value: (await client.unary(SPEC.methods.echo, { value: "inner" })).value } : { value: request.value }),
      hang: () => {
        throw new NatsMicroError("NOT_FOUND", "", "nothing here");
      },
    },
    { telemetry, logger: logSink().logger },
  );
  try {
    const tracer = tracerProvider.getTracer("test");
    await tracer.startActiveSpan("caller", async (root) => {
      assert.equal((await client.unary(SPEC.methods.echo, { value: "outer" })).value, "inner");
      root.end();
    });
    await sleep(50);
    const all = spans.getFinishedSpans();
    const root = all.find((s) => s.name === "caller");
    assert.ok(root !== undefined);
    const clients = byKind(all, SpanKind.CLIENT);
    const servers = byKind(all, SpanKind.SERVER);
    assert.equal(clients.length, 2);
    assert.equal(servers.length, 2);
    const traceId = root.spanContext().traceId;
    for (const span of all) {
      assert.equal(span.spanContext().traceId, traceId, `${span.name} is in the caller's trace`);
    }
    const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
    const outerClient = clients.find((s) => parentOf(s) === root.spanContext().spanId);
    assert.ok(outerClient !== undefined, "the first client span is the caller's child");
    const outerServer = servers.find((s) => parentOf(s) === outerClient.spanContext().spanId);
    assert.ok(outerServer !== undefined, "its server span is the client span's child");
    const innerClient = clients.find((s) => parentOf(s) === outerServer.spanContext().spanId);
    assert.ok(innerClient !== undefined, "the handler's own call is the server span's child");
    const innerServer = servers.find((s) => parentOf(s) === innerClient.spanContext().spanId);
    assert.ok(innerServer !== undefined);
    assert.equal(outerServer.name, "test.v1.TestService/Echo");
    assert.deepEqual(
      { ...outerServer.attributes, "nats_micro.request_id": "", "nats_micro.deadline": "" },
      {
        "rpc.system": "nats_micro",
        "rpc.service": "test.v1.TestService",
        "rpc.method": "Echo",
        "messaging.system": "nats",
        "messaging.destination.name": ECHO_SUBJECT,
        "nats_micro.endpoint": "echo",
        "nats_micro.service": "TestService",
        "nats_micro.request_id": "",
        "nats_micro.deadline": "",
      },
    );
    assert.equal(outerServer.status.code, SpanStatusCode.UNSET);
    assert.deepEqual(outerClient.events.map((e) => [e.name, e.attributes?.["nats_micro.attempt"]]), [["attempt", 1]]);

    // Errors: NOT_FOUND is the caller's problem (server status unset), always an error on the client.
    spans.reset();
    await assert.rejects(client.unary(SPEC.methods.hang, { value: "x" }), { code: "NOT_FOUND" });
    await sleep(50);
    const [failedClient] = byKind(spans.getFinishedSpans(), SpanKind.CLIENT);
    const [failedServer] = byKind(spans.getFinishedSpans(), SpanKind.SERVER);
    assert.equal(failedClient?.status.code, SpanStatusCode.ERROR);
    assert.equal(failedClient?.attributes["nats_micro.error_code"], "NOT_FOUND");
    assert.equal(failedServer?.status.code, SpanStatusCode.UNSET);
    assert.equal(failedServer?.attributes["nats_micro.error_code"], "NOT_FOUND");
    assert.equal(failedServer?.parentSpanContext?.spanId, failedClient?.spanContext().spanId, "a client span with no current span is a root");
    assert.equal(failedClient?.parentSpanContext, undefined);

    // Duration histograms, with the code (OK on success).
    const { resourceMetrics } = await reader.collect();
    const metrics = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics);
    const codes = (name: string) =>
      metrics
        .filter((m) => m.descriptor.name === name)
        .flatMap((m) => m.dataPoints.map((p) => `${String(p.attributes["rpc.method"])}:${String(p.attributes["nats_micro.error_code"])}`))
        .sort();
    assert.deepEqual(codes("rpc.server.duration"), ["Echo:OK", "Hang:NOT_FOUND"]);
    assert.deepEqual(codes("rpc.client.duration"), ["Echo:OK", "Hang:NOT_FOUND"]);
    assert.equal(metrics.find((m) => m.descriptor.name === "rpc.server.duration")?.descriptor.unit, "ms");
  } finally {
    await service.stop();
    await nc.close();
    server.stop();
    await meterProvider.shutdown();
    await tracerProvider.shutdown();
  }
});

test("OpenTelemetry on the server: a valid traceparent is the parent, an invalid one starts a new trace, the attempt is recorded", async () => {
  const server = await NatsServer.start();
  const nc = await server.connect();
  const { spans, tracerProvider, meterProvider, telemetry } = otelPipeline();
  const service = await eventService(nc, { telemetry, logger: logSink().logger });
  try {
    const send = async (set: Record<string, string>) => {
      const headers = createHeaders();
      for (const [name, value] of Object.entries(set)) {
        headers.set(name, value);
      }
      await nc.request(ECHO_SUBJECT, stringValue("x"), { timeout: 2_000, headers });
      await sleep(20);
      const [span] = spans.getFinishedSpans();
      spans.reset();
      assert.ok(span !== undefined);
      return span;
    };
    const child = await send({ [TRACEPARENT_HEADER]: `00-${TRACE_ID}-${SPAN_ID}-01`, [TRACESTATE_HEADER]: "vendor=x", [ATTEMPT_HEADER]: "3" });
    assert.equal(child.spanContext().traceId, TRACE_ID);
    assert.equal(child.parentSpanContext?.spanId, SPAN_ID);
    assert.equal(child.parentSpanContext?.isRemote, true);
    assert.equal(child.spanContext().traceState?.get("vendor"), "x");
    assert.equal(child.attributes["nats_micro.attempt"], 3);

    const root = await send({ [TRACEPARENT_HEADER]: `00-${"0".repeat(32)}-${SPAN_ID}-01`, [TRACESTATE_HEADER]: "vendor=x" });
    assert.equal(root.parentSpanContext, undefined, "an invalid traceparent starts a new trace");
    assert.notEqual(root.spanContext().traceId, TRACE_ID);
    assert.equal(root.spanContext().traceState, undefined, "tracestate without a valid traceparent is dropped");
    assert.equal(root.attributes["nats_micro.attempt"], undefined, "attempt 1 is not recorded");

    // Whatever is current on the service's side never becomes the parent of a request.
    const unrelated = tracerProvider.getTracer("test").startSpan("unrelated");
    const fresh = await context.with(trace.setSpan(ROOT_CONTEXT, unrelated), () => send({}));
    unrelated.end();
    assert.equal(fresh.parentSpanContext, undefined);

    // A server failure marks the span as an error.
    const headers = createHeaders();
    await nc.request(ECHO_SUBJECT, stringValue("fail"), { timeout: 2_000, headers });
    await sleep(20);
    const [failed] = spans.getFinishedSpans().filter((s) => s.name === "test.v1.TestService/Echo");
    assert.equal(failed?.status.code, SpanStatusCode.ERROR);
    assert.equal(failed?.attributes["nats_micro.error_code"], "INTERNAL");
  } finally {
    await service.stop();
    await nc.close();
    server.stop();
    await meterProvider.shutdown();
    await tracerProvider.shutdown();
  }
});

test("OpenTelemetry on the client: headers the caller sets win over the injected context", async () => {
  const server = await NatsServer.start();
  const nc = await server.connect();
  const { spans, tracerProvider, meterProvider, telemetry } = otelPipeline();
  const seen: (string | undefined)[] = [];
  const service = await Service.start(
    nc,
    SPEC,
    {
      echo: (request, ctx) => {
        seen.push(ctx.header(TRACEPARENT_HEADER));
        return { value: request.value };
      },
      hang: (request) => ({ value: request.value }),
    },
    { logger: logSink().logger },
  );
  try {
    const client = new Client(nc, SPEC, NatsMicroError, { telemetry });
    const mine = `00-${TRACE_ID}-${SPAN_ID}-01`;
    await client.unary(SPEC.methods.echo, { value: "a" }, { headers: { [TRACEPARENT_HEADER]: mine } });
    await client.unary(SPEC.methods.echo, { value: "b" });
    const [clientA, clientB] = spans.getFinishedSpans();
    assert.equal(seen[0], mine);
    assert.equal(seen[1], `00-${clientB?.spanContext().traceId}-${clientB?.spanContext().spanId}-01`);
    assert.ok(clientA !== undefined);
    // Without telemetry nothing is injected.
    await new Client(nc, SPEC, NatsMicroError).unary(SPEC.methods.echo, { value: "c" });
    assert.equal(seen[2], undefined);
  } finally {
    await service.stop();
    await nc.close();
    server.stop();
    await meterProvider.shutdown();
    await tracerProvider.shutdown();
  }
});

test("discovery_failed: a discovery reply that cannot be sent is logged with its error", async () => {
  // INFO and STATS carry the metadata: over max_payload, their replies cannot be published.
  const server = await NatsServer.start("max_payload: 1024\n");
  const nc = await server.connect();
  const sink = logSink();
  const service = await eventService(nc, { logger: sink.logger, metadata: { padding: "x".repeat(2_000) } });
  try {
    const asked = await server.connect();
    await assert.rejects(asked.request("$SRV.INFO.TestService", new Uint8Array(0), { timeout: 500 }));
    const failed = await waitEvent(sink.events, "discovery_failed");
    assert.deepEqual({ ...failed, error: "" }, { service: "TestService", endpoint: "", subject: "$SRV.INFO.TestService", event: "discovery_failed", level: "warn", error: "" });
    assert.ok("error" in failed && failed.error.length > 0);
    await asked.close();
  } finally {
    await service.stop();
    await nc.close();
    server.stop();
  }
});

const STREAM_SPEC = {
  protoName: "test.v1.StreamTest",
  name: "StreamTest",
  version: "1.0.0",
  description: "",
  subjectPrefix: "api.traced",
  metadata: {},
  json: false,
  queueGroupDisabled: false,
  methods: {},
  streams: {
    count: { method: "Count", endpoint: "count", input: Int64ValueSchema, output: Int64ValueSchema, metadata: {}, queueGroupDisabled: false, kind: "server" },
  },
} as const satisfies ServiceSpec;

const counter: ServiceHandlers<typeof STREAM_SPEC> = {
  async *count(request) {
    for (let i = 1n; i <= request.value; i++) {
      yield { value: i };
    }
  },
};

test("OpenTelemetry on streams: the open carries the trace context, one span per stream on each side", async () => {
  const server = await NatsServer.start();
  const nc = await server.connect();
  const { spans, tracerProvider, meterProvider, telemetry } = otelPipeline();
  const service = await Service.start(
    nc,
    STREAM_SPEC,
    counter,
    { telemetry, logger: logSink().logger },
  );
  try {
    const client = new Client(nc, STREAM_SPEC, NatsMicroError, { telemetry });
    const seen: bigint[] = [];
    for await (const number of client.serverStream(STREAM_SPEC.streams.count, { value: 3n })) {
      seen.push(number.value);
    }
    assert.deepEqual(seen, [1n, 2n, 3n]);
    await sleep(50);
    const [clientSpan] = byKind(spans.getFinishedSpans(), SpanKind.CLIENT);
    const [serverSpan] = byKind(spans.getFinishedSpans(), SpanKind.SERVER);
    assert.equal(spans.getFinishedSpans().length, 2);
    assert.equal(clientSpan?.name, "test.v1.StreamTest/Count");
    assert.equal(serverSpan?.parentSpanContext?.spanId, clientSpan?.spanContext().spanId);
    assert.equal(serverSpan?.spanContext().traceId, clientSpan?.spanContext().traceId);
    assert.equal(serverSpan?.attributes["nats_micro.stream"], "server");
    assert.equal(serverSpan?.attributes["messaging.destination.name"], "api.traced.count");
    assert.equal(clientSpan?.status.code, SpanStatusCode.UNSET);
  } finally {
    await service.stop();
    await nc.close();
    server.stop();
    await meterProvider.shutdown();
    await tracerProvider.shutdown();
  }
});
