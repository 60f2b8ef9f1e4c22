/** Streams (PROTOCOL §9), the caller's side: a streaming call. */

import { createInbox, headers as createHeaders } from "@nats-io/nats-core";
import type { Msg, MsgHdrs, NatsConnection, Subscription } from "@nats-io/nats-core";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { encodeTimeout, type HeadersInit, protocolHeader, TIMEOUT_HEADER, toHeaders } from "./headers.js";
import { describe, ErrorKind, isNatsMicroError, NatsMicroError } from "./errors.js";
import type { Codec } from "./codec.js";
import type { StreamMethodSpec } from "./spec.js";
import type { ClientCall, ClientNext, ClientReply } from "./interceptors.js";
import { requestError } from "./request.js";
import {
  DEFAULT_KEEPALIVE_INTERVAL,
  DEFAULT_PEER_TIMEOUT,
  isStreamEnd,
  parseStreamCount,
  REPLY_TO_HEADER,
  STREAM_BATCH_HEADER,
  STREAM_CANCEL_HEADER,
  STREAM_CREDIT_HEADER,
  STREAM_INBOX_HEADER,
  STREAM_SEQ_HEADER,
  streamEndError,
  type StreamMessage,
  type StreamTiming,
} from "./stream-wire.js";
import { StreamLink } from "./stream-link.js";

const DONE: IteratorReturnResult<undefined> = { done: true, value: undefined };

/** What the end gives (a client-streaming response, else `undefined`: done) as an iterator result. */
function iteratorResult<T>(value: T | undefined): IteratorResult<T, undefined> {
  return value === undefined ? DONE : { done: false, value };
}

interface CallerStreamInit {
  readonly nc: NatsConnection;
  readonly method: StreamMethodSpec;
  readonly window: number;
  readonly timing: StreamTiming;
  readonly signal: AbortSignal | undefined;
  readonly onHeaders: ((headers: MsgHdrs) => void) | undefined;
  readonly requests: Codec<DescMessage>;
  readonly responses: Codec<DescMessage>;
  /** A runtime error as the service's error class; other values unchanged. */
  readonly typed: (error: unknown) => unknown;
}

/**
 * The caller's side of one stream (PROTOCOL §9.2): opens it on an inbox
 * subscribed first, takes the ack (or, from a Go-plugin server, a first data
 * message or end), then sends and receives over a {@link StreamLink}.
 *
 * The open is the end of the client's interceptor chain ({@link start}):
 * the chain may send it later than the call returns (requests wait for it),
 * and what the chain settles with is what the caller sees at the end.
 */
export class CallerStream {
  readonly #init: CallerStreamInit;
  readonly #link: StreamLink;
  #inbox: Subscription | undefined;
  readonly #opened: Promise<void>;
  #open: (() => void) | undefined;
  /** The interceptor chain reached the open (once only). */
  #sent = false;
  /** The stream's own outcome, as the innermost `next` returns it: settled when the end arrives or the stream fails. */
  readonly #outcome: Promise<ClientReply>;
  #settleOutcome: { resolve: (reply: ClientReply) => void; reject: (error: unknown) => void } | undefined;
  /** What the interceptor chain made of the outcome. */
  #result: Promise<ClientReply> | undefined;
  /** What the caller sees at the end: the response (client-streaming) or `undefined`, or the error. */
  #conclusion: Promise<MessageShape<DescMessage> | undefined> | undefined;
  #timers: ReturnType<typeof setTimeout>[] = [];
  #done = false;
  #failure: unknown;
  readonly #abort = () => this.cancel();

