/** Streams (PROTOCOL §9): one side of a stream's link, both directions of it over NATS. */

import { headers as createHeaders } from "@nats-io/nats-core";
import type { Msg, MsgHdrs, NatsConnection } from "@nats-io/nats-core";
import { protocolHeader, readHeaders } from "./headers.js";
import { describe, ErrorKind, malformedRequest, NatsMicroError } from "./errors.js";
import { now } from "./clock.js";
import { headersSize } from "./request.js";
import {
  BATCH_BODY_BYTES,
  BATCH_HEADER_BYTES,
  batchedSize,
  batchHeader,
  decodeBatch,
  encodeBatch,
  isStreamEnd,
  parseStreamCount,
  SEQ_HEADER_BYTES,
  seqHeader,
  STREAM_BATCH_HEADER,
  STREAM_CANCEL_HEADER,
  STREAM_CREDIT_HEADER,
  STREAM_END_HEADER,
  STREAM_SEQ_HEADER,
  type StreamMessage,
} from "./stream-wire.js";

/**
 * Unsent data bytes (with their lengths, when they go in batches) that a
 * stream hands to NATS without waiting for the end of the turn: also the
 * most one batch holds.
 */
const SEND_BATCH_BYTES = BATCH_BODY_BYTES;

/**
 * Runs `task` once the microtasks queued so far, and those they queue, have
 * run: `setImmediate` where there is one (Node), else a zero timeout.
 */
const afterMicrotasks: (task: () => void) => void = (() => {
  const immediate = (globalThis as { setImmediate?: (task: () => void) => unknown }).setImmediate;
  return immediate === undefined ? (task: () => void) => void setTimeout(task, 0) : (task: () => void) => void immediate(task);
})();

interface StreamLinkOptions {
  readonly nc: NatsConnection;
  readonly method: string;
  /** The peer's end arrived (it may be read later). */
  readonly onEnd?: (end: StreamMessage) => void;
  /** The window this side offers for the peer's data (granted again as it is consumed). */
  readonly window: number;
  /** Whether the peer was told the window, so that data beyond it is a protocol error. */
  readonly windowAnnounced: boolean;
  /** Whether the peer was told that this side accepts batches (PROTOCOL §9.9), so that a batch is not a protocol error. */
  readonly batchesAnnounced: boolean;
  readonly keepaliveInterval: number;
  readonly peerTimeout: number;
  /** The link failed on its own (protocol error, peer gone, caller cancel); it is closed already. */
  readonly onFailure: (error: NatsMicroError, cause: "protocol" | "gone" | "cancel") => void;
}

/**
 * Both directions of one side of a stream: sends data in sequence within
 * the peer's credit (in batches to a peer that takes them), with
 * keepalives; receives data, and batches, in checked sequence within the
 * window it offered, granting credit as each message is consumed; watches
 * for a silent peer. Knows nothing of codecs, handlers or which side it is.
 */
export class StreamLink {
  readonly #o: StreamLinkOptions;
  /** Where this side publishes: the peer's inbox (none yet, or none at all for a peer without one). */
  #target: string | undefined;
  /** Data messages the peer still accepts; `undefined` when the peer has no flow control. */
  #credit: number | undefined;
  #sentSeq = 0;
  #creditWaiters: (() => void)[] = [];
  /** Whether data goes to the peer in batches: it announced batches and credit (PROTOCOL §9.9). */
  #batches = false;
  /** Data messages sent but not yet handed to NATS, from sequence number {@link #unsentSeq} on, and their bytes (see {@link send}). */
  #unsent: Uint8Array[] = [];
  #unsentSeq = 1;
  #unsentBytes = 0;
  #flushScheduled = false;
  #keepalive: ReturnType<typeof setTimeout> | undefined;
  /** When this side last published ({@link now}); the keepalive timer is re-armed from it only when it fires. */
  #lastSent = 0;
  #peerWatch: ReturnType<typeof setTimeout> | undefined;
  /** When the peer was last heard from ({@link now}); the peer watch is re-armed from it only when it fires. */
  #lastHeard = 0;
  #expectedSeq = 1;
  /** Data messages the peer may still send within the credit granted. */
  #granted: number;
  #consumedSinceGrant = 0;
  /** Data messages received and not yet taken. */
  readonly #queue: Uint8Array[] = [];
  #end: StreamMessage | undefined;
  #readers: (() => void)[] = [];
  /** Why the link is closed; set once. */
  #closed: NatsMicroError | undefined;
  /** No more keepalives or peer watch (see {@link quiet}). */
  #quiet = false;

