/**
 * The client's resilience on a real nats-server (PROTOCOL §10): attempts
 * carry `Nats-Micro-Attempt` and handlers see `ctx.attempt`; the final
 * error is the last attempt's with the number of attempts; a call that is
 * not safe to repeat is never sent twice after a timeout; attempts share
 * the call's deadline; RetryInfo paces retries; an open breaker keeps
 * calls off the network; a call out when the server dies fails at once
 * with "connection lost" and is retried after the reconnect when safe.
 */

import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import type { NatsConnection } from "@nats-io/nats-core";

import {
  ATTEMPT_HEADER,
  Client,
  type ClientOptions,
  decodeTimeout,
  ErrorKind,
  hasCode,
  NatsMicroError,
  type RequestContext,
  RetryBudget,
  Service,
  TIMEOUT_HEADER,
} from "../src/index.js";
import { NatsServer, SPEC, sleep, within } from "./harness.js";

let servers: NatsServer[] = [];
let connections: NatsConnection[] = [];

afterEach(async () => {
  for (const nc of connections) {
    await nc.close().catch(() => undefined);
  }
  for (const server of servers) {
    server.stop();
  }
  servers = [];
  connections = [];
});

async function serverAndConnection(port?: number): Promise<{ server: NatsServer; nc: NatsConnection }> {
  const server = await NatsServer.start(undefined, port);
  servers.push(server);
  const nc = await server.connect({ maxReconnectAttempts: -1, reconnectTimeWait: 50 });
  connections.push(nc);
  return { server, nc };
}

/** What the `Echo` handler of {@link serve} saw of each request. */
interface Seen {
  attempt: number;
  header: string | undefined;
  /** The caller's budget in milliseconds. */
  budget: number | undefined;
}

/** Serves SPEC: `echo` records each request and then runs `behave`; `hang` does not answer before its deadline (except retries of `answer retries`). */
async function serve(nc: NatsConnection, behave: (seen: Seen[], ctx: RequestContext) => void): Promise<{ seen: Seen[]; hung: Seen[]; service: Service }> {
  const seen: Seen[] = [];
  const hung: Seen[] = [];
  const record = (into: Seen[], ctx: RequestContext) => {
    const budget = ctx.header(TIMEOUT_HEADER);
    into.push({ attempt: ctx.attempt, header: ctx.header(ATTEMPT_HEADER), budget: budget === undefined ? undefined : decodeTimeout(budget) });
  };
  const service = await Service.start(
    nc,
    SPEC,
    {
      echo: (request, ctx) => {
        record(seen, ctx);
        behave(seen, ctx);
        return { value: request.value };
      },
      hang: async (request, ctx) => {
        record(hung, ctx);
        if (request.value === "answer retries" && ctx.attempt > 1) {
          return { value: request.value };
        }
        await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve, { once: true }));
        return { value: request.value };
      },
    },
    { logger: { event: () => undefined, warn: () => undefined }, timeout: 30_000 },
  );
  return { seen, hung, service };
}

const fast: ClientOptions = { retryPolicy: { initialDelay: 1, maxDelay: 5 } };

test("attempts after the first carry Nats-Micro-Attempt, handlers see ctx.attempt, and a retried call succeeds", async () => {
  const { nc } = await serverAndConnection();
  const { seen } = await serve(nc, (seen, ctx) => {
    if (seen.length < 3) {
      throw new NatsMicroError("UNAVAILABLE", ctx.method, "warming up");
    }
  });
  const client = new Client(nc, SPEC, NatsMicroError, fast);
  assert.deepEqual(await client.unary(SPEC.methods.echo, { value: "x" }), { $typeName: "google.protobuf.StringValue", value: "x" });
  assert.deepEqual(
    seen.map((s) => [s.attempt, s.header]),
    [
      [1, undefined],
      [2, "2"],
      [3, "3"],
    ],
  );
});

