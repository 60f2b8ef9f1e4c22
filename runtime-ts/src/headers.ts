/** Headers of the wire contract (error code and message, the caller's time budget) and reading a message's headers defensively. */

import { headers as createHeaders, MsgHdrsImpl } from "@nats-io/nats-core";
import type { Msg, MsgHdrs } from "@nats-io/nats-core";
import { describe } from "./errors.js";

/** The error code of an error reply (`404`, `NOT_FOUND`, `ORDER_EXPIRED`). */
export const ERROR_CODE_HEADER = "Nats-Service-Error-Code";
/** The human-readable message of an error reply. */
export const ERROR_MESSAGE_HEADER = "Nats-Service-Error";
/** The caller's remaining time budget, in whole microseconds. */
export const TIMEOUT_HEADER = "Nats-Micro-Timeout";
/** Which attempt of a retried call a request is: `2` for the first retry; absent on the first attempt (PROTOCOL §10.1). */
export const ATTEMPT_HEADER = "Nats-Micro-Attempt";

/** The attempt number of a request: its {@link ATTEMPT_HEADER}, else 1 (also when the value is not a positive decimal number). */
export function attemptNumber(headers: MsgHdrs | undefined): number {
  const value = protocolHeader(headers, ATTEMPT_HEADER);
  if (value === undefined || !/^[0-9]{1,9}$/.test(value)) {
    return 1;
  }
  const attempt = Number(value);
  return attempt >= 1 ? attempt : 1;
}

/**
 * `headers.set(name, value)` for a header of the wire contract (a valid
 * name, a value without line breaks or surrounding spaces): straight into
 * the client library's map when `headers` are its own, which is what `set`
 * does without canonicalising the name and listing the keys twice (about
 * 1 KB of garbage per call), else through `set`.
 */
export function setProtocolHeader(headers: MsgHdrs, name: string, value: string): void {
  if (headers instanceof MsgHdrsImpl) {
    headers.headers.delete(name);
    headers.headers.set(name, [value]);
  } else {
    headers.set(name, value);
  }
}

/** Encodes a budget in milliseconds for {@link TIMEOUT_HEADER}. */
export function encodeTimeout(milliseconds: number): string {
  return String(Math.max(0, Math.round(milliseconds * 1000)));
}

/** The largest budget {@link TIMEOUT_HEADER} may carry: 24 hours, in microseconds. */
export const MAX_TIMEOUT_MICROS = 86_400_000_000;

/**
 * Decodes a {@link TIMEOUT_HEADER} value into milliseconds: 1 to 12 ASCII
 * digits (no sign, no spaces, no other digits), at most
 * {@link MAX_TIMEOUT_MICROS}; `0` means the budget is already spent.
 * Anything else is `undefined` (the request is served with the server's own
 * timeout only).
 */
export function decodeTimeout(value: string): number | undefined {
  if (!/^[0-9]{1,12}$/.test(value)) {
    return undefined;
  }
  const micros = Number(value);
  return micros <= MAX_TIMEOUT_MICROS ? micros / 1000 : undefined;
}

/**
 * The caller's budget in milliseconds from a request whose header block
 * passed {@link headerProblem}, as {@link requestBudget} reads it, without
 * decoding the other headers when the block is plain ASCII.
 */
export function messageBudget(message: Msg, invalid?: (value: string) => void): number | undefined {
  const raw = rawHeaderBlock(message);
  const value = raw === undefined ? NOT_ASCII : asciiHeaderValue(raw, TIMEOUT_HEADER);
  if (value === NOT_ASCII) {
    return requestBudget(message.headers, invalid);
  }
  if (value === undefined) {
    return undefined;
  }
  const budget = decodeTimeoutBytes(value);
  if (budget === undefined) {
    invalid?.(String.fromCharCode.apply(null, Array.from(value)));
  }
  return budget;
}

/** {@link decodeTimeout} of a value's ASCII bytes, without making a string of them. */
function decodeTimeoutBytes(value: Uint8Array): number | undefined {
  if (value.length < 1 || value.length > 12) {
    return undefined;
  }
  let micros = 0;
  for (let i = 0; i < value.length; i++) {
    const digit = (value[i] ?? 0) - 0x30;
    if (digit < 0 || digit > 9) {
      return undefined;
    }
    micros = micros * 10 + digit;
  }
  return micros <= MAX_TIMEOUT_MICROS ? micros / 1000 : undefined;
}

/**
 * The caller's budget in milliseconds from request headers: only the first
 * {@link TIMEOUT_HEADER} value counts (later duplicates are ignored), its
 * name matched exactly (case-sensitively, as in every runtime). `invalid`
 * receives a first value that does not decode.
 */
