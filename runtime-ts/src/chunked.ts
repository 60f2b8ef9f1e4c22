/**
 * Chunked transfer (PROTOCOL §12.5): one large payload carried over a
 * client-streaming (upload) or server-streaming (download) RPC, one chunk
 * per stream message, its size and SHA-256 on the sender's end and checked
 * by the receiver. Works in browsers too: the hash is `@noble/hashes`
 * (Node's own `crypto` when the runtime finds it, for speed), and files are
 * left to `nats-micro-runtime/node`.
 */

import { sha256 } from "@noble/hashes/sha2";
import type { MsgHdrs } from "@nats-io/nats-core";
import type { DescField, DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { NatsMicroError } from "./errors.js";
import { protocolHeader } from "./headers.js";
import type { Codec } from "./codec.js";
import type { StreamMethodSpec } from "./spec.js";
import { SEQ_HEADER_BYTES } from "./stream-wire.js";
import { requestEndHeaders } from "./stream-link.js";
import { type RequestContext, streamContexts } from "./context.js";

/** End header: the payload's total size in bytes. */
export const CHUNKED_SIZE_HEADER = "Nats-Micro-Chunked-Size";
/** End header: `sha-256=<base64 of the payload's SHA-256>` (standard alphabet, padded). */
export const CHUNKED_DIGEST_HEADER = "Nats-Micro-Chunked-Digest";

/** Bytes to send or receive: a buffer, or a source read piece by piece (never buffered whole). */
export type ByteSource = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>;

/**
 * Where received bytes go, piece by piece: `write` may return a promise
 * (the next chunk waits for it). `close` runs once every check passed,
 * `abort` when the transfer failed; both optional. A `WritableStream`'s
 * writer (`stream.getWriter()`) is one.
 */
export interface ByteSink {
  write(chunk: Uint8Array): void | Promise<void>;
  close?(): void | Promise<void>;
  abort?(reason: unknown): void | Promise<void>;
}

/** What a receiver checked. */
export interface ChunkedResult {
  /** Bytes received. */
  readonly size: number;
  /** SHA-256 of what was received. */
  readonly sha256: Uint8Array;
  /**
   * Whether the sender's size and digest were there and matched. `false`
   * for a sender that sends neither (a Go-plugin peer): only the order and
   * completeness of the chunks were checked.
   */
  readonly digestVerified: boolean;
}

/** Per-transfer settings of a chunked sender. */
export interface ChunkOptions {
  /** Bytes per chunk, over the proto's `default_chunk_size`. */
  chunkSize?: number;
}

/** An incremental SHA-256. */
export interface Sha256 {
  update(data: Uint8Array): void;
  digest(): Uint8Array;
}

interface NodeHash {
  update(data: Uint8Array): unknown;
  digest(): Uint8Array;
}

/** Node's `crypto`, when this runs on a Node that offers `process.getBuiltinModule` (no import: browsers never see it). */
const nodeCrypto = (() => {
  const process = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  try {
    return process?.getBuiltinModule?.("node:crypto") as { createHash(algorithm: string): NodeHash } | undefined;
  } catch {
    return undefined;
  }
})();

/**
 * A new incremental SHA-256: Node's `crypto` where available, else
 * `@noble/hashes` (browsers, Deno, Bun).
 *
 * ```ts
 * const hash = createSha256();
 * hash.update(new TextEncoder().encode("abc"));
 * hash.digest(); // ba7816bf…
 * ```
 */
export function createSha256(): Sha256 {
  if (nodeCrypto !== undefined) {
    const hash = nodeCrypto.createHash("sha256");
    return { update: (data) => void hash.update(data), digest: () => new Uint8Array(hash.digest()) };
  }
  const hash = sha256.create();
  return { update: (data) => void hash.update(data), digest: () => hash.digest() };
}

/** Standard base64, padded. */
export function base64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) {
    binary += String.fromCharCode(byte);
  }
  return btoa(binary);
}

/** Bytes of standard or URL-safe base64 (padding optional); `undefined` when malformed. */
export function fromBase64(text: string): Uint8Array | undefined {
  const standard = text.replace(/-/g, "+").replace(/_/g, "/");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(standard)) {
    return undefined;
  }
  try {
    const binary = atob(standard.padEnd(Math.ceil(standard.length / 4) * 4, "="));
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/** Lowercase hex. */
export function hex(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) {
    out += byte.toString(16).padStart(2, "0");
  }
  return out;
}

/** The `Nats-Micro-Chunked-Digest` value of a SHA-256: `sha-256=<base64>`. */
export function digestHeaderValue(digest: Uint8Array): string {
  return `sha-256=${base64(digest)}`;
}

/** Whether two byte arrays are equal. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/**
 * A receiver's running check: counts and hashes the chunks as they come,
 * then checks them against the sender's end headers.
 */