test("the final error is the last attempt's: code, message, data, details and headers, and how many attempts were made", async () => {
  const { nc } = await serverAndConnection();
  const { seen } = await serve(nc, (seen, ctx) => {
    throw new NatsMicroError("UNAVAILABLE", ctx.method, `down (attempt ${ctx.attempt})`, Uint8Array.of(seen.length))
      .withHeader("X-Attempt", String(ctx.attempt))
      .withErrorInfo("DOWN", "test", { attempt: String(ctx.attempt) });
  });
  const client = new Client(nc, SPEC, NatsMicroError, { retryPolicy: { maxAttempts: 4, initialDelay: 1 } });
  const err = await client.unary(SPEC.methods.echo, { value: "x" }).catch((e: unknown) => e);
  assert.ok(err instanceof NatsMicroError);
  assert.equal(err.code, "UNAVAILABLE");
  assert.equal(err.message, "down (attempt 4)");
  assert.deepEqual([...err.data], [4]);
  assert.equal(err.headers?.get("X-Attempt"), "4");
  assert.equal(err.errorInfo()?.metadata["attempt"], "4");
  assert.equal(err.attempts, 4);
  assert.equal(seen.length, 4);

  const once = new Client(nc, SPEC, NatsMicroError, { retryPolicy: { maxAttempts: 1 } });
  const single = await once.unary(SPEC.methods.echo, { value: "x" }).catch((e: unknown) => e);
  assert.ok(single instanceof NatsMicroError && single.attempts === 1);
  assert.equal(seen.length, 5);
});

test("errors that are the service's answer are not retried", async () => {
  const { nc } = await serverAndConnection();
  const { seen } = await serve(nc, (_seen, ctx) => {
    throw new NatsMicroError("NOT_FOUND", ctx.method, "no such thing");
  });
  const err = await new Client(nc, SPEC, NatsMicroError, fast).unary(SPEC.methods.echo, { value: "x" }).catch((e: unknown) => e);
  assert.ok(hasCode(err, "NOT_FOUND"));
  assert.equal((err as NatsMicroError).attempts, 1);
  assert.equal(seen.length, 1);
});

test("an answer of the service that is not retried refills the retry budget like a success", async () => {
  const { nc } = await serverAndConnection();
  await serve(nc, (seen, ctx) => {
    throw new NatsMicroError(seen.length <= 2 ? "UNAVAILABLE" : "NOT_FOUND", ctx.method, "no");
  });
  const budget = new RetryBudget({ maxTokens: 10, tokenRatio: 0.5 });
  const client = new Client(nc, SPEC, NatsMicroError, { ...fast, retryBudget: budget });
  const err = await client.unary(SPEC.methods.echo, { value: "x" }).catch((e: unknown) => e);
  assert.ok(hasCode(err, "NOT_FOUND"));
  assert.equal((err as NatsMicroError).attempts, 3);
  assert.equal(budget.tokens, 10 - 2 + 0.5, "two retried failures took 1 each, the NOT_FOUND gave 0.5 back");
});

test("a timed-out attempt is sent again only when the call is safe to repeat, and attempts share the call's deadline", async () => {
  const { nc } = await serverAndConnection();
  const { hung } = await serve(nc, () => undefined);
  const client = new Client(nc, SPEC, NatsMicroError, { retryPolicy: { maxAttempts: 10, initialDelay: 1, maxDelay: 1, attemptTimeout: 100 } });

  // Hang is not idempotent in SPEC: one attempt, even with time left.
  const once = await client.unary(SPEC.methods.hang, { value: "x" }, { timeout: 1_000 }).catch((e: unknown) => e);
  // The attempt's timeout, seen by the client or (as often, both being 100 ms) by the service first.
  assert.ok(once instanceof NatsMicroError && once.code === "DEADLINE_EXCEEDED", String(once));
  assert.equal(once.attempts, 1);
  await sleep(50);
  assert.equal(hung.length, 1);

  // Safe to repeat by the call's word: attempts until the 400 ms of the call are spent, the last one cut short.
  hung.length = 0;
  const started = performance.now();
  const repeated = await client.unary(SPEC.methods.hang, { value: "x" }, { timeout: 400, idempotent: true }).catch((e: unknown) => e);
  const took = performance.now() - started;
  assert.ok(repeated instanceof NatsMicroError && repeated.code === "DEADLINE_EXCEEDED", String(repeated));
  assert.equal(repeated.attempts, 4);
  assert.ok(took < 550, `the call took ${took} ms`);
  await sleep(50);
  assert.equal(hung.length, 4);
  const budgets = hung.map((s) => s.budget ?? 0);
  assert.deepEqual(budgets.slice(0, 3), [100, 100, 100], "each attempt gets its own timeout (ms)");
  assert.ok(budgets[3]! < 100, `the last attempt gets what is left of the call: ${budgets[3]} ms`);

  // Safe to repeat by the client's word for the method.
  hung.length = 0;
  const byMethod = new Client(nc, SPEC, NatsMicroError, { retryPolicy: { maxAttempts: 2, initialDelay: 1, attemptTimeout: 100 }, methods: { hang: { idempotent: true } } });
  const twice = await byMethod.unary(SPEC.methods.hang, { value: "x" }, { timeout: 1_000 }).catch((e: unknown) => e);
  assert.equal((twice as NatsMicroError).attempts, 2);
});