  constructor(init: CallerStreamInit) {
    this.#init = init;
    const method = init.method.method;
    this.#link = new StreamLink({
      nc: init.nc,
      method,
      window: init.window,
      windowAnnounced: true,
      batchesAnnounced: true,
      keepaliveInterval: init.timing.keepaliveInterval ?? DEFAULT_KEEPALIVE_INTERVAL,
      peerTimeout: init.timing.peerTimeout ?? DEFAULT_PEER_TIMEOUT,
      onFailure: (error, cause) => this.#fail(error, cause === "protocol"),
      onEnd: (end) => this.#ended(end),
    });
    this.#opened = new Promise<void>((resolve) => {
      this.#open = resolve;
    });
    this.#outcome = new Promise<ClientReply>((resolve, reject) => {
      this.#settleOutcome = { resolve, reject };
    });
    // Nobody awaits the outcome when an interceptor never lets the open out.
    this.#outcome.catch(() => undefined);
    if (init.signal?.aborted) {
      this.#fail(new NatsMicroError("CANCELLED", method, "the call was cancelled"), false);
      return;
    }
    init.signal?.addEventListener("abort", this.#abort, { once: true });
  }

  /**
   * Runs `chained` (the client's interceptors, ending in {@link open}) on
   * the open `call`. A chain that fails before the stream ends fails the
   * stream; one that answers without opening it is an INTERNAL error.
   */
  start(chained: ClientNext, call: ClientCall): void {
    let result: Promise<ClientReply>;
    try {
      result = chained(call);
    } catch (err) {
      result = Promise.reject(err);
    }
    this.#result = result.then((reply) => {
      if (!this.#sent) {
        throw new NatsMicroError("INTERNAL", this.#init.method.method, "a client interceptor answered a stream open without opening the stream");
      }
      return reply;
    });
    // A chain that fails before the stream's outcome is known ends the stream; after it, the caller sees it at the end.
    this.#result.catch((err: unknown) => {
      if (this.#settleOutcome !== undefined) {
        this.#fail(err, true);
      }
    });
  }

  /** The end of the interceptor chain: sends the open; settles with the stream's outcome. */
  open(call: ClientCall): Promise<ClientReply> {
    const method = this.#init.method.method;
    if (this.#sent) {
      return Promise.reject(new NatsMicroError("INTERNAL", method, "a client interceptor opened the stream twice"));
    }
    this.#sent = true;
    if (this.#done) {
      // Cancelled while the interceptors ran.
      return this.#outcome;
    }
    const inboxSubject = createInbox();
    this.#inbox = this.#init.nc.subscribe(inboxSubject, {
      callback: (err, message) => {
        if (err === null) {
          this.#receive(message);
        }
      },
    });
    const headers = call.headers;
    headers.set(REPLY_TO_HEADER, inboxSubject);
    headers.set(STREAM_CREDIT_HEADER, String(this.#init.window));
    headers.set(STREAM_BATCH_HEADER, "true");
    if (Number.isFinite(call.timeout)) {
      headers.set(TIMEOUT_HEADER, encodeTimeout(call.timeout));
      const expired = new NatsMicroError("DEADLINE_EXCEEDED", method, "the stream did not finish before its deadline", undefined, { kind: ErrorKind.Timeout });
      this.#timers.push(setTimeout(() => this.#fail(expired, false), call.timeout));
    }
    // Without a deadline a server that never answers must not hold the call forever.
    const peerTimeout = this.#init.timing.peerTimeout ?? DEFAULT_PEER_TIMEOUT;
    this.#timers.push(
      setTimeout(() => {
        if (this.#open !== undefined) {
          this.#fail(new NatsMicroError("UNAVAILABLE", method, `no answer to the stream open within ${peerTimeout} ms`), false);
        }
      }, peerTimeout),
    );
    try {
      this.#init.nc.publish(call.subject, call.payload, { reply: inboxSubject, headers });
    } catch (err) {
      this.#fail(requestError(this.#init.nc, err, method), false);
    }
    return this.#outcome;
  }

  #receive(message: Msg): void {
    if (this.#done) {
      return;
    }
    const method = this.#init.method.method;
    if (message.headers?.hasError && message.headers.code === 503) {
      this.#fail(new NatsMicroError("UNAVAILABLE", method, "no responders on the subject", undefined, { kind: ErrorKind.NoResponders }), false);
      return;
    }
    const headers = message.headers;
    if (this.#open !== undefined) {
      const inbox = protocolHeader(headers, STREAM_INBOX_HEADER);
      if (inbox !== undefined) {
        const credit = protocolHeader(headers, STREAM_CREDIT_HEADER);
        const count = credit === undefined ? undefined : parseStreamCount(credit);
        if (credit !== undefined && count === undefined) {
          this.#link.connect(inbox, undefined);
          this.#fail(new NatsMicroError("INVALID_ARGUMENT", method, `malformed ${STREAM_CREDIT_HEADER} ${JSON.stringify(credit)}`), true);
          return;
        }
        this.#link.connect(inbox, count, protocolHeader(headers, STREAM_BATCH_HEADER) === "true");
        this.#started();
        return;
      }
      if (protocolHeader(headers, STREAM_SEQ_HEADER) === undefined && !isStreamEnd(headers)) {
        return;
      }
      // A Go-plugin server answers a server-streaming open with its first message, without flow control.
      this.#link.connect(undefined, undefined);
      this.#started();
    }
    // Only a client stream's result may come without stream headers (read for it alone: this runs per message).
    const plainResult =
      this.#init.method.kind === "client" &&
      protocolHeader(headers, STREAM_CREDIT_HEADER) === undefined &&
      protocolHeader(headers, STREAM_SEQ_HEADER) === undefined;
    if (plainResult) {
      // A Go-plugin server sends the client-streaming result without an end header.
      this.#link.receiveEnd(message);
      return;
    }
    this.#link.receive(message);
  }

  /** The server's end arrived: the stream's outcome is known, though the caller may read it later. */
  #ended(end: StreamMessage): void {
    // The server is done: nothing more to keep alive or wait for.
    this.#link.quiet();
    const error = streamEndError(end, this.#init.method.method);
    if (error === undefined) {
      this.#settleOutcome?.resolve({ payload: end.data, headers: end.headers ?? createHeaders() });
    } else {
      this.#settleOutcome?.reject(this.#init.typed(error));
    }
    this.#settleOutcome = undefined;
  }

  #started(): void {
    this.#open?.();
    this.#open = undefined;
    clearTimeout(this.#timers.pop());
  }

  /** Finishes the call with `error` (telling the server with a cancel when `notify`). */
  #fail(error: unknown, notify: boolean): void {
    if (this.#done) {
      return;
    }
    if (notify) {
      this.#link.control(STREAM_CANCEL_HEADER, "true");
    }
    this.#failure = isNatsMicroError(error) ? this.#init.typed(error) : error;
    this.#settleOutcome?.reject(this.#failure);
    this.#settleOutcome = undefined;
    this.#finish();
  }

  #finish(): void {
    this.#done = true;
    const method = this.#init.method.method;
    const failure = this.#failure;
    this.#link.close(failure instanceof NatsMicroError ? failure : new NatsMicroError("CANCELLED", method, "the stream ended", undefined, { cause: failure }));
    for (const timer of this.#timers) {
      clearTimeout(timer);
    }
    this.#init.signal?.removeEventListener("abort", this.#abort);
    this.#inbox?.unsubscribe();
    this.#open?.();
    this.#open = undefined;
  }

  /** Abandons the stream: a cancel to the server, CANCELLED locally. */
  cancel(): void {
    this.#fail(new NatsMicroError("CANCELLED", this.#init.method.method, "the call was cancelled"), true);
  }

  async send(request: MessageInitShape<DescMessage>): Promise<void> {
    await this.#opened;
    let body: Uint8Array;
    try {
      body = this.#init.requests.encode(request);
    } catch (err) {
      throw this.#init.typed(new NatsMicroError("INTERNAL", this.#init.method.method, `encoding the request: ${describe(err)}`, undefined, { kind: ErrorKind.Encode, cause: err }));
    }
    try {
      await this.#link.send(body);
    } catch (err) {
      throw this.#init.typed(err);
    }
  }

  async closeSend(headers?: HeadersInit): Promise<void> {
    await this.#opened;
    if (this.#done && this.#failure !== undefined) {
      // The stream failed: its error, as the interceptors leave it.
      await this.#conclude();
      return;
    }
    this.#link.sendEnd(new Uint8Array(0), toHeaders(headers));
  }

  /** The next response, or what the end gives: `undefined`, or a client-streaming call's response. */
  next(): Promise<MessageShape<DescMessage> | undefined> {
    return this.#step().then((result) => result.value);
  }

  /**
   * {@link next} as an iterator result (the end's `undefined` as done).
   * Without an `await` when a response has arrived: a stream read in a
   * loop then costs one promise per message.
   */
  #step(): Promise<IteratorResult<MessageShape<DescMessage>, undefined>> {
    if (this.#conclusion === undefined) {
      const data = this.#link.take();
      if (data !== undefined) {
        return this.#decoded(data);
      }
    }
    return this.#waitForStep();
  }

  async #waitForStep(): Promise<IteratorResult<MessageShape<DescMessage>, undefined>> {
    if (this.#conclusion !== undefined) {
      await this.#conclusion;
      return DONE;
    }
    let received: { message: StreamMessage; end: boolean } | undefined;
    try {
      received = await this.#link.next();
    } catch {
      // The stream failed: its error, as the interceptors leave it, follows.
    }
    if (received === undefined || received.end) {
      if (!this.#done) {
        this.#finish();
      }
      return this.#conclude().then(iteratorResult);
    }
    return this.#decoded(received.message.data);
  }

  /** A response; one that does not decode fails the stream with INVALID_ARGUMENT (and gives its end). */
  #decoded(data: Uint8Array): Promise<IteratorResult<MessageShape<DescMessage>, undefined>> {
    try {
      return Promise.resolve({ done: false, value: this.#init.responses.decode(data) });
    } catch (err) {
      const method = this.#init.method.method;
      this.#fail(new NatsMicroError("INVALID_ARGUMENT", method, `malformed stream message: ${describe(err)}`, undefined, { kind: ErrorKind.Decode, cause: err }), true);
      return this.#conclude().then(iteratorResult);
    }
  }

  /** The end as the caller sees it, once: what the interceptor chain settled with (the trailing headers, a client-streaming response), or its error. */
  #conclude(): Promise<MessageShape<DescMessage> | undefined> {
    this.#conclusion ??= (this.#result ?? this.#outcome).then(
      (reply) => {
        this.#init.onHeaders?.(reply.headers);
        if (this.#init.method.kind !== "client") {
          return undefined;
        }
        try {
          return this.#init.responses.decode(reply.payload);
        } catch (err) {
          const message = `decoding the response: ${describe(err)}`;
          throw this.#init.typed(new NatsMicroError("INTERNAL", this.#init.method.method, message, undefined, { kind: ErrorKind.Decode, cause: err, headers: reply.headers }));
        }
      },
      (err: unknown) => {
        throw this.#init.typed(err);
      },
    );
    return this.#conclusion;
  }

  async closeAndReceive(headers?: HeadersInit): Promise<MessageShape<DescMessage>> {
    await this.#opened;
    if (!this.#done) {
      this.#link.sendEnd(new Uint8Array(0), toHeaders(headers));
    }
    const response = await this.next();
    if (response === undefined) {
      throw this.#init.typed(new NatsMicroError("INTERNAL", this.#init.method.method, "the stream ended without a response"));
    }
    return response;
  }

  [Symbol.asyncIterator](): AsyncIterator<MessageShape<DescMessage>> {
    return {
      next: () => this.#step(),
      return: async () => {
        if (!this.#done) {
          this.cancel();
        }
        return { done: true, value: undefined };
      },
    };
  }
}
