/**
 * Calls the order service on $NATS_URL (default nats://127.0.0.1:4222) and
 * handles each of its typed errors; prints one line per call.
 */

import { connect } from "@nats-io/transport-node";
import { retry } from "nats-micro-runtime";
import {
  isOrderServiceError,
  isOrderServiceInvalidArgument,
  isOrderServiceNotFound,
  isOrderServiceOrderExpired,
  isOrderServicePaymentFailed,
  isOrderServiceStockUnavailable,
  OrderServiceNatsClient,
} from "./gen/order/v1/order_nats.pb.js";

// snippet: client
const nc = await connect({ servers: process.env["NATS_URL"] ?? "nats://127.0.0.1:4222" });
const client = new OrderServiceNatsClient(nc, { timeout: 2000 });

const cart = (productId: string, cartAgeMinutes: number, cardToken: string) => ({
  customerId: "cust-7",
  items: [{ productId, quantity: 2, unitPriceCents: 1999n }],
  cartAgeMinutes,
  cardToken,
});

let trace = "";
const { order } = await client.createOrder(cart("book", 5, "ok"), {
  headers: { "X-Trace-Id": "demo-1" },
  onHeaders: (headers) => (trace = headers.get("X-Trace-Id")),
});
console.log(`created order ${order?.id} for ${order?.totalCents} cents (trace ${trace})`);
const found = await client.getOrder({ id: order?.id ?? "" });
console.log(`found ${found.id} with ${found.items.length} item(s)`);

for (const [label, request] of [
  ["expired cart", cart("book", 45, "ok")],
  ["declined card", cart("book", 5, "declined")],
  ["sold out", cart("sold-out", 5, "ok")],
  ["empty order", {}],
] as const) {
  try {
    await client.createOrder(request);
    console.log(`${label}: unexpectedly placed`);
  } catch (err) {
    if (isOrderServiceOrderExpired(err)) {
      console.log(`${label}: order expired, ask the customer to refresh the cart (${err.message})`);
    } else if (isOrderServicePaymentFailed(err)) {
      console.log(`${label}: payment failed, ask for another card (${err.message})`);
    } else if (isOrderServiceStockUnavailable(err)) {
      console.log(`${label}: stock unavailable, drop item ${new TextDecoder().decode(err.data)} (${err.message})`);
    } else if (isOrderServiceInvalidArgument(err)) {
      console.log(`${label}: invalid argument, fix the request (${err.message})`);
    } else {
      throw err;
    }
  }
}

try {
  await client.getOrder({ id: "ord-404" });
} catch (err) {
  if (!isOrderServiceNotFound(err)) throw err;
  console.log(`lookup: not found (${err.message})`);
}
// end snippet

// Transport failures are recognisable without looking at messages.
try {
  await new OrderServiceNatsClient(nc, { subjectPrefix: "nobody.here" }).getOrder({ id: "x" });
} catch (err) {
  if (!(isOrderServiceError(err) && err.isNoResponders())) throw err;
  console.log(`elsewhere: no responders (${err.code}, after ${err.attempts} attempts)`);
}

// snippet: resilience
const resilient = new OrderServiceNatsClient(nc, {
  timeout: 5_000, // the whole call: every attempt and every delay fit in it
  retryPolicy: { maxAttempts: 5, initialDelay: 20, maxDelay: 500, attemptTimeout: 1_000 },
  retryBudget: { maxTokens: 20, tokenRatio: 0.1 },
  circuitBreaker: { consecutiveFailures: 5, openInterval: 2_000, onStateChange: ({ from, to }) => console.log(`breaker: ${from} -> ${to}`) },
  methods: { createOrder: { retryPolicy: { maxAttempts: 2 } } },
});
const again = await resilient.getOrder({ id: order?.id ?? "" }, { retry: { maxAttempts: 10 } });
console.log(`found ${again.id} again`);

// The same delays for any async operation; RetriesExhaustedError wraps the last failure.
const warmed = await retry(async (attempt) => (attempt < 3 ? Promise.reject(new Error("cold cache")) : "warm"), { maxAttempts: 4, initialDelay: 10 });
console.log(`cache: ${warmed}`);
// end snippet

await nc.close();
