/**
 * The generated TypeScript contender's load generator (bench/src/external.rs):
 * the generated EchoServiceNatsClient driven the way bench/src/measure.rs
 * drives the Rust contenders. A warm-up at concurrency 16, then per
 * concurrency REQUESTS calls shared by that many concurrent workers, each
 * checking the payload came back whole; latencies are kept at concurrency 1.
 *
 * usage: node load.js NATS_URL PAYLOAD_BYTES CONCURRENCY[,CONCURRENCY...] REQUESTS WARMUP [raw]
 *
 * With `raw`, the same loop drives plain nats.js requests of the payload
 * bytes to the raw responder (`server.js NATS_URL raw`): the floor.
 *
 * Prints one JSON line per concurrency: `{"concurrency":C,"throughput":REQ_PER_S}`,
 * with `"p50_us"` and `"p99_us"` too at concurrency 1.
 */

import { create } from "@bufbuild/protobuf";
import { connect } from "@nats-io/transport-node";
import { EchoServiceNatsClient } from "./gen/bench/v1/echo_nats.pb.js";
import { EchoRequestSchema } from "./gen/bench/v1/echo_pb.js";

/** The raw responder's subject (server.ts). */
const RAW_SUBJECT = "bench.raw_ts.echo";

/** Concurrency of the warm-up, as in measure.rs. */
const WARMUP_CONCURRENCY = 16;

/** One measured run: requests per second, and the sorted latencies (µs) at concurrency 1. */
interface Run {
  throughput: number;
  latencies: number[];
}

/** One call: resolves to the length of the payload that came back. */
type Call = () => Promise<number>;

/** Sends `total` requests (rounded up to a multiple of `concurrency`) from `concurrency` workers and times them. */
async function run(call: Call, size: number, concurrency: number, total: number): Promise<Run> {
  const perWorker = Math.ceil(total / concurrency);
  const record = concurrency === 1;
  const latencies: number[] = [];
  const worker = async () => {
    for (let i = 0; i < perWorker; i++) {
      const sent = process.hrtime.bigint();
      const length = await call();
      if (record) {
        latencies.push(Number(process.hrtime.bigint() - sent) / 1e3);
      }
      if (length !== size) {
        throw new Error("the echo lost bytes");
      }
    }
  };
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  return { throughput: (perWorker * concurrency) / seconds, latencies };
}

/** The latency at quantile `q` (0..=1), by measure.rs's rule: index round((n - 1) * q). */
function quantile(sorted: readonly number[], q: number): number | undefined {
  return sorted[Math.round((sorted.length - 1) * q)];
}

const [url = "", size = "", concurrencies = "", requests = "", warmup = "", mode = ""] = process.argv.slice(2);
const nc = await connect({ servers: url });
const payload = new Uint8Array(Number(size)).fill(0x5a);
let call: Call;
if (mode === "raw") {
  call = async () => (await nc.request(RAW_SUBJECT, payload, { timeout: 30_000 })).data.length;
} else {
  // A generous timeout: at high concurrency a slow contender's queue must not fail calls.
  const client = new EchoServiceNatsClient(nc, { timeout: 30_000 });
  const request = create(EchoRequestSchema, { payload });
  call = async () => (await client.echo(request)).payload.length;
}

await run(call, payload.length, WARMUP_CONCURRENCY, Number(warmup));
for (const concurrency of concurrencies.split(",").map(Number)) {
  const { throughput, latencies } = await run(call, payload.length, concurrency, Number(requests));
  const latency = concurrency === 1 ? { p50_us: quantile(latencies, 0.5), p99_us: quantile(latencies, 0.99) } : {};
  console.log(JSON.stringify({ concurrency, throughput, ...latency }));
}
await nc.close();