  constructor(options: StreamLinkOptions) {
    this.#o = options;
    this.#granted = options.window;
  }

  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /**
   * Starts sending to the peer's inbox with its announced credit
   * (`undefined`: no flow control, no keepalives), in batches when it
   * announced them too.
   */
  connect(target: string | undefined, credit: number | undefined, batches = false): void {
    this.#target = target;
    this.#credit = credit;
    this.#batches = batches && credit !== undefined;
    if (credit !== undefined) {
      this.#lastSent = this.#lastHeard = now();
      this.#armKeepalive();
      this.#watchPeer();
    }
  }

  /** Publishes one message to the peer (no credit needed), after the data messages sent before it. */
  publish(body: Uint8Array, headers: MsgHdrs): void {
    this.#flush();
    if (this.#target === undefined || this.#closed !== undefined) {
      return;
    }
    this.#o.nc.publish(this.#target, body, { headers });
    this.#lastSent = now();
  }

  /**
   * Sends a data message once the peer's credit allows: a promise only
   * when it has to wait for credit (an `await` per message is a good part
   * of a stream's cost per message), else `undefined` once the message is
   * queued. Fails (throws, or rejects after a wait) once the link is closed
   * or when the message cannot fit in max_payload.
   *
   * The message is handed to NATS with the others sent in the same turn of
   * the event loop (or once they would pass {@link SEND_BATCH_BYTES}): the
   * client library writes to the socket as soon as the microtasks that
   * queued a message have run, and a handler's `for await` loop takes
   * several microtasks per message, so messages published one by one each
   * cost a socket write. To a peer that takes batches, those messages go
   * as batches: only what is ready, so batching adds no latency.
   */
  send(body: Uint8Array): Promise<void> | undefined {
    if (this.#closed === undefined && this.#credit !== undefined && this.#credit <= 0) {
      return this.#sendWhenCredited(body);
    }
    this.#queueData(body);
    return undefined;
  }

  async #sendWhenCredited(body: Uint8Array): Promise<void> {
    while (this.#closed === undefined && this.#credit !== undefined && this.#credit <= 0) {
      await new Promise<void>((resolve) => this.#creditWaiters.push(resolve));
    }
    this.#queueData(body);
  }

  /** Queues a data message the credit allows for the next {@link #flush}; throws once the link is closed or when the message cannot fit in max_payload. */
  #queueData(body: Uint8Array): void {
    if (this.#closed !== undefined) {
      throw this.#closed;
    }
    const maxPayload = this.#o.nc.info?.max_payload;
    // The header block (`Nats-Stream-Seq` with at most 10 digits) takes at most SEQ_HEADER_BYTES.
    if (maxPayload !== undefined && body.length + SEQ_HEADER_BYTES > maxPayload) {
      const size = body.length + headersSize(seqHeader(this.#sentSeq + 1), true);
      if (size > maxPayload) {
        const message = `the message (${body.length} bytes) exceeds max_payload (${maxPayload} bytes)`;
        throw new NatsMicroError("RESOURCE_EXHAUSTED", this.#o.method, message, undefined, { kind: ErrorKind.MaxPayloadExceeded });
      }
    }
    // Unsent messages always fit in one batch: a batch holds what is ready, never what is waited for.
    const bytes = this.#batches ? batchedSize(body) : body.length;
    if (this.#unsentBytes + bytes > SEND_BATCH_BYTES) {
      this.#flush();
      if (this.#closed !== undefined) {
        throw this.#closed;
      }
    }
    this.#sentSeq += 1;
    if (this.#credit !== undefined) {
      this.#credit -= 1;
    }
    if (this.#target === undefined) {
      return;
    }
    if (this.#unsent.length === 0) {
      this.#unsentSeq = this.#sentSeq;
    }
    this.#unsent.push(body);
    this.#unsentBytes += bytes;
    if (this.#unsentBytes >= SEND_BATCH_BYTES) {
      this.#flush();
    } else if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      afterMicrotasks(() => {
        this.#flushScheduled = false;
        this.#flush();
      });
    }
  }

  /** Hands the unsent data messages to NATS. A connection that fails here ends the stream. */
  #flush(): void {
    if (this.#unsent.length === 0) {
      return;
    }
    const messages = this.#unsent;
    const first = this.#unsentSeq;
    const target = this.#target;
    this.#unsent = [];
    this.#unsentBytes = 0;
    if (target === undefined) {
      return;
    }
    try {
      if (this.#batches) {
        this.#publishBatches(target, messages, first);
      } else {
        for (let i = 0; i < messages.length; i++) {
          this.#o.nc.publish(target, messages[i], { headers: seqHeader(first + i) });
        }
      }
    } catch (err) {
      this.#fail(new NatsMicroError("UNAVAILABLE", this.#o.method, `sending a stream message: ${describe(err)}`), "gone");
      return;
    }
    this.#lastSent = now();
  }

