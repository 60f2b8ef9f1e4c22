/**
 * Stream batches (PROTOCOL.md §9.9): several stream messages in one NATS
 * message between peers that announced them. On a real nats-server, with
 * hand-written peers to see the wire: a server and a caller pack what is
 * ready into batches only for a peer that announced them and credit, never
 * beyond the credit, 64 KiB or max_payload; both hand a batch's messages to
 * the application one by one and grant credit per message; every malformed
 * batch fails the stream with its code. The framing here is written and
 * read by the tests' own varint code, not the runtime's.
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { fromBinary } from "@bufbuild/protobuf";
import { BytesValueSchema, Int64ValueSchema, StringValueSchema } from "@bufbuild/protobuf/wkt";
import { createInbox, headers as createHeaders, type Msg, type MsgHdrs, type NatsConnection } from "@nats-io/nats-core";

import {
  Client,
  ERROR_CODE_HEADER,
  NatsMicroError,
  Service,
  type ServiceHandlers,
  type ServiceSpec,
  STREAM_BATCH_HEADER,
  STREAM_CANCEL_HEADER,
  STREAM_CREDIT_HEADER,
  STREAM_END_HEADER,
  STREAM_INBOX_HEADER,
  STREAM_SEQ_HEADER,
} from "../src/index.js";
import { decodedMessages, StreamLink } from "../src/stream-link.js";
import { batchedSize, decodeBatch, encodeBatch } from "../src/stream-wire.js";
import { Inbox, NatsServer, sleep, within } from "./harness.js";

const base = { metadata: {}, queueGroupDisabled: false } as const;
const BATCHES = {
  protoName: "test.v1.BatchTest",
  name: "BatchTest",
  version: "1.0.0",
  description: "batch tests",
  subjectPrefix: "api.batches",
  metadata: {},
  json: false,
  queueGroupDisabled: false,
  methods: {},
  streams: {
    count: { ...base, method: "Count", endpoint: "count", input: Int64ValueSchema, output: Int64ValueSchema, kind: "server", window: 4 },
    fill: { ...base, method: "Fill", endpoint: "fill", input: Int64ValueSchema, output: BytesValueSchema, kind: "server" },
    sum: { ...base, method: "Sum", endpoint: "sum", input: Int64ValueSchema, output: Int64ValueSchema, kind: "client" },
    chat: { ...base, method: "Chat", endpoint: "chat", input: StringValueSchema, output: StringValueSchema, kind: "bidi" },
  },
} as const satisfies ServiceSpec;

/** Bytes of each message `fill` yields. */
const FILL_BYTES = 1000;

/** count(n): 1..n. fill(n): n messages of FILL_BYTES, the first byte of message i being i % 256. sum: the total. chat: `echo: x` per message. */
const HANDLERS: ServiceHandlers<typeof BATCHES> = {
  async *count(request) {
    for (let i = 1n; i <= request.value; i++) {
      yield { value: i };
    }
  },
  async *fill(request) {
    for (let i = 1; i <= Number(request.value); i++) {
      const value = new Uint8Array(FILL_BYTES);
      value[0] = i % 256;
      yield { value };
    }
  },
  async sum(requests) {
    let total = 0n;
    for await (const number of requests) {
      total += number.value;
    }
    return { value: total };
  },
  async *chat(requests) {
    for await (const message of requests) {
      yield { value: `echo: ${message.value}` };
    }
  },
};

async function setup(config?: string) {
  const server = await NatsServer.start(config);
  const nc = await server.connect();
  const service = await Service.start(nc, BATCHES, HANDLERS);
  const caller = await server.connect();
  return {
    nc,
    caller,
    client: new Client(caller, BATCHES, NatsMicroError),
    async close() {
      await service.stop({ drainTimeout: 100 });
      await caller.close();
      await nc.close();
      server.stop();
    },
  };
}

/** An unsigned base-128 varint. */
function varint(value: number): number[] {
  const out: number[] = [];
  for (; value >= 0x80; value = Math.floor(value / 128)) {
    out.push((value % 128) | 0x80);
  }
  out.push(value);
  return out;
}

/** A batch's body: each message after its length. */
function frame(...messages: Uint8Array[]): Uint8Array {
  return Uint8Array.from(messages.flatMap((m) => [...varint(m.length), ...m]));
}

