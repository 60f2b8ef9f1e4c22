/**
 * The order service from a web page: connects over NATS WebSocket
 * (`wsconnect`, `?ws=ws://HOST:PORT`, default ws://127.0.0.1:8080), lists
 * the service's endpoints from ADR-32 discovery, places an order and shows
 * each typed error the service returns, and a timeout.
 *
 * The generated code is examples/ts/gen, the very files the Node example
 * compiles: nothing in it or in the runtime is specific to Node. When done,
 * `#status` has `data-state="done"` (or `"failed"` and the error).
 */

import { Empty, wsconnect, type NatsConnection } from "@nats-io/nats-core";
import type { InfoResponse } from "nats-micro-runtime";
import {
  isOrderServiceDeadlineExceeded,
  isOrderServiceError,
  isOrderServiceInvalidArgument,
  isOrderServiceNotFound,
  isOrderServiceOrderExpired,
  isOrderServicePaymentFailed,
  isOrderServiceStockUnavailable,
  isOrderServiceUnavailable,
  OrderServiceNatsClient,
  OrderServiceNatsSpec,
} from "../ts/gen/order/v1/order_nats.pb.js";
import { addRow, setStatus, showFailure, webSocketServer } from "./dom.js";

/** The generated checkers the page tries on each error, by name. */
const CHECKERS = {
  isOrderServiceOrderExpired,
  isOrderServicePaymentFailed,
  isOrderServiceStockUnavailable,
  isOrderServiceInvalidArgument,
  isOrderServiceNotFound,
  isOrderServiceDeadlineExceeded,
  isOrderServiceUnavailable,
} as const;

/** One row of the calls table. */
interface Outcome {
  call: string;
  ok: boolean;
  code: string;
  /** The generated checker (or transport test) that recognised the error. */
  recognisedBy: string;
  message: string;
  data: string;
}

/** Every instance's `$SRV.INFO` reply, gathered until replies stop for a moment. */
async function discover(nc: NatsConnection, service: string): Promise<InfoResponse[]> {
  const replies = await nc.requestMany(`$SRV.INFO.${service}`, Empty, { strategy: "stall", stall: 300, maxWait: 2000 });
  const found: InfoResponse[] = [];
  for await (const reply of replies) {
    found.push(reply.json<InfoResponse>());
  }
  return found;
}

/** What a failed call tells the page: its code, which generated checker knows it, message and data. */
function describeError(call: string, err: unknown): Outcome {
  if (!isOrderServiceError(err)) {
    throw err;
  }
  const checkers = Object.entries(CHECKERS).filter(([, check]) => check(err));
  const transport = err.isTimeout() ? "isTimeout()" : err.isNoResponders() ? "isNoResponders()" : "";
  const recognisedBy = [...checkers.map(([name]) => name), ...(transport === "" ? [] : [transport])].join(", ");
  return { call, ok: false, code: err.code, recognisedBy, message: err.message, data: new TextDecoder().decode(err.data) };
}

async function attempt(call: string, run: () => Promise<string>): Promise<Outcome> {
  try {
    return { call, ok: true, code: "", recognisedBy: "", message: await run(), data: "" };
  } catch (err) {
    return describeError(call, err);
  }
}

const cart = (productId: string, cartAgeMinutes: number, cardToken: string) => ({
  customerId: "cust-7",
  items: [{ productId, quantity: 2, unitPriceCents: 1999n }],
  cartAgeMinutes,
  cardToken,
});

async function main(): Promise<void> {
  const server = webSocketServer();
  // snippet: connect
  const nc = await wsconnect({ servers: server }); // instead of transport-node's connect; the rest is as in Node
  const client = new OrderServiceNatsClient(nc, { timeout: 2000 });
  // end snippet
  setStatus("calling", `connected to ${server}`);

  const instances = await discover(nc, OrderServiceNatsSpec.name);
  for (const info of instances) {
    for (const endpoint of info.endpoints) {
      const metadata = Object.entries(endpoint.metadata ?? {}).map(([key, value]) => `${key}=${value}`);
      addRow("#endpoints", [`${info.name} ${info.version} (${info.id})`, endpoint.name, endpoint.subject, metadata.join(" ")], {
        endpoint: endpoint.name,
        subject: endpoint.subject,
      });
    }
  }

  let placed = "";
  const outcomes = [
    await attempt("place order", async () => {
      let trace = "";
      const { order } = await client.createOrder(cart("book", 5, "ok"), {
        headers: { "X-Trace-Id": "browser-1" },
        onHeaders: (headers) => (trace = headers.get("X-Trace-Id")),
      });
      placed = order?.id ?? "";
      return `placed ${placed} for ${order?.totalCents} cents (trace ${trace})`;
    }),
    await attempt("look up order", async () => {
      const found = await client.getOrder({ id: placed });
      return `found ${found.id} with ${found.items.length} item(s)`;
    }),
    await attempt("expired cart", () => client.createOrder(cart("book", 45, "ok")).then(() => "placed")),
    await attempt("declined card", () => client.createOrder(cart("book", 5, "declined")).then(() => "placed")),
    await attempt("sold out", () => client.createOrder(cart("sold-out", 5, "ok")).then(() => "placed")),
    await attempt("empty order", () => client.createOrder({}).then(() => "placed")),
    await attempt("unknown order", () => client.getOrder({ id: "ord-404" }).then(() => "found")),
    await attempt("stalled service", async () => {
      // A responder that never answers, as a hung instance would: the call can only time out.
      const stalled = nc.subscribe("stalled.v1.get_order");
      try {
        await nc.flush();
        await new OrderServiceNatsClient(nc, { subjectPrefix: "stalled.v1", timeout: 300 }).getOrder({ id: placed });
        return "answered";
      } finally {
        stalled.unsubscribe();
      }
    }),
    await attempt("nobody home", () =>
      new OrderServiceNatsClient(nc, { subjectPrefix: "nobody.home" }).getOrder({ id: placed }).then(() => "answered"),
    ),
  ];
  for (const outcome of outcomes) {
    addRow(
      "#calls",
      [outcome.call, outcome.ok ? "ok" : "error", outcome.code, outcome.recognisedBy, outcome.message, outcome.data],
      { call: outcome.call, outcome: outcome.ok ? "ok" : "error", code: outcome.code, recognisedBy: outcome.recognisedBy },
    );
  }
  await nc.close();
  setStatus("done", `${outcomes.length} calls to ${OrderServiceNatsSpec.name} over ${server}`);
}

main().catch(showFailure);
