/**
 * Malformed NATS header blocks, published raw (`HPUB` over a plain TCP
 * socket) to a live service on a real nats-server: none of them may stop
 * the service (PROTOCOL.md section 5). Each one that carries a reply subject
 * is answered INVALID_ARGUMENT, counted in STATS and logged; a normal
 * request is answered within a second after each; `stop()` still finishes.
 */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import type { NatsConnection } from "@nats-io/nats-core";

import { Client, ERROR_CODE_HEADER, headerBlockProblem, NatsMicroError, Service } from "../src/index.js";
import { ECHO_SUBJECT, Inbox, logSink, NatsServer, RawClient, SPEC, stringValue, within } from "./harness.js";

const bytes = (text: string): Uint8Array => Buffer.from(text, "latin1");

/** Every malformed shape, as the bytes of the header block. */
export const MALFORMED: ReadonlyArray<readonly [string, Uint8Array]> = [
  ["bare CR in a value", bytes("NATS/1.0\r\nX-Bad: a\rb\r\n\r\n")],
  ["bare LF in a value", bytes("NATS/1.0\r\nX-Bad: a\nb\r\n\r\n")],
  ["LF-only line endings", bytes("NATS/1.0\nX-A: b\n\n")],
  ["empty header name", bytes("NATS/1.0\r\n: v\r\n\r\n")],
  ["space in a name", bytes("NATS/1.0\r\nX Bad: v\r\n\r\n")],
  ["non-UTF-8 name", bytes("NATS/1.0\r\nX-\xff\xfe: v\r\n\r\n")],
  ["non-UTF-8 value", bytes("NATS/1.0\r\nX-A: \xff\xfe\r\n\r\n")],
  ["missing version line", bytes("X-A: b\r\n\r\n")],
  ["status 503", bytes("NATS/1.0 503\r\n\r\n")],
  ["status 100 idle heartbeat", bytes("NATS/1.0 100 Idle Heartbeat\r\n\r\n")],
  ["truncated version line", bytes("NATS/")],
  ["line without a colon", bytes("NATS/1.0\r\nnocolon\r\n\r\n")],
  ["only CRLF", bytes("\r\n")],
  ["status without the end of the block", bytes("NATS/1.0 503")],
  ["no blank line at the end", bytes("NATS/1.0\r\nX-A: b\r\n")],
];

/** Deterministic pseudo-random blocks (a small LCG: the same bytes on every run). */
function randomBlocks(count: number): [string, Uint8Array][] {
  let state = 9;
  const next = (n: number): number => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state % n;
  };
  const prefixes = ["", "NATS/", "NATS/1.0", "NATS/1.0\r\n", "NATS/1.0 "];
  const blocks: [string, Uint8Array][] = [];
  for (let i = 0; i < count; i += 1) {
    const prefix = bytes(prefixes[next(prefixes.length)] ?? "");
    const tail = Uint8Array.from({ length: 1 + next(47) }, () => next(256));
    blocks.push([`random block ${i}`, Uint8Array.from([...prefix, ...tail])]);
  }
  return blocks;
}

describe("the header block parser", () => {
  test("accepts well-formed blocks", () => {
    for (const block of ["NATS/1.0\r\n\r\n", "NATS/1.0\r\nA: b\r\n\r\n", "NATS/1.0\r\nNats-Micro-Timeout: 5\r\nX-Empty:\r\nX-U: é\r\n\r\n"]) {
      assert.equal(headerBlockProblem(Buffer.from(block, "utf8")), undefined, JSON.stringify(block));
    }
  });

  test("refuses every malformed shape", () => {
    for (const [shape, block] of MALFORMED) {
      assert.notEqual(headerBlockProblem(block), undefined, shape);
    }
  });

  test("its plain-ASCII fast path agrees with the rule on every block", () => {
    // The rule, written plainly: UTF-8, the version line, `name:value` lines, the blank line.
    const wellFormed = (block: Uint8Array): boolean => {
      let text: string;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(block);
      } catch {
        return false;
      }
      if (!text.startsWith("NATS/1.0\r\n") || !text.endsWith("\r\n\r\n")) {
        return false;
      }
      return text.length === 12 || text.slice(10, -4).split("\r\n").every((line) => !/[\r\n]/.test(line) && /^[\x21-\x39\x3b-\x7e]+:/.test(line));
    };
    const pieces = ["A", "b", ":", " ", "\r\n", "\r", "\n", "\t", "\x00", "\x7f", "é", "\r\n\r\n"];
    let state = 7;
    const next = (n: number): number => {
      state = (state * 1103515245 + 12345) % 2147483648;
      return state % n;
    };
    for (let i = 0; i < 5000; i += 1) {
      const middle = Array.from({ length: next(12) }, () => pieces[next(pieces.length)]).join("");
      const block = bytes(`NATS/1.0\r\n${middle}${next(2) === 0 ? "\r\n\r\n" : ""}`);
      const utf8 = new TextEncoder().encode(`NATS/1.0\r\n${middle}\r\n\r\n`);
      for (const candidate of [block, utf8]) {
        assert.equal(headerBlockProblem(candidate) === undefined, wellFormed(candidate), JSON.stringify(new TextDecoder().decode(candidate)));
      }
    }
  });
});