/** The messages a batch's body holds (the test's own reading of §9.9). */
function unframe(body: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < body.length; ) {
    let length = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = body[at++] as number;
      length += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) {
        break;
      }
    }
    out.push(body.subarray(at, at + length));
    at += length;
  }
  return out;
}

const int64 = (value: number): Uint8Array => (value === 0 ? new Uint8Array(0) : Uint8Array.from([8, ...varint(value)]));
function streamHeaders(entries: Record<string, string>): MsgHdrs {
  const headers = createHeaders();
  for (const [name, value] of Object.entries(entries)) {
    headers.set(name, value);
  }
  return headers;
}

/** What one NATS data message of a stream carries: its first sequence number, its batch count (absent for ordinary data), its messages. */
interface WireData {
  seq: number;
  batch: string | undefined;
  messages: Uint8Array[];
}

/** The data messages among `messages`, read as {@link WireData}; asserts their sequence numbers follow on from 1. */
function wireData(messages: Msg[]): WireData[] {
  const data = messages
    .filter((m) => m.headers?.get(STREAM_SEQ_HEADER) !== "" && m.headers?.get(STREAM_SEQ_HEADER) !== undefined)
    .map((m) => {
      const batch = m.headers?.has(STREAM_BATCH_HEADER) === true ? m.headers.get(STREAM_BATCH_HEADER) : undefined;
      return { seq: Number(m.headers?.get(STREAM_SEQ_HEADER)), batch, messages: batch === undefined ? [m.data] : unframe(m.data) };
    });
  let next = 1;
  for (const d of data) {
    assert.equal(d.seq, next, "sequence numbers follow on");
    if (d.batch !== undefined) {
      assert.equal(Number(d.batch), d.messages.length, "a batch holds its count");
    }
    next += d.messages.length;
  }
  return data;
}

/** Opens a stream by hand: the caller's inbox and what arrives there. */
function rawOpen(nc: NatsConnection, subject: string, body: Uint8Array, announce: Record<string, string>) {
  const inbox = createInbox();
  const arrivals = new Inbox(nc, inbox);
  nc.publish(subject, body, { headers: streamHeaders({ "Reply-To": inbox, ...announce }), reply: inbox });
  return arrivals;
}

/** Waits until `arrivals` holds an end. */
async function untilEnd(arrivals: Inbox): Promise<Msg[]> {
  await within(5000, (async () => { while (!arrivals.messages.some((m) => m.headers?.get(STREAM_END_HEADER) === "true")) await sleep(5); })(), "the stream's end");
  return arrivals.messages;
}

const int64Values = (data: WireData[]) => data.flatMap((d) => d.messages.map((m) => Number(fromBinary(Int64ValueSchema, m).value)));
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test("a server packs what is ready into batches for a caller that announced them, and not for one that did not", async () => {
  const t = await setup();
  try {
    const batched = await untilEnd(rawOpen(t.caller, "api.batches.count", int64(100), { [STREAM_CREDIT_HEADER]: "1000", [STREAM_BATCH_HEADER]: "true" }));
    assert.equal(batched[0]?.headers?.get(STREAM_BATCH_HEADER), "true", "the ack announces batches");
    const data = wireData(batched);
    assert.deepEqual(int64Values(data), range(1, 100));
    assert.ok(data.length < 100 && data.some((d) => d.batch !== undefined), `${data.length} NATS messages for 100`);
    assert.equal(batched.at(-1)?.headers?.get(STREAM_END_HEADER), "true", "the end follows the last batch");

    // No announcement (as a Go-plugin caller), or one that is not `true`, or batches without credit: one message per NATS message.
    for (const announce of [{ [STREAM_CREDIT_HEADER]: "1000" }, { [STREAM_CREDIT_HEADER]: "1000", [STREAM_BATCH_HEADER]: "yes" }, { [STREAM_BATCH_HEADER]: "true" }]) {
      const plain = wireData(await untilEnd(rawOpen(t.caller, "api.batches.count", int64(100), announce)));
      assert.equal(plain.length, 100, JSON.stringify(announce));
      assert.ok(plain.every((d) => d.batch === undefined));
      assert.deepEqual(int64Values(plain), range(1, 100));
    }
  } finally {
    await t.close();
  }
});

