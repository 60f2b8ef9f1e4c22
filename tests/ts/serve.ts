/**
 * TypeScript services the interop tests call from Rust.
 *
 * `orders`: the counterpart of the Rust `TestOrders` (tests/tests/e2e/support.rs):
 * - header `X-Want-Code: CODE` fails `CreateOrder` with CODE, message
 *   `wanted CODE` and data `data:CODE`;
 * - customer `uncoded` throws a plain Error (INTERNAL, text withheld),
 *   `declined` throws an error implementing `natsErrorCode()` (PAYMENT_FAILED),
 *   `slow` waits until its deadline aborts it;
 * - anything else succeeds, echoing the customer and the `X-Echo` header.
 *
 * `json`: the project's `jsondemo.v1.JSONService` (`json: true`): `Echo` answers
 * with encoding `json`, `GetUser` fails INVALID_ARGUMENT without an id.
 *
 * usage: node serve.js NATS_URL orders|json [MODE...], modes: names, expose,
 * metadata, no-queue, chain, auth, budget, overrides. Prints `ready ID` once
 * serving; stops gracefully when stdin closes, then prints `stopped`.
 */

import { connect } from "@nats-io/transport-node";
import * as runtime from "nats-micro-runtime";
import {
  newOrderServiceNotFoundError,
  OrderServiceError,
  registerOrderServiceHandlers,
  type IOrderServiceNats,
} from "./gen/order/v1/order_nats.pb.js";
import type { CreateOrderRequest } from "./gen/order/v1/order_pb.js";
import { newJSONServiceInvalidArgumentError, registerJSONServiceHandlers, type IJSONServiceNats } from "./gen/jsondemo/v1/jsondemo_nats.pb.js";

const encoder = new TextEncoder();

/** A store error that says which code callers get (the HandlerError contract). */
class CardDeclined extends Error implements runtime.HandlerError {
  natsErrorCode(): string {
    return "PAYMENT_FAILED";
  }
  natsErrorData(): Uint8Array {
    return encoder.encode("card:4242");
  }
}

function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
}

const orders: IOrderServiceNats = {
  async createOrder(request: CreateOrderRequest, ctx: runtime.RequestContext) {
    const want = ctx.header("X-Want-Code");
    if (want !== undefined) {
      throw new OrderServiceError(want, "CreateOrder", `wanted ${want}`, encoder.encode(`data:${want}`));
    }
    switch (request.customerId) {
      case "uncoded":
        throw new Error("postgres://admin:hunter2@db/orders refused the connection");
      case "declined":
        throw new CardDeclined("card declined");
      case "slow":
        await untilAborted(ctx.signal);
        break;
    }
    const echo = ctx.header("X-Echo");
    if (echo !== undefined) {
      ctx.setResponseHeader("X-Echoed", echo);
    }
    return { order: { id: "o-1", customerId: request.customerId } };
  },

  getOrder(request) {
    if (request.id === "") {
      throw newOrderServiceNotFoundError("GetOrder", "no order with an empty id");
    }
    return { id: request.id };
  },
};

const json: IJSONServiceNats = {
  echo(request) {
    return { message: request.message, timestamp: request.timestamp, encoding: "json" };
  },
  getUser(request) {
    if (request.id === "") {
      throw newJSONServiceInvalidArgumentError("GetUser", "id is required");
    }
    return { user: { id: request.id, name: "Ada", roles: ["admin"] } };
  },
};

/** Appends `name:before` and `name:after` to the reply's `X-Chain` header and sets `X-Echo` for the handler. */
function chainLink(name: string): runtime.ServerInterceptor {
  return async (ctx, payload, next) => {
    ctx.appendResponseHeader("X-Chain", `${name}:before`);
    ctx.headers.set("X-Echo", name);
    const reply = await next(ctx, payload);
    ctx.appendResponseHeader("X-Chain", `${name}:after`);
    return reply;
  };
}

/** Rejects calls without `Authorization: Bearer good`. */
const requireAuth: runtime.ServerInterceptor = async (ctx, payload, next) => {
  if (ctx.header("Authorization") !== "Bearer good") {
    ctx.setResponseHeader("WWW-Authenticate", "Bearer");
    throw new runtime.NatsMicroError("UNAUTHENTICATED", ctx.method, `${ctx.method} needs a token`);
  }
  return next(ctx, payload);
};

/** Reports the caller's budget header and the time left as the handler starts. */
const reportBudget: runtime.ServerInterceptor = async (ctx, payload, next) => {
  ctx.setResponseHeader("X-Budget", ctx.header(runtime.TIMEOUT_HEADER) ?? "");
  ctx.setResponseHeader("X-Remaining", String(ctx.remaining() ?? -1));
  return next(ctx, payload);
};

function options(modes: readonly string[]): runtime.ServiceOptions {
  const interceptors: runtime.ServerInterceptor[] = [];
  const options: runtime.ServiceOptions = { interceptors, logger: { event: () => {}, warn: () => {} } };
  for (const mode of modes) {
    switch (mode) {
      case "names":
        options.codeFormat = "names";
        break;
      case "expose":
        options.exposeInternalErrors = true;
        break;
      case "metadata":
        options.mergeMetadata = { region: "eu" };
        break;
      case "no-queue":
        options.queueGroup = null;
        break;
      case "chain":
        interceptors.push(chainLink("a"), chainLink("b"));
        break;
      case "auth":
        interceptors.push(requireAuth);
        break;
      case "budget":
        interceptors.push(reportBudget);
        break;
      case "overrides":
        options.timeout = 3000;
        options.endpointTimeouts = { get_order: 2000 };
        break;
      default:
        throw new Error(`unknown mode ${mode}`);
    }
  }
  return options;
}

const [url, kind, ...modes] = process.argv.slice(2);
const nc = await connect({ servers: url ?? "" });
const service =
  kind === "json" ? await registerJSONServiceHandlers(nc, json, options(modes)) : await registerOrderServiceHandlers(nc, orders, options(modes));
console.log(`ready ${service.id}`);
process.stdin.resume();
process.stdin.on("end", () => {
  void service.stop().then(async () => {
    console.log("stopped");
    await nc.close();
  });
});