  /**
   * Publishes data messages `first`, `first + 1`, … as batches of as many
   * as fit in {@link SEND_BATCH_BYTES} and max_payload (PROTOCOL §9.9). A
   * message that fits in no batch, or a batch that would hold one, goes as
   * ordinary data.
   */
  #publishBatches(target: string, messages: readonly Uint8Array[], first: number): void {
    const maxPayload = this.#o.nc.info?.max_payload ?? Infinity;
    const limit = Math.min(SEND_BATCH_BYTES, maxPayload - BATCH_HEADER_BYTES);
    let batch: Uint8Array[] = [];
    let batchSeq = first;
    let batchBytes = 0;
    const publish = () => {
      if (batch.length === 1) {
        this.#o.nc.publish(target, batch[0], { headers: seqHeader(batchSeq) });
      } else if (batch.length > 1) {
        this.#o.nc.publish(target, encodeBatch(batch, batchBytes), { headers: batchHeader(batchSeq, batch.length) });
      }
    };
    for (let i = 0; i < messages.length; i++) {
      const message = messages[i] as Uint8Array;
      const size = batchedSize(message);
      if (batch.length > 0 && batchBytes + size > limit) {
        publish();
        batch = [];
        batchBytes = 0;
      }
      if (batch.length === 0) {
        batchSeq = first + i;
      }
      batch.push(message);
      batchBytes += size;
    }
    publish();
  }

  /** Sends an end (`Nats-Stream-End: true` over `headers`). */
  sendEnd(body: Uint8Array = new Uint8Array(0), headers: MsgHdrs = createHeaders()): void {
    headers.set(STREAM_END_HEADER, "true");
    this.publish(body, headers);
  }

  /** Sends a control message with one header. */
  control(name: string, value: string): void {
    const headers = createHeaders();
    headers.set(name, value);
    this.publish(new Uint8Array(0), headers);
  }

  /** Takes one message from the peer's inbox. */
  receive(message: Msg): void {
    if (this.#closed !== undefined) {
      return;
    }
    // A malformed header block is read as none: the message is then ignored.
    const { headers } = readHeaders(message);
    this.#heard();
    if (protocolHeader(headers, STREAM_CANCEL_HEADER) === "true") {
      this.#fail(new NatsMicroError("CANCELLED", this.#o.method, "the caller cancelled the stream"), "cancel");
      return;
    }
    const count = this.#count(headers, STREAM_CREDIT_HEADER);
    if (count === null) {
      return;
    }
    if (count !== undefined) {
      if (this.#credit !== undefined) {
        this.#credit += count;
        for (const wake of this.#creditWaiters.splice(0)) {
          wake();
        }
      }
    }
    const number = this.#count(headers, STREAM_SEQ_HEADER);
    if (number === null) {
      return;
    }
    if (number !== undefined) {
      const batch = protocolHeader(headers, STREAM_BATCH_HEADER);
      if (batch !== undefined) {
        this.#receiveBatch(number, batch, message.data);
        return;
      }
      if (!this.#admits(number, 1)) {
        return;
      }
      this.#expectedSeq += 1;
      this.#granted -= 1;
      this.#queue.push(message.data);
      this.#wakeReaders();
      return;
    }
    if (isStreamEnd(headers)) {
      this.#ended({ data: message.data, headers });
    }
  }

  /** Whether `count` data messages from sequence number `first` on come in order and within the credit granted; fails the stream if not. */
  #admits(first: number, count: number): boolean {
    if (first !== this.#expectedSeq) {
      this.#protocolError("DATA_LOSS", `expected message ${this.#expectedSeq}, got ${first}`);
      return false;
    }
    if (this.#o.windowAnnounced && this.#granted < count) {
      const what = count === 1 ? `message ${first}` : `the batch of messages ${first} to ${first + count - 1}`;
      this.#protocolError("RESOURCE_EXHAUSTED", `${what} is beyond the credit granted`);
      return false;
    }
    return true;
  }

  /** Queues the messages of a batch (PROTOCOL §9.9) for the reader one by one, as if each had come alone. */
  #receiveBatch(first: number, value: string, body: Uint8Array): void {
    if (!this.#o.batchesAnnounced) {
      this.#protocolError("INVALID_ARGUMENT", "a batch, but this side did not announce batches");
      return;
    }
    const count = parseStreamCount(value);
    if (count === undefined || count === 0) {
      this.#protocolError("INVALID_ARGUMENT", `malformed ${STREAM_BATCH_HEADER} ${JSON.stringify(value)}`);
      return;
    }
    if (!this.#admits(first, count)) {
      return;
    }
    const messages = decodeBatch(body, count);
    if (typeof messages === "string") {
      this.#protocolError("INVALID_ARGUMENT", `malformed batch of messages ${first} to ${first + count - 1}: ${messages}`);
      return;
    }
    this.#expectedSeq += count;
    this.#granted -= count;
    for (const data of messages) {
      this.#queue.push(data);
    }
    this.#wakeReaders();
  }

  /** A sequence or credit header: absent (`undefined`), its number, or `null` once a malformed one failed the stream. */
  #count(headers: MsgHdrs | undefined, name: string): number | undefined | null {
    const value = protocolHeader(headers, name);
    if (value === undefined) {
      return undefined;
    }
    const count = parseStreamCount(value);
    if (count === undefined) {
      this.#protocolError("INVALID_ARGUMENT", `malformed ${name} ${JSON.stringify(value)}`);
      return null;
    }
    return count;
  }

  /** Treats a message as the peer's end whatever its headers (a Go-plugin client-streaming result). */
  receiveEnd(message: Msg): void {
    if (this.#closed === undefined) {
      this.#heard();
      this.#ended({ data: message.data, headers: message.headers });
    }
  }

  /** Keeps the peer's first end for the reader and tells the owner at once. */
  #ended(end: StreamMessage): void {
    if (this.#end === undefined) {
      this.#end = end;
      this.#o.onEnd?.(end);
      this.#wakeReaders();
    }
  }

  /**
   * The peer's next data message if one has arrived, granting credit as it
   * is taken; `undefined` when none has, or once the link is closed
   * ({@link next} then says why). Reading without an `await` per message
   * where one is queued saves a good part of a stream's cost per message.
   */
  take(): Uint8Array | undefined {
    if (this.#closed !== undefined) {
      return undefined;
    }
    const data = this.#queue.shift();
    if (data !== undefined) {
      this.#consumed();
    }
    return data;
  }

  /**
   * The peer's next data message (its body only), or its end (`{ end }`);
   * rejects once the link closed. Grants credit as messages are taken.
   */
  async next(): Promise<{ message: StreamMessage; end: boolean }> {
    for (;;) {
      if (this.#closed !== undefined) {
        throw this.#closed;
      }
      const data = this.take();
      if (data !== undefined) {
        return { message: { data, headers: undefined }, end: false };
      }
      if (this.#end !== undefined) {
        return { message: this.#end, end: true };
      }
      await new Promise<void>((resolve) => this.#readers.push(resolve));
    }
  }

  /** At the latest when half the window is consumed, grants what was consumed. */
  #consumed(): void {
    this.#consumedSinceGrant += 1;
    if (this.#consumedSinceGrant * 2 >= this.#o.window) {
      const grant = this.#consumedSinceGrant;
      this.#consumedSinceGrant = 0;
      this.#granted += grant;
      this.control(STREAM_CREDIT_HEADER, String(grant));
    }
  }

  /** Stops keepalives and the peer watch: the peer has ended the call and expects nothing more. */
  quiet(): void {
    this.#quiet = true;
    clearTimeout(this.#keepalive);
    clearTimeout(this.#peerWatch);
  }

  /**
   * Closes the link: nothing more is sent or received; waiting senders and
   * readers get `reason`. Data messages already sent still go out first,
   * ahead of the end the owner may publish next.
   */
  close(reason: NatsMicroError): void {
    if (this.#closed !== undefined) {
      return;
    }
    this.#flush();
    if (this.#closed !== undefined) {
      // The flush failed and closed the link.
      return;
    }
    this.#closed = reason;
    clearTimeout(this.#keepalive);
    clearTimeout(this.#peerWatch);
    for (const wake of this.#creditWaiters.splice(0)) {
      wake();
    }
    this.#wakeReaders();
  }

  #protocolError(code: string, message: string): void {
    this.#fail(new NatsMicroError(code, this.#o.method, message), "protocol");
  }

  #fail(error: NatsMicroError, cause: "protocol" | "gone" | "cancel"): void {
    if (cause === "protocol") {
      // Tell the peer before closing; the owner decides what that message is.
      this.#o.onFailure(error, cause);
      this.close(error);
      return;
    }
    this.close(error);
    this.#o.onFailure(error, cause);
  }

  #wakeReaders(): void {
    for (const wake of this.#readers.splice(0)) {
      wake();
    }
  }

  /**
   * Sends a keepalive after an idle interval, while the peer speaks flow
   * control. One timer per interval, not per message: when it fires after
   * something was sent, it waits out the rest of the interval from then.
   */
  #armKeepalive(delay: number = this.#o.keepaliveInterval): void {
    if (this.#credit === undefined || this.#closed !== undefined || this.#quiet) {
      return;
    }
    this.#keepalive = setTimeout(() => {
      const idle = now() - this.#lastSent;
      if (idle < this.#o.keepaliveInterval) {
        this.#armKeepalive(this.#o.keepaliveInterval - idle);
        return;
      }
      try {
        this.control(STREAM_CREDIT_HEADER, "0");
      } catch (err) {
        // The connection closed under the stream: it cannot go on.
        this.#fail(new NatsMicroError("UNAVAILABLE", this.#o.method, `sending a keepalive: ${describe(err)}`), "gone");
        return;
      }
      this.#armKeepalive();
    }, delay);
  }

  /** Notes that the peer spoke: the peer-gone watch counts from now. */
  #heard(): void {
    this.#lastHeard = now();
  }

  /**
   * Watches for a silent peer (only peers that announced credit: they send
   * keepalives). One timer per interval, not per message: when it fires
   * after the peer spoke, it waits out the rest of the interval from then.
   */
  #watchPeer(delay: number = this.#o.peerTimeout): void {
    if (this.#credit === undefined || this.#closed !== undefined || this.#quiet) {
      return;
    }
    this.#peerWatch = setTimeout(() => {
      const silent = now() - this.#lastHeard;
      if (silent < this.#o.peerTimeout) {
        this.#watchPeer(this.#o.peerTimeout - silent);
        return;
      }
      const error = new NatsMicroError("UNAVAILABLE", this.#o.method, `no message from the peer for ${this.#o.peerTimeout} ms`);
      this.#fail(error, "gone");
    }, delay);
  }
}

