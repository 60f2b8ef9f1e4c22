/**
 * The generated TypeScript clients against a running service (the Rust one
 * or the TypeScript one): every code, error data, headers both ways,
 * timeouts, transport failures, interceptors, JSON.
 *
 * usage: node client_checks.js NATS_URL orders-rust|orders-ts|json
 * - orders-rust: the Rust TestOrders (tests/tests/e2e/support.rs);
 * - orders-ts: serve.js `orders budget`, which also reports budgets;
 * - json: a jsondemo.v1.JSONService (Rust or TypeScript).
 * Prints `ok NAME` per check and a `N passed, N failed` line; exits 1 on a failure.
 */

import assert from "node:assert/strict";
import { runChecks, type Check } from "./checks.js";
import * as runtime from "nats-micro-runtime";
import * as orders from "./gen/order/v1/order_nats.pb.js";
import { isJSONServiceInvalidArgument, JSONServiceNatsClient } from "./gen/jsondemo/v1/jsondemo_nats.pb.js";

const { OrderServiceErrorCode: Code, OrderServiceNatsClient } = orders;
const decoder = new TextDecoder();

/** Each code with the generated checker that must recognise it. */
const checkers: [orders.OrderServiceErrorCode, (error: unknown) => boolean][] = [
  [Code.INVALID_ARGUMENT, orders.isOrderServiceInvalidArgument],
  [Code.NOT_FOUND, orders.isOrderServiceNotFound],
  [Code.ALREADY_EXISTS, orders.isOrderServiceAlreadyExists],
  [Code.PERMISSION_DENIED, orders.isOrderServicePermissionDenied],
  [Code.UNAUTHENTICATED, orders.isOrderServiceUnauthenticated],
  [Code.INTERNAL, orders.isOrderServiceInternal],
  [Code.UNAVAILABLE, orders.isOrderServiceUnavailable],
  [Code.CANCELLED, orders.isOrderServiceCancelled],
  [Code.UNKNOWN, orders.isOrderServiceUnknown],
  [Code.DEADLINE_EXCEEDED, orders.isOrderServiceDeadlineExceeded],
  [Code.RESOURCE_EXHAUSTED, orders.isOrderServiceResourceExhausted],
  [Code.FAILED_PRECONDITION, orders.isOrderServiceFailedPrecondition],
  [Code.ABORTED, orders.isOrderServiceAborted],
  [Code.OUT_OF_RANGE, orders.isOrderServiceOutOfRange],
  [Code.UNIMPLEMENTED, orders.isOrderServiceUnimplemented],
  [Code.DATA_LOSS, orders.isOrderServiceDataLoss],
  [Code.ORDER_EXPIRED, orders.isOrderServiceOrderExpired],
  [Code.PAYMENT_FAILED, orders.isOrderServicePaymentFailed],
  [Code.STOCK_UNAVAILABLE, orders.isOrderServiceStockUnavailable],
];

/** The error a call rejected with, which must be an OrderServiceError. */
async function failure(call: Promise<unknown>): Promise<orders.OrderServiceError> {
  try {
    await call;
  } catch (error) {
    assert.ok(orders.isOrderServiceError(error), `an OrderServiceError, got ${String(error)}`);
    return error;
  }
  assert.fail("the call succeeded");
}

const order = (customerId: string) => ({ customerId, items: [{ productId: "p-1", quantity: 2, unitPriceCents: 1250n }] });

