/**
 * The TypeScript stream contender (bench/src/streams.rs): the generated
 * StreamBench server-streaming RPC (`max_inflight: 1024`) against raw
 * nats.js publish/subscribe of the same payloads, as the Rust table
 * measures async-nats. Server, client, publisher and subscriber all run in
 * this one process (one thread), each on a connection of its own.
 *
 * usage: node streams.js NATS_URL SIZE:MESSAGES[,SIZE:MESSAGES...]
 *
 * Prints one JSON line per size: `{"size":B,"messages":N,"raw_rate":MSG_PER_S,
 * "raw_lost":N,"raw_seq_rate":MSG_PER_S,"raw_seq_lost":N,"codec_rate":MSG_PER_S,
 * "generated":MSG_PER_S}`, where "raw_seq" publishes each message with the
 * `Nats-Stream-Seq` header a stream message carries and "codec" encodes and
 * decodes the message alone (no NATS).
 */

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { connect } from "@nats-io/transport-node";
import { headers, type NatsConnection } from "@nats-io/nats-core";
import { EchoResponseSchema } from "./gen/bench/v1/echo_pb.js";
import { registerStreamBenchHandlers, StreamBenchNatsClient, type IStreamBenchNats } from "./gen/bench/v1/stream_nats.pb.js";

/** Messages per second of the generated stream, which must deliver every message. */
async function generatedRate(client: StreamBenchNatsClient, size: number, messages: number): Promise<number> {
  const started = process.hrtime.bigint();
  let received = 0;
  for await (const response of client.flood({ count: messages, size })) {
    if (response.payload.length !== size) {
      throw new Error("the stream lost bytes");
    }
    received += 1;
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (received !== messages) {
    throw new Error(`the generated stream delivered ${received} of ${messages}`);
  }
  return messages / seconds;
}

/**
 * Raw publish/subscribe: one publisher, one subscriber, no flow control.
 * The publisher yields to the event loop after every batch, or
 * the subscriber in the same thread would never read until all was sent.
 * What the server drops for a slow consumer is counted as lost: messages
 * arrive until all did or nothing came for a second, and the rate is of
 * what arrived.
 */
async function rawRate(url: string, size: number, messages: number, withSeq: boolean): Promise<{ rate: number; lost: number }> {
  const subscriberConnection = await connect({ servers: url });
  const publisher = await connect({ servers: url });
  const subject = `bench.raw.${size}`;
  const payload = new Uint8Array(size).fill(0x5a);
  let received = 0;
  let last = 0n;
  let wake: (() => void) | undefined;
  const subscription = subscriberConnection.subscribe(subject, {
    callback: (err, message) => {
      if (err === null && message.data.length === size) {
        received += 1;
        last = process.hrtime.bigint();
        if (received === messages) {
          wake?.();
        }
      }
    },
  });
  await subscriberConnection.flush();
  // About 256 KiB (at most 256 messages) per batch between yields.
  const batch = Math.max(1, Math.min(256, Math.floor(262_144 / Math.max(1, size))));
  const started = process.hrtime.bigint();
  for (let sent = 0; sent < messages; sent++) {
    if (withSeq) {
      const seq = headers();
      seq.set("Nats-Stream-Seq", String(sent + 1));
      publisher.publish(subject, payload, { headers: seq });
    } else {
      publisher.publish(subject, payload);
    }
    if (sent % batch === batch - 1) {
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
  await publisher.flush();
  for (let quiet = received; received < messages; quiet = received) {
    await new Promise<void>((resolve) => {
      wake = resolve;
      setTimeout(resolve, 1000);
    });
    if (received === quiet) {
      break;
    }
  }
  subscription.unsubscribe();
  await Promise.all([publisher.close(), subscriberConnection.close()]);
  return { rate: received / (Number(last - started) / 1e9), lost: messages - received };
}

/**
 * Messages per second of encoding and decoding the stream's message alone
 * (protobuf-es, as the generated code does), which every generated stream
 * must do: the codec's share of the budget.
 */
function codecRate(size: number, messages: number): number {
  const payload = new Uint8Array(size).fill(0x5a);
  const started = process.hrtime.bigint();
  for (let i = 0; i < messages; i++) {
    const data = toBinary(EchoResponseSchema, create(EchoResponseSchema, { payload }));
    if (fromBinary(EchoResponseSchema, data).payload.length !== size) {
      throw new Error("the codec lost bytes");
    }
  }
  return messages / (Number(process.hrtime.bigint() - started) / 1e9);
}

const flood: IStreamBenchNats = {
  async *flood(request) {
    const payload = new Uint8Array(request.size).fill(0x5a);
    for (let i = 0; i < request.count; i++) {
      yield { payload };
    }
  },
};

const [url = "", plan = ""] = process.argv.slice(2);
const serverConnection: NatsConnection = await connect({ servers: url });
const service = await registerStreamBenchHandlers(serverConnection, flood);
const clientConnection = await connect({ servers: url });
const client = new StreamBenchNatsClient(clientConnection);
// Warm-up: the JIT compiles the stream path before anything is timed.
await generatedRate(client, 1024, 20_000);
await rawRate(url, 1024, 20_000, false);
for (const cell of plan.split(",")) {
  const [size = 0, messages = 0] = cell.split(":").map(Number);
  const raw = await rawRate(url, size, messages, false);
  const rawSeq = await rawRate(url, size, messages, true);
  const generated = await generatedRate(client, size, messages);
  const codec = codecRate(size, messages);
  console.log(
    JSON.stringify({
      size,
      messages,
      raw_rate: raw.rate,
      raw_lost: raw.lost,
      raw_seq_rate: rawSeq.rate,
      raw_seq_lost: rawSeq.lost,
      codec_rate: codec,
      generated,
    }),
  );
}
await service.stop();
await Promise.all([clientConnection.close(), serverConnection.close()]);