test("a RetryInfo on RESOURCE_EXHAUSTED makes it retried, no sooner than the hint", async () => {
  const { nc } = await serverAndConnection();
  const times: number[] = [];
  await serve(nc, (seen, ctx) => {
    times.push(performance.now());
    if (seen.length === 1) {
      throw new NatsMicroError("RESOURCE_EXHAUSTED", ctx.method, "busy").withRetryInfo(150);
    }
  });
  const client = new Client(nc, SPEC, NatsMicroError, fast);
  await client.unary(SPEC.methods.echo, { value: "x" });
  assert.equal(times.length, 2);
  assert.ok(times[1]! - times[0]! >= 145, `retried after ${times[1]! - times[0]!} ms`);

  // A hint that does not fit in what is left of the call fails it with that reply's error.
  times.length = 0;
  const full = new Client(nc, { ...SPEC, subjectPrefix: "api.full" }, NatsMicroError, fast);
  await Service.start(
    nc,
    { ...SPEC, subjectPrefix: "api.full" },
    {
      echo: (_request, ctx) => {
        times.push(performance.now());
        throw new NatsMicroError("RESOURCE_EXHAUSTED", ctx.method, "busy").withRetryInfo(500);
      },
      hang: (request) => request,
    },
    { logger: { event: () => undefined, warn: () => undefined } },
  );
  const started = performance.now();
  const late = await full.unary(SPEC.methods.echo, { value: "x" }, { timeout: 200 }).catch((e: unknown) => e);
  assert.ok(hasCode(late, "RESOURCE_EXHAUSTED"), String(late));
  assert.equal((late as NatsMicroError).attempts, 1);
  assert.ok(performance.now() - started < 150, "failed at once, not after sleeping");
  assert.equal(times.length, 1);
});

test("a request shed by a full backlog is retried no sooner than the service's retry-after hint, and succeeds once load drops", async () => {
  const { nc } = await serverAndConnection();
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let started = 0;
  const handlers = {
    echo: (request: { value: string }) => request,
    hang: async (request: { value: string }) => {
      started += 1;
      await gate;
      return request;
    },
  };
  await Service.start(nc, SPEC, handlers, { logger: { event: () => undefined, warn: () => undefined }, maxConcurrency: 1, pendingMsgLimit: 1, retryAfterHint: 80 });
  const delays: number[] = [];
  const client = new Client(nc, SPEC, NatsMicroError, {
    retryPolicy: { maxAttempts: 10, initialDelay: 1, maxDelay: 1 },
    onRetry: (retry) => delays.push(retry.delay),
  });
  const holder = client.unary(SPEC.methods.hang, { value: "holder" });
  const deadline = performance.now() + 2_000;
  while (started === 0 && performance.now() < deadline) {
    await sleep(5);
  }
  const queued = client.unary(SPEC.methods.hang, { value: "queued" });
  await sleep(50);
  const shed = client.unary(SPEC.methods.hang, { value: "shed" });
  await sleep(200);
  assert.ok(delays.length >= 1, "the shed call was retried");
  assert.ok(
    delays.every((delay) => delay >= 80),
    `every delay honours the hint: ${delays}`,
  );
  release();
  const answers = await Promise.all([holder, queued, shed]);
  assert.deepEqual(
    answers.map((answer) => answer.value),
    ["holder", "queued", "shed"],
  );
});