test("a server never batches beyond the credit, and sends a batch of one as ordinary data", async () => {
  const t = await setup();
  try {
    const arrivals = rawOpen(t.caller, "api.batches.count", int64(20), { [STREAM_CREDIT_HEADER]: "3", [STREAM_BATCH_HEADER]: "true" });
    const [ack] = await arrivals.wait(2, 2000);
    const serverInbox = ack?.headers?.get(STREAM_INBOX_HEADER) ?? "";
    const grant = (credit: number) => t.caller.publish(serverInbox, new Uint8Array(0), { headers: streamHeaders({ [STREAM_CREDIT_HEADER]: String(credit) }) });
    await sleep(100);
    assert.deepEqual(wireData(arrivals.messages).map((d) => [d.seq, d.batch]), [[1, "3"]], "the 3 messages of the credit, in one batch");
    grant(1);
    await arrivals.wait(3, 2000);
    await sleep(100);
    assert.deepEqual(wireData(arrivals.messages).map((d) => [d.seq, d.batch]), [[1, "3"], [4, undefined]], "one message of credit: ordinary data");
    grant(16);
    const data = wireData(await untilEnd(arrivals));
    assert.deepEqual(data.map((d) => [d.seq, d.batch]), [[1, "3"], [4, undefined], [5, "16"]]);
    assert.deepEqual(int64Values(data), range(1, 20));
  } finally {
    await t.close();
  }
});

test("batches stay within 64 KiB, and within max_payload with their header block", async () => {
  const t = await setup();
  try {
    const data = wireData(await untilEnd(rawOpen(t.caller, "api.batches.fill", int64(300), { [STREAM_CREDIT_HEADER]: "1000", [STREAM_BATCH_HEADER]: "true" })));
    const firsts = data.flatMap((d) => d.messages.map((m) => fromBinary(BytesValueSchema, m).value[0]));
    assert.deepEqual(firsts, range(1, 300).map((i) => i % 256));
    assert.ok(data.some((d) => d.messages.length > 60), `batches of ${data.map((d) => d.messages.length).join(", ")}`);
    for (const d of data) {
      assert.ok(frame(...d.messages).length <= 64 * 1024, `a batch of ${d.messages.length} messages`);
    }
  } finally {
    await t.close();
  }
  const small = await setup("max_payload: 8192\n");
  try {
    const arrivals = await untilEnd(rawOpen(small.caller, "api.batches.fill", int64(50), { [STREAM_CREDIT_HEADER]: "1000", [STREAM_BATCH_HEADER]: "true" }));
    const data = wireData(arrivals);
    assert.equal(data.flatMap((d) => d.messages).length, 50);
    assert.ok(data.every((d) => d.batch !== undefined && d.messages.length > 1), `batches of ${data.map((d) => d.messages.length).join(", ")}`);
    for (const m of arrivals) {
      const headerBlock = [...(m.headers ?? [])].reduce((size, [name, values]) => size + values.reduce((s, v) => s + `${name}: ${v}\r\n`.length, 0), "NATS/1.0\r\n\r\n".length);
      assert.ok(headerBlock + m.data.length <= 8192, `${headerBlock} + ${m.data.length} bytes`);
    }
  } finally {
    await small.close();
  }
});

/** A hand-written server on `subject`: acks every open (with `ack`'s headers) on an inbox whose arrivals it returns, and passes the open to `opened`. */
function rawServer(nc: NatsConnection, subject: string, ack: Record<string, string>, opened: (open: Msg, inbox: Inbox) => void = () => undefined) {
  const inboxes: Inbox[] = [];
  nc.subscribe(subject, {
    callback: (_err, open) => {
      const subjectOfInbox = createInbox();
      const inbox = new Inbox(nc, subjectOfInbox);
      inboxes.push(inbox);
      open.respond(new Uint8Array(0), { headers: streamHeaders({ [STREAM_INBOX_HEADER]: subjectOfInbox, ...ack }) });
      opened(open, inbox);
    },
  });
  return inboxes;
}

