/** Interceptor chains: the client's and the server's interceptor types, and running a chain. */

import type { MsgHdrs } from "@nats-io/nats-core";
import type { StreamKind } from "./spec.js";
import type { RequestContext } from "./context.js";

/** Runs `interceptors` in order, the first outermost, then `last`. */
export function chain<Args extends unknown[], R>(
  interceptors: readonly ((...args: [...Args, (...args: Args) => Promise<R>]) => Promise<R>)[],
  last: (...args: Args) => Promise<R>,
): (...args: Args) => Promise<R> {
  return interceptors.reduceRight<(...args: Args) => Promise<R>>(
    (next, interceptor) =>
      (...args: Args) =>
        interceptor(...args, next),
    last,
  );
}

/**
 * One outgoing call as client interceptors see it; they may change any part
 * of it. For a stream, the call is its open: the headers and timeout cover
 * the whole stream, and the payload is the request of a server-streaming
 * RPC (empty for the other kinds).
 */
export interface ClientCall {
  /** Proto method name (`CreateOrder`). */
  method: string;
  /** The subject the request goes to. */
  subject: string;
  /** Request headers. */
  headers: MsgHdrs;
  /**
   * Milliseconds to wait for the reply (sent to the server as the caller's
   * budget); for a stream, for its end. `Infinity` for a stream without a
   * deadline (streams have no default one, PROTOCOL §9.5).
   */
  timeout: number;
  /** The encoded request. */
  payload: Uint8Array;
  /** The kind of stream this call opens; absent for a unary call. */
  readonly stream?: StreamKind;
}

/**
 * A successful reply as client interceptors see it. For a stream, its end:
 * the trailing headers, and the response of a client-streaming RPC as
 * payload (empty for the other kinds).
 */
export interface ClientReply {
  payload: Uint8Array;
  headers: MsgHdrs;
}

/** The rest of a client chain: further interceptors, then the NATS request (for a stream, its open). */
export type ClientNext = (call: ClientCall) => Promise<ClientReply>;

/**
 * Runs around every call of a client: inspect or change the call, call
 * `next(call)` to continue, or throw a {@link NatsMicroError} to
 * short-circuit. Other thrown values reach the caller unchanged.
 *
 * Streams go through the same chain: `next(call)` sends the open and
 * settles when the stream ends (resolving with its end, rejecting with its
 * error, `CANCELLED` when the caller cancels), while the caller already
 * sends and receives. What the chain settles with is what the caller sees
 * at the end of the stream; an interceptor that throws before the end
 * fails the stream (the server is told with a cancel).
 */
export type ClientInterceptor = (call: ClientCall, next: ClientNext) => Promise<ClientReply>;

/** The rest of a server chain: further interceptors, then the handler. */
export type ServerNext = (ctx: RequestContext, payload: Uint8Array) => Promise<Uint8Array>;

/**
 * Runs around every request of a service: inspect or change the context,
 * call `next(ctx, payload)` to continue, or throw (typically a
 * {@link NatsMicroError}) to short-circuit.
 *
 * Streams go through the same chain ({@link RequestContext.stream} says
 * which kind): the payload is the request of a server-streaming RPC (empty
 * for the other kinds), and `next` acks the stream, runs the handler and
 * settles when the stream ends: with the end's body (the response of a
 * client-streaming RPC, else empty), or rejecting with its error (also
 * when the caller cancels, goes silent or the deadline passes). Throwing
 * before `next` refuses the open: the caller gets an end with the error
 * and no handler runs.
 */
export type ServerInterceptor = (ctx: RequestContext, payload: Uint8Array, next: ServerNext) => Promise<Uint8Array>;
