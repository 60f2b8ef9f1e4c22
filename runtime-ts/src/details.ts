/**
 * Typed error details on the wire (PROTOCOL §4.1): an error reply marked
 * `Nats-Micro-Error-Details: google.rpc.Status` has a `google.rpc.Status`
 * body holding the details (and the error data as a `natsmicro.ErrorData`
 * detail); an unmarked error reply's body is the error data, as before.
 */

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { MsgHdrs } from "@nats-io/nats-core";
import { type Any, AnySchema } from "@bufbuild/protobuf/wkt";
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { codeFromWire } from "./codes.js";
import { ERROR_CODE_HEADER, ERROR_MESSAGE_HEADER, protocolHeader } from "./headers.js";
import { isDetailOf, NatsMicroError } from "./errors.js";
import { StatusSchema } from "./google-rpc-status_pb.js";
import { DebugInfoSchema, ErrorInfoSchema } from "./google-rpc-error_details_pb.js";

/** Marks an error reply whose body is a `google.rpc.Status` (its value is {@link STATUS_MARKER}). */
export const ERROR_DETAILS_HEADER = "Nats-Micro-Error-Details";
/** The only value of {@link ERROR_DETAILS_HEADER} a receiver reads the body for. */
export const STATUS_MARKER = "google.rpc.Status";
/** The `ErrorInfo` reason a service appends when it dropped details to fit max_payload. */
export const DETAILS_TRUNCATED = "DETAILS_TRUNCATED";
/** The `ErrorInfo` domain of the runtime's own details. */
export const RUNTIME_DOMAIN = "nats-micro";

/** The message that carries error data beside details: `natsmicro.ErrorData { bytes data = 1; }`. */
const ERROR_DATA_TYPE = "natsmicro.ErrorData";
const TYPE_URL_PREFIX = "type.googleapis.com/";

/** gRPC's numbers of the canonical codes; custom and unrecognised codes are UNKNOWN (2). */
const GRPC_NUMBERS: Readonly<Record<string, number>> = {
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
};

/** The `google.rpc.Status.code` of a code's name (2, UNKNOWN, for custom codes). */
export function grpcCodeNumber(code: string): number {
  return Object.hasOwn(GRPC_NUMBERS, code) ? (GRPC_NUMBERS[code] as number) : 2;
}

/** The error data packed as a `natsmicro.ErrorData` detail (written by hand: one bytes field). */
function packErrorData(data: Uint8Array): Any {
  const value = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(data).finish();
  return create(AnySchema, { typeUrl: TYPE_URL_PREFIX + ERROR_DATA_TYPE, value });
}

/** The bytes of a `natsmicro.ErrorData` detail; throws when its value does not decode. */
function unpackErrorData(any: Any): Uint8Array {
  const reader = new BinaryReader(any.value);
  let data: Uint8Array = new Uint8Array(0);
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) {
      data = reader.bytes();
    } else {
      reader.skip(wireType, field);
    }
  }
  return data;
}

/** The bytes one detail takes in a Status: tag, length and the packed Any. */
function entrySize(any: Any): number {
  const length = toBinary(AnySchema, any).length;
  let varint = 1;
  for (let rest = length >>> 7; rest > 0; rest >>>= 7) {
    varint += 1;
  }
  return 1 + varint + length;
}

/** The `ErrorInfo` that says `dropped` details were left out to fit max_payload. */
function truncationMarker(dropped: number): Any {
  const info = create(ErrorInfoSchema, { reason: DETAILS_TRUNCATED, domain: RUNTIME_DOMAIN, metadata: { dropped: String(dropped) } });
  return create(AnySchema, { typeUrl: TYPE_URL_PREFIX + ErrorInfoSchema.typeName, value: toBinary(ErrorInfoSchema, info) });
}

/** What the service sends for an error: the body, and whether it is a marked Status. */
export interface ErrorBody {
  readonly body: Uint8Array;
  readonly marked: boolean;
  /** Details dropped to fit `limit`. */
  readonly dropped: number;
}

/**
 * The body of an error reply. Without details to send (DebugInfo counts
 * only when `exposeInternal`), the error data as is; else a Status with the
 * data first (as `natsmicro.ErrorData`) and the details in order, the last
 * ones dropped for a truncation marker when the body would exceed `limit`
 * bytes; when not even the data and the marker fit, the data alone,
 * unmarked (which may still exceed `limit`: the reply then fails as any
 * oversized reply does).
 */
export function errorBody(error: NatsMicroError, message: string, exposeInternal: boolean, limit: number | undefined): ErrorBody {
  const details = exposeInternal ? error.detailsAny : error.detailsAny.filter((d) => !isDetailOf(d, DebugInfoSchema.typeName));
  if (details.length === 0) {
    return { body: error.data, marked: false, dropped: 0 };
  }
  const fixed = error.data.length > 0 ? [packErrorData(error.data)] : [];
  const code = grpcCodeNumber(error.code);
  const encode = (list: readonly Any[]) => toBinary(StatusSchema, create(StatusSchema, { code, message, details: [...fixed, ...list] }));
  const whole = encode(details);
  if (limit === undefined || whole.length <= limit) {
    return { body: whole, marked: true, dropped: 0 };
  }
  // Keep the longest prefix of the details that fits beside the marker; sizes add up, so nothing is encoded twice.
  const sizes = details.map(entrySize);
  let size = encode([]).length + sizes.reduce((a, b) => a + b, 0);
  for (let kept = details.length - 1; kept >= 0; kept--) {
    size -= sizes[kept] as number;
    const marker = truncationMarker(details.length - kept);
    if (size + entrySize(marker) <= limit) {
      return { body: encode([...details.slice(0, kept), marker]), marked: true, dropped: details.length - kept };
    }
  }
  // Not even the data beside the marker fits: the data alone, as an error without details.
  return { body: error.data, marked: false, dropped: details.length };
}

/** The error data and details of an error reply's body (lenient: a body that is not a marked Status is the data). */
export function readErrorBody(headers: MsgHdrs | undefined, body: Uint8Array): { data: Uint8Array; details: Any[] } {
  if (protocolHeader(headers, ERROR_DETAILS_HEADER) !== STATUS_MARKER) {
    return { data: body, details: [] };
  }
  let status;
  try {
    status = fromBinary(StatusSchema, body);
  } catch {
    return { data: body, details: [] };
  }
  let data: Uint8Array = new Uint8Array(0);
  let found = false;
  const details: Any[] = [];
  for (const detail of status.details) {
    if (!found && isDetailOf(detail, ERROR_DATA_TYPE)) {
      try {
        data = unpackErrorData(detail);
        found = true;
        continue;
      } catch {
        // Not readable as ErrorData: kept as an unknown detail.
      }
    }
    details.push(detail);
  }
  return { data, details };
}

/** The error an error reply (or a stream's end) describes, or `undefined` when it carries no error headers. */
export function errorFromReply(headers: MsgHdrs | undefined, body: Uint8Array, method: string): NatsMicroError | undefined {
  const code = protocolHeader(headers, ERROR_CODE_HEADER);
  const text = protocolHeader(headers, ERROR_MESSAGE_HEADER);
  if (code === undefined && text === undefined) {
    return undefined;
  }
  const { data, details } = readErrorBody(headers, body);
  return new NatsMicroError(code === undefined ? "UNKNOWN" : codeFromWire(code), method, text ?? "", data, {
    ...(headers !== undefined && { headers }),
    details,
  });
}