const orderChecks: Check[] = [
  [
    "every code reaches the client intact",
    async (nc) => {
      const client = new OrderServiceNatsClient(nc);
      assert.equal(checkers.length, Object.keys(Code).length);
      for (const [code, checker] of checkers) {
        const err = await failure(client.createOrder(order("c-1"), { headers: { "X-Want-Code": code } }));
        assert.equal(err.code, code);
        assert.equal(orders.getOrderServiceErrorCode(err), code);
        assert.ok(checker(err), `${code}: its own checker`);
        for (const [other, otherChecker] of checkers) {
          assert.ok(other === code || !otherChecker(err), `${code} is not ${other}`);
        }
        assert.equal(err.message, `wanted ${code}`);
        assert.equal(decoder.decode(err.data), `data:${code}`);
        assert.equal(err.method, "CreateOrder");
        assert.equal(err.isTransport(), false);
        assert.equal(err.kind, runtime.ErrorKind.Service);
        assert.equal(err.toString(), `[${code}] CreateOrder: wanted ${code}`);
      }
    },
  ],
  [
    "unrecognised codes are kept verbatim",
    async (nc) => {
      const client = new OrderServiceNatsClient(nc);
      for (const code of ["TEAPOT_418", "418"]) {
        const err = await failure(client.createOrder(order("c"), { headers: { "X-Want-Code": code } }));
        assert.equal(orders.getOrderServiceErrorCode(err), code);
        assert.ok(checkers.every(([, checker]) => !checker(err)));
      }
    },
  ],
  [
    "uncoded handler errors are INTERNAL without their text",
    async (nc) => {
      const err = await failure(new OrderServiceNatsClient(nc).createOrder(order("uncoded")));
      assert.ok(orders.isOrderServiceInternal(err));
      assert.equal(err.message, "internal error");
    },
  ],
  [
    "success, request headers and reply headers",
    async (nc) => {
      const client = new OrderServiceNatsClient(nc, { headers: { "X-Echo": "client" } });
      let replyHeaders: runtime.MsgHdrs | undefined;
      const response = await client.createOrder(order("c-42"), { headers: { "X-Echo": "call" }, onHeaders: (h) => (replyHeaders = h) });
      assert.equal(response.order?.customerId, "c-42");
      assert.equal(replyHeaders?.get("X-Echoed"), "call", "the call's header wins over the client's");
      await client.createOrder(order("c"), { onHeaders: (h) => (replyHeaders = h) });
      assert.equal(replyHeaders?.get("X-Echoed"), "client");
      assert.equal((await client.getOrder({ id: "o-9" })).id, "o-9");
      const missing = await failure(client.getOrder({}));
      assert.ok(orders.isOrderServiceNotFound(missing));
      assert.equal(missing.method, "GetOrder");
    },
  ],
  [
    "a call nobody answers times out, recognisably",
    async (nc) => {
      const silent = nc.subscribe("silent.create_order");
      try {
        const client = new OrderServiceNatsClient(nc, { subjectPrefix: "silent" });
        const err = await failure(client.createOrder(order("c"), { timeout: 300 }));
        assert.ok(err.isTimeout(), String(err));
        assert.equal(err.kind, runtime.ErrorKind.Timeout);
        assert.ok(orders.isOrderServiceDeadlineExceeded(err));
      } finally {
        silent.unsubscribe();
      }
    },
  ],
  [
    "a slow handler ends in DEADLINE_EXCEEDED at the caller's deadline",
    async (nc) => {
      // Whichever comes first: the caller's timer, or the service's reply at the same deadline.
      const err = await failure(new OrderServiceNatsClient(nc).createOrder(order("slow"), { timeout: 300 }));
      assert.ok(orders.isOrderServiceDeadlineExceeded(err), String(err));
    },
  ],
  [
    "no responders is recognisable",
    async (nc) => {
      const client = new OrderServiceNatsClient(nc, { subjectPrefix: "nobody.here" });
      assert.equal(client.endpoints()[0]?.subject, "nobody.here.create_order");
      const err = await failure(client.createOrder(order("c")));
      assert.ok(err.isNoResponders(), String(err));
      assert.ok(orders.isOrderServiceUnavailable(err));
      assert.equal(err.method, "CreateOrder");
    },
  ],
  [
    "client interceptors run in order, first outermost, and can short-circuit",
    async (nc) => {
      const log: string[] = [];
      const logger =
        (name: string): runtime.ClientInterceptor =>
        async (call, next) => {
          log.push(`${name}:${call.method}`);
          call.headers.set("X-Echo", name);
          const reply = await next(call);
          log.push(`${name}:after`);
          return reply;
        };
      let replyHeaders: runtime.MsgHdrs | undefined;
      const client = new OrderServiceNatsClient(nc, { interceptors: [logger("a"), logger("b")] });
      await client.createOrder(order("c"), { onHeaders: (h) => (replyHeaders = h) });
      assert.deepEqual(log, ["a:CreateOrder", "b:CreateOrder", "b:after", "a:after"]);
      assert.equal(replyHeaders?.get("X-Echoed"), "b");
      const blocked = new OrderServiceNatsClient(nc, {
        interceptors: [
          async () => {
            throw new runtime.NatsMicroError("PERMISSION_DENIED", "", "read-only client");
          },
        ],
      });
      const err = await failure(blocked.createOrder(order("c")));
      assert.ok(orders.isOrderServicePermissionDenied(err));
      assert.equal(err.method, "CreateOrder");
      assert.equal(err.message, "read-only client");
    },
  ],
];

