/**
 * Streams (PROTOCOL.md section 9) on a real nats-server, with specs over
 * well-known types: the three kinds end to end, typed errors at the open
 * and mid-stream, flow control, deadlines, caller cancel, a silent caller,
 * Go-plugin-style peers on both sides, malformed sequence and credit
 * headers, the reply policy applied to `Reply-To`, and interceptors on both
 * sides (order, headers, refusal at the open, the outcome).
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { create } from "@bufbuild/protobuf";
import { Int64ValueSchema, StringValueSchema } from "@bufbuild/protobuf/wkt";
import { createInbox, headers as createHeaders, type Msg, type NatsConnection } from "@nats-io/nats-core";

import {
  Client,
  type ClientInterceptor,
  type ClientOptions,
  ERROR_CODE_HEADER,
  type MessageInitShape,
  NatsMicroError,
  type RequestContext,
  type ServerInterceptor,
  Service,
  type ServiceHandlers,
  type ServiceOptions,
  type ServiceSpec,
  STREAM_CANCEL_HEADER,
  STREAM_CREDIT_HEADER,
  STREAM_END_HEADER,
  STREAM_INBOX_HEADER,
  STREAM_SEQ_HEADER,
  hasCode,
} from "../src/index.js";
import { Inbox, logSink, NatsServer, sleep, within } from "./harness.js";

const base = { metadata: {}, queueGroupDisabled: false } as const;
const STREAMS = {
  protoName: "test.v1.StreamTest",
  name: "StreamTest",
  version: "1.0.0",
  description: "stream tests",
  subjectPrefix: "api.streams",
  metadata: {},
  json: false,
  queueGroupDisabled: false,
  methods: {},
  streams: {
    count: { ...base, method: "Count", endpoint: "count", input: Int64ValueSchema, output: Int64ValueSchema, kind: "server", window: 4 },
    sum: { ...base, method: "Sum", endpoint: "sum", input: Int64ValueSchema, output: Int64ValueSchema, kind: "client" },
    chat: { ...base, method: "Chat", endpoint: "chat", input: StringValueSchema, output: StringValueSchema, kind: "bidi" },
  },
} as const satisfies ServiceSpec;

class StreamTestError extends NatsMicroError {}

/** What the handlers saw, for the assertions. */
interface Observed {
  /** The highest number the count handler yielded, as it yields. */
  produced: number;
  /** The count handler's signal, once it ran. */
  signal?: AbortSignal;
  finished: boolean;
  /** Each handler run: its method and the `X-Tenant` header it saw. */
  handled: string[];
}

/**
 * count(n): n numbers 1..n; n = 999 fails at once with TOO_MANY (data
 * "999"); n < 0 yields 1, 2 then fails FAILED_PRECONDITION; n = 0 runs until
 * cancelled. sum: totals, INVALID_ARGUMENT on a negative. chat: `echo: x`
 * per message, then `bye`.
 */
function handlers(observed: Observed): ServiceHandlers<typeof STREAMS> {
  return {
    async *count(request, ctx: RequestContext) {
      observed.signal = ctx.signal;
      observed.handled.push(`${ctx.method} tenant=${ctx.header("X-Tenant")}`);
      const n = Number(request.value);
      if (n === 999) {
        throw new NatsMicroError("TOO_MANY", ctx.method, "too many", new TextEncoder().encode("999"));
      }
      try {
        for (let i = 1; n === 0 || i <= Math.abs(n); i++) {
          if (n < 0 && i === 3) {
            throw new NatsMicroError("FAILED_PRECONDITION", ctx.method, "failed after 2", new Uint8Array([1, 2]));
          }
          observed.produced = i;
          yield { value: BigInt(i) };
          if (n === 0) {
            await sleep(5);
          }
        }
        ctx.setResponseHeader("Trailer", "done");
      } finally {
        observed.finished = true;
      }
    },
    async sum(requests, ctx) {
      observed.handled.push(`${ctx.method} tenant=${ctx.header("X-Tenant")}`);
      let total = 0n;
      for await (const number of requests) {
        if (number.value < 0n) {
          throw new NatsMicroError("INVALID_ARGUMENT", "Sum", "negative");
        }
        total += number.value;
      }
      return { value: total };
    },
    async *chat(requests) {
      for await (const message of requests) {
        yield { value: `echo: ${message.value}` };
      }
      yield { value: "bye" };
    },
  };
}