test("a caller hands a batch's messages over one by one, in order, and grants credit per message", async () => {
  const server = await NatsServer.start();
  const nc = await server.connect();
  const caller = await server.connect();
  try {
    let to = "";
    let open: Msg | undefined;
    const inboxes = rawServer(nc, "api.batches.count", { [STREAM_CREDIT_HEADER]: "8" }, (o) => {
      open = o;
      to = o.headers?.get("Reply-To") ?? "";
      // The whole window (4, from the spec) in one batch.
      nc.publish(to, frame(int64(1), int64(2), int64(3), int64(4)), { headers: streamHeaders({ [STREAM_SEQ_HEADER]: "1", [STREAM_BATCH_HEADER]: "4" }) });
    });
    await nc.flush();
    const client = new Client(caller, BATCHES, NatsMicroError);
    const iterator = client.serverStream(BATCHES.streams.count, { value: 4n })[Symbol.asyncIterator]();
    assert.equal((await iterator.next()).value?.value, 1n);
    assert.equal(open?.headers?.get(STREAM_BATCH_HEADER), "true", "the open announces batches");
    assert.equal(open?.headers?.get(STREAM_CREDIT_HEADER), "4");
    const serverInbox = inboxes[0] as Inbox;
    const credits = () => serverInbox.messages.map((m) => m.headers?.get(STREAM_CREDIT_HEADER));
    await sleep(50);
    assert.deepEqual(credits(), [], "one message of a window of 4 consumed: no grant yet");
    assert.equal((await iterator.next()).value?.value, 2n);
    await serverInbox.wait(1, 1000);
    assert.deepEqual(credits(), ["2"], "half the window consumed, two messages of the batch: 2 granted");
    // The two credits granted: an ordinary message and a batch of one (allowed, though runtimes send it as data), then the end.
    nc.publish(to, int64(5), { headers: streamHeaders({ [STREAM_SEQ_HEADER]: "5" }) });
    nc.publish(to, frame(int64(6)), { headers: streamHeaders({ [STREAM_SEQ_HEADER]: "6", [STREAM_BATCH_HEADER]: "1" }) });
    nc.publish(to, new Uint8Array(0), { headers: streamHeaders({ [STREAM_END_HEADER]: "true" }) });
    const rest: bigint[] = [];
    for (let r = await iterator.next(); r.done !== true; r = await iterator.next()) {
      rest.push(r.value.value);
    }
    assert.deepEqual(rest, [3n, 4n, 5n, 6n]);
    await serverInbox.wait(3, 1000);
    assert.deepEqual(credits(), ["2", "2", "2"], "credit per message consumed, not per batch");
  } finally {
    await caller.close();
    await nc.close();
    server.stop();
  }
});