test("an open breaker fails calls at once with circuit open, without sending them, and a probe closes it", async () => {
  const { nc } = await serverAndConnection();
  let down = true;
  const { seen } = await serve(nc, (_seen, ctx) => {
    if (down) {
      throw new NatsMicroError("UNAVAILABLE", ctx.method, "dependency down");
    }
  });
  const changes: string[] = [];
  const client = new Client(nc, SPEC, NatsMicroError, {
    retryPolicy: { maxAttempts: 1 },
    circuitBreaker: { consecutiveFailures: 3, openInterval: 300, onStateChange: (c) => changes.push(`${c.name}: ${c.from}->${c.to}`), log: () => undefined },
  });
  for (let i = 0; i < 3; i++) {
    await assert.rejects(client.unary(SPEC.methods.echo, { value: "x" }), (e: unknown) => hasCode(e, "UNAVAILABLE"));
  }
  assert.equal(seen.length, 3);
  const open = await client.unary(SPEC.methods.echo, { value: "x" }).catch((e: unknown) => e);
  assert.ok(open instanceof NatsMicroError && open.kind === ErrorKind.CircuitOpen, String(open));
  assert.equal(open.code, "UNAVAILABLE");
  assert.equal(open.message, "circuit open for TestService.Echo");
  assert.equal(seen.length, 3, "nothing reached the service while open");
  down = false;
  await sleep(320);
  await client.unary(SPEC.methods.echo, { value: "x" });
  assert.equal(seen.length, 4);
  assert.deepEqual(changes, ["TestService: closed->open", "TestService: open->half-open", "TestService: half-open->closed"]);
});

test("circuit open is not retried, and with retries each attempt goes through the breaker", async () => {
  const { nc } = await serverAndConnection();
  const { seen } = await serve(nc, (_seen, ctx) => {
    throw new NatsMicroError("UNAVAILABLE", ctx.method, "dependency down");
  });
  const client = new Client(nc, SPEC, NatsMicroError, {
    retryPolicy: { maxAttempts: 10, initialDelay: 1, maxDelay: 1 },
    methods: { echo: { circuitBreaker: { consecutiveFailures: 2, log: () => undefined } } },
  });
  const err = await client.unary(SPEC.methods.echo, { value: "x" }).catch((e: unknown) => e);
  assert.ok(err instanceof NatsMicroError && err.kind === ErrorKind.CircuitOpen, String(err));
  assert.equal(err.message, "circuit open for TestService.Echo");
  assert.equal(err.attempts, 3);
  assert.equal(seen.length, 2);
});

test("a call out when the connection is lost fails at once with connection lost; a safe one is retried after the reconnect", async () => {
  const { server, nc } = await serverAndConnection();
  const port = server.port;
  const { hung } = await serve(nc, () => undefined);
  const client = new Client(nc, SPEC, NatsMicroError, fast);
  const unsafe = client.unary(SPEC.methods.hang, { value: "put" }, { timeout: 10_000 }).catch((e: unknown) => e);
  const safe = client.unary(SPEC.methods.hang, { value: "answer retries" }, { timeout: 10_000, idempotent: true });
  const deadline = performance.now() + 2_000;
  while (hung.length < 2 && performance.now() < deadline) {
    await sleep(5);
  }
  assert.equal(hung.length, 2);
  const killed = performance.now();
  server.stop();
  const lost = await within(1_000, unsafe, "the unsafe call");
  assert.ok(lost instanceof NatsMicroError && lost.kind === ErrorKind.ConnectionLost, String(lost));
  assert.equal(lost.code, "UNAVAILABLE");
  assert.equal(lost.attempts, 1);
  assert.ok(performance.now() - killed < 1_000);

  // The safe call waits for the reconnect, then is sent again: the restarted server's service answers it.
  await sleep(200);
  const restarted = await NatsServer.start(undefined, port);
  servers.push(restarted);
  // The service shares `nc`, which reconnects and subscribes again.
  const answered = await within(5_000, safe, "the safe call");
  assert.equal(answered.value, "answer retries");
  assert.deepEqual(
    hung.map((s) => [s.attempt, s.header]).slice(-1),
    [[2, "2"]],
  );
});