/** Only the TypeScript service reports the budget it got and serves `declined`. */
const typeScriptServerChecks: Check[] = [
  [
    "timeout precedence: call, then client, then endpoint, then service",
    async (nc) => {
      const budgets: string[] = [];
      const onHeaders = (h: runtime.MsgHdrs) => budgets.push(h.get("X-Budget"));
      const client = new OrderServiceNatsClient(nc);
      await client.createOrder(order("c"), { onHeaders });
      await client.getOrder({ id: "1" }, { onHeaders });
      const overridden = new OrderServiceNatsClient(nc, { timeout: 2500 });
      await overridden.getOrder({ id: "1" }, { onHeaders });
      await overridden.getOrder({ id: "1" }, { onHeaders, timeout: 1234 });
      assert.deepEqual(budgets, ["5000000", "750000", "2500000", "1234000"]);
    },
  ],
  [
    "a handler error implementing natsErrorCode() keeps its code, message and data",
    async (nc) => {
      const err = await failure(new OrderServiceNatsClient(nc).createOrder(order("declined")));
      assert.ok(orders.isOrderServicePaymentFailed(err));
      assert.equal(err.message, "card declined");
      assert.equal(decoder.decode(err.data), "card:4242");
    },
  ],
];

const jsonChecks: Check[] = [
  [
    "json services round-trip in the proto3 JSON mapping",
    async (nc) => {
      const client = new JSONServiceNatsClient(nc);
      const echo = await client.echo({ message: 'hi "there"', timestamp: 1_700_000_000_123n });
      assert.deepEqual([echo.message, echo.timestamp, echo.encoding], ['hi "there"', 1_700_000_000_123n, "json"]);
      const user = (await client.getUser({ id: "u1" })).user;
      assert.deepEqual([user?.name, user?.roles], ["Ada", ["admin"]]);
      const raw = await nc.request("demo.json.echo", '{"message":"raw","timestamp":"42"}', { timeout: 5000 });
      assert.deepEqual(raw.json(), { message: "raw", timestamp: "42", encoding: "json" });
      try {
        await client.getUser({});
        assert.fail("an empty id is invalid");
      } catch (err) {
        assert.ok(isJSONServiceInvalidArgument(err), String(err));
      }
    },
  ],
];

const [url, target] = process.argv.slice(2);
const checks: Record<string, Check[]> = {
  "orders-rust": orderChecks,
  "orders-ts": [...orderChecks, ...typeScriptServerChecks],
  json: jsonChecks,
};
const selected = checks[target ?? ""];
if (selected === undefined) {
  throw new Error(`unknown target ${String(target)}`);
}
await runChecks(url ?? "", selected);