test("a caller sends what is ready as batches to a server that announced them, within its credit", async () => {
  const server = await NatsServer.start();
  const nc = await server.connect();
  const caller = await server.connect();
  try {
    const client = new Client(caller, BATCHES, NatsMicroError);
    /** Sends `n` messages at once and ends, to a server that acked with `ack`; what the server received. */
    const sendTo = async (endpoint: string, ack: Record<string, string>, n: number): Promise<Msg[]> => {
      const inboxes = rawServer(nc, `api.batches.${endpoint}`, ack);
      await nc.flush();
      const chat = client.bidiStream({ ...BATCHES.streams.chat, endpoint });
      for (let i = 1; i <= n; i++) {
        await chat.send({ value: `m${i}` });
      }
      await chat.closeSend();
      await within(2000, (async () => { while (!inboxes[0]?.messages.some((m) => m.headers?.get(STREAM_END_HEADER) === "true")) await sleep(5); })(), "the caller's end");
      chat[Symbol.asyncIterator]().return?.();
      return (inboxes[0] as Inbox).messages;
    };
    const strings = (data: WireData[]) => data.flatMap((d) => d.messages.map((m) => fromBinary(StringValueSchema, m).value));
    const names = range(1, 10).map((i) => `m${i}`);

    const batched = wireData(await sendTo("batched", { [STREAM_CREDIT_HEADER]: "100", [STREAM_BATCH_HEADER]: "true" }, 10));
    assert.deepEqual(batched.map((d) => [d.seq, d.batch]), [[1, "10"]]);
    assert.deepEqual(strings(batched), names);

    // A server that announces no batches (the Go plugin's, an older runtime) gets one message per NATS message.
    const plain = wireData(await sendTo("plain", { [STREAM_CREDIT_HEADER]: "100" }, 10));
    assert.deepEqual(plain.map((d) => [d.seq, d.batch]), range(1, 10).map((i) => [i, undefined]));
    assert.deepEqual(strings(plain), names);

    // Credit 4: a batch of 4, then the caller waits; 6 more credits: the other 6.
    let to = "";
    const inboxes = rawServer(nc, "api.batches.credit", { [STREAM_CREDIT_HEADER]: "4", [STREAM_BATCH_HEADER]: "true" }, (open) => {
      to = open.headers?.get("Reply-To") ?? "";
    });
    await nc.flush();
    const chat = client.bidiStream({ ...BATCHES.streams.chat, endpoint: "credit" });
    let sent = 0;
    const sending = (async () => {
      for (const name of names) {
        await chat.send({ value: name });
        sent += 1;
      }
    })();
    await within(2000, (async () => { while (inboxes[0]?.messages.length !== 1) await sleep(5); })(), "the first batch");
    await sleep(100);
    const inbox = inboxes[0] as Inbox;
    assert.deepEqual(wireData(inbox.messages).map((d) => [d.seq, d.batch]), [[1, "4"]]);
    assert.equal(sent, 4, "the fifth send waits for credit");
    nc.publish(to, new Uint8Array(0), { headers: streamHeaders({ [STREAM_CREDIT_HEADER]: "6" }) });
    await within(2000, sending, "the other sends");
    await inbox.wait(2, 1000);
    await sleep(50);
    const data = wireData(inbox.messages);
    assert.deepEqual(data.map((d) => [d.seq, d.batch]), [[1, "4"], [5, "6"]]);
    assert.deepEqual(strings(data), names);
    chat[Symbol.asyncIterator]().return?.();
  } finally {
    await caller.close();
    await nc.close();
    server.stop();
  }
});

/** A link that has announced its window (`window`) and, unless told otherwise, batches; its failures, and a way to hand it a message. */
function link(init: { window?: number; batchesAnnounced?: boolean } = {}) {
  const failures: NatsMicroError[] = [];
  const stream = new StreamLink({
    // Not connected: it publishes nothing, so it needs no connection.
    nc: {} as NatsConnection,
    method: "Test",
    window: init.window ?? 8,
    windowAnnounced: true,
    batchesAnnounced: init.batchesAnnounced ?? true,
    keepaliveInterval: 60_000,
    peerTimeout: 60_000,
    onFailure: (error) => failures.push(error),
  });
  const receive = (headers: Record<string, string>, body: Uint8Array = new Uint8Array(0)) => {
    stream.receive({ subject: "inbox", data: body, headers: streamHeaders(headers) } as unknown as Msg);
  };
  return { stream, failures, receive };
}

const bytes = (...values: number[]) => Uint8Array.from(values);

test("a link takes batches and ordinary data in sequence, empty messages included", async () => {
  const { stream, failures, receive } = link();
  receive({ [STREAM_SEQ_HEADER]: "1", [STREAM_BATCH_HEADER]: "3" }, frame(bytes(1), new Uint8Array(0), bytes(3, 3)));
  receive({ [STREAM_SEQ_HEADER]: "4" }, bytes(4));
  receive({ [STREAM_SEQ_HEADER]: "5", [STREAM_BATCH_HEADER]: "2" }, frame(new Uint8Array(300).fill(5), bytes(6)));
  receive({ [STREAM_END_HEADER]: "true" });
  const received: number[][] = [];
  for (let next = await stream.next(); !next.end; next = await stream.next()) {
    received.push([...next.message.data.subarray(0, 2)]);
  }
  assert.deepEqual(received, [[1], [], [3, 3], [4], [5, 5], [6]]);
  assert.deepEqual(failures, []);
});