describe("a live service under malformed header blocks", () => {
  let server: NatsServer;
  let nc: NatsConnection;
  let service: Service;
  let client: Client<NatsMicroError>;
  let replies: Inbox;
  const sink = logSink();
  let sent = 0;
  let refused = 0;

  before(async () => {
    server = await NatsServer.start();
    nc = await server.connect();
    service = await Service.start(nc, SPEC, { echo: (request) => ({ value: request.value }), hang: () => new Promise(() => undefined) }, { logger: sink.logger });
    client = new Client(nc, SPEC, NatsMicroError);
    replies = new Inbox(nc, "_INBOX.hostile.>");
    await nc.flush();
  });

  after(async () => {
    await nc?.close();
    server?.stop();
  });

  async function answersWithinASecond(): Promise<void> {
    const started = performance.now();
    const response = await client.unary(SPEC.methods.echo, { value: "normal" }, { timeout: 1_000 });
    assert.equal(response.value, "normal");
    assert.ok(performance.now() - started < 1_000);
  }

  /** Publishes `block` (with a reply subject) from a fresh raw connection; whether the server accepted it. */
  async function publish(block: Uint8Array): Promise<boolean> {
    const raw = await RawClient.connect(server.port);
    sent += 1;
    raw.hpub(ECHO_SUBJECT, `_INBOX.hostile.${sent}`, block, stringValue("payload"));
    const accepted = (await raw.ping()) && raw.errors.length === 0;
    raw.close();
    return accepted;
  }

  for (const [shape, block] of MALFORMED) {
    test(`${shape}: answered INVALID_ARGUMENT, counted, logged, and the service keeps serving`, async () => {
      for (let round = 0; round < 2; round += 1) {
        const logged = sink.lines.length;
        const accepted = await publish(block);
        if (accepted) {
          refused += 1;
          const [reply] = (await replies.wait(refused, 1_000)).slice(refused - 1);
          assert.equal(reply?.headers?.get(ERROR_CODE_HEADER), "400", `${shape}: reply headers ${reply?.headers?.toString()}`);
          assert.ok(sink.lines.length > logged, `${shape} is logged`);
          assert.match(sink.lines.at(-1) ?? "", /malformed request headers/);
        }
        await answersWithinASecond();
      }
    });
  }

  test("random byte blocks never stop the service", async () => {
    for (const [name, block] of randomBlocks(24)) {
      const accepted = await publish(block);
      if (accepted && headerBlockProblem(block) !== undefined) {
        refused += 1;
        const [reply] = (await replies.wait(refused, 1_000)).slice(refused - 1);
        assert.equal(reply?.headers?.get(ERROR_CODE_HEADER), "400", name);
      }
      await answersWithinASecond();
    }
  });

  test("discovery subjects shrug them off too", async () => {
    const pings = new Inbox(nc, "_INBOX.hostile-ping.>");
    await nc.flush();
    const raw = await RawClient.connect(server.port);
    for (const [i, [, block]] of MALFORMED.entries()) {
      raw.hpub("$SRV.PING.TestService", `_INBOX.hostile-ping.${i}`, block);
    }
    assert.ok(await raw.ping());
    raw.close();
    const answers = await pings.wait(MALFORMED.length, 2_000);
    assert.ok(answers.every((m) => (m.json() as { type: string }).type === "io.nats.micro.v1.ping_response"));
    await answersWithinASecond();
  });

  test("STATS counts every refused block as an error, and stop() finishes", async () => {
    assert.ok(refused >= MALFORMED.length, `the server forwarded ${refused} malformed blocks`);
    const echo = service.stats().endpoints.find((e) => e.name === "echo");
    assert.ok(echo !== undefined);
    assert.equal(echo.num_errors, refused);
    assert.match(echo.last_error, /^INVALID_ARGUMENT:malformed request headers/);
    await within(2_000, service.stop(), "stop()");
  });
});

describe("a connection whose reader other code killed", () => {
  // Code sharing the service's connection reads `headers` of a malformed message in its own callback:
  // nats-core ends the connection's reader for good (tests/upstream/nats_js_header_throw.mjs).
  async function scenario(options: { connectionCheckInterval?: number }): Promise<{ answered: boolean; took: number; log: string[] }> {
    const server = await NatsServer.start();
    const nc = await server.connect({ reconnectTimeWait: 100 });
    const callers = await server.connect();
    const sink = logSink();
    const service = await Service.start(nc, SPEC, { echo: (request) => ({ value: request.value }), hang: () => new Promise(() => undefined) }, { logger: sink.logger, ...options });
    nc.subscribe("user.events", {
      callback: (_err, message) => {
        void message.headers?.get("X");
      },
    });
    await nc.flush();
    const raw = await RawClient.connect(server.port);
    raw.hpub("user.events", "_INBOX.none", bytes("NATS/1.0\r\nX Bad: v\r\n\r\n"));
    assert.ok(await raw.ping());
    raw.close();
    const client = new Client(callers, SPEC, NatsMicroError);
    const started = performance.now();
    let answered = false;
    // Callers retry, as they would; the service must be back within about a second.
    while (!answered && performance.now() - started < 2_500) {
      answered = await client.unary(SPEC.methods.echo, { value: "back?" }, { timeout: 250 }).then(
        () => true,
        () => false,
      );
    }
    const took = performance.now() - started;
    await within(2_000, service.stop({ drainTimeout: 200 }), "stop()");
    await callers.close();
    await within(2_000, nc.close(), "close()").catch(() => undefined);
    server.stop();
    return { answered, took, log: sink.lines };
  }

  test("the service notices within about a second and reconnects", async () => {
    const { answered, took, log } = await scenario({});
    assert.ok(answered, `answered again (after ${took} ms); log: ${log.join("\n")}`);
    assert.ok(took < 2_000, `back after ${took} ms`);
    assert.ok(log.some((line) => line.includes("stopped delivering")), log.join("\n"));
  });

  test("without the checks it stays deaf (what the checks are for)", async () => {
    const { answered } = await scenario({ connectionCheckInterval: 0 });
    assert.equal(answered, false);
  });
});
