/**
 * A service driven past its capacity on a real nats-server (PROTOCOL.md
 * sections 3.2 and 5): deadlines count from arrival, nothing starts after
 * its deadline (answered DEADLINE_EXCEEDED and counted), the pending queue
 * is bounded (RESOURCE_EXHAUSTED beyond it, 4096 by default), and `stop()`
 * returns within its drain timeout while handlers hang, aborting their
 * signals.
 */

import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";

import type { Msg, NatsConnection } from "@nats-io/nats-core";
import { headers as natsHeaders } from "@nats-io/nats-core";

import {
  Client,
  DEFAULT_PENDING_MSG_LIMIT,
  ERROR_CODE_HEADER,
  hasCode,
  NatsMicroError,
  type RequestContext,
  Service,
  type ServiceOptions,
  TIMEOUT_HEADER,
} from "../src/index.js";
import { HANG_SUBJECT, Inbox, logSink, NatsServer, SPEC, sleep, stringValue, within } from "./harness.js";

let server: NatsServer;
let nc: NatsConnection;

beforeEach(async () => {
  server = await NatsServer.start();
  nc = await server.connect();
});

afterEach(async () => {
  await nc?.close();
  server?.stop();
});

/** `Hang` handlers that wait for {@link Gate.open} (or their signal), recording when each started and whether it was aborted. */
class Gate {
  readonly starts: number[] = [];
  readonly stale: string[] = [];
  aborted = 0;
  #open: () => void = () => undefined;
  readonly #opened = new Promise<void>((resolve) => {
    this.#open = resolve;
  });

  open(): void {
    this.#open();
  }

  readonly hang = async (request: { value: string }, ctx: RequestContext): Promise<{ value: string }> => {
    this.starts.push(performance.now());
    if (ctx.deadline !== undefined && Date.now() >= ctx.deadline) {
      this.stale.push(request.value);
    }
    const aborted = new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
    await Promise.race([this.#opened, aborted]);
    if (ctx.signal.aborted) {
      this.aborted += 1;
    }
    return { value: request.value };
  };
}

/** What the services of the current test logged. */
let logged: string[] = [];

async function start(gate: Gate, options: ServiceOptions): Promise<Service> {
  const sink = logSink();
  logged = sink.lines;
  return Service.start(nc, SPEC, { echo: (request) => ({ value: request.value }), hang: gate.hang }, { logger: sink.logger, ...options });
}

/** Publishes a `Hang` request with a reply subject and a budget (milliseconds), as a client would. */
function publish(reply: string, budgetMs: number, value = "x"): void {
  const headers = natsHeaders();
  headers.set(TIMEOUT_HEADER, String(budgetMs * 1000));
  nc.publish(HANG_SUBJECT, stringValue(value), { reply, headers });
}

function codes(messages: Msg[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const message of messages) {
    const code = message.headers?.get(ERROR_CODE_HEADER) || "OK";
    counts.set(code, (counts.get(code) ?? 0) + 1);
  }
  return counts;
}

async function waitFor(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    assert.ok(performance.now() < deadline, `${what} within ${ms} ms`);
    await sleep(5);
  }
}

test("five times capacity with a pending limit: bounded queue, and nothing starts after its deadline", async () => {
  const gate = new Gate();
  const service = await start(gate, { maxConcurrency: 2, pendingMsgLimit: 4, timeout: 30_000 });
  // One attempt per call: this counts what the service does with each request (retries of shed calls are resilience.test.ts's).
  const client = new Client(nc, SPEC, NatsMicroError, { retryPolicy: { maxAttempts: 1 } });
  const holders = [0, 1].map(() => client.unary(SPEC.methods.hang, { value: "holder" }, { timeout: 5_000 }));
  await waitFor(() => gate.starts.length === 2, 2_000, "both slots taken");
  // 8 more calls (5 x capacity in all) with a 300 ms budget: 4 wait, 4 are refused at once.
  const results = await Promise.allSettled(
    Array.from({ length: 8 }, () => client.unary(SPEC.methods.hang, { value: "short" }, { timeout: 300 })),
  );
  const reasons = results.map((r) => (r.status === "rejected" ? r.reason : r.value));
  assert.equal(reasons.filter((r) => hasCode(r, "RESOURCE_EXHAUSTED")).length, 4, String(reasons));
  assert.equal(reasons.filter((r) => hasCode(r, "DEADLINE_EXCEEDED") && (r as NatsMicroError).isTimeout()).length, 4, String(reasons));
  // The server counts from arrival, a little after the client's clock started: wait that out, then free the slots.
  await sleep(100);
  gate.open();
  await Promise.all(holders);
  await sleep(100);
  assert.equal(gate.starts.length, 2, "queued requests whose deadline passed must not start");
  assert.deepEqual(gate.stale, []);
  const hang = service.stats().endpoints.find((e) => e.name === "hang");
  assert.deepEqual([hang?.num_requests, hang?.num_errors], [10, 8]);
  assert.match(hang?.last_error ?? "", /^DEADLINE_EXCEEDED:the deadline passed while the request was queued/);
  await within(2_000, service.stop(), "stop()");
});

