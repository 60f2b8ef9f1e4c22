/**
 * The order service of proto/order/v1/order.proto, in TypeScript: an
 * in-memory store whose failures are the service's typed errors. Served from
 * Node by server.ts, and from a web page by examples/browser/service.ts.
 */

import { create } from "@bufbuild/protobuf";
import type { RequestContext } from "nats-micro-runtime";
import {
  newOrderServiceInvalidArgumentError,
  newOrderServiceNotFoundError,
  newOrderServiceOrderExpiredError,
  newOrderServicePaymentFailedError,
  newOrderServiceStockUnavailableError,
  type IOrderServiceNats,
} from "./gen/order/v1/order_nats.pb.js";
import { Order_Status, OrderSchema, type CreateOrderRequest, type GetOrderRequest, type Order } from "./gen/order/v1/order_pb.js";

/** Carts older than this expire. */
const CART_LIFETIME_MINUTES = 30;

// snippet: service
export class InMemoryOrders implements IOrderServiceNats {
  readonly #orders = new Map<string, Order>();

  createOrder(request: CreateOrderRequest, ctx: RequestContext) {
    if (request.items.length === 0) {
      throw newOrderServiceInvalidArgumentError("CreateOrder", "an order needs at least one item");
    }
    if (request.cartAgeMinutes > CART_LIFETIME_MINUTES) {
      throw newOrderServiceOrderExpiredError("CreateOrder", `order expired after ${CART_LIFETIME_MINUTES} minutes`);
    }
    if (request.cardToken === "declined") {
      throw newOrderServicePaymentFailedError("CreateOrder", "the card was declined");
    }
    const soldOut = request.items.find((item) => item.productId === "sold-out");
    if (soldOut !== undefined) {
      // The error data tells the caller which item ran out.
      throw newOrderServiceStockUnavailableError("CreateOrder", "an item is out of stock", new TextEncoder().encode(soldOut.productId));
    }
    const id = `ord-${this.#orders.size + 1}`;
    const total = request.items.reduce((sum, item) => sum + item.unitPriceCents * BigInt(item.quantity), 0n);
    const order = create(OrderSchema, { id, customerId: request.customerId, items: request.items, totalCents: total, status: Order_Status.PLACED });
    this.#orders.set(id, order);
    const trace = ctx.header("X-Trace-Id");
    if (trace !== undefined) {
      ctx.setResponseHeader("X-Trace-Id", trace);
    }
    return { order };
  }

  getOrder(request: GetOrderRequest) {
    const order = this.#orders.get(request.id);
    if (order === undefined) {
      throw newOrderServiceNotFoundError("GetOrder", `no order ${request.id}`);
    }
    return order;
  }
}
// end snippet
