/** The error class every call and handler shares, and how a thrown value becomes an error reply. */

import { headers as createHeaders } from "@nats-io/nats-core";
import type { MsgHdrs } from "@nats-io/nats-core";

/** What went wrong beyond the code: tells a reply of the service apart from a transport failure. */
export enum ErrorKind {
  /** The service (or a handler or interceptor) answered with this error. */
  Service = "service",
  /** Nobody listens on the subject (code `UNAVAILABLE`). */
  NoResponders = "no_responders",
  /** No reply before the deadline (code `DEADLINE_EXCEEDED`). */
  Timeout = "timeout",
  /** The request is larger than the server's `max_payload` (code `RESOURCE_EXHAUSTED`). */
  MaxPayloadExceeded = "max_payload_exceeded",
  /** The connection to NATS is closed or draining (code `UNAVAILABLE`). */
  ConnectionClosed = "connection_closed",
  /** The NATS account may not publish or subscribe there (code `PERMISSION_DENIED`). */
  PermissionViolation = "permission_violation",
  /** The reply could not be decoded as the response message (code `INTERNAL`). */
  Decode = "decode",
  /** The request could not be encoded (code `INTERNAL`). */
  Encode = "encode",
  /** Another transport failure (code `UNAVAILABLE`). */
  Transport = "transport",
  /** The connection to NATS was lost while the call was in flight, or did not come back in time (code `UNAVAILABLE`, PROTOCOL §10.1). */
  ConnectionLost = "connection_lost",
  /** The client's circuit breaker refused the call without sending it (code `UNAVAILABLE`, PROTOCOL §10.2). */
  CircuitOpen = "circuit_open",
}

/** Further details of a {@link NatsMicroError}. */
export interface NatsMicroErrorOptions {
  /** Defaults to {@link ErrorKind.Service}. */
  kind?: ErrorKind;
  /** On the client, the reply's headers; on the server, headers to send with the error reply. */
  headers?: MsgHdrs;
  /** The underlying cause. */
  cause?: unknown;
  /** How many attempts the call made (defaults to 1). */
  attempts?: number;
}

/** The message a caller sees for an INTERNAL error whose text is withheld. */
export const INTERNAL_MESSAGE = "internal error";

/**
 * Marks every {@link NatsMicroError} of every copy of this package (a
 * registered symbol is the same in all of them), so that errors keep their
 * code when they cross from one copy to another.
 */
const ERROR_BRAND: unique symbol = Symbol.for("nats-micro-runtime.NatsMicroError");

/**
 * What every {@link NatsMicroError} offers, whichever copy of this package
 * made it: what {@link isNatsMicroError} guarantees.
 */
export interface NatsMicroErrorLike extends Error {
  readonly code: string;
  readonly method: string;
  readonly data: Uint8Array;
  readonly kind: ErrorKind | `${ErrorKind}`;
  headers: MsgHdrs | undefined;
  /** Absent on errors of older copies of this package. */
  readonly attempts?: number;
  isTimeout(): boolean;
  isNoResponders(): boolean;
  isTransport(): boolean;
}

/**
 * Whether `value` is a {@link NatsMicroError} made by any copy of this
 * package (two output folders with their own installs, a bundled
 * dependency): checked by a registered brand, not by class identity.
 */
export function isNatsMicroError(value: unknown): value is NatsMicroErrorLike {
  return (
    typeof value === "object" &&
    value !== null &&
    (value as { [ERROR_BRAND]?: unknown })[ERROR_BRAND] === true &&
    typeof (value as { code?: unknown }).code === "string"
  );
}

/** The code of a {@link NatsMicroError} from any copy of this package; `""` for anything else. */
export function errorCode(value: unknown): string {
  return isNatsMicroError(value) ? value.code : "";
}

/** Whether `value` is a {@link NatsMicroError} (from any copy of this package) with code `code`. */
export function hasCode(value: unknown, code: string): value is NatsMicroErrorLike {
  return isNatsMicroError(value) && value.code === code;
}

/**
 * The error of a call or a handler: a code, the RPC method (proto name, e.g.
 * `CreateOrder`), a message and the error data (the body of the error
 * reply). Each generated service derives its own class from it.
 *
 * `error instanceof NatsMicroError` holds for errors of every copy of this
 * package; a generated subclass's `instanceof` is its own class only.
 */
