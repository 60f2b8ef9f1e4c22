/** What the generator knows about a service: its RPCs, unary and streaming, and their endpoints. */

import type { DescMessage } from "@bufbuild/protobuf";
import type { KeyTemplateSpec } from "./store-key.js";

/** One unary RPC, as the proto declares it. */
export interface MethodSpec<I extends DescMessage = DescMessage, O extends DescMessage = DescMessage> {
  /** Proto method name (`CreateOrder`). */
  readonly method: string;
  /** ADR-32 endpoint name and last subject token (`create_order`). */
  readonly endpoint: string;
  /** Request message. */
  readonly input: I;
  /** Response message. */
  readonly output: O;
  /** Timeout in milliseconds from the proto: the endpoint's, else the service's. */
  readonly timeout?: number;
  /** ADR-32 endpoint metadata. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Subscribe this endpoint without a queue group. */
  readonly queueGroupDisabled: boolean;
  /** Safe to repeat after a timeout or a lost connection: the proto's `idempotency_level` is `NO_SIDE_EFFECTS` or `IDEMPOTENT`. */
  readonly idempotent?: boolean;
  /** Position among the service's RPCs, unary and streaming, in proto order (the order of INFO). */
  readonly position?: number;
  /** Requests that may wait for a free handler slot before new ones are refused with RESOURCE_EXHAUSTED. */
  readonly pendingMsgLimit?: number;
  /** Bytes of requests that may wait likewise. */
  readonly pendingBytesLimit?: number;
  /** `(natsmicro.kv_store)`: the response is kept in a key-value bucket (PROTOCOL §12.2). */
  readonly kvStore?: KvStoreSpec;
  /** `(natsmicro.object_store)`: the response is kept in an object store (PROTOCOL §12.3). */
  readonly objectStore?: ObjectStoreSpec;
}

/** A key-value bucket and the settings it is created with (PROTOCOL §12.2). Durations in milliseconds. */
export interface KvBucketSpec {
  /** Bucket name (`[A-Za-z0-9_-]+`). */
  readonly name: string;
  readonly description: string;
  /** Revisions kept per key, 1 to 64. */
  readonly history: number;
  /** Maximum age of entries. */
  readonly ttl?: number;
  /** S2 compression of the bucket's stream. */
  readonly compression: boolean;
  readonly metadata: Readonly<Record<string, string>>;
  /** TTL of the markers the server leaves when a key expires or is purged (enables per-key TTLs). */
  readonly limitMarkerTtl?: number;
}

/** How a server writes a response to its key. */
export type KvWriteMode = "lastWriteWins" | "compareAndSet" | "createOnly";

/** What a failed write does to the call: the reply stands (`bestEffort`) or the caller gets the error (`required`). */
export type PersistFailurePolicy = "bestEffort" | "required";

/** `(natsmicro.kv_store)` of a unary RPC. Durations in milliseconds. */
export interface KvStoreSpec {
  readonly bucket: KvBucketSpec;
  /** How the key is built from the request. */
  readonly key: KeyTemplateSpec;
  /** TTL of each written key. */
  readonly keyTtl?: number;
  /** TTL of the marker a purge leaves. */
  readonly purgeTtl?: number;
  /** Only client helpers: the server never writes. */
  readonly clientOnly: boolean;
  readonly writeMode: KvWriteMode;
  readonly failurePolicy: PersistFailurePolicy;
}

/** An object store bucket and the settings it is created with (PROTOCOL §12.3). Durations in milliseconds. */
export interface ObjectBucketSpec {
  readonly name: string;
  readonly description: string;
  /** Maximum age of objects. */
  readonly ttl?: number;
  readonly compression: boolean;
}

/** `(natsmicro.object_store)` of a unary RPC. */
export interface ObjectStoreSpec {
  readonly bucket: ObjectBucketSpec;
  /** How the object name is built from the request. */
  readonly key: KeyTemplateSpec;
  /** Only client helpers: the server never writes. */
  readonly clientOnly: boolean;
}

/** `(natsmicro.chunked_io)` of a client-streaming (upload) or server-streaming (download) RPC (PROTOCOL §12.5). */
export interface ChunkedSpec {
  /** Proto name of the streamed message's only field, a singular `bytes`. */
  readonly field: string;
  /** Bytes per chunk when the caller sets none. */
  readonly chunkSize: number;
}

/** A service, as the proto declares it. Every value can be overridden at run time. */
export interface ServiceSpec {
  /** Full proto name (`order.v1.OrderService`). */
  readonly protoName: string;
  /** ADR-32 service name. */
  readonly name: string;
  /** ADR-32 version (SemVer). */
  readonly version: string;
  /** ADR-32 description. */
  readonly description: string;
  /** First tokens of every endpoint subject. */
  readonly subjectPrefix: string;
  /** ADR-32 service metadata. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Service-wide timeout in milliseconds. */
  readonly timeout?: number;
  /** Messages travel in the proto3 JSON mapping. */
  readonly json: boolean;
  /** Subscribe without a queue group. */
  readonly queueGroupDisabled: boolean;
  /** The unary RPCs by their TypeScript method name, in proto order. */
  readonly methods: Readonly<Record<string, MethodSpec>>;
  /** The streaming RPCs by their TypeScript method name, in proto order. */
  readonly streams?: Readonly<Record<string, StreamMethodSpec>>;
}

/** An endpoint: name, subject, queue group (absent when disabled) and metadata. */
export interface EndpointInfo {
  name: string;
  subject: string;
  queue_group?: string;
  metadata: Record<string, string>;
}

/** Which sides stream: the server's responses, the caller's requests, or both. */
export type StreamKind = "server" | "client" | "bidi";

/** One streaming RPC, as the proto declares it. */
export interface StreamMethodSpec<I extends DescMessage = DescMessage, O extends DescMessage = DescMessage, K extends StreamKind = StreamKind>
  extends MethodSpec<I, O> {
  readonly kind: K;
  /** The flow-control window from `(natsmicro.stream)` max_inflight. */
  readonly window?: number;
  /** `(natsmicro.chunked_io)`: the stream carries one payload in chunks. */
  readonly chunked?: ChunkedSpec;
}

/** The endpoint metadata key that marks a streaming endpoint in ADR-32 INFO (PROTOCOL §9). */
export const STREAM_METADATA_KEY = "nats_micro.stream";

/** Every RPC of a service, unary and streaming, in proto order. */
export function endpointSpecs(spec: ServiceSpec): MethodSpec[] {
  return serviceRpcs(spec).map(([, method]) => method);
}

/** Every RPC of a service in proto order: its key in the spec, its spec, and the same spec again when it streams. */
export function serviceRpcs(spec: ServiceSpec): (readonly [string, MethodSpec, StreamMethodSpec | undefined])[] {
  const unary = Object.entries(spec.methods).map(([key, method]) => [key, method, undefined] as const);
  const streams = Object.entries(spec.streams ?? {}).map(([key, method]) => [key, method, method] as const);
  return [...unary, ...streams].sort(([, a], [, b]) => (a.position ?? 0) - (b.position ?? 0));
}

/** An endpoint's INFO metadata: the proto's, and a stream's kind under {@link STREAM_METADATA_KEY}. */
export function endpointMetadata(method: MethodSpec | StreamMethodSpec): Record<string, string> {
  const kind = "kind" in method ? method.kind : undefined;
  if (kind === undefined) {
    return { ...method.metadata };
  }
  return { ...method.metadata, [STREAM_METADATA_KEY]: kind === "bidi" ? "bidirectional" : kind };
}
