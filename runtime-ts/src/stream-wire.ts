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
/** The flow-control window when neither the proto nor the code sets one. */
export const DEFAULT_STREAM_WINDOW = 64;
/** Milliseconds without sending before a side sends a keepalive. */
export const DEFAULT_KEEPALIVE_INTERVAL = 5_000;
/** Milliseconds of silence after which a flow-controlled peer is considered gone. */
export const DEFAULT_PEER_TIMEOUT = 20_000;

const MAX_STREAM_COUNT = 2 ** 31 - 1;

/** The most bytes a data message's header block takes: `NATS/1.0`, `Nats-Stream-Seq` with 10 digits, the blank line. */
export const SEQ_HEADER_BYTES = "NATS/1.0\r\n".length + `${STREAM_SEQ_HEADER}: `.length + 10 + "\r\n\r\n".length;

/** The header block of data message `seq`. */
export function seqHeader(seq: number): MsgHdrs {
  const headers = createHeaders();
  headers.set(STREAM_SEQ_HEADER, String(seq));
  return headers;
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
