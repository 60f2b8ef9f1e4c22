/**
 * The order service of proto/order/v1/order.proto, in TypeScript: serves
 * {@link InMemoryOrders} on $NATS_URL (default nats://127.0.0.1:4222) until
 * interrupted. Prints `ready ID` once serving, then its endpoints.
 */

import { connect } from "@nats-io/transport-node";
import { registerOrderServiceHandlers } from "./gen/order/v1/order_nats.pb.js";
import { InMemoryOrders } from "./orders.js";

// snippet: serve
const nc = await connect({ servers: process.env["NATS_URL"] ?? "nats://127.0.0.1:4222" });
// Every proto option can be overridden here: name, version, metadata, subject prefix, timeouts, queue group.
const service = await registerOrderServiceHandlers(nc, new InMemoryOrders(), { mergeMetadata: { language: "typescript" } });
console.log(`ready ${service.id}`);
// end snippet
for (const endpoint of service.endpoints()) {
  console.log(`  ${endpoint.name} on ${endpoint.subject}`);
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    void service.stop().then(() => nc.close());
  });
}