test("five times capacity without a pending limit: every request that expires while queued is answered DEADLINE_EXCEEDED, never run", async () => {
  const gate = new Gate();
  const service = await start(gate, { maxConcurrency: 4, timeout: 30_000 });
  const replies = new Inbox(nc, "_INBOX.overload.>");
  await nc.flush();
  for (let i = 0; i < 4; i += 1) {
    publish(`_INBOX.overload.holder.${i}`, 10_000, "holder");
  }
  await waitFor(() => gate.starts.length === 4, 2_000, "every slot taken");
  // 16 more requests with a 200 ms budget queue behind them (the default bound is far away).
  for (let i = 0; i < 16; i += 1) {
    publish(`_INBOX.overload.short.${i}`, 200, "short");
  }
  await nc.flush();
  await sleep(400);
  gate.open();
  const all = await replies.wait(20, 3_000);
  const byCode = codes(all);
  assert.equal(byCode.get("DEADLINE_EXCEEDED"), 16, JSON.stringify([...byCode]));
  assert.equal(byCode.get("OK"), 4);
  assert.equal(gate.starts.length, 4, "no queued request started after its deadline");
  assert.deepEqual(gate.stale, []);
  const hang = service.stats().endpoints.find((e) => e.name === "hang");
  assert.deepEqual([hang?.num_requests, hang?.num_errors], [20, 16]);
  await within(2_000, service.stop(), "stop()");
});

test("a spent budget (0) never starts the handler", async () => {
  const gate = new Gate();
  const service = await start(gate, {});
  const replies = new Inbox(nc, "_INBOX.spent");
  await nc.flush();
  publish("_INBOX.spent", 0);
  const [reply] = await replies.wait(1, 1_000);
  assert.equal(reply?.headers?.get(ERROR_CODE_HEADER), "DEADLINE_EXCEEDED");
  assert.equal(gate.starts.length, 0);
  await within(2_000, service.stop(), "stop()");
});

test(`the default pending bound is ${DEFAULT_PENDING_MSG_LIMIT}: beyond it requests are refused RESOURCE_EXHAUSTED`, async () => {
  const gate = new Gate();
  const service = await start(gate, { maxConcurrency: 1, timeout: 30_000 });
  const replies = new Inbox(nc, "_INBOX.flood.>");
  await nc.flush();
  const extra = 103;
  const payload = stringValue("flood");
  for (let i = 0; i < 1 + DEFAULT_PENDING_MSG_LIMIT + extra; i += 1) {
    nc.publish(HANG_SUBJECT, payload, { reply: `_INBOX.flood.${i}` });
  }
  await replies.wait(extra, 10_000);
  await sleep(200);
  assert.equal(codes(replies.messages).get("RESOURCE_EXHAUSTED"), extra);
  assert.equal(replies.messages.length, extra, "nothing else was answered while the slot was held");
  gate.open();
  await replies.wait(1 + DEFAULT_PENDING_MSG_LIMIT + extra, 10_000);
  assert.equal(gate.starts.length, 1 + DEFAULT_PENDING_MSG_LIMIT);
  await within(5_000, service.stop({ drainTimeout: 2_000 }), "stop()");
  // Each refusal is a request_shed event; nothing else is logged.
  assert.ok(logged.some((line) => line.startsWith("request_shed ") && line.includes('"queued":4096')), "shed requests are logged");
  assert.deepEqual(
    logged.filter((line) => !line.startsWith("request_shed ")),
    [],
    "a busy connection is not mistaken for a deaf one",
  );
});

test("stop() returns within its drain timeout while handlers hang, cancelling them (signals aborted) and the queued requests", async () => {
  const gate = new Gate();
  // Handlers ignore nothing: they wait for the gate or their signal; the service timeout is an hour.
  const service = await start(gate, { maxConcurrency: 3, timeout: 3_600_000, drainTimeout: 60_000 });
  const replies = new Inbox(nc, "_INBOX.stop.>");
  await nc.flush();
  for (let i = 0; i < 5; i += 1) {
    publish(`_INBOX.stop.${i}`, 60_000);
  }
  await waitFor(() => gate.starts.length === 3, 2_000, "three handlers running");
  const started = performance.now();
  await within(2_000, service.stop({ drainTimeout: 300 }), "stop({ drainTimeout: 300 })");
  const took = performance.now() - started;
  assert.ok(took >= 290 && took < 1_500, `stop() took ${took} ms`);
  const all = await replies.wait(5, 1_000);
  assert.equal(codes(all).get("CANCELLED"), 5, JSON.stringify([...codes(all)]));
  await waitFor(() => gate.aborted === 3, 1_000, "every running handler saw its signal aborted");
  assert.equal(gate.starts.length, 3, "queued requests were not started by stop()");
  // Stopped for good: a later request finds nobody.
  const client = new Client(nc, SPEC, NatsMicroError);
  await assert.rejects(client.unary(SPEC.methods.hang, { value: "late" }, { timeout: 500 }), (err: unknown) => hasCode(err, "UNAVAILABLE"));
});

test("the service's drainTimeout option bounds stop() too", async () => {
  const gate = new Gate();
  const service = await start(gate, { drainTimeout: 200 });
  const replies = new Inbox(nc, "_INBOX.stop2");
  await nc.flush();
  publish("_INBOX.stop2", 60_000);
  await waitFor(() => gate.starts.length === 1, 2_000, "the handler running");
  const started = performance.now();
  await within(2_000, service.stop(), "stop()");
  assert.ok(performance.now() - started < 1_000);
  const [reply] = await replies.wait(1, 1_000);
  assert.equal(reply?.headers?.get(ERROR_CODE_HEADER), "CANCELLED");
  assert.equal(gate.aborted, 1);
});

test("stop() with nothing in flight returns at once", async () => {
  const service = await start(new Gate(), {});
  const started = performance.now();
  await within(2_000, service.stop(), "stop()");
  assert.ok(performance.now() - started < 500);
});