test("every malformed batch fails the stream with its code", () => {
  const two = frame(bytes(1), bytes(2));
  const cases: [string, { window?: number; batchesAnnounced?: boolean }, Record<string, string>, Uint8Array, string][] = [
    ["a count that does not parse", {}, { [STREAM_BATCH_HEADER]: "2x" }, two, "INVALID_ARGUMENT"],
    ["`true` as a count", {}, { [STREAM_BATCH_HEADER]: "true" }, two, "INVALID_ARGUMENT"],
    ["a count of 0", {}, { [STREAM_BATCH_HEADER]: "0" }, new Uint8Array(0), "INVALID_ARGUMENT"],
    ["a body ending inside a length", {}, { [STREAM_BATCH_HEADER]: "2" }, bytes(1, 7, 0x80), "INVALID_ARGUMENT"],
    ["a body ending inside a message", {}, { [STREAM_BATCH_HEADER]: "2" }, bytes(1, 7, 3, 1), "INVALID_ARGUMENT"],
    ["a length of more than 5 bytes", {}, { [STREAM_BATCH_HEADER]: "1" }, bytes(0x80, 0x80, 0x80, 0x80, 0x80, 0), "INVALID_ARGUMENT"],
    ["more messages than its count", {}, { [STREAM_BATCH_HEADER]: "1" }, two, "INVALID_ARGUMENT"],
    ["fewer messages than its count", {}, { [STREAM_BATCH_HEADER]: "3" }, two, "INVALID_ARGUMENT"],
    ["an empty body", {}, { [STREAM_BATCH_HEADER]: "1" }, new Uint8Array(0), "INVALID_ARGUMENT"],
    ["a batch to a side that did not announce batches", { batchesAnnounced: false }, { [STREAM_BATCH_HEADER]: "2" }, two, "INVALID_ARGUMENT"],
    ["a batch beyond the credit granted", { window: 2 }, { [STREAM_BATCH_HEADER]: "3" }, frame(bytes(1), bytes(2), bytes(3)), "RESOURCE_EXHAUSTED"],
    ["a first sequence number that is not the next", {}, { [STREAM_SEQ_HEADER]: "2", [STREAM_BATCH_HEADER]: "2" }, two, "DATA_LOSS"],
  ];
  for (const [what, init, headers, body, code] of cases) {
    const { stream, failures, receive } = link(init);
    receive({ [STREAM_SEQ_HEADER]: "1", ...headers }, body);
    assert.deepEqual(failures.map((f) => f.code), [code], what);
    assert.equal(stream.closed, true, what);
  }
  // After a batch of 2 from 1, the next message is 3.
  const { failures, receive } = link();
  receive({ [STREAM_SEQ_HEADER]: "1", [STREAM_BATCH_HEADER]: "2" }, two);
  receive({ [STREAM_SEQ_HEADER]: "2" }, bytes(2));
  assert.deepEqual(failures.map((f) => f.code), ["DATA_LOSS"]);
  // Credit is taken per message: a window of 3 takes a batch of 2 and one message, then nothing.
  const credit = link({ window: 3 });
  credit.receive({ [STREAM_SEQ_HEADER]: "1", [STREAM_BATCH_HEADER]: "2" }, two);
  credit.receive({ [STREAM_SEQ_HEADER]: "3" }, bytes(3));
  assert.equal(credit.failures.length, 0);
  credit.receive({ [STREAM_SEQ_HEADER]: "4" }, bytes(4));
  assert.deepEqual(credit.failures.map((f) => f.code), ["RESOURCE_EXHAUSTED"]);
});

test("a message of a batch that does not decode fails the stream as a lone one would", async () => {
  const { stream, receive } = link();
  receive({ [STREAM_SEQ_HEADER]: "1", [STREAM_BATCH_HEADER]: "2" }, frame(int64(7), bytes(0xff)));
  const seen: NatsMicroError[] = [];
  const values: bigint[] = [];
  const messages = decodedMessages(stream, (data) => fromBinary(Int64ValueSchema, data).value, (error) => {
    seen.push(error);
    throw error;
  });
  await assert.rejects(async () => {
    for await (const value of messages) {
      values.push(value);
    }
  });
  assert.deepEqual(values, [7n]);
  assert.deepEqual(seen.map((e) => e.code), ["INVALID_ARGUMENT"]);
});