export function requestBudget(headers: MsgHdrs | undefined, invalid?: (value: string) => void): number | undefined {
  const value = headers?.has(TIMEOUT_HEADER) ? headers.get(TIMEOUT_HEADER) : undefined;
  if (value === undefined) {
    return undefined;
  }
  const budget = decodeTimeout(value);
  if (budget === undefined) {
    invalid?.(value);
  }
  return budget;
}

/** Headers as callers may give them: NATS headers or a plain record. */
export type HeadersInit = MsgHdrs | Readonly<Record<string, string | readonly string[]>>;

function isMsgHdrs(value: HeadersInit): value is MsgHdrs {
  return typeof (value as MsgHdrs).values === "function" && typeof (value as MsgHdrs).append === "function";
}

/** Appends every value of `source` to `target`; with `replace`, a name in `source` first drops its values in `target`. */
export function copyHeaders(target: MsgHdrs, source: HeadersInit | undefined, replace: boolean): MsgHdrs {
  if (source === undefined) {
    return target;
  }
  const entries: Iterable<[string, readonly string[]]> = isMsgHdrs(source)
    ? source
    : Object.entries(source).map(([name, value]): [string, readonly string[]] => [name, typeof value === "string" ? [value] : value]);
  for (const [name, values] of entries) {
    if (replace && target.has(name)) {
      target.delete(name);
    }
    for (const value of values) {
      target.append(name, value);
    }
  }
  return target;
}

/** A fresh header set holding `init`'s values. */
export function toHeaders(init?: HeadersInit): MsgHdrs {
  return copyHeaders(createHeaders(), init, false);
}

/**
 * A header of the wire contract, matched exactly, else ignoring case (the
 * first such name). One pass over the names: every stream message reads
 * several of these, and each `has` or `get` of the client library lists
 * the names anew.
 */
export function protocolHeader(headers: MsgHdrs | undefined, name: string): string | undefined {
  if (headers === undefined) {
    return undefined;
  }
  let lowerName: string | undefined;
  let otherCase: string[] | undefined;
  for (const [key, values] of headers) {
    if (key === name) {
      return values[0];
    }
    if (otherCase === undefined && key.toLowerCase() === (lowerName ??= name.toLowerCase())) {
      otherCase = values;
    }
  }
  return otherCase?.[0];
}

const HEADER_VERSION_LINE = "NATS/1.0\r\n";
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * What is wrong with a request's raw NATS header block, or `undefined` when
 * it is well formed: UTF-8, exactly the version line `NATS/1.0` (no status
 * code: a request carries none), then `Name: value` lines ended by CRLF and
 * a blank line, each name 1 or more printable ASCII characters (no space,
 * no colon), no bare CR or LF anywhere. The NATS client library reads such
 * blocks leniently (dropping lines, taking garbage for a status) or throws
 * on them, and an exception thrown while it delivers a message silently ends
 * the connection's reader (`tests/upstream/nats_js_header_throw.mjs`): the
 * service checks the raw block first and refuses it instead.
 */
export function headerBlockProblem(raw: Uint8Array): string | undefined {
  if (wellFormedAsciiHeaderBlock(raw)) {
    return undefined;
  }
  let text: string;
  try {
    text = strictUtf8.decode(raw);
  } catch {
    return "the header block is not UTF-8";
  }
  if (!text.startsWith(HEADER_VERSION_LINE)) {
    const first = text.split(/\r?\n/, 1)[0] ?? "";
    return `the header block does not start with the line NATS/1.0 (it starts ${JSON.stringify(first.slice(0, 32))})`;
  }
  if (!text.endsWith("\r\n\r\n")) {
    return "the header block does not end with an empty line";
  }
  if (text.length === HEADER_VERSION_LINE.length + 2) {
    return undefined;
  }
  for (const line of text.slice(HEADER_VERSION_LINE.length, -4).split("\r\n")) {
    if (/[\r\n]/.test(line)) {
      return "a header line holds a bare CR or LF";
    }
    const colon = line.indexOf(":");
    if (colon < 0) {
      return `a header line has no colon: ${JSON.stringify(line.slice(0, 32))}`;
    }
    if (colon === 0) {
      return "a header has an empty name";
    }
    if (!/^[\x21-\x39\x3b-\x7e]+$/.test(line.slice(0, colon))) {
      return `a header name is not printable ASCII without spaces: ${JSON.stringify(line.slice(0, Math.min(colon, 32)))}`;
    }
  }
  return undefined;
}

const HEADER_VERSION_BYTES = new TextEncoder().encode(HEADER_VERSION_LINE);

/**
 * The fast path of {@link headerBlockProblem}, one pass over the bytes
 * without decoding: whether `raw` is a well-formed block in plain ASCII
 * (the usual case). `false` leaves the verdict, and the reason, to the
 * full check.
 */
