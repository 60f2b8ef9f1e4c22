/**
 * Serves `chaos.v1.ChaosService` (proto/chaos/v1/chaos.proto) as its
 * comments fix it, for the resilience tests (PROTOCOL §10): Get, Put,
 * Flaky, SetDown and Slow, with at most 4 handlers at once per endpoint.
 * The connection reconnects forever.
 *
 * usage: NATS_URL=nats://a,nats://b node chaos_server.js. Prints `ready`
 * once serving; at SIGTERM (or SIGINT) stops, then prints
 * `put-ids <ids>`, the id of every Put executed, once per execution.
 */

import { connect } from "@nats-io/transport-node";
import { type IChaosServiceNats, newChaosServiceUnavailableError, registerChaosServiceHandlers } from "./gen/chaos/v1/chaos_nats.pb.js";

const putIds: bigint[] = [];
let down = false;
let flakyCalls = 0n;

const chaos: IChaosServiceNats = {
  get(request) {
    return { id: request.id, text: request.text };
  },
  put(request) {
    putIds.push(request.id);
    return { id: request.id, text: request.text };
  },
  flaky(request, ctx) {
    flakyCalls += 1n;
    if (down) {
      throw newChaosServiceUnavailableError(ctx.method, "dependency down");
    }
    return { id: request.id, text: request.text };
  },
  setDown(request) {
    const calls = flakyCalls;
    down = request.down;
    return { flakyCalls: calls };
  },
  async slow(request, ctx) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, request.sleepMs);
      ctx.signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
    });
    return { id: request.id, text: request.text };
  },
};

const servers = (process.env["NATS_URL"] ?? "nats://127.0.0.1:4222").split(",").map((url) => url.trim());
const nc = await connect({ servers, maxReconnectAttempts: -1, reconnectTimeWait: 100, waitOnFirstConnect: true });
const service = await registerChaosServiceHandlers(nc, chaos, { maxConcurrency: 4 });
console.log("ready");

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) {
    return;
  }
  stopping = true;
  await service.stop();
  await nc.close().catch(() => undefined);
  // process.exit does not wait for a pipe to take a long line: exit once it is written.
  process.stdout.write(`put-ids ${putIds.join(",")}\n`, () => process.exit(0));
}
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