/** The caller's end headers of each request stream a handler was given, once the end arrived. */
const endHeaders = new WeakMap<object, MsgHdrs>();

/**
 * The headers the caller sent on its half-close (its end message) of a
 * request stream a client-streaming or bidirectional handler was given,
 * once the stream reached its end (`undefined` before, or when there were
 * none). A chunked upload's size and digest travel there (PROTOCOL §12.5).
 *
 * ```ts
 * async sum(requests, ctx) {
 *   let total = 0n;
 *   for await (const n of requests) total += n.value;
 *   const tag = requestEndHeaders(requests)?.get("X-Tag");
 *   return { value: total };
 * }
 * ```
 */
export function requestEndHeaders(requests: AsyncIterable<unknown>): MsgHdrs | undefined {
  return endHeaders.get(requests);
}

/** The data messages of a link as decoded values, until the peer's end (whose headers {@link requestEndHeaders} then gives). A message that does not decode fails the stream with INVALID_ARGUMENT through `malformed`. */
export function decodedMessages<T>(link: StreamLink, decode: (data: Uint8Array) => T, malformed: (error: NatsMicroError) => never): AsyncGenerator<T> {
  // Assigned before the generator's body first runs (on the first `next`).
  let messages: AsyncGenerator<T> | undefined;
  messages = (async function* () {
    for (;;) {
      let data = link.take();
      if (data === undefined) {
        const { message, end } = await link.next();
        if (end) {
          if (message.headers !== undefined && messages !== undefined) {
            endHeaders.set(messages, message.headers);
          }
          return;
        }
        data = message.data;
      }
      let value: T;
      try {
        value = decode(data);
      } catch (err) {
        malformed(malformedRequest("", "malformed stream message", err));
      }
      yield value;
    }
  })();
  return messages;
}
