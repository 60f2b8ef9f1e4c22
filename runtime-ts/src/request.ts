/** The end of a client chain: the NATS request itself, its reply, and its failures as errors. */

import {
  ClosedConnectionError,
  DrainingConnectionError,
  headers as createHeaders,
  NoRespondersError,
  PermissionViolationError,
  RequestError,
  TimeoutError,
} from "@nats-io/nats-core";
import type { Msg, MsgHdrs, NatsConnection } from "@nats-io/nats-core";
import { encodeTimeout, setProtocolHeader, TIMEOUT_HEADER } from "./headers.js";
import { errorFromReply } from "./details.js";
import { describe, ErrorKind, NatsMicroError } from "./errors.js";
import { utf8Encoder } from "./codec.js";
import type { ClientCall, ClientReply } from "./interceptors.js";

/** The end of a client chain: the NATS request itself, waiting `timeout` milliseconds for the reply (the call's own timeout, or what is left of it). */
export async function send(nc: NatsConnection, call: ClientCall, timeout: number): Promise<ClientReply> {
  // From a microtask of its own: nats.js captures two stack traces per request (for its timeout
  // and request errors), and each synchronous frame under `nc.request` (the caller's, the
  // interceptors', ours) costs about 0.5 µs to capture, where a microtask's stack has none.
  await undefined;
  setProtocolHeader(call.headers, TIMEOUT_HEADER, encodeTimeout(timeout));
  const maxPayload = nc.info?.max_payload;
  // Counting the header bytes exactly is only worth it when the request may not fit.
  if (maxPayload !== undefined && call.payload.length + headersSize(call.headers, false) > maxPayload) {
    const size = call.payload.length + headersSize(call.headers, true);
    if (size > maxPayload) {
      const message = `the request (${size} bytes with headers) exceeds max_payload (${maxPayload} bytes)`;
      throw new NatsMicroError("RESOURCE_EXHAUSTED", call.method, message, undefined, { kind: ErrorKind.MaxPayloadExceeded });
    }
  }
  let message: Msg;
  try {
    message = await nc.request(call.subject, call.payload, { timeout: Math.max(1, Math.ceil(timeout)), headers: call.headers });
  } catch (err) {
    throw requestError(nc, err, call.method);
  }
  return replyFromMessage(message, call.method);
}

/**
 * The size of `headers` as NATS encodes them (`NATS/1.0`, one line per value,
 * a blank line): exactly, or else an upper bound (three UTF-8 bytes per
 * UTF-16 unit) that takes no encoding.
 */
export function headersSize(headers: MsgHdrs, exact: boolean): number {
  let size = "NATS/1.0\r\n\r\n".length;
  for (const [name, values] of headers) {
    for (const value of values) {
      // The bound counts the line `name: value\r\n` without building it.
      size += exact ? utf8Encoder.encode(`${name}: ${value}\r\n`).length : 3 * (name.length + value.length + 4);
    }
  }
  return size;
}

/** A reply as success or, when it carries the error headers, the error it describes. */
export function replyFromMessage(message: Msg, method: string): ClientReply {
  const headers = message.headers ?? createHeaders();
  const error = errorFromReply(headers, message.data, method);
  if (error === undefined) {
    return { payload: message.data, headers };
  }
  throw error;
}

/** A failed NATS request as a transport error. */
export function requestError(nc: NatsConnection, err: unknown, method: string): NatsMicroError {
  const transport = (code: string, kind: ErrorKind, message: string) =>
    new NatsMicroError(code, method, message, undefined, { kind, cause: err });
  if (err instanceof TimeoutError) {
    return transport("DEADLINE_EXCEEDED", ErrorKind.Timeout, "no reply before the deadline");
  }
  if (err instanceof NoRespondersError || (err instanceof RequestError && err.isNoResponders())) {
    return transport("UNAVAILABLE", ErrorKind.NoResponders, "no responders on the subject");
  }
  const cause = err instanceof RequestError ? err.cause : err;
  if (cause instanceof PermissionViolationError || err instanceof PermissionViolationError) {
    return transport("PERMISSION_DENIED", ErrorKind.PermissionViolation, describe(err));
  }
  if (err instanceof ClosedConnectionError || err instanceof DrainingConnectionError || nc.isClosed() || nc.isDraining()) {
    return transport("UNAVAILABLE", ErrorKind.ConnectionClosed, `connection closed: ${describe(err)}`);
  }
  return transport("UNAVAILABLE", ErrorKind.Transport, describe(err));
}