test("the runtime's batch framing reads and writes the varint lengths of §9.9 at their boundaries", () => {
  const messages = [0, 1, 127, 128, 16_383, 16_384, 70_000].map((n) => new Uint8Array(n).fill(n % 251));
  const size = messages.reduce((total, m) => total + batchedSize(m), 0);
  const written = encodeBatch(messages, size);
  assert.deepEqual(written, frame(...messages), "the runtime writes what the test writes");
  const read = decodeBatch(frame(...messages), messages.length);
  assert.ok(Array.isArray(read));
  assert.deepEqual(read.map((m) => [m.length, m[0]]), messages.map((m) => [m.length, m[0]]));
});

test("malformed batches reach the peer: a server ends the stream with the code, a caller cancels", async () => {
  const t = await setup();
  try {
    const open = async (endpoint: string) => {
      const arrivals = rawOpen(t.caller, `api.batches.${endpoint}`, new Uint8Array(0), { [STREAM_CREDIT_HEADER]: "8", [STREAM_BATCH_HEADER]: "true" });
      const [ack] = await arrivals.wait(1, 1000);
      return { arrivals, inbox: ack?.headers?.get(STREAM_INBOX_HEADER) ?? "" };
    };
    const cases: [Record<string, string>, Uint8Array, string][] = [
      [{ [STREAM_SEQ_HEADER]: "1", [STREAM_BATCH_HEADER]: "3" }, frame(int64(1), int64(2)), "400"],
      [{ [STREAM_SEQ_HEADER]: "1", [STREAM_BATCH_HEADER]: "2" }, frame(int64(1), bytes(0xff)), "400"],
      [{ [STREAM_SEQ_HEADER]: "1", [STREAM_BATCH_HEADER]: "65" }, frame(...range(1, 65).map(int64)), "RESOURCE_EXHAUSTED"],
      [{ [STREAM_SEQ_HEADER]: "3", [STREAM_BATCH_HEADER]: "2" }, frame(int64(1), int64(2)), "DATA_LOSS"],
    ];
    for (const [headers, body, code] of cases) {
      const { arrivals, inbox } = await open("sum");
      t.caller.publish(inbox, body, { headers: streamHeaders(headers) });
      const [, end] = await arrivals.wait(2, 1000);
      assert.equal(end?.headers?.get(STREAM_END_HEADER), "true");
      assert.equal(end?.headers?.get(ERROR_CODE_HEADER), code, JSON.stringify(headers));
    }
    // The sum of a good batch, for contrast.
    const { arrivals, inbox } = await open("sum");
    t.caller.publish(inbox, frame(int64(1), int64(2), int64(0)), { headers: streamHeaders({ [STREAM_SEQ_HEADER]: "1", [STREAM_BATCH_HEADER]: "3" }) });
    t.caller.publish(inbox, new Uint8Array(0), { headers: streamHeaders({ [STREAM_END_HEADER]: "true" }) });
    const [, result] = await arrivals.wait(2, 1000);
    assert.equal(result?.headers?.has(ERROR_CODE_HEADER), false);
    assert.equal(fromBinary(Int64ValueSchema, result?.data ?? new Uint8Array(0)).value, 3n);
  } finally {
    await t.close();
  }

  const server = await NatsServer.start();
  const nc = await server.connect();
  const caller = await server.connect();
  try {
    const inboxes = rawServer(nc, "api.batches.count", { [STREAM_CREDIT_HEADER]: "8" }, (open) => {
      nc.publish(open.headers?.get("Reply-To") ?? "", bytes(2, 1, 2), { headers: streamHeaders({ [STREAM_SEQ_HEADER]: "1", [STREAM_BATCH_HEADER]: "2" }) });
    });
    await nc.flush();
    const client = new Client(caller, BATCHES, NatsMicroError);
    await assert.rejects(
      (async () => {
        for await (const _ of client.serverStream(BATCHES.streams.count, { value: 1n })) {
          // nothing arrives
        }
      })(),
      (err: unknown) => err instanceof NatsMicroError && err.code === "INVALID_ARGUMENT",
    );
    const serverInbox = inboxes[0] as Inbox;
    await serverInbox.wait(1, 1000);
    assert.equal(serverInbox.messages[0]?.headers?.get(STREAM_CANCEL_HEADER), "true");
  } finally {
    await caller.close();
    await nc.close();
    server.stop();
  }
});
