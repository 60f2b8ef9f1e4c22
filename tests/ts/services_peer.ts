/**
 * `@nats-io/services` (the NATS JavaScript ADR-32 library) on the other side
 * of the wire from the generated TypeScript:
 * - the generated client classifies the numeric codes of a service written
 *   with `@nats-io/services`;
 * - its service client discovers a generated TypeScript service;
 * - and the reason the runtime does not delegate to it: its endpoints count
 *   an error only when a handler throws synchronously, so a handler that
 *   replies with an error after awaiting anything leaves STATS at zero
 *   errors (PROTOCOL §5 asks that every error reply be counted).
 *
 * usage: node services_peer.js NATS_URL. Prints `ok NAME` per check and a
 * `N passed, N failed` line; exits 1 on a failure.
 */

import assert from "node:assert/strict";
import { Svcm, type ServiceMsg } from "@nats-io/services";
import type { NatsConnection } from "@nats-io/nats-core";
import * as orders from "./gen/order/v1/order_nats.pb.js";
import { runChecks, type Check } from "./checks.js";

/** `@nats-io/services` bundles its own (type-identical) nats-core version. */
function svcm(nc: NatsConnection): Svcm {
  return new Svcm(nc as unknown as ConstructorParameters<typeof Svcm>[0]);
}

/** Collects the replies of a discovery request. */
async function all<T>(replies: Promise<AsyncIterable<T>>): Promise<T[]> {
  const out: T[] = [];
  for await (const reply of await replies) {
    out.push(reply);
  }
  return out;
}

const checks: Check[] = [
  [
    "the generated client classifies the numeric codes of an @nats-io/services service",
    async (nc) => {
      const peer = await svcm(nc).add({ name: "peer_orders", version: "1.0.0" });
      peer.addGroup("api.v1").addEndpoint("create_order", (err: Error | null, msg: ServiceMsg) => {
        const want = msg.headers?.get("X-Want-Code") ?? "";
        if (err === null && want !== "") {
          msg.respondError(Number(want), `peer says ${want}`);
        } else {
          msg.respond();
        }
      });
      try {
        const client = new orders.OrderServiceNatsClient(nc);
        const expected: [number, string][] = [
          [400, "INVALID_ARGUMENT"],
          [401, "UNAUTHENTICATED"],
          [403, "PERMISSION_DENIED"],
          [404, "NOT_FOUND"],
          [409, "ALREADY_EXISTS"],
          [500, "INTERNAL"],
          [503, "UNAVAILABLE"],
          [418, "418"],
        ];
        for (const [number, code] of expected) {
          try {
            await client.createOrder({}, { headers: { "X-Want-Code": String(number) } });
            assert.fail(`${number} succeeded`);
          } catch (err) {
            assert.equal(orders.getOrderServiceErrorCode(err), code);
            assert.equal((err as Error).message, `peer says ${number}`);
          }
        }
        await client.createOrder({});
      } finally {
        await peer.stop();
      }
    },
  ],
  [
    "the @nats-io/services client discovers a generated TypeScript service",
    async (nc) => {
      const service = await orders.registerOrderServiceHandlers(nc, {
        createOrder: () => ({}),
        getOrder: (request) => ({ id: request.id }),
      });
      try {
        const client = svcm(nc).client();
        const pings = await all(client.ping("order_service"));
        assert.deepEqual(pings.map((p) => p.id), [service.id]);
        const [info] = await all(client.info("order_service", service.id));
        assert.deepEqual(info?.endpoints.map((e) => [e.name, e.subject, e.queue_group]), [
          ["create_order", "api.v1.create_order", "q"],
          ["get_order", "api.v1.get_order", "q"],
        ]);
        await new orders.OrderServiceNatsClient(nc).getOrder({ id: "o-1" });
        const [stats] = await all(client.stats("order_service", service.id));
        assert.equal(stats?.endpoints?.[1]?.num_requests, 1);
        assert.equal(stats?.metadata?.["team"], "orders");
      } finally {
        await service.stop();
      }
    },
  ],
  [
    "@nats-io/services does not count error replies of asynchronous handlers",
    async (nc) => {
      const peer = await svcm(nc).add({ name: "peer_gap", version: "1.0.0" });
      peer.addEndpoint("gap", {
        subject: "peer.gap",
        handler: (_err: Error | null, msg: ServiceMsg) => {
          void Promise.resolve().then(() => msg.respondError(404, "not here"));
        },
      });
      try {
        const reply = await nc.request("peer.gap", "", { timeout: 5000 });
        assert.equal(reply.headers?.get("Nats-Service-Error-Code"), "404");
        const [stats] = await all(svcm(nc).client().stats("peer_gap", peer.info().id));
        assert.equal(stats?.endpoints?.[0]?.num_requests, 1);
        assert.equal(stats?.endpoints?.[0]?.num_errors, 0, "if this fails, @nats-io/services now counts these errors");
      } finally {
        await peer.stop();
      }
    },
  ],
];

await runChecks(process.argv[2] ?? "", checks);
