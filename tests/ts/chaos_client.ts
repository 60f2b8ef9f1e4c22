/**
 * Load on `chaos.v1.ChaosService` (proto/chaos/v1/chaos.proto) for the
 * fault tests (PROTOCOL §10.3): CHAOS_CONCURRENCY workers (default 32) for
 * CHAOS_SECONDS (default 10), each calling Put every 10th call and Get
 * otherwise, every call with a fresh id, under a retry policy that
 * outlasts a 1–2 s outage (20 attempts, 50 ms doubling up to 500 ms, 10 s
 * per call, 1 s per attempt, a budget that does not throttle). Put keeps the default
 * gating: it is never sent twice after a timeout or a lost connection.
 *
 * usage: NATS_URL=nats://a,nats://b node chaos_client.js. Prints `ready`
 * once connected, then one line of JSON:
 * `{"get_ok","get_failed","put_ok","put_failed","wrong","put_ok_ids","recovery_ms","retries"}`.
 * Exits 0 whatever failed; the harness judges.
 */

import { connect } from "@nats-io/transport-node";
import type * as runtime from "nats-micro-runtime";
import { ChaosServiceNatsClient } from "./gen/chaos/v1/chaos_nats.pb.js";

const seconds = Number(process.env["CHAOS_SECONDS"] ?? "10");
const concurrency = Number(process.env["CHAOS_CONCURRENCY"] ?? "32");
const servers = (process.env["NATS_URL"] ?? "nats://127.0.0.1:4222").split(",").map((url) => url.trim());

const counts = { get_ok: 0, get_failed: 0, put_ok: 0, put_failed: 0, wrong: 0 };
const putOkIds: number[] = [];
let retries = 0;
let recoveryMs = 0;
/** The first failure (of any attempt) since the last success, if any. */
let failingSince: number | undefined;

function failed(): void {
  failingSince ??= performance.now();
}

function succeeded(): void {
  if (failingSince !== undefined) {
    recoveryMs = Math.max(recoveryMs, performance.now() - failingSince);
    failingSince = undefined;
  }
}

const nc = await connect({ servers, maxReconnectAttempts: -1, reconnectTimeWait: 100, waitOnFirstConnect: true });
const options: runtime.ClientOptions = {
  timeout: 10_000,
  // A request that reached an instance whose node then died gets no reply and no error: the attempt
  // timeout lets a Get go again after a second instead of waiting out the 10 s of the call.
  retryPolicy: { maxAttempts: 20, initialDelay: 50, multiplier: 2, maxDelay: 500, attemptTimeout: 1_000 },
  retryBudget: { maxTokens: 1_000, tokenRatio: 1 },
  onRetry: () => {
    retries += 1;
    failed();
  },
};
const client = new ChaosServiceNatsClient(nc, options);
console.log("ready");

let nextId = 1;
const end = performance.now() + seconds * 1_000;

/** Worker `index` starts at another point of the 10-call cycle, so that Puts are out at every moment, not in waves. */
async function worker(index: number): Promise<void> {
  for (let call = 1 + index; performance.now() < end; call++) {
    const id = nextId++;
    const text = String(id);
    const put = call % 10 === 0;
    try {
      const answer = put ? await client.put({ id: BigInt(id), text }) : await client.get({ id: BigInt(id), text });
      succeeded();
      if (answer.id !== BigInt(id) || answer.text !== text) {
        counts.wrong += 1;
      } else if (put) {
        counts.put_ok += 1;
        putOkIds.push(id);
      } else {
        counts.get_ok += 1;
      }
    } catch (err) {
      failed();
      counts[put ? "put_failed" : "get_failed"] += 1;
      console.error(`${put ? "Put" : "Get"} ${id} failed: ${String(err)}`);
    }
  }
}

await Promise.all(Array.from({ length: concurrency }, (_, index) => worker(index)));
console.log(JSON.stringify({ ...counts, put_ok_ids: putOkIds, recovery_ms: Math.round(recoveryMs), retries }));
await nc.close().catch(() => undefined);