export class ChunkVerifier {
  readonly #hash = createSha256();
  #size = 0;
  readonly #method: string;

  constructor(method = "") {
    this.#method = method;
  }

  /** Bytes so far. */
  get size(): number {
    return this.#size;
  }

  update(chunk: Uint8Array): void {
    this.#hash.update(chunk);
    this.#size += chunk.length;
  }

  /**
   * Checks the total against the end headers: DATA_LOSS when the size or
   * the digest differs or is malformed; `digestVerified: false` when the
   * sender sent neither.
   */
  finish(headers: MsgHdrs | undefined): ChunkedResult {
    const digest = this.#hash.digest();
    const sizeHeader = protocolHeader(headers, CHUNKED_SIZE_HEADER);
    const digestHeader = protocolHeader(headers, CHUNKED_DIGEST_HEADER);
    const loss = (why: string) => new NatsMicroError("DATA_LOSS", this.#method, `chunked transfer: ${why}`);
    if (sizeHeader !== undefined) {
      if (!/^[0-9]{1,16}$/.test(sizeHeader)) {
        throw loss(`malformed ${CHUNKED_SIZE_HEADER} ${JSON.stringify(sizeHeader)}`);
      }
      if (Number(sizeHeader) !== this.#size) {
        throw loss(`received ${this.#size} bytes, the sender sent ${sizeHeader}`);
      }
    }
    if (digestHeader !== undefined) {
      const expected = digestHeader.startsWith("sha-256=") ? fromBase64(digestHeader.slice("sha-256=".length)) : undefined;
      if (expected === undefined || expected.length !== 32) {
        throw loss(`malformed ${CHUNKED_DIGEST_HEADER} ${JSON.stringify(digestHeader)}`);
      }
      if (!sameBytes(expected, digest)) {
        throw loss(`the SHA-256 of the ${this.#size} bytes received does not match the sender's`);
      }
    }
    return { size: this.#size, sha256: digest, digestVerified: sizeHeader !== undefined && digestHeader !== undefined };
  }
}

/** A sender's running total: size and SHA-256 of what it sent, as end headers. */
export class ChunkDigest {
  readonly #hash = createSha256();
  #size = 0;

  update(chunk: Uint8Array): void {
    this.#hash.update(chunk);
    this.#size += chunk.length;
  }

  /** `Nats-Micro-Chunked-Size` and `Nats-Micro-Chunked-Digest`. */
  headers(): Record<string, string> {
    return { [CHUNKED_SIZE_HEADER]: String(this.#size), [CHUNKED_DIGEST_HEADER]: digestHeaderValue(this.#hash.digest()) };
  }
}

/** The pieces of a byte source as they come. */
export async function* byteChunks(source: ByteSource): AsyncGenerator<Uint8Array> {
  if (source instanceof Uint8Array) {
    yield source;
    return;
  }
  if (typeof (source as ReadableStream<Uint8Array>).getReader === "function") {
    const reader = (source as ReadableStream<Uint8Array>).getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) {
          return;
        }
        yield value;
      }
    } finally {
      reader.releaseLock();
    }
  }
  yield* source as AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

/**
 * Re-cuts a byte source into chunks of exactly `size` bytes (the last one
 * shorter; none for an empty source), holding at most one chunk: pieces
 * that hold whole chunks are passed on as views, not copied.
 */
export async function* rechunk(source: ByteSource, size: number): AsyncGenerator<Uint8Array> {
  let buffer: Uint8Array | undefined;
  let filled = 0;
  for await (const piece of byteChunks(source)) {
    let offset = 0;
    while (offset < piece.length) {
      if (filled === 0 && piece.length - offset >= size) {
        yield piece.subarray(offset, offset + size);
        offset += size;
        continue;
      }
      buffer ??= new Uint8Array(size);
      const take = Math.min(size - filled, piece.length - offset);
      buffer.set(piece.subarray(offset, offset + take), filled);
      filled += take;
      offset += take;
      if (filled === size) {
        const full = buffer;
        buffer = undefined;
        filled = 0;
        yield full;
      }
    }
  }
  if (filled > 0 && buffer !== undefined) {
    yield buffer.subarray(0, filled);
  }
}

/** The streamed message's bytes field (the chunk field of `chunked_io`). */
export function chunkField(schema: DescMessage, spec: StreamMethodSpec): DescField {
  const name = spec.chunked?.field;
  const field = schema.fields.find((f) => f.name === name);
  if (field === undefined || field.fieldKind !== "scalar") {
    throw new NatsMicroError("INTERNAL", spec.method, `${spec.method} is not a chunked transfer of ${schema.typeName}`);
  }
  return field;
}

/**
 * The chunk size of a transfer, checked against `maxPayload`: a chunk
 * whose message (with its sequence header) would not fit fails the
 * transfer before anything is sent (INVALID_ARGUMENT naming max_payload).
 */
export function chunkSizeFor(
  spec: StreamMethodSpec,
  codec: Codec<DescMessage>,
  local: string,
  maxPayload: number | undefined,
  requested: number | undefined,
): number {
  const size = requested ?? spec.chunked?.chunkSize ?? 64 * 1024;
  if (!Number.isSafeInteger(size) || size < 1) {
    throw new NatsMicroError("INVALID_ARGUMENT", spec.method, `chunk size ${size} must be a whole number of bytes, at least 1`);
  }
  if (maxPayload !== undefined) {
    const message = codec.encode({ [local]: new Uint8Array(size) } as MessageInitShape<DescMessage>).length + SEQ_HEADER_BYTES;
    if (message > maxPayload) {
      throw new NatsMicroError(
        "INVALID_ARGUMENT",
        spec.method,
        `a chunk of ${size} bytes makes a ${message}-byte message, over the connection's max_payload of ${maxPayload} bytes`,
      );
    }
  }
  return size;
}

/**
 * The bytes of an upload handler's request stream (PROTOCOL §12.5): iterate
 * it for the chunks as they arrive; the iteration fails with DATA_LOSS when
 * the caller's size or digest (on its half-close) does not match, and
 * {@link result} says what was checked. Never buffers the payload.
 */
export class ChunkedUpload<I extends DescMessage = DescMessage> implements AsyncIterable<Uint8Array> {
  readonly #requests: AsyncIterable<MessageShape<I>>;
  readonly #local: string;
  readonly #method: string;
  #result: ChunkedResult | undefined;
  #taken = false;

  constructor(spec: StreamMethodSpec<I>, requests: AsyncIterable<MessageShape<I>>) {
    this.#requests = requests;
    this.#local = chunkField(spec.input, spec).localName;
    this.#method = spec.method;
  }

  /** What was checked, once the iteration finished. */
  get result(): ChunkedResult | undefined {
    return this.#result;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    if (this.#taken) {
      throw new NatsMicroError("INTERNAL", this.#method, "the upload was read already");
    }
    this.#taken = true;
    const verifier = new ChunkVerifier(this.#method);
    for await (const message of this.#requests) {
      const chunk = (message as unknown as Record<string, unknown>)[this.#local];
      if (chunk instanceof Uint8Array && chunk.length > 0) {
        verifier.update(chunk);
        yield chunk;
      }
    }
    this.#result = verifier.finish(requestEndHeaders(this.#requests));
  }

  /** The whole upload in memory (only for payloads known to be small). */
  async bytes(): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    for await (const chunk of this) {
      parts.push(chunk);
    }
    return concat(parts);
  }
}

/**
 * Reads an upload handler's request stream as bytes, checked at the end
 * (see {@link ChunkedUpload}).
 *
 * ```ts
 * async upload(requests, ctx) {
 *   const upload = chunkedUploadReader(ProfileServiceNatsSpec.streams.upload, requests);
 *   for await (const chunk of upload) hash.update(chunk); // DATA_LOSS here if the digest does not match
 *   return { size: BigInt(upload.result!.size) };
 * }
 * ```
 */
export function chunkedUploadReader<I extends DescMessage>(spec: StreamMethodSpec<I>, requests: AsyncIterable<MessageShape<I>>): ChunkedUpload<I> {
  return new ChunkedUpload(spec, requests);
}

/**
 * A download handler's response stream from bytes, an (async) iterable of
 * bytes or a `ReadableStream` (PROTOCOL §12.5): cut into chunks of the
 * proto's chunk size (or `options.chunkSize`), with the size and SHA-256
 * set as trailing headers on the handler's end. A chunk that cannot fit the
 * connection's max_payload fails before anything is sent.
 *
 * ```ts
 * download(request, ctx) {
 *   return chunkedDownload(ProfileServiceNatsSpec.streams.download, openReport(request), ctx);
 * }
 * ```
 */
export async function* chunkedDownload<O extends DescMessage>(
  spec: StreamMethodSpec<DescMessage, O>,
  source: ByteSource,
  ctx: RequestContext,
  options: ChunkOptions = {},
): AsyncGenerator<MessageInitShape<O>> {
  const local = chunkField(spec.output, spec).localName;
  const stream = streamContexts.get(ctx);
  if (stream === undefined) {
    throw new NatsMicroError("INTERNAL", spec.method, "chunkedDownload needs the context of a server-streaming handler");
  }
  const size = chunkSizeFor(spec, stream.responses, local, stream.maxPayload(), options.chunkSize);
  const digest = new ChunkDigest();
  for await (const chunk of rechunk(source, size)) {
    digest.update(chunk);
    yield { [local]: chunk } as MessageInitShape<O>;
  }
  for (const [name, value] of Object.entries(digest.headers())) {
    ctx.setResponseHeader(name, value);
  }
}

/** One buffer of several. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1 && parts[0] !== undefined) {
    return parts[0];
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
