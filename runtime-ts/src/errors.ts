/** The error class every call and handler shares, and how a thrown value becomes an error reply. */

import { headers as createHeaders } from "@nats-io/nats-core";
import type { MsgHdrs } from "@nats-io/nats-core";
import { create, type DescMessage, fromBinary, type MessageInitShape, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema, type DurationSchema } from "@bufbuild/protobuf/wkt";
import {
  type BadRequest,
  type BadRequest_FieldViolationSchema,
  BadRequestSchema,
  type DebugInfo,
  DebugInfoSchema,
  type ErrorInfo,
  ErrorInfoSchema,
  type Help,
  type Help_LinkSchema,
  HelpSchema,
  type LocalizedMessage,
  LocalizedMessageSchema,
  type PreconditionFailure,
  type PreconditionFailure_ViolationSchema,
  PreconditionFailureSchema,
  type QuotaFailure,
  type QuotaFailure_ViolationSchema,
  QuotaFailureSchema,
  type RequestInfo,
  RequestInfoSchema,
  type ResourceInfo,
  ResourceInfoSchema,
  type RetryInfo,
  RetryInfoSchema,
} from "./google-rpc-error_details_pb.js";

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
  /** Typed details (PROTOCOL §4.1), each packed with its schema: `anyPack(ErrorInfoSchema, create(ErrorInfoSchema, {...}))`. */
  details?: readonly Any[];
}

/**
 * Whether a packed detail holds a message of `typeName` (e.g.
 * `google.rpc.ErrorInfo`), whatever its type URL's prefix (up to the last
 * `/`).
 */
export function isDetailOf(detail: Any, typeName: string): boolean {
  return detail.typeUrl.slice(detail.typeUrl.lastIndexOf("/") + 1) === typeName;
}

/** `message` of `schema` packed as a detail, type URL `type.googleapis.com/<full name>`. */
export function packDetail<Desc extends DescMessage>(schema: Desc, message: MessageInitShape<Desc>): Any {
  const value = toBinary(schema, create(schema, message));
  return create(AnySchema, { typeUrl: `type.googleapis.com/${schema.typeName}`, value });
}

/** Milliseconds as a `google.protobuf.Duration` (negative and non-finite values count as zero: a hint never throws). */
function durationOf(ms: number): MessageInitShape<typeof DurationSchema> {
  const nanosTotal = BigInt(Number.isFinite(ms) ? Math.round(Math.max(0, ms) * 1_000_000) : 0);
  return { seconds: nanosTotal / 1_000_000_000n, nanos: Number(nanosTotal % 1_000_000_000n) };
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
  /** Optional so that errors of copies without details still count. */
  readonly detailsAny?: readonly Any[];
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
 * `CreateOrder`), a message, the error data (the body of the error reply)
 * and typed details (PROTOCOL §4.1). Each generated service derives its own
 * class from it.
 *
 * Details are protobuf messages: the standard ones of
 * `google/rpc/error_details.proto` through `with…` builders and typed
 * getters, any other message through {@link withDetail} and {@link detail}.
 *
 * ```ts
 * throw new NatsMicroError("INVALID_ARGUMENT", "CreateOrder", "bad order")
 *   .withBadRequest({ field: "items[0].qty", description: "must be positive" })
 *   .withDetail(HintSchema, { text: "order fewer" });
 * // caller: err.badRequest()?.fieldViolations[0]?.field, err.detail(HintSchema)?.text
 * ```
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
  /**
   * The details as packed, in order: also those of types this runtime does
   * not know, which a handler re-throwing the error sends on verbatim.
   */
  readonly detailsAny: readonly Any[];
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
    this.detailsAny = [...(options?.details ?? [])];
  }

  /** Adds a detail: `message` of `schema` (any protobuf message). */
  withDetail<Desc extends DescMessage>(schema: Desc, message: MessageInitShape<Desc>): this {
    (this.detailsAny as Any[]).push(packDetail(schema, message));
    return this;
  }

  /** Adds an `ErrorInfo`: why, as a constant `reason` in `domain`, with context. */
  withErrorInfo(reason: string, domain: string, metadata: Readonly<Record<string, string>> = {}): this {
    return this.withDetail(ErrorInfoSchema, { reason, domain, metadata: { ...metadata } });
  }

  /** Adds a `RetryInfo`: come back after `delayMs` milliseconds. */
  withRetryInfo(delayMs: number): this {
    return this.withDetail(RetryInfoSchema, { retryDelay: durationOf(delayMs) });
  }

  /** Adds a `DebugInfo`: sent only by services that expose internal errors. */
  withDebugInfo(stackEntries: readonly string[], detail: string): this {
    return this.withDetail(DebugInfoSchema, { stackEntries: [...stackEntries], detail });
  }

  /** Adds a `QuotaFailure` with these violations. */
  withQuotaFailure(...violations: MessageInitShape<typeof QuotaFailure_ViolationSchema>[]): this {
    return this.withDetail(QuotaFailureSchema, { violations });
  }

  /** Adds a `PreconditionFailure` with these violations. */
  withPreconditionFailure(...violations: MessageInitShape<typeof PreconditionFailure_ViolationSchema>[]): this {
    return this.withDetail(PreconditionFailureSchema, { violations });
  }

  /** Adds a `BadRequest` with these field violations. */
  withBadRequest(...fieldViolations: MessageInitShape<typeof BadRequest_FieldViolationSchema>[]): this {
    return this.withDetail(BadRequestSchema, { fieldViolations });
  }

  /** Adds a `RequestInfo`: which request failed. */
  withRequestInfo(requestId: string, servingData = ""): this {
    return this.withDetail(RequestInfoSchema, { requestId, servingData });
  }

  /** Adds a `ResourceInfo`: which resource the error concerns. */
  withResourceInfo(info: MessageInitShape<typeof ResourceInfoSchema>): this {
    return this.withDetail(ResourceInfoSchema, info);
  }

  /** Adds a `Help` with these links. */
  withHelp(...links: MessageInitShape<typeof Help_LinkSchema>[]): this {
    return this.withDetail(HelpSchema, { links });
  }

  /** Adds a `LocalizedMessage`: the message for end users in `locale`. */
  withLocalizedMessage(locale: string, message: string): this {
    return this.withDetail(LocalizedMessageSchema, { locale, message });
  }

  /** Every detail of `schema`'s type, decoded, in order (one that does not decode is skipped). */
  details<Desc extends DescMessage>(schema: Desc): MessageShape<Desc>[] {
    const found: MessageShape<Desc>[] = [];
    for (const detail of this.detailsAny) {
      if (isDetailOf(detail, schema.typeName)) {
        try {
          found.push(fromBinary(schema, detail.value));
        } catch {
          // A detail that claims the type but does not decode is no such detail.
        }
      }
    }
    return found;
  }

  /** The first detail of `schema`'s type, decoded. */
  detail<Desc extends DescMessage>(schema: Desc): MessageShape<Desc> | undefined {
    return this.details(schema)[0];
  }

  /** The first `ErrorInfo`. */
  errorInfo(): ErrorInfo | undefined {
    return this.detail(ErrorInfoSchema);
  }

  /** The first `RetryInfo`. */
  retryInfo(): RetryInfo | undefined {
    return this.detail(RetryInfoSchema);
  }

  /** The first `RetryInfo`'s delay in milliseconds. */
  retryDelay(): number | undefined {
    const delay = this.retryInfo()?.retryDelay;
    return delay === undefined ? undefined : Number(delay.seconds) * 1000 + delay.nanos / 1_000_000;
  }

  /** The first `DebugInfo`. */
  debugInfo(): DebugInfo | undefined {
    return this.detail(DebugInfoSchema);
  }

  /** The first `QuotaFailure`. */
  quotaFailure(): QuotaFailure | undefined {
    return this.detail(QuotaFailureSchema);
  }

  /** The first `PreconditionFailure`. */
  preconditionFailure(): PreconditionFailure | undefined {
    return this.detail(PreconditionFailureSchema);
  }

  /** The first `BadRequest`. */
  badRequest(): BadRequest | undefined {
    return this.detail(BadRequestSchema);
  }

  /** The first `RequestInfo`. */
  requestInfo(): RequestInfo | undefined {
    return this.detail(RequestInfoSchema);
  }

  /** The first `ResourceInfo`. */
  resourceInfo(): ResourceInfo | undefined {
    return this.detail(ResourceInfoSchema);
  }

  /** The first `Help`. */
  help(): Help | undefined {
    return this.detail(HelpSchema);
  }

  /** The first `LocalizedMessage`. */
  localizedMessage(): LocalizedMessage | undefined {
    return this.detail(LocalizedMessageSchema);
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
  /** Typed details to send (PROTOCOL §4.1; defaults to none). */
  natsErrorDetails?(): readonly Any[];
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
  /**
   * Set for an uncoded error that looks like a bug rather than a failure the
   * handler meant (logged as `handler_panicked`, PROTOCOL §11.4): one of the
   * engine's own error classes (`TypeError`, `ReferenceError`, ...).
   */
  panicked?: boolean;
}

