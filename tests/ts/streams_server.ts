/**
 * Serves `streams.v1.StreamService` (proto/streams/v1/streams.proto) as its
 * comments fix it, for the cross-language stream tests: CountUp, Sum, Chat
 * and Ping.
 *
 * usage: NATS_URL=nats://... node streams_server.js. Prints `ready ID` once
 * serving; stops gracefully on SIGTERM (or when stdin closes), then prints
 * `stopped`.
 */

import { connect } from "@nats-io/transport-node";
import type * as runtime from "nats-micro-runtime";
import {
  newStreamServiceFailedPreconditionError,
  newStreamServiceInvalidArgumentError,
  newStreamServiceTooManyError,
  registerStreamServiceHandlers,
  type IStreamServiceNats,
} from "./gen/streams/v1/streams_nats.pb.js";

const MAX_COUNT = 10_000;
/** The Ping text answered with how many CountUp calls stopped early (see the proto). */
const STOPPED_EARLY = "stopped early?";
let stoppedEarly = 0;

/** Waits `ms`, or less when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
  });
}

const streams: IStreamServiceNats = {
  async *countUp(request, ctx: runtime.RequestContext) {
    if (request.count > MAX_COUNT) {
      throw newStreamServiceTooManyError(ctx.method, `count ${request.count} is over ${MAX_COUNT}`, new TextEncoder().encode(String(request.count)));
    }
    let finished = false;
    try {
      for (let i = 0; i < request.count && !ctx.signal.aborted; i++) {
        if (request.failAfter > 0 && i === request.failAfter) {
          finished = true;
          throw newStreamServiceFailedPreconditionError(ctx.method, `failed after ${request.failAfter} numbers`);
        }
        if (i > 0 && request.delayMs > 0) {
          await pause(request.delayMs, ctx.signal);
        }
        yield { value: request.start + BigInt(i) };
      }
      finished = !ctx.signal.aborted;
    } finally {
      if (!finished) {
        stoppedEarly += 1;
      }
    }
  },
  // snippet: ts-stream-server
  async sum(requests, ctx) {
    let total = 0n;
    let count = 0;
    for await (const number of requests) {
      if (number.value < 0n) {
        throw newStreamServiceInvalidArgumentError(ctx.method, `negative number ${number.value}`);
      }
      total += number.value;
      count += 1;
    }
    return { total, count };
  },
  async *chat(requests) {
    for await (const message of requests) {
      yield { text: `echo: ${message.text}` };
    }
    yield { text: "bye" };
  },
  // end snippet
  ping(request) {
    return { text: request.text === STOPPED_EARLY ? String(stoppedEarly) : request.text };
  },
};

const url = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";
const nc = await connect({ servers: url });
const service = await registerStreamServiceHandlers(nc, streams);
console.log(`ready ${service.id}`);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) {
    return;
  }
  stopping = true;
  await service.stop({ drainTimeout: 2_000 });
  await nc.drain();
  console.log("stopped");
  process.exit(0);
}
process.on("SIGTERM", () => void stop());
process.stdin.on("end", () => void stop());
process.stdin.resume();