export class NatsMicroError extends Error implements NatsMicroErrorLike {
  /** Errors of other copies of this package count as this class too (see {@link isNatsMicroError}). */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return this === NatsMicroError ? isNatsMicroError(value) : Function.prototype[Symbol.hasInstance].call(this, value);
  }

  /** The code's name (`NOT_FOUND`, `ORDER_EXPIRED`), or an unrecognised code verbatim. */
  readonly code: string;
  /** The RPC method the error belongs to (empty if unknown). */
  readonly method: string;
  /** The error data: the body of the error reply (empty if none). */
  readonly data: Uint8Array;
  /** Whether the service answered or the transport failed. */
  readonly kind: ErrorKind;
  /** The reply's headers (client) or headers to send with the error (server). */
  headers: MsgHdrs | undefined;
  /** How many attempts the failed call made, the first included (1 when it was not retried; PROTOCOL §10.1). */
  readonly attempts: number;

  constructor(code: string, method: string, message: string, data?: Uint8Array, options?: NatsMicroErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "NatsMicroError";
    this.code = code;
    this.method = method;
    this.data = data ?? new Uint8Array(0);
    this.kind = options?.kind ?? ErrorKind.Service;
    this.headers = options?.headers;
    this.attempts = options?.attempts ?? 1;
  }

  /** No reply arrived before the deadline. */
  isTimeout(): boolean {
    return this.kind === ErrorKind.Timeout;
  }

  /** Nobody was listening on the subject. */
  isNoResponders(): boolean {
    return this.kind === ErrorKind.NoResponders;
  }

  /** The failure happened in transport, not in the service. */
  isTransport(): boolean {
    return this.kind !== ErrorKind.Service;
  }

  /** Adds a header to send with the error reply (server side). */
  withHeader(name: string, value: string): this {
    this.headers = this.headers ?? createHeaders();
    this.headers.set(name, value);
    return this;
  }

  /** `[CODE] Method: message` */
  override toString(): string {
    return `[${this.code}] ${this.method}: ${this.message}`;
  }
}

// On the prototype, not in the declared type: copies of this package must stay structurally the same type.
Object.defineProperty(NatsMicroError.prototype, ERROR_BRAND, { value: true });

/**
 * Implemented by a handler's own error types to say what the caller gets:
 * the counterpart of the Go plugin's `NatsErrorCode()`, `NatsErrorMessage()`
 * and `NatsErrorData()`. A thrown value with no code becomes INTERNAL; its
 * text is logged, not sent.
 */
export interface HandlerError {
  /** The code to reply with; `undefined` means INTERNAL with the text withheld. */
  natsErrorCode(): string | undefined;
  /** The message to reply with (defaults to the error's `message`). */
  natsErrorMessage?(): string;
  /** The error data to send as the reply body (defaults to none). */
  natsErrorData?(): Uint8Array;
}

function isHandlerError(value: unknown): value is HandlerError {
  return typeof value === "object" && value !== null && typeof (value as HandlerError).natsErrorCode === "function";
}

/** The text of any thrown value, for logs. */
export function describe(value: unknown): string {
  return value instanceof Error ? value.message : String(value);
}

/** A service-side error: the reply it gives, and text withheld from the caller. */
export interface ReplyError {
  error: NatsMicroError;
  /** The text of an uncoded error: logged, and sent only when the service opts in. */
  detail?: string;
}

/** What the caller gets for anything a handler or interceptor threw. */
export function replyError(thrown: unknown, method: string): ReplyError {
  if (isNatsMicroError(thrown)) {
    // From another copy of this package (a downstream client's error re-thrown): keep its code, message, data and headers.
    const own = Object.prototype.isPrototypeOf.call(NatsMicroError.prototype, thrown)
        ? (thrown as NatsMicroError)
        : new NatsMicroError(thrown.code, thrown.method || method, thrown.message, thrown.data, {
            cause: thrown,
            ...(thrown.headers !== undefined && { headers: thrown.headers }),
          });
    return { error: own };
  }
  const code = isHandlerError(thrown) ? thrown.natsErrorCode() : undefined;
  if (isHandlerError(thrown) && code !== undefined) {
    const message = thrown.natsErrorMessage?.() ?? describe(thrown);
    return { error: new NatsMicroError(code, method, message, thrown.natsErrorData?.()) };
  }
  return { error: new NatsMicroError("INTERNAL", method, INTERNAL_MESSAGE, undefined, { cause: thrown }), detail: describe(thrown) };
}

/** A generated service's error class. */
export type ErrorClass<E extends NatsMicroError> = new (
  code: string,
  method: string,
  message: string,
  data?: Uint8Array,
  options?: NatsMicroErrorOptions,
) => E;

/** The constructor of one code for a generated error class: `(method, message, data?) => error`. */
export function errorFactory<E extends NatsMicroError>(
  errorClass: ErrorClass<E>,
  code: string,
): (method: string, message: string, data?: Uint8Array) => E {
  return (method, message, data) => new errorClass(code, method, message, data);
}

/** The checker of one code: whether a value is an error (of any copy of this package) with that code. */
export function codeChecker(code: string): (error: unknown) => error is NatsMicroErrorLike {
  return (error): error is NatsMicroErrorLike => hasCode(error, code);
}