/** The engine's own error classes: thrown by a bug (the nearest TypeScript has to a panic), not by a handler's choice. */
const ENGINE_ERRORS: readonly (new () => Error)[] = [TypeError, ReferenceError, RangeError, SyntaxError, EvalError, URIError];

/** What the caller gets for anything a handler or interceptor threw. */
export function replyError(thrown: unknown, method: string): ReplyError {
  if (isNatsMicroError(thrown)) {
    // From another copy of this package (a downstream client's error re-thrown): keep its code, message, data and headers.
    const own = Object.prototype.isPrototypeOf.call(NatsMicroError.prototype, thrown)
        ? (thrown as NatsMicroError)
        : new NatsMicroError(thrown.code, thrown.method || method, thrown.message, thrown.data, {
            cause: thrown,
            ...(thrown.headers !== undefined && { headers: thrown.headers }),
            ...(thrown.detailsAny !== undefined && { details: thrown.detailsAny }),
          });
    return { error: own };
  }
  const code = isHandlerError(thrown) ? thrown.natsErrorCode() : undefined;
  if (isHandlerError(thrown) && code !== undefined) {
    const message = thrown.natsErrorMessage?.() ?? describe(thrown);
    const details = thrown.natsErrorDetails?.();
    return { error: new NatsMicroError(code, method, message, thrown.natsErrorData?.(), details === undefined ? undefined : { details }) };
  }
  const error = new NatsMicroError("INTERNAL", method, INTERNAL_MESSAGE, undefined, { cause: thrown });
  if (ENGINE_ERRORS.some((kind) => thrown instanceof kind)) {
    return { error, detail: `${(thrown as Error).name}: ${describe(thrown)}`, panicked: true };
  }
  return { error, detail: describe(thrown) };
}

/**
 * The INVALID_ARGUMENT for a request (or stream message) that does not
 * decode: a `BadRequest` names what failed (PROTOCOL §4.1, "Malformed
 * requests"); the decoder names no field path, so `field` is empty.
 */
export function malformedRequest(method: string, what: string, err: unknown): NatsMicroError {
  const description = `${what}: ${describe(err)}`;
  return new NatsMicroError("INVALID_ARGUMENT", method, description).withBadRequest({ field: "", description });
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
