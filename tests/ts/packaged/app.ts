/**
 * Run in a fresh project outside the repository, with the packed
 * `nats-micro-runtime` installed from its tarball: code generated into two
 * output folders (`gen-a`, `gen-b`) shares one runtime, and a third folder
 * (`other/gen-c`) uses a second installed copy of it.
 *
 * usage: node app.js NATS_URL. Prints `ok …` per check and `N passed, 0 failed`.
 */

import { connect } from "@nats-io/transport-node";
import * as runtime from "nats-micro-runtime";
import {
  OrderServiceError,
  OrderServiceNatsClient,
  registerOrderServiceHandlers,
  type IOrderServiceNats,
} from "./gen-a/order/v1/order_nats.pb.js";
import { JSONServiceError, JSONServiceNatsClient, registerJSONServiceHandlers } from "./gen-b/jsondemo/v1/jsondemo_nats.pb.js";
import * as downstream from "./other/gen-c/order/v1/order_nats.pb.js";

let passed = 0;
let failed = 0;
function check(name: string, ok: boolean, detail = ""): void {
  if (ok) {
    passed += 1;
    console.log(`ok ${name}`);
  } else {
    failed += 1;
    console.log(`FAILED ${name} ${detail}`);
  }
}

const nc = await connect({ servers: process.argv[2] ?? "" });

// One error class identity across both output folders.
const a = new OrderServiceError("NOT_FOUND", "GetOrder", "a");
const b = new JSONServiceError("NOT_FOUND", "GetUser", "b");
check("one error class identity", a instanceof runtime.NatsMicroError && b instanceof runtime.NatsMicroError);
check("both derive the same class", Object.getPrototypeOf(OrderServiceError) === Object.getPrototypeOf(JSONServiceError));

// One interceptor type for both services and both clients (a compile-time check as much as a run-time one).
const seen: string[] = [];
const serverInterceptor: runtime.ServerInterceptor = (ctx, payload, next) => {
  seen.push(`server:${ctx.method}`);
  return next(ctx, payload);
};
const clientInterceptor: runtime.ClientInterceptor = (call, next) => {
  seen.push(`client:${call.method}`);
  return next(call);
};

// The downstream service, generated into a folder with its own copy of the runtime.
const downstreamService = await downstream.registerOrderServiceHandlers(
  nc,
  {
    createOrder: () => ({}),
    getOrder: (request) => {
      throw downstream.newOrderServiceNotFoundError("GetOrder", `no order ${request.id} downstream`);
    },
  },
  { name: "downstream_orders", subjectPrefix: "downstream.v1" },
);
const downstreamClient = new downstream.OrderServiceNatsClient(nc, { subjectPrefix: "downstream.v1" });

const orders: IOrderServiceNats = {
  createOrder: (request) => ({ order: { id: "o-1", customerId: request.customerId } }),
  // Re-throws the downstream client's error (made by the other copy of the runtime) unchanged.
  getOrder: async (request) => downstreamClient.getOrder({ id: request.id }),
};
const orderService = await registerOrderServiceHandlers(nc, orders, { interceptors: [serverInterceptor] });
const jsonService = await registerJSONServiceHandlers(
  nc,
  {
    echo: (request) => ({ message: request.message, timestamp: request.timestamp, encoding: "json" }),
    getUser: () => {
      throw new JSONServiceError("NOT_FOUND", "GetUser", "nobody");
    },
  },
  { interceptors: [serverInterceptor] },
);

const orderClient = new OrderServiceNatsClient(nc, { interceptors: [clientInterceptor] });
const jsonClient = new JSONServiceNatsClient(nc, { interceptors: [clientInterceptor] });
const created = await orderClient.createOrder({ customerId: "c-1" });
check("calls the first output folder's service", created.order?.customerId === "c-1");
const echoed = await jsonClient.echo({ message: "hi" });
check("calls the second output folder's service", echoed.message === "hi" && echoed.encoding === "json");
check(
  "one interceptor type serves both",
  ["server:CreateOrder", "server:Echo", "client:CreateOrder", "client:Echo"].every((s) => seen.includes(s)),
  seen.join(","),
);

// The downstream error crosses copies of the runtime.
try {
  await downstreamClient.getOrder({ id: "x" });
  check("the downstream client fails", false);
} catch (err) {
  check("another copy's error is a NatsMicroError here", err instanceof runtime.NatsMicroError && runtime.isNatsMicroError(err));
  check("but not this copy's generated class", !(err instanceof OrderServiceError) && err instanceof downstream.OrderServiceError);
}
try {
  await orderClient.getOrder({ id: "o-404" });
  check("the re-thrown error reaches the caller", false);
} catch (err) {
  check(
    "a re-thrown downstream error keeps its code and message",
    err instanceof OrderServiceError && err.code === "NOT_FOUND" && err.message === "no order o-404 downstream",
    String(err),
  );
}

await Promise.all([orderService.stop(), jsonService.stop(), downstreamService.stop()]);
await nc.close();
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