async function setup(options: ServiceOptions = {}, clientOptions: ClientOptions = {}) {
  const server = await NatsServer.start();
  const nc = await server.connect();
  const observed: Observed = { produced: 0, finished: false, handled: [] };
  const sink = logSink();
  const service = await Service.start(nc, STREAMS, handlers(observed), { logger: sink.logger, ...options });
  const caller = await server.connect();
  const client = new Client(caller, STREAMS, StreamTestError, clientOptions);
  return {
    server,
    nc,
    caller,
    client,
    service,
    observed,
    sink,
    async close() {
      await service.stop({ drainTimeout: 100 });
      await caller.close();
      await nc.close();
      await server.stop();
    },
  };
}

async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of stream) {
    out.push(item);
  }
  return out;
}

async function rejection(promise: Promise<unknown>): Promise<NatsMicroError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof NatsMicroError, `expected a NatsMicroError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected a rejection");
}

test("the three kinds end to end, with trailing headers and STATS", async () => {
  const t = await setup();
  try {
    let trailer: string | undefined;
    const numbers = await collect(t.client.serverStream(STREAMS.streams.count, { value: 10n }, { onHeaders: (h) => (trailer = h.get("Trailer")) }));
    assert.deepEqual(numbers.map((n) => n.value), [1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n, 9n, 10n]);
    assert.equal(trailer, "done");

    const sum = t.client.clientStream(STREAMS.streams.sum);
    for (let i = 1n; i <= 10n; i++) {
      await sum.send({ value: i });
    }
    assert.equal((await sum.closeAndReceive()).value, 55n);

    const chat = t.client.bidiStream(STREAMS.streams.chat);
    await chat.send({ value: "a" });
    const replies: string[] = [];
    const iterator = chat[Symbol.asyncIterator]();
    replies.push((await iterator.next()).value.value);
    await chat.send({ value: "b" });
    await chat.closeSend();
    for (let r = await iterator.next(); r.done !== true; r = await iterator.next()) {
      replies.push(r.value.value);
    }
    assert.deepEqual(replies, ["echo: a", "echo: b", "bye"]);

    const stats = t.service.stats().endpoints;
    assert.deepEqual(stats.map((e) => [e.name, e.num_requests, e.num_errors]), [["count", 1, 0], ["sum", 1, 0], ["chat", 1, 0]]);
    assert.deepEqual(t.service.info().endpoints.map((e) => e.name), ["count", "sum", "chat"]);
  } finally {
    await t.close();
  }
});

test("stream handlers take the request first and ctx second, and run on the handlers object as unary ones do", async () => {
  const server = await NatsServer.start();
  const nc = await server.connect();
  const caller = await server.connect();
  class Handlers implements ServiceHandlers<typeof STREAMS> {
    readonly prefix = "seen";
    async *count(request: { value: bigint }, ctx: RequestContext) {
      yield { value: request.value };
      yield { value: BigInt(ctx.method.length) };
    }
    async sum(requests: AsyncIterable<{ value: bigint }>, ctx: RequestContext) {
      let total = 0n;
      for await (const number of requests) {
        total += number.value;
      }
      return { value: total + BigInt(ctx.method.length) };
    }
    async *chat(requests: AsyncIterable<{ value: string }>, ctx: RequestContext) {
      for await (const message of requests) {
        yield { value: `${this.prefix} ${message.value} in ${ctx.method}` };
      }
    }
  }
  const service = await Service.start(nc, STREAMS, new Handlers());
  try {
    const client = new Client(caller, STREAMS, StreamTestError);
    assert.deepEqual((await collect(client.serverStream(STREAMS.streams.count, { value: 7n }))).map((n) => n.value), [7n, 5n]);
    const sum = client.clientStream(STREAMS.streams.sum);
    await sum.send({ value: 10n });
    assert.equal((await sum.closeAndReceive()).value, 13n);
    const chat = client.bidiStream(STREAMS.streams.chat);
    await chat.send({ value: "a" });
    await chat.closeSend();
    assert.deepEqual((await collect(chat)).map((m) => m.value), ["seen a in Chat"]);
  } finally {
    await service.stop({ drainTimeout: 100 });
    await caller.close();
    await nc.close();
    await server.stop();
  }
});

test("typed errors at the open and mid-stream keep code, message and data", async () => {
  const t = await setup();
  try {
    const atOpen = await rejection(collect(t.client.serverStream(STREAMS.streams.count, { value: 999n })));
    assert.ok(atOpen instanceof StreamTestError);
    assert.equal(atOpen.code, "TOO_MANY");
    assert.equal(new TextDecoder().decode(atOpen.data), "999");

    const received: bigint[] = [];
    const midStream = await rejection(
      (async () => {
        for await (const n of t.client.serverStream(STREAMS.streams.count, { value: -5n })) {
          received.push(n.value);
        }
      })(),
    );
    assert.deepEqual(received, [1n, 2n]);
    assert.ok(hasCode(midStream, "FAILED_PRECONDITION"));
    assert.equal(midStream.message, "failed after 2");
    assert.deepEqual([...midStream.data], [1, 2]);

    const sum = t.client.clientStream(STREAMS.streams.sum);
    await sum.send({ value: 1n });
    await sum.send({ value: -1n });
    assert.equal((await rejection(sum.closeAndReceive())).code, "INVALID_ARGUMENT");
    assert.equal(t.service.stats().endpoints[0]?.num_errors, 2);
  } finally {
    await t.close();
  }
});

test("a slow consumer never lets the server run more than the window ahead", async () => {
  const t = await setup();
  try {
    // Window 4 from the spec: the handler may yield at most 4 unconsumed messages, plus the one blocked in send.
    const iterator = t.client.serverStream(STREAMS.streams.count, { value: 40n })[Symbol.asyncIterator]();
    let consumed = 0;
    for (let round = 0; round < 10; round++) {
      await sleep(30);
      assert.ok(t.observed.produced - consumed <= 4 + 1, `produced ${t.observed.produced} with ${consumed} consumed`);
      const next = await iterator.next();
      assert.equal(next.value?.value, BigInt(++consumed));
    }
    assert.ok(t.observed.produced >= consumed, "credit was granted as messages were consumed");
    await iterator.return?.();
  } finally {
    await t.close();
  }
});

test("the caller's deadline fails the stream and cancels the handler", async () => {
  const t = await setup();
  try {
    const started = Date.now();
    const error = await rejection(collect(t.client.serverStream(STREAMS.streams.count, { value: 0n }, { timeout: 150 })));
    assert.equal(error.code, "DEADLINE_EXCEEDED");
    assert.ok(Date.now() - started < 1000);
    await within(1000, new Promise<void>((resolve) => (t.observed.signal?.aborted ? resolve() : t.observed.signal?.addEventListener("abort", () => resolve()))), "the handler's signal");
  } finally {
    await t.close();
  }
});

test("breaking out of for await and aborting the signal cancel the server's handler", async () => {
  const t = await setup();
  try {
    for await (const n of t.client.serverStream(STREAMS.streams.count, { value: 0n })) {
      if (n.value === 3n) {
        break;
      }
    }
    const aborted = (signal: AbortSignal | undefined) =>
      within(1000, new Promise<void>((resolve) => (signal?.aborted ? resolve() : signal?.addEventListener("abort", () => resolve()))), "the handler's signal");
    await aborted(t.observed.signal);
    await within(1000, (async () => { while (!t.observed.finished) await sleep(5); })(), "the handler's finally");
    assert.equal(t.service.stats().endpoints[0]?.last_error.startsWith("CANCELLED"), true);

    t.observed.finished = false;
    const controller = new AbortController();
    const stream = t.client.serverStream(STREAMS.streams.count, { value: 0n }, { signal: controller.signal });
    const iterator = stream[Symbol.asyncIterator]();
    await iterator.next();
    const firstSignal = t.observed.signal;
    controller.abort();
    assert.equal((await rejection(iterator.next())).code, "CANCELLED");
    await aborted(firstSignal);
  } finally {
    await t.close();
  }
});

/** Opens a stream by hand on `nc`: returns the caller's inbox and what arrives there. */
function rawOpen(nc: NatsConnection, subject: string, body: Uint8Array, init: { credit?: string; reply?: boolean; replyTo?: string } = {}) {
  const inbox = createInbox();
  const arrivals = new Inbox(nc, inbox);
  const headers = createHeaders();
  headers.set("Reply-To", init.replyTo ?? inbox);
  if (init.credit !== undefined) {
    headers.set(STREAM_CREDIT_HEADER, init.credit);
  }
  nc.publish(subject, body, { headers, ...(init.reply !== false && { reply: inbox }) });
  return { inbox, arrivals };
}

/** A server on `subject` that acks every open with `credit` and then says nothing. */
async function ackOnly(nc: NatsConnection, subject: string, credit: string): Promise<void> {
  nc.subscribe(subject, {
    callback: (_err, open: Msg) => {
      const ack = createHeaders();
      ack.set(STREAM_INBOX_HEADER, createInbox());
      ack.set(STREAM_CREDIT_HEADER, credit);
      open.respond(new Uint8Array(0), { headers: ack });
    },
  });
  await nc.flush();
}

const int64 = (value: bigint): Uint8Array => {
  return new Uint8Array([8, ...varint(value)]);
};
function varint(value: bigint): number[] {
  const out: number[] = [];
  let v = value;
  while (v > 0x7fn) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

test("keepalives flow and a silent caller is considered gone", async () => {
  const t = await setup({ streamTiming: { keepaliveInterval: 50, peerTimeout: 300 } });
  try {
    // The raw caller announces credit (so it is expected to keep alive) and then says nothing.
    const { arrivals } = rawOpen(t.caller, "api.streams.chat", new Uint8Array(0), { credit: "8" });
    const [ack] = await arrivals.wait(1, 1000);
    assert.ok(ack?.headers?.get(STREAM_INBOX_HEADER));
    assert.equal(ack?.headers?.get(STREAM_CREDIT_HEADER), "64");
    await arrivals.wait(3, 1000);
    assert.ok(arrivals.messages.slice(1).every((m) => m.headers?.get(STREAM_CREDIT_HEADER) === "0"), "keepalives are credit 0");
    await within(2000, (async () => { while (t.service.stats().endpoints[2]?.num_errors !== 1) await sleep(10); })(), "the gone caller's stream counted");
    assert.ok(t.sink.lines.some((l) => l.includes("gone")), t.sink.lines.join("\n"));
  } finally {
    await t.close();
  }
});

test("a Go-plugin-style open (no reply subject, no credit) streams without an ack", async () => {
  const t = await setup();
  try {
    const { arrivals } = rawOpen(t.caller, "api.streams.count", int64(6n), { reply: false });
    const messages = await arrivals.wait(7, 2000);
    assert.equal(messages[0]?.headers?.get(STREAM_INBOX_HEADER), "", "no ack");
    assert.deepEqual(messages.slice(0, 6).map((m) => m.headers?.get(STREAM_SEQ_HEADER)), ["1", "2", "3", "4", "5", "6"]);
    assert.equal(messages[6]?.headers?.get(STREAM_END_HEADER), "true");
  } finally {
    await t.close();
  }
});

test("the client takes a Go-plugin-style server: data first, a result without an end", async () => {
  const server = await NatsServer.start();
  const nc = await server.connect();
  try {
    // Go-plugin server: server-streaming answers with data at once; client-streaming acks and answers without End.
    nc.subscribe("api.streams.count", {
      callback: (_err, open: Msg) => {
        const to = open.headers?.get("Reply-To") ?? "";
        for (let i = 1; i <= 3; i++) {
          const h = createHeaders();
          h.set(STREAM_SEQ_HEADER, String(i));
          nc.publish(to, int64(BigInt(i)), { headers: h });
        }
        const end = createHeaders();
        end.set(STREAM_END_HEADER, "true");
        nc.publish(to, new Uint8Array(0), { headers: end });
      },
    });
    nc.subscribe("api.streams.sum", {
      callback: (_err, open: Msg) => {
        const inbox = createInbox();
        let total = 0n;
        nc.subscribe(inbox, {
          callback: (_e, m: Msg) => {
            if (m.headers?.get(STREAM_END_HEADER) === "true") {
              nc.publish(open.reply ?? "", int64(total));
            } else {
              total += create(Int64ValueSchema, { value: BigInt(m.data[1] ?? 0) }).value;
            }
          },
        });
        const ack = createHeaders();
        ack.set(STREAM_INBOX_HEADER, inbox);
        open.respond(new Uint8Array(0), { headers: ack });
      },
    });
    const client = new Client(nc, STREAMS, StreamTestError);
    const numbers = await within(2000, collect(client.serverStream(STREAMS.streams.count, { value: 3n })), "the stream");
    assert.deepEqual(numbers.map((n) => n.value), [1n, 2n, 3n]);
    const sum = client.clientStream(STREAMS.streams.sum);
    for (const v of [1n, 2n, 3n]) {
      await sum.send({ value: v });
    }
    assert.equal((await within(2000, sum.closeAndReceive(), "the result")).value, 6n);
  } finally {
    await nc.close();
    await server.stop();
  }
});

test("malformed sequence and credit headers fail the stream with INVALID_ARGUMENT", async () => {
  const t = await setup();
  try {
    const badCredit = rawOpen(t.caller, "api.streams.count", int64(3n), { credit: "-1" });
    const [end] = await badCredit.arrivals.wait(1, 1000);
    assert.equal(end?.headers?.get(STREAM_END_HEADER), "true");
    assert.equal(end?.headers?.get("Nats-Service-Error-Code"), "400");

    const chat = rawOpen(t.caller, "api.streams.chat", new Uint8Array(0), { credit: "8" });
    const [ack] = await chat.arrivals.wait(1, 1000);
    const serverInbox = ack?.headers?.get(STREAM_INBOX_HEADER) ?? "";
    const h = createHeaders();
    h.set(STREAM_SEQ_HEADER, "1x");
    t.caller.publish(serverInbox, new Uint8Array(0), { headers: h });
    const messages = await chat.arrivals.wait(2, 1000);
    assert.equal(messages[1]?.headers?.get("Nats-Service-Error-Code"), "400");

    // A gap in the caller's sequence is DATA_LOSS.
    const gap = rawOpen(t.caller, "api.streams.chat", new Uint8Array(0), { credit: "8" });
    const [gapAck] = await gap.arrivals.wait(1, 1000);
    const g = createHeaders();
    g.set(STREAM_SEQ_HEADER, "2");
    t.caller.publish(gapAck?.headers?.get(STREAM_INBOX_HEADER) ?? "", new Uint8Array(0), { headers: g });
    const gapMessages = await gap.arrivals.wait(2, 1000);
    assert.equal(gapMessages[1]?.headers?.get("Nats-Service-Error-Code"), "DATA_LOSS");

    // The client fails on a malformed credit in an ack.
    await ackOnly(t.nc, "api.streams.bad", "lots");
    const badMethod = { ...STREAMS.streams.count, endpoint: "bad" };
    const error = await rejection(collect(t.client.serverStream(badMethod, { value: 1n })));
    assert.equal(error.code, "INVALID_ARGUMENT");
  } finally {
    await t.close();
  }
});

test("the reply policy refuses a bad Reply-To, and one differing from the reply subject", async () => {
  const t = await setup();
  try {
    const ran = t.observed.produced;
    const onEndpoint = rawOpen(t.caller, "api.streams.count", int64(2n), { replyTo: "api.streams.sum", credit: "8" });
    const toJs = rawOpen(t.caller, "api.streams.count", int64(2n), { replyTo: "$JS.API.STREAM.DELETE.x", reply: false });
    const watcher = new Inbox(t.caller, "$JS.API.>");
    await sleep(200);
    assert.equal(onEndpoint.arrivals.messages.length, 0);
    assert.equal(toJs.arrivals.messages.length, 0);
    assert.equal(watcher.messages.length, 0);
    assert.equal(t.observed.produced, ran, "no handler ran");
    assert.equal(t.service.stats().endpoints[0]?.num_errors, 2);
    assert.equal(t.sink.lines.filter((l) => l.includes("refused")).length, 2);
  } finally {
    await t.close();
  }
});

test("a caller cancel message stops the handler and nothing more is sent", async () => {
  const t = await setup();
  try {
    const { arrivals } = rawOpen(t.caller, "api.streams.count", int64(0n), { credit: "1000" });
    const [ack] = await arrivals.wait(3, 1000);
    const cancel = createHeaders();
    cancel.set(STREAM_CANCEL_HEADER, "true");
    t.caller.publish(ack?.headers?.get(STREAM_INBOX_HEADER) ?? "", new Uint8Array(0), { headers: cancel });
    await within(1000, (async () => { while (!t.observed.finished) await sleep(5); })(), "the handler's finally");
    const count = arrivals.messages.length;
    await sleep(100);
    assert.equal(arrivals.messages.length, count);
    assert.ok(arrivals.messages.every((m) => m.headers?.get(STREAM_END_HEADER) !== "true"));
  } finally {
    await t.close();
  }
});

// Keeps `MessageInitShape` used for the typed handler shapes above.
export type Int64Init = MessageInitShape<typeof Int64ValueSchema>;

test("a silent server is gone for the caller, and a stopping service ends its streams UNAVAILABLE", async () => {
  const t = await setup();
  try {
    // Acks with credit (so it is expected to keep alive), then says nothing.
    await ackOnly(t.nc, "api.streams.silent", "8");
    const silent = { ...STREAMS.streams.count, endpoint: "silent" };
    const started = Date.now();
    const gone = await rejection(collect(t.client.serverStream(silent, { value: 1n }, { timing: { keepaliveInterval: 50, peerTimeout: 300 } })));
    assert.equal(gone.code, "UNAVAILABLE");
    assert.ok(Date.now() - started < 2000);

    const iterator = t.client.serverStream(STREAMS.streams.count, { value: 0n })[Symbol.asyncIterator]();
    await iterator.next();
    const stopping = t.service.stop({ drainTimeout: 100 });
    const error = await rejection(
      (async () => {
        for (;;) {
          await iterator.next();
        }
      })(),
    );
    assert.equal(error.code, "UNAVAILABLE");
    await within(2000, stopping, "the stop");
  } finally {
    await t.close();
  }
});

test("a message over max_payload fails its send with RESOURCE_EXHAUSTED and the stream goes on", async () => {
  const t = await setup();
  try {
    const chat = t.client.bidiStream(STREAMS.streams.chat);
    const maxPayload = t.caller.info?.max_payload ?? 1024 * 1024;
    const tooLarge = await rejection(chat.send({ value: "x".repeat(maxPayload + 1) }));
    assert.equal(tooLarge.code, "RESOURCE_EXHAUSTED");
    await chat.send({ value: "small" });
    await chat.closeSend();
    assert.deepEqual((await collect(chat)).map((m) => m.value), ["echo: small", "bye"]);
  } finally {
    await t.close();
  }
});

test("a stream open still queued when the service stops gets a CANCELLED end", async () => {
  const t = await setup({ maxConcurrency: 1 });
  try {
    const running = t.client.serverStream(STREAMS.streams.count, { value: 0n })[Symbol.asyncIterator]();
    await running.next();
    const queued = collect(t.client.serverStream(STREAMS.streams.count, { value: 1n }));
    await sleep(100);
    const stopping = t.service.stop({ drainTimeout: 100 });
    assert.equal((await rejection(queued)).code, "CANCELLED");
    await within(2000, stopping, "the stop");
  } finally {
    await t.close();
  }
});

/** How an interceptor saw a stream end: `ok`, or the error's code. */
function outcomeOf(thrown: unknown): string {
  return thrown instanceof NatsMicroError ? thrown.code : `not a NatsMicroError: ${String(thrown)}`;
}

/** A server interceptor that logs `<name> open <kind>` and `<name> <outcome>` to `events`. */
function serverLogger(name: string, events: string[]): ServerInterceptor {
  return async (ctx, payload, next) => {
    events.push(`${name} open ${ctx.stream ?? "unary"}`);
    try {
      const body = await next(ctx, payload);
      events.push(`${name} ok`);
      return body;
    } catch (err) {
      events.push(`${name} ${outcomeOf(err)}`);
      throw err;
    }
  };
}

/** A client interceptor that logs like {@link serverLogger} (with the end's body size) and then runs `before`. */
function clientLogger(name: string, events: string[], before: (headers: ReturnType<typeof createHeaders>) => void = () => undefined): ClientInterceptor {
  return async (call, next) => {
    events.push(`${name} open ${call.stream ?? "unary"}`);
    before(call.headers);
    try {
      const reply = await next(call);
      events.push(`${name} ok ${reply.payload.length}`);
      return reply;
    } catch (err) {
      events.push(`${name} ${outcomeOf(err)}`);
      throw err;
    }
  };
}

/** Waits until `events` has `count` entries. */
function eventsReach(events: string[], count: number): Promise<void> {
  return within(2000, (async () => { while (events.length < count) await sleep(5); })(), `${count} interceptor events (${events.join(", ")})`);
}

test("interceptors wrap streams in order on both sides: a client header reaches the handler, both see the outcome", async () => {
  const events: string[] = [];
  const addTenant = (headers: ReturnType<typeof createHeaders>) => headers.set("X-Tenant", "acme");
  const t = await setup(
    { interceptors: [serverLogger("server-1", events), serverLogger("server-2", events)] },
    { interceptors: [clientLogger("client-1", events), clientLogger("client-2", events, addTenant)] },
  );
  try {
    // A server stream that ends well: opens outermost first, outcomes innermost first, the server's before the caller's.
    let trailer: string | undefined;
    const numbers = await collect(t.client.serverStream(STREAMS.streams.count, { value: 3n }, { onHeaders: (h) => (trailer = h.get("Trailer")) }));
    assert.deepEqual(numbers.map((n) => n.value), [1n, 2n, 3n]);
    assert.equal(trailer, "done", "the trailing headers pass the interceptors");
    assert.deepEqual(events.splice(0), [
      "client-1 open server",
      "client-2 open server",
      "server-1 open server",
      "server-2 open server",
      "server-2 ok",
      "server-1 ok",
      "client-2 ok 0",
      "client-1 ok 0",
    ]);
    assert.deepEqual(t.observed.handled.splice(0), ["Count tenant=acme"]);

    // A client stream: its result is the end's body.
    const sum = t.client.clientStream(STREAMS.streams.sum);
    await sum.send({ value: 2n });
    await sum.send({ value: 3n });
    assert.equal((await sum.closeAndReceive()).value, 5n);
    assert.deepEqual(events.splice(0), [
      "client-1 open client",
      "client-2 open client",
      "server-1 open client",
      "server-2 open client",
      "server-2 ok",
      "server-1 ok",
      "client-2 ok 2",
      "client-1 ok 2",
    ]);
    assert.deepEqual(t.observed.handled.splice(0), ["Sum tenant=acme"]);

    // A stream that fails mid-way: both sides see its typed error, the caller after the messages sent before it.
    const received: bigint[] = [];
    const failed = await rejection(
      (async () => {
        for await (const n of t.client.serverStream(STREAMS.streams.count, { value: -5n })) {
          received.push(n.value);
        }
      })(),
    );
    assert.ok(failed instanceof StreamTestError);
    assert.equal(failed.code, "FAILED_PRECONDITION");
    assert.deepEqual(received, [1n, 2n]);
    assert.deepEqual(events.splice(0), [
      "client-1 open server",
      "client-2 open server",
      "server-1 open server",
      "server-2 open server",
      "server-2 FAILED_PRECONDITION",
      "server-1 FAILED_PRECONDITION",
      "client-2 FAILED_PRECONDITION",
      "client-1 FAILED_PRECONDITION",
    ]);

    // A caller that breaks out: CANCELLED on both sides (the server's once the cancel arrives).
    for await (const n of t.client.serverStream(STREAMS.streams.count, { value: 0n })) {
      if (n.value === 2n) {
        break;
      }
    }
    await eventsReach(events, 8);
    assert.deepEqual(events.slice(0, 4), ["client-1 open server", "client-2 open server", "server-1 open server", "server-2 open server"]);
    assert.deepEqual(events.slice(4).sort(), ["client-1 CANCELLED", "client-2 CANCELLED", "server-1 CANCELLED", "server-2 CANCELLED"]);
  } finally {
    await t.close();
  }
});

test("a server interceptor refuses a stream open with a typed error: no ack, no handler, the stream ends", async () => {
  const events: string[] = [];
  const requireTenant: ServerInterceptor = async (ctx, payload, next) => {
    if (ctx.header("X-Tenant") === undefined) {
      throw new NatsMicroError("UNAUTHENTICATED", ctx.method, "no tenant", new TextEncoder().encode("who?"));
    }
    return next(ctx, payload);
  };
  const t = await setup({ interceptors: [serverLogger("outer", events), requireTenant, serverLogger("inner", events)] }, { interceptors: [clientLogger("client", events)] });
  try {
    const refused = await rejection(collect(t.client.serverStream(STREAMS.streams.count, { value: 3n })));
    assert.ok(refused instanceof StreamTestError);
    assert.equal(refused.code, "UNAUTHENTICATED");
    assert.equal(refused.message, "no tenant");
    assert.equal(new TextDecoder().decode(refused.data), "who?");

    const sum = t.client.clientStream(STREAMS.streams.sum);
    await sum.send({ value: 1n });
    assert.equal((await rejection(sum.closeAndReceive())).code, "UNAUTHENTICATED");

    const chat = t.client.bidiStream(STREAMS.streams.chat);
    assert.equal((await rejection(collect(chat))).code, "UNAUTHENTICATED");

    assert.deepEqual(events, [
      "client open server",
      "outer open server",
      "outer UNAUTHENTICATED",
      "client UNAUTHENTICATED",
      "client open client",
      "outer open client",
      "outer UNAUTHENTICATED",
      "client UNAUTHENTICATED",
      "client open bidi",
      "outer open bidi",
      "outer UNAUTHENTICATED",
      "client UNAUTHENTICATED",
    ]);
    assert.deepEqual(t.observed.handled, [], "no handler ran");
    assert.deepEqual(t.service.stats().endpoints.map((e) => [e.num_requests, e.num_errors]), [[1, 1], [1, 1], [1, 1]]);

    // On the wire: the one answer to the open is an end with the error, and no ack.
    const { arrivals } = rawOpen(t.caller, "api.streams.count", int64(3n), { credit: "8" });
    const [end] = await arrivals.wait(1, 1000);
    await sleep(100);
    assert.equal(arrivals.messages.length, 1);
    assert.equal(end?.headers?.get(STREAM_END_HEADER), "true");
    assert.equal(end?.headers?.get(ERROR_CODE_HEADER), "401");
    assert.equal(end?.headers?.has(STREAM_INBOX_HEADER), false);
  } finally {
    await t.close();
  }
});

test("a client interceptor can refuse a stream before it opens, or change its outcome", async () => {
  const refuse: ClientInterceptor = async (call) => {
    throw new NatsMicroError("PERMISSION_DENIED", call.method, "not from here");
  };
  const t = await setup({}, { interceptors: [refuse] });
  try {
    const refused = await rejection(collect(t.client.serverStream(STREAMS.streams.count, { value: 3n })));
    assert.ok(refused instanceof StreamTestError);
    assert.equal(refused.code, "PERMISSION_DENIED");
    const chat = t.client.bidiStream(STREAMS.streams.chat);
    assert.equal((await rejection(chat.send({ value: "a" }))).code, "PERMISSION_DENIED");
    assert.deepEqual(t.observed.handled, [], "nothing was opened");
    assert.equal(t.service.stats().endpoints[0]?.num_requests, 0);

    // An interceptor's verdict on the outcome is what the caller sees at the end.
    const relabel: ClientInterceptor = async (call, next) => {
      try {
        return await next(call);
      } catch (err) {
        throw hasCode(err, "FAILED_PRECONDITION") ? new NatsMicroError("ABORTED", call.method, `retry later: ${err.message}`) : err;
      }
    };
    const relabelling = new Client(t.caller, STREAMS, StreamTestError, { interceptors: [relabel] });
    const received: bigint[] = [];
    const relabelled = await rejection(
      (async () => {
        for await (const n of relabelling.serverStream(STREAMS.streams.count, { value: -5n })) {
          received.push(n.value);
        }
      })(),
    );
    assert.deepEqual(received, [1n, 2n]);
    assert.ok(relabelled instanceof StreamTestError);
    assert.equal(relabelled.code, "ABORTED");
    assert.equal(relabelled.message, "retry later: failed after 2");

    // An interceptor that answers without calling next cannot fake a stream.
    const fake: ClientInterceptor = async () => ({ payload: new Uint8Array(0), headers: createHeaders() });
    const faking = new Client(t.caller, STREAMS, StreamTestError, { interceptors: [fake] });
    assert.equal((await rejection(collect(faking.serverStream(STREAMS.streams.count, { value: 1n })))).code, "INTERNAL");
  } finally {
    await t.close();
  }
});

test("interceptors set a stream's deadline and its trailing headers, and see its deadline pass on both sides", async () => {
  const events: string[] = [];
  const stamp: ServerInterceptor = async (ctx, payload, next) => {
    ctx.setResponseHeader("X-Served-By", "stamp");
    return next(ctx, payload);
  };
  const timeouts: number[] = [];
  const deadline: ClientInterceptor = async (call, next) => {
    timeouts.push(call.timeout);
    // A stream without a deadline has an infinite timeout; this interceptor bounds the endless ones.
    return next({ ...call, timeout: Math.min(call.timeout, 200) });
  };
  const t = await setup({ interceptors: [serverLogger("server", events), stamp] }, { interceptors: [clientLogger("client", events), deadline] });
  try {
    let trailer: string | undefined;
    let seenByInterceptor: string | undefined;
    const reading = new Client(t.caller, STREAMS, StreamTestError, {
      interceptors: [
        async (call, next) => {
          const reply = await next(call);
          seenByInterceptor = reply.headers.get("X-Served-By");
          return reply;
        },
      ],
    });
    await collect(reading.serverStream(STREAMS.streams.count, { value: 2n }, { onHeaders: (h) => (trailer = h.get("X-Served-By")) }));
    assert.equal(seenByInterceptor, "stamp", "the client interceptor sees the server interceptor's trailing header");
    assert.equal(trailer, "stamp");
    events.splice(0);

    const started = Date.now();
    const expired = await rejection(collect(t.client.serverStream(STREAMS.streams.count, { value: 0n })));
    assert.equal(expired.code, "DEADLINE_EXCEEDED");
    assert.ok(Date.now() - started < 1500, `took ${Date.now() - started} ms`);
    assert.deepEqual(timeouts, [Infinity]);
    await eventsReach(events, 4);
    assert.deepEqual(events.slice(0, 2), ["client open server", "server open server"]);
    assert.deepEqual(events.slice(2).sort(), ["client DEADLINE_EXCEEDED", "server DEADLINE_EXCEEDED"]);
  } finally {
    await t.close();
  }
});

test("a server interceptor cannot run a stream twice", async () => {
  const twice: ServerInterceptor = async (ctx, payload, next) => {
    const first = next(ctx, payload);
    // The stream ends with the second call's failure; the first call sees that end.
    first.catch(() => undefined);
    await next(ctx, payload);
    return first;
  };
  const t = await setup({ interceptors: [twice] });
  try {
    const error = await rejection(collect(t.client.serverStream(STREAMS.streams.count, { value: 3n })));
    assert.equal(error.code, "INTERNAL");
    assert.deepEqual(t.observed.handled, ["Count tenant=undefined"], "the handler ran once");
  } finally {
    await t.close();
  }
});