function wellFormedAsciiHeaderBlock(raw: Uint8Array): boolean {
  const CR = 0x0d;
  const LF = 0x0a;
  const COLON = 0x3a;
  if (raw.length < HEADER_VERSION_BYTES.length + 2) {
    return false;
  }
  for (let i = 0; i < HEADER_VERSION_BYTES.length; i++) {
    if (raw[i] !== HEADER_VERSION_BYTES[i]) {
      return false;
    }
  }
  let i = HEADER_VERSION_BYTES.length;
  for (;;) {
    if (raw[i] === CR) {
      // The blank line: it must end the block.
      return raw[i + 1] === LF && i + 2 === raw.length;
    }
    const nameStart = i;
    for (let byte = raw[i]; byte !== COLON; byte = raw[++i]) {
      if (byte === undefined || byte < 0x21 || byte > 0x7e) {
        return false;
      }
    }
    if (i === nameStart) {
      return false;
    }
    for (let byte = raw[++i]; byte !== CR; byte = raw[++i]) {
      if (byte === undefined || byte === LF || byte >= 0x80) {
        return false;
      }
    }
    if (raw[i + 1] !== LF) {
      return false;
    }
    i += 2;
  }
}

/** A message's headers read defensively: the headers, or what is wrong with their raw block (then no headers). */
export function readHeaders(message: Msg): { headers: MsgHdrs | undefined; problem: string | undefined } {
  try {
    const raw = rawHeaderBlock(message);
    const problem = raw === undefined ? undefined : headerBlockProblem(raw);
    return { headers: problem === undefined ? message.headers : undefined, problem };
  } catch (err) {
    return { headers: undefined, problem: describe(err) };
  }
}

/**
 * What is wrong with a request's header block (see {@link headerBlockProblem}),
 * or `undefined` when it is well formed or absent: checked on the raw bytes,
 * so the headers themselves (`message.headers`) are decoded only when
 * something reads them. A message that does not expose its raw block has
 * its headers decoded now, as {@link readHeaders} does.
 */
export function headerProblem(message: Msg): string | undefined {
  try {
    const raw = rawHeaderBlock(message);
    if (raw === undefined) {
      void message.headers;
      return undefined;
    }
    return headerBlockProblem(raw);
  } catch (err) {
    return describe(err);
  }
}

/** {@link asciiHeaderValue} cannot tell: the block is not plain ASCII. */
const NOT_ASCII = Symbol("not ASCII");

/**
 * The bytes of the first value of header `name` (matched exactly, trimmed
 * as the client library trims it) in a well-formed header block;
 * `undefined` when absent, {@link NOT_ASCII} when the block holds anything
 * but ASCII (then the decoded headers must be asked).
 */
function asciiHeaderValue(raw: Uint8Array, name: string): Uint8Array | undefined | typeof NOT_ASCII {
  const CR = 0x0d;
  const COLON = 0x3a;
  let i = HEADER_VERSION_BYTES.length;
  while (i < raw.length && raw[i] !== CR) {
    let colon = i;
    while (raw[colon] !== COLON) {
      colon++;
    }
    let end = colon + 1;
    while (raw[end] !== CR) {
      if ((raw[end] ?? 0) >= 0x80) {
        return NOT_ASCII;
      }
      end++;
    }
    if (colon - i === name.length && asciiEquals(raw, i, name)) {
      let start = colon + 1;
      while (start < end && isTrimmed(raw[start] ?? 0)) {
        start++;
      }
      while (end > start && isTrimmed(raw[end - 1] ?? 0)) {
        end--;
      }
      return raw.subarray(start, end);
    }
    i = end + 2;
  }
  return undefined;
}

/** Whether `raw` holds the ASCII string `text` at `offset`. */
function asciiEquals(raw: Uint8Array, offset: number, text: string): boolean {
  for (let j = 0; j < text.length; j++) {
    if (raw[offset + j] !== text.charCodeAt(j)) {
      return false;
    }
  }
  return true;
}

/** The ASCII bytes `String.prototype.trim` removes that a header value may hold (tab, vertical tab, form feed, space). */
function isTrimmed(byte: number): boolean {
  return byte === 0x20 || byte === 0x09 || byte === 0x0b || byte === 0x0c;
}

/**
 * The raw header block of a message received by `@nats-io/nats-core`, when
 * its message object exposes it (its `MsgImpl` does), else `undefined`.
 * A plain view rather than `subarray`: on a Node `Buffer` that is a slower
 * JavaScript method making another `Buffer`, and every request asks twice.
 */
function rawHeaderBlock(message: Msg): Uint8Array | undefined {
  const impl = message as unknown as { _msg?: { hdr?: unknown }; _rdata?: unknown };
  const length = impl._msg?.hdr;
  const data = impl._rdata;
  return typeof length === "number" && length >= 0 && data instanceof Uint8Array
    ? new Uint8Array(data.buffer, data.byteOffset, Math.min(length, data.length))
    : undefined;
}

/** Header values cannot hold line breaks; keeps a message on one line. */
export function headerValue(value: string): string {
  return value.replace(/[\r\n]/g, " ");
}
