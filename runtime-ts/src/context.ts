/** What a handler and the server interceptors know about a request: the request context. */

import { headers as createHeaders } from "@nats-io/nats-core";
import type { Msg, MsgHdrs } from "@nats-io/nats-core";
import type { StreamKind } from "./spec.js";
import { attemptNumber } from "./headers.js";
import type { Codec } from "./codec.js";
import type { DescMessage } from "@bufbuild/protobuf";

/** What a stream handler's context knows of its stream beyond the request: set by the service for each stream it serves. */
export interface StreamContext {
  /** The codec of the stream's responses. */
  readonly responses: Codec<DescMessage>;
  /** The connection's max_payload, when known. */
  readonly maxPayload: () => number | undefined;
}

/** The stream each stream handler's context belongs to (for helpers such as `chunkedDownload`). */
export const streamContexts = new WeakMap<RequestContext, StreamContext>();

/** Aborts a context's signal: its deadline passed. Set by {@link RequestContext}. */
export let expire: (ctx: RequestContext) => void;
/** A context's reply headers, or `undefined` when none were ever asked for. Set by {@link RequestContext}. */
export let replyHeaders: (ctx: RequestContext) => MsgHdrs | undefined;
/**
 * The context of a unary request whose subject and headers are read from
 * `message` on first use (its header block already checked, see
 * `headerProblem`). Set by {@link RequestContext}.
 */
export let messageContext: (method: string, endpoint: string, message: Msg, deadline: number | undefined) => RequestContext;

/**
 * What a handler and the server interceptors know about the request:
 * method, subject, headers, deadline, and the headers to send back (on
 * success and on error).
 *
 * The abort signal, the reply headers and (for a unary request) the
 * subject and request headers are made on first use, so a request that
 * needs none of them costs none of them.
 */
export class RequestContext {
  /** Proto method name (`CreateOrder`). */
  readonly method: string;
  /** ADR-32 endpoint name (`create_order`). */
  readonly endpoint: string;
  /** When the caller stops waiting (milliseconds since the epoch), if known. */
  readonly deadline: number | undefined;
  /** The kind of stream this request opens; `undefined` for a unary request. */
  readonly stream: StreamKind | undefined;
  #subject: string | undefined;
  #headers: MsgHdrs | undefined;
  /** Where the subject and headers come from when they were not given. */
  #message: Msg | undefined;
  #signal: AbortSignal | undefined;
  #controller: AbortController | undefined;
  #expired = false;
  #responseHeaders: MsgHdrs | undefined;

  static {
    expire = (ctx) => {
      ctx.#expired = true;
      ctx.#controller?.abort();
    };
    replyHeaders = (ctx) => ctx.#responseHeaders;
    messageContext = (method, endpoint, message, deadline) => {
      const ctx = new RequestContext({ method, endpoint, subject: "", ...(deadline !== undefined && { deadline }) });
      ctx.#subject = undefined;
      ctx.#message = message;
      return ctx;
    };
  }

  constructor(init: { method: string; endpoint: string; subject: string; headers?: MsgHdrs; deadline?: number; signal?: AbortSignal; stream?: StreamKind }) {
    this.method = init.method;
    this.endpoint = init.endpoint;
    this.#subject = init.subject;
    this.#headers = init.headers;
    this.deadline = init.deadline;
    this.stream = init.stream;
    this.#signal = init.signal;
  }

  /** The subject the request arrived on. */
  get subject(): string {
    this.#subject ??= this.#message?.subject ?? "";
    return this.#subject;
  }

  /** The request headers; interceptors may change them. */
  get headers(): MsgHdrs {
    this.#headers ??= this.#message?.headers ?? createHeaders();
    return this.#headers;
  }

  /**
   * Aborted when the deadline passes (the reply is then DEADLINE_EXCEEDED)
   * and, for a stream, when it ends otherwise: a caller cancel, a gone
   * caller, a protocol error or the service's stop.
   */
  get signal(): AbortSignal {
    if (this.#signal === undefined) {
      this.#controller = new AbortController();
      if (this.#expired) {
        this.#controller.abort();
      }
      this.#signal = this.#controller.signal;
    }
    return this.#signal;
  }

  /**
   * Which attempt of the caller's call this request is: 1 for the first, 2
   * for the first retry (the `Nats-Micro-Attempt` header; 1 when it is
   * absent or not a positive number, PROTOCOL §10.1).
   */
  get attempt(): number {
    return attemptNumber(this.headers);
  }

  /** A request header's first value. */
  header(name: string): string | undefined {
    return this.headers.has(name) ? this.headers.get(name) : undefined;
  }

  /** Milliseconds left until the deadline (zero once passed), if there is one. */
  remaining(): number | undefined {
    return this.deadline === undefined ? undefined : Math.max(0, this.deadline - Date.now());
  }

  /** Sets a header on the reply (replacing earlier values). */
  setResponseHeader(name: string, value: string): void {
    this.responseHeaders.set(name, value);
  }

  /** Adds a value to a reply header. */
  appendResponseHeader(name: string, value: string): void {
    this.responseHeaders.append(name, value);
  }

  /** The headers set for the reply so far. */
  get responseHeaders(): MsgHdrs {
    this.#responseHeaders ??= createHeaders();
    return this.#responseHeaders;
  }
}
