/**
 * The fixed stream scenario against whichever server serves
 * `streams.v1.StreamService` on NATS_URL (proto/streams/v1/streams.proto):
 * CountUp 1..5, CountUp over the limit (TOO_MANY with the count as data),
 * CountUp failing after 2 (FAILED_PRECONDITION after 1, 2), Sum of 1..10,
 * Sum with a negative (INVALID_ARGUMENT), Chat with two messages and `bye`,
 * and a CountUp cancelled after one number (the server sees it stop early).
 * Prints one line per check (see checks.ts); exits 1 on any mismatch.
 *
 * usage: NATS_URL=nats://... node streams_client.js
 */

import assert from "node:assert/strict";

import type { NatsConnection } from "@nats-io/nats-core";
import {
  isStreamServiceFailedPrecondition,
  isStreamServiceInvalidArgument,
  isStreamServiceTooMany,
  StreamServiceError,
  StreamServiceNatsClient,
} from "./gen/streams/v1/streams_nats.pb.js";
import { type Check, runChecks } from "./checks.js";

/** Runs `body`, which must reject; returns what it rejected with. */
async function failure(body: () => Promise<unknown>): Promise<unknown> {
  try {
    await body();
  } catch (err) {
    return err;
  }
  assert.fail("expected the call to fail");
}

async function numbers(client: StreamServiceNatsClient, request: { start?: bigint; count?: number; failAfter?: number }, seen: bigint[] = []): Promise<bigint[]> {
  for await (const number of client.countUp(request)) {
    seen.push(number.value);
  }
  return seen;
}

const client = (nc: NatsConnection) => new StreamServiceNatsClient(nc);

const checks: Check[] = [
  [
    "CountUp 1..5",
    async (nc) => {
      assert.deepEqual(await numbers(client(nc), { start: 1n, count: 5 }), [1n, 2n, 3n, 4n, 5n]);
    },
  ],
  [
    "CountUp over the limit is TOO_MANY with the count as data",
    async (nc) => {
      const err = await failure(() => numbers(client(nc), { start: 1n, count: 10_001 }));
      assert.ok(err instanceof StreamServiceError && isStreamServiceTooMany(err), String(err));
      assert.equal(new TextDecoder().decode(err.data), "10001");
    },
  ],
  [
    "CountUp fail_after=2 sends 1, 2 then FAILED_PRECONDITION",
    async (nc) => {
      const seen: bigint[] = [];
      const err = await failure(() => numbers(client(nc), { start: 1n, count: 5, failAfter: 2 }, seen));
      assert.ok(isStreamServiceFailedPrecondition(err), String(err));
      assert.deepEqual(seen, [1n, 2n]);
    },
  ],
  [
    "Sum of 1..10 is 55, count 10",
    async (nc) => {
      // snippet: ts-stream-client
      const sum = client(nc).sum();
      for (let i = 1n; i <= 10n; i++) {
        await sum.send({ value: i }); // waits for the service's credit
      }
      const result = await sum.closeAndReceive();
      // end snippet
      assert.equal(result.total, 55n);
      assert.equal(result.count, 10);
    },
  ],
  [
    "Sum with a negative number is INVALID_ARGUMENT",
    async (nc) => {
      const sum = client(nc).sum();
      const err = await failure(async () => {
        await sum.send({ value: 1n });
        await sum.send({ value: -1n });
        return sum.closeAndReceive();
      });
      assert.ok(isStreamServiceInvalidArgument(err), String(err));
    },
  ],
  [
    "Chat echoes two messages and says bye",
    async (nc) => {
      const chat = client(nc).chat();
      const replies: string[] = [];
      const reading = (async () => {
        for await (const message of chat) {
          replies.push(message.text);
        }
      })();
      await chat.send({ text: "hello" });
      await chat.send({ text: "world" });
      await chat.closeSend();
      await reading;
      assert.deepEqual(replies, ["echo: hello", "echo: world", "bye"]);
    },
  ],
  [
    "Cancelling CountUp stops the server's handler",
    async (nc) => {
      const stoppedEarly = async () => Number((await client(nc).ping({ text: "stopped early?" })).text);
      const before = await stoppedEarly();
      for await (const _ of client(nc).countUp({ count: 10_000, delayMs: 10 })) {
        break; // leaving the loop cancels the stream
      }
      let after = before;
      for (const started = Date.now(); after === before && Date.now() - started < 3_000; ) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        after = await stoppedEarly();
      }
      assert.equal(after, before + 1);
    },
  ],
];

await runChecks(process.env["NATS_URL"] ?? "nats://127.0.0.1:4222", checks);
