/** Streams (PROTOCOL §9), on the wire: headers, defaults, sequence numbers and credit, end messages. */

import { headers as createHeaders } from "@nats-io/nats-core";
import type { MsgHdrs } from "@nats-io/nats-core";
import { ERROR_CODE_HEADER, ERROR_MESSAGE_HEADER, protocolHeader } from "./headers.js";
import { errorFromReply } from "./details.js";
import { NatsMicroError } from "./errors.js";

/** Open: the caller's inbox, where the server sends the stream's messages. */
export const REPLY_TO_HEADER = "Reply-To";
/** Ack: the server's inbox, where the caller sends its messages and control. */
export const STREAM_INBOX_HEADER = "Nats-Stream-Inbox";
/** Data: the message's sequence number in its direction, from 1. */
export const STREAM_SEQ_HEADER = "Nats-Stream-Seq";
/** End: `true`, the sender's direction is finished. */
export const STREAM_END_HEADER = "Nats-Stream-End";
/** Open, ack, control: messages the sender of the header will accept. */
export const STREAM_CREDIT_HEADER = "Nats-Stream-Credit";
/** Control: `true`, the caller abandons the stream. */
export const STREAM_CANCEL_HEADER = "Nats-Stream-Cancel";
/** Open, ack: `true`, this side accepts batches; data: how many messages the batch holds (PROTOCOL §9.9). */
export const STREAM_BATCH_HEADER = "Nats-Stream-Batch";
/** The flow-control window when neither the proto nor the code sets one. */
export const DEFAULT_STREAM_WINDOW = 64;
/** Milliseconds without sending before a side sends a keepalive. */
export const DEFAULT_KEEPALIVE_INTERVAL = 5_000;
/** Milliseconds of silence after which a flow-controlled peer is considered gone. */
export const DEFAULT_PEER_TIMEOUT = 20_000;

const MAX_STREAM_COUNT = 2 ** 31 - 1;

/** The most bytes a data message's header block takes: `NATS/1.0`, `Nats-Stream-Seq` with 10 digits, the blank line. */
export const SEQ_HEADER_BYTES = "NATS/1.0\r\n".length + `${STREAM_SEQ_HEADER}: `.length + 10 + "\r\n\r\n".length;

/** The most bytes of lengths and messages a runtime puts in one batch: a receiver's memory stays bounded by its window of small messages. */
export const BATCH_BODY_BYTES = 64 * 1024;

/** The most bytes a batch's header block takes: {@link SEQ_HEADER_BYTES} and `Nats-Stream-Batch` with 10 digits. */
export const BATCH_HEADER_BYTES = SEQ_HEADER_BYTES + `${STREAM_BATCH_HEADER}: `.length + 10 + "\r\n".length;

/** The header block of data message `seq`. */
export function seqHeader(seq: number): MsgHdrs {
  const headers = createHeaders();
  headers.set(STREAM_SEQ_HEADER, String(seq));
  return headers;
}

/** The header block of a batch of `count` messages from `seq` on. */
export function batchHeader(seq: number, count: number): MsgHdrs {
  const headers = seqHeader(seq);
  headers.set(STREAM_BATCH_HEADER, String(count));
  return headers;
}

/** The bytes of `value` as an unsigned base-128 varint (a protobuf `uint32`). */
export function varintSize(value: number): number {
  return value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x20_0000 ? 3 : value < 0x1000_0000 ? 4 : 5;
}

/** A message's bytes in a batch: its length, then itself. */
export function batchedSize(message: Uint8Array): number {
  return varintSize(message.length) + message.length;
}

/** A batch's body: each message preceded by its length as a varint; `size` is the sum of their {@link batchedSize}. */
export function encodeBatch(messages: readonly Uint8Array[], size: number): Uint8Array {
  const body = new Uint8Array(size);
  let at = 0;
  for (const message of messages) {
    let length = message.length;
    while (length >= 0x80) {
      body[at++] = (length & 0x7f) | 0x80;
      length >>>= 7;
    }
    body[at++] = length;
    body.set(message, at);
    at += message.length;
  }
  return body;
}

/**
 * The `count` messages of a batch's body (views into it), or why it is
 * malformed: it ends inside a length or a message, a length takes more
 * than 5 bytes, or it holds more or fewer messages than `count`.
 */
export function decodeBatch(body: Uint8Array, count: number): Uint8Array[] | string {
  const messages: Uint8Array[] = [];
  let at = 0;
  while (at < body.length) {
    if (messages.length === count) {
      return `the batch holds more than its ${count} messages`;
    }
    let length = 0;
    for (let shift = 0; ; shift += 7) {
      if (shift === 35) {
        return `a length in the batch takes more than 5 bytes`;
      }
      if (at === body.length) {
        return `the batch ends inside the length of message ${messages.length + 1}`;
      }
      const byte = body[at++] as number;
      length += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) {
        break;
      }
    }
    if (length > body.length - at) {
      return `the batch ends inside message ${messages.length + 1}`;
    }
    messages.push(body.subarray(at, at + length));
    at += length;
  }
  if (messages.length < count) {
    return `the batch holds ${messages.length} of its ${count} messages`;
  }
  return messages;
}

/** A sequence number or credit: 1 to 10 ASCII digits, at most 2^31 − 1; `undefined` when malformed. */
export function parseStreamCount(value: string): number | undefined {
  if (!/^[0-9]{1,10}$/.test(value)) {
    return undefined;
  }
  const count = Number(value);
  return count <= MAX_STREAM_COUNT ? count : undefined;
}

/** Keepalive and peer-gone intervals in milliseconds (defaults {@link DEFAULT_KEEPALIVE_INTERVAL}, {@link DEFAULT_PEER_TIMEOUT}). */
export interface StreamTiming {
  keepaliveInterval?: number;
  peerTimeout?: number;
}

/** One message of a stream as it arrived. */
export interface StreamMessage {
  readonly data: Uint8Array;
  readonly headers: MsgHdrs | undefined;
}

/** Whether a message ends its direction: `Nats-Stream-End: true`, or the error headers. */
export function isStreamEnd(headers: MsgHdrs | undefined): boolean {
  return (
    protocolHeader(headers, STREAM_END_HEADER) === "true" ||
    protocolHeader(headers, ERROR_CODE_HEADER) !== undefined ||
    protocolHeader(headers, ERROR_MESSAGE_HEADER) !== undefined
  );
}

/** The error an end message carries, if any. */
export function streamEndError(message: StreamMessage, method: string): NatsMicroError | undefined {
  return errorFromReply(message.headers, message.data, method);
}
