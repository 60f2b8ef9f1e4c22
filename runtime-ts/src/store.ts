/**
 * Persistence (PROTOCOL §12.2–12.4) on JetStream, through nats.js's
 * `@nats-io/jetstream`, `@nats-io/kv` and `@nats-io/obj`: the buckets a
 * service creates or updates at registration, the write a service makes
 * after a successful handler, and the typed handles clients read and write
 * the buckets through.
 */

import type { DescMessage, Message, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { MsgHdrs, NatsConnection } from "@nats-io/nats-core";
import {
  type JetStreamClient,
  type JetStreamManager,
  type JetStreamOptions,
  type StreamConfig,
  type StreamInfo,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  StoreCompression,
} from "@nats-io/jetstream";
import { type KV, type KvEntry, KvWatchInclude, Kvm } from "@nats-io/kv";
import { type ObjectInfo, type ObjectStore, Objm } from "@nats-io/obj";
import { type Codec, codec } from "./codec.js";
import { describe, INTERNAL_MESSAGE, isNatsMicroError, NatsMicroError } from "./errors.js";
import { protocolHeader } from "./headers.js";
import type { KvBucketSpec, KvStoreSpec, MethodSpec, ObjectBucketSpec, ObjectStoreSpec, ServiceSpec } from "./spec.js";
import { type KeyParts, type KeyTemplateSpec, keyFilter, keyFromParts, keyValues, renderKey, requestKey } from "./store-key.js";
import { ChunkVerifier, concat, fromBase64 } from "./chunked.js";

/** Request header of a compare-and-set call: the revision the key must be at (`0`: must hold no value); reply header: the revision written. */
export const KV_REVISION_HEADER = "Nats-Micro-KV-Revision";

/** JetStream API error codes this module tells apart. */
const WRONG_LAST_SEQUENCE = [10071, 10164];
const STREAM_NOT_FOUND = 10059;
const NOT_ENABLED_FOR_ACCOUNT = 10039;

/** Which side met a JetStream failure: a service writing (no answer is UNAVAILABLE), or a client handle (no JetStream is FAILED_PRECONDITION). */
type Side = "server" | "client";

/**
 * A JetStream failure as a typed error (PROTOCOL §12.2, §12.4): a missing
 * bucket is NOT_FOUND, JetStream missing or silent FAILED_PRECONDITION (a
 * client) or UNAVAILABLE (a service, or a timeout), a revision conflict
 * `conflict`, a full bucket or an oversized value RESOURCE_EXHAUSTED,
 * anything else INTERNAL.
 */
export function jetStreamError(err: unknown, method: string, bucket: string, side: Side, conflict?: "ALREADY_EXISTS" | "ABORTED"): NatsMicroError {
  if (isNatsMicroError(err)) {
    return err as NatsMicroError;
  }
  const text = describe(err);
  const name = err instanceof Error ? err.name : "";
  if (err instanceof JetStreamApiError) {
    if (WRONG_LAST_SEQUENCE.includes(err.code) && conflict !== undefined) {
      const why = conflict === "ALREADY_EXISTS" ? "the key already holds a value" : "the key's revision is not the expected one";
      return new NatsMicroError(conflict, method, `bucket ${bucket}: ${why}`, undefined, { cause: err });
    }
    if (err.code === STREAM_NOT_FOUND) {
      return new NatsMicroError("NOT_FOUND", method, `bucket ${bucket} does not exist`, undefined, { cause: err });
    }
    if (err.code === NOT_ENABLED_FOR_ACCOUNT) {
      return new NatsMicroError("FAILED_PRECONDITION", method, `JetStream is not enabled for this account (bucket ${bucket})`, undefined, { cause: err });
    }
    if (/maximum|exceed|too large|insufficient resources/i.test(text)) {
      return new NatsMicroError("RESOURCE_EXHAUSTED", method, `bucket ${bucket}: ${text}`, undefined, { cause: err });
    }
  }
  if (name === "JetStreamNotEnabled" || name === "NoRespondersError") {
    return side === "client"
      ? new NatsMicroError("FAILED_PRECONDITION", method, `JetStream is not enabled or not answering (bucket ${bucket}): ${text}`, undefined, { cause: err })
      : new NatsMicroError("UNAVAILABLE", method, `JetStream did not answer (bucket ${bucket}): ${text}`, undefined, { cause: err });
  }
  if (name === "TimeoutError" || /timeout/i.test(text)) {
    return new NatsMicroError("UNAVAILABLE", method, `JetStream did not answer in time (bucket ${bucket})`, undefined, { cause: err });
  }
  return new NatsMicroError("INTERNAL", method, `bucket ${bucket}: ${text}`, undefined, { cause: err });
}

/** A Go duration for a `Nats-TTL` header: whole milliseconds (`1500ms`). */
function goDuration(ms: number): string {
  return `${Math.max(1, Math.round(ms))}ms`;
}

/** Milliseconds as JetStream nanoseconds. */
function nanos(ms: number | undefined): number {
  return Math.round((ms ?? 0) * 1_000_000);
}

/** The stream's info, or `null` when it does not exist. */
async function streamInfo(jsm: JetStreamManager, stream: string): Promise<StreamInfo | null> {
  try {
    return await jsm.streams.info(stream);
  } catch (err) {
    if (err instanceof JetStreamApiError && err.code === STREAM_NOT_FOUND) {
      return null;
    }
    throw err;
  }
}

/** A JetStream manager, after checking that JetStream answers (FAILED_PRECONDITION naming JetStream and `bucket` if not, within the JetStream timeout). */
async function manager(nc: NatsConnection, options: JetStreamOptions, method: string, bucket: string, side: Side): Promise<JetStreamManager> {
  try {
    return await jetstreamManager(nc, { ...options, checkAPI: true });
  } catch (err) {
    const error = jetStreamError(err, method, bucket, "client");
    if (side === "server" || error.code === "UNAVAILABLE") {
      const why = `JetStream is not available, so bucket ${bucket} cannot be used: ${error.message}`;
      throw new NatsMicroError(side === "server" ? "FAILED_PRECONDITION" : error.code, method, why, undefined, { cause: err });
    }
    throw error;
  }
}

/**
 * Creates a key-value bucket with the proto's settings, or (with `update`)
 * brings an existing one to them: description, history, max age,
 * compression, metadata and limit markers (PROTOCOL §12.2). Other settings
 * of an existing bucket are kept.
 */
async function ensureKvBucket(js: JetStreamClient, jsm: JetStreamManager, bucket: KvBucketSpec, update: boolean): Promise<void> {
  const stream = `KV_${bucket.name}`;
  const info = await streamInfo(jsm, stream);
  if (info === null) {
    await new Kvm(js).create(bucket.name, {
      description: bucket.description,
      history: bucket.history,
      ttl: bucket.ttl ?? 0,
      compression: bucket.compression,
      metadata: { ...bucket.metadata },
      ...(bucket.limitMarkerTtl !== undefined && { markerTTL: bucket.limitMarkerTtl }),
    });
    return;
  }
  if (!update) {
    return;
  }
  const config: StreamConfig = {
    ...info.config,
    description: bucket.description,
    max_msgs_per_subject: bucket.history,
    max_age: nanos(bucket.ttl),
    compression: bucket.compression ? StoreCompression.S2 : StoreCompression.None,
    metadata: { ...info.config.metadata, ...bucket.metadata },
    ...(bucket.limitMarkerTtl !== undefined && { allow_msg_ttl: true, subject_delete_marker_ttl: nanos(bucket.limitMarkerTtl) }),
  };
  await jsm.streams.update(stream, config);
}

/** As {@link ensureKvBucket}, for an object store: description, max age and compression (PROTOCOL §12.3). */
async function ensureObjectBucket(js: JetStreamClient, jsm: JetStreamManager, bucket: ObjectBucketSpec, update: boolean): Promise<void> {
  const stream = `OBJ_${bucket.name}`;
  const info = await streamInfo(jsm, stream);
  if (info === null) {
    await new Objm(js).create(bucket.name, { description: bucket.description, ttl: nanos(bucket.ttl), compression: bucket.compression });
    // nats.js swallows a failed create: make sure it exists.
    if ((await streamInfo(jsm, stream)) === null) {
      throw new NatsMicroError("INTERNAL", "", `object store ${bucket.name} could not be created`);
    }
    return;
  }
  if (!update) {
    return;
  }
  const config: StreamConfig = {
    ...info.config,
    description: bucket.description,
    max_age: nanos(bucket.ttl),
    compression: bucket.compression ? StoreCompression.S2 : StoreCompression.None,
  };
  await jsm.streams.update(stream, config);
}

/** Writes a key the way a `kv_store` write mode asks: with the expected revision and the per-key TTL as headers. */
async function writeKey(
  js: JetStreamClient,
  kv: KV,
  bucket: string,
  key: string,
  body: Uint8Array,
  how: { expect?: number; create?: boolean; ttl?: number; timeout?: number },
): Promise<number> {
  const publish = (expect: number | undefined) =>
    js.publish(`$KV.${bucket}.${key}`, body, {
      ...(expect !== undefined && { expect: { lastSubjectSequence: expect } }),
      ...(how.ttl !== undefined && { ttl: goDuration(how.ttl) }),
      ...(how.timeout !== undefined && { timeout: how.timeout }),
    });
  if (how.create !== true) {
    return (await publish(how.expect)).seq;
  }
  try {
    return (await publish(0)).seq;
  } catch (err) {
    if (!(err instanceof JetStreamApiError) || !WRONG_LAST_SEQUENCE.includes(err.code)) {
      throw err;
    }
    // As a key-value create: a key whose last entry is a delete or purge marker holds no value.
    const last = await kv.get(key);
    if (last === null || last.operation === "PUT") {
      throw err;
    }
    return (await publish(last.revision)).seq;
  }
}

/** Why a key is not a valid key-value key, or `undefined`. */
function invalidKey(key: string): string | undefined {
  if (!/^[-/_=.A-Za-z0-9]+$/.test(key)) {
    return "holds a character other than A-Z a-z 0-9 - _ / = .";
  }
  if (key.startsWith(".") || key.endsWith(".") || key.includes("..")) {
    return "has an empty token";
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Client handles (PROTOCOL §12.4).

/** Settings of a client's persistence handles. */
export interface StoreOptions {
  /** JetStream options (domain, API prefix, timeout); the timeout defaults to the connection's. */
  jetStream?: JetStreamOptions;
}

/** A key's value with its revision and time. */
export interface KvValue<O extends DescMessage> {
  readonly key: string;
  readonly value: MessageShape<O>;
  /** The revision (stream sequence) of this value. */
  readonly revision: number;
  readonly created: Date;
}

/** One change of a key: a put (with its value), or a delete or purge marker. */
export type KvChange<O extends DescMessage> =
  | (KvValue<O> & { readonly operation: "PUT" })
  | { readonly operation: "DEL" | "PURGE"; readonly key: string; readonly revision: number; readonly created: Date };

/** A watch of one key: iterate the changes; `stop()` ends it. */
export interface KvWatch<O extends DescMessage> extends AsyncIterable<KvChange<O>> {
  stop(): void;
}

/** The parts of a spec a key-value handle needs. */
interface KvHandleInit<I extends DescMessage, O extends DescMessage> {
  readonly method: MethodSpec<I, O>;
  readonly store: KvStoreSpec;
  readonly json: boolean;
}


/**
 * A client handle's JetStream context and manager for `store`'s bucket,
 * handed to `bind`; whatever fails is reported as the store's error
 * (NOT_FOUND for a missing bucket, UNAVAILABLE without JetStream).
 */
async function openBucket<T>(
  nc: NatsConnection,
  method: string,
  store: { bucket: { name: string } },
  options: StoreOptions,
  bind: (js: JetStreamClient, jsm: JetStreamManager, timeout: number | undefined) => Promise<T>,
): Promise<T> {
  const jsOptions = options.jetStream ?? {};
  const jsm = await manager(nc, jsOptions, method, store.bucket.name, "client");
  try {
    return await bind(jetstream(nc, jsOptions), jsm, jsOptions.timeout);
  } catch (err) {
    throw jetStreamError(err, method, store.bucket.name, "client");
  }
}
/**
 * A typed handle on the key-value bucket of a `kv_store` RPC (PROTOCOL
 * §12.4): values are the RPC's response type, keys strings, rendered from
 * a request ({@link key}) or from the template's parts ({@link keyOf})
 * exactly as the service renders them. Every failure is a typed
 * {@link NatsMicroError}: NOT_FOUND (no bucket), FAILED_PRECONDITION or
 * UNAVAILABLE (JetStream), ALREADY_EXISTS, ABORTED, DATA_LOSS (a value that
 * does not decode), INVALID_ARGUMENT (a bad key).
 *
 * ```ts
 * const profiles = await client.saveProfileKv();
 * const entry = await profiles.get(profiles.key({ id: "42" })); // "user.42"
 * if (entry) await profiles.update(entry.key, { ...entry.value, name: "Ann" }, entry.revision);
 * ```
 */
export class KvHandle<I extends DescMessage, O extends DescMessage> {
  readonly #js: JetStreamClient;
  readonly #kv: KV;
  readonly #init: KvHandleInit<I, O>;
  readonly #codec: Codec<O>;
  readonly #timeout: number | undefined;

  private constructor(js: JetStreamClient, kv: KV, init: KvHandleInit<I, O>, timeout: number | undefined) {
    this.#js = js;
    this.#kv = kv;
    this.#init = init;
    this.#codec = codec(init.method.output, init.json);
    this.#timeout = timeout;
  }

  /**
   * Binds to the bucket (NOT_FOUND when it does not exist); for a
   * `client_only` RPC, whose bucket no service creates, creates it with
   * the proto's settings when missing. Generated clients call this.
   */
  static async open<I extends DescMessage, O extends DescMessage>(
    nc: NatsConnection,
    spec: ServiceSpec,
    method: MethodSpec<I, O>,
    options: StoreOptions = {},
  ): Promise<KvHandle<I, O>> {
    const store = method.kvStore;
    if (store === undefined) {
      throw new NatsMicroError("INTERNAL", method.method, `${method.method} has no kv_store`);
    }
    return openBucket(nc, method.method, store, options, async (js, jsm, timeout) => {
      if (store.clientOnly) {
        await ensureKvBucket(js, jsm, store.bucket, false);
      }
      const info = await jsm.streams.info(`KV_${store.bucket.name}`);
      const kv = await new Kvm(js).open(store.bucket.name, { allow_direct: info.config.allow_direct === true });
      return new KvHandle(js, kv, { method, store, json: spec.json }, timeout);
    });
  }

  /** The bucket's name. */
  get bucket(): string {
    return this.#init.store.bucket.name;
  }

  /** The key template as written in the proto. */
  get template(): KeyTemplateSpec {
    return this.#init.store.key;
  }

  /** The key a service stores the response to `request` under (INVALID_ARGUMENT when a placeholder is missing or the key invalid). */
  key(request: MessageInitShape<I>): string {
    return requestKey(this.#init.method.input, this.#init.store.key, request, "kv", this.#init.method.method);
  }

  /** The key from the template's parts by placeholder (`{ id: "42" }`); every placeholder must be given. */
  keyOf(parts: KeyParts): string {
    return keyFromParts(this.#init.store.key, parts, "kv", this.#init.method.method);
  }

  #checked(key: string): string {
    const why = invalidKey(key);
    if (why !== undefined) {
      throw new NatsMicroError("INVALID_ARGUMENT", this.#init.method.method, `key ${JSON.stringify(key)} ${why}`);
    }
    return key;
  }

  #error(err: unknown, conflict?: "ALREADY_EXISTS" | "ABORTED"): NatsMicroError {
    return jetStreamError(err, this.#init.method.method, this.bucket, "client", conflict);
  }

  #decode(entry: KvEntry): MessageShape<O> {
    try {
      return this.#codec.decode(entry.value);
    } catch (err) {
      throw new NatsMicroError("DATA_LOSS", this.#init.method.method, `bucket ${this.bucket}: the value of ${entry.key} at revision ${entry.revision} does not decode: ${describe(err)}`);
    }
  }

  #encode(value: MessageInitShape<O>): Uint8Array {
    return this.#codec.encode(value);
  }

  /** The key's value with its revision and time, or `undefined` when it holds none (never written, deleted, purged or expired). */
  async get(key: string): Promise<KvValue<O> | undefined> {
    let entry: KvEntry | null;
    try {
      entry = await this.#kv.get(this.#checked(key));
    } catch (err) {
      throw this.#error(err);
    }
    if (entry === null || entry.operation !== "PUT") {
      return undefined;
    }
    return { key: entry.key, value: this.#decode(entry), revision: entry.revision, created: entry.created };
  }

  /** The value at one revision of the key, or `undefined`. */
  async getRevision(key: string, revision: number): Promise<KvValue<O> | undefined> {
    let entry: KvEntry | null;
    try {
      entry = await this.#kv.get(this.#checked(key), { revision });
    } catch (err) {
      throw this.#error(err);
    }
    if (entry === null || entry.operation !== "PUT") {
      return undefined;
    }
    return { key: entry.key, value: this.#decode(entry), revision: entry.revision, created: entry.created };
  }

  async #write(key: string, value: MessageInitShape<O>, how: { expect?: number; create?: boolean }, conflict?: "ALREADY_EXISTS" | "ABORTED"): Promise<number> {
    const body = this.#encode(value);
    const store = this.#init.store;
    try {
      return await writeKey(this.#js, this.#kv, this.bucket, this.#checked(key), body, {
        ...how,
        ...(store.keyTtl !== undefined && { ttl: store.keyTtl }),
        ...(this.#timeout !== undefined && { timeout: this.#timeout }),
      });
    } catch (err) {
      throw this.#error(err, conflict);
    }
  }

  /** Writes the key (last write wins); returns the revision written. Carries the proto's `key_ttl`. */
  put(key: string, value: MessageInitShape<O>): Promise<number> {
    return this.#write(key, value, {});
  }

  /** Writes the key if it holds no value; ALREADY_EXISTS otherwise. */
  create(key: string, value: MessageInitShape<O>): Promise<number> {
    return this.#write(key, value, { create: true }, "ALREADY_EXISTS");
  }

  /** Writes the key if its latest revision is `revision`; ABORTED otherwise. */
  update(key: string, value: MessageInitShape<O>, revision: number): Promise<number> {
    if (!Number.isSafeInteger(revision) || revision < 1) {
      throw new NatsMicroError("INVALID_ARGUMENT", this.#init.method.method, `revision ${revision} must be a whole number, at least 1`);
    }
    return this.#write(key, value, { expect: revision }, "ABORTED");
  }

  /** Deletes the key: a delete marker, its history kept. */
  async delete(key: string): Promise<void> {
    try {
      await this.#kv.delete(this.#checked(key));
    } catch (err) {
      throw this.#error(err);
    }
  }

  /** Purges the key and its history, leaving a marker that lives the proto's `purge_ttl` when set. */
  async purge(key: string): Promise<void> {
    const ttl = this.#init.store.purgeTtl;
    try {
      await this.#kv.purge(this.#checked(key), ttl === undefined ? undefined : { ttl: goDuration(ttl) });
    } catch (err) {
      throw this.#error(err);
    }
  }

  #change(entry: KvEntry): KvChange<O> {
    if (entry.operation === "PUT") {
      return { operation: "PUT", key: entry.key, value: this.#decode(entry), revision: entry.revision, created: entry.created };
    }
    return { operation: entry.operation, key: entry.key, revision: entry.revision, created: entry.created };
  }

  /** Every revision the bucket keeps of the key, oldest first (delete and purge markers included). */
  async history(key: string): Promise<KvChange<O>[]> {
    const changes: KvChange<O>[] = [];
    try {
      const entries = await this.#kv.history({ key: this.#checked(key) });
      for await (const entry of entries) {
        changes.push(this.#change(entry));
      }
    } catch (err) {
      throw this.#error(err);
    }
    return changes;
  }

  /**
   * Watches one key: its current value first (unless `updatesOnly`), then
   * every put, delete and purge as it happens, until `stop()` (or the loop
   * is left). A value that does not decode ends the watch with DATA_LOSS.
   */
  async watch(key: string, options: { updatesOnly?: boolean } = {}): Promise<KvWatch<O>> {
    let entries: Awaited<ReturnType<KV["watch"]>>;
    try {
      entries = await this.#kv.watch({ key: this.#checked(key), include: options.updatesOnly === true ? KvWatchInclude.UpdatesOnly : KvWatchInclude.LastValue });
    } catch (err) {
      throw this.#error(err);
    }
    const change = (entry: KvEntry) => this.#change(entry);
    return {
      stop: () => entries.stop(),
      async *[Symbol.asyncIterator]() {
        try {
          for await (const entry of entries) {
            yield change(entry);
          }
        } finally {
          entries.stop();
        }
      },
    };
  }

  /**
   * The keys holding a value that match the template with the `parts`
   * given and any value for the others (each part left out matches one
   * token), e.g. `keys({ "tenant.id": 7n })`.
   */
  async keys(parts: KeyParts = {}): Promise<string[]> {
    const { filter, matches } = keyFilter(this.#init.store.key, parts, this.#init.method.method);
    const keys: string[] = [];
    try {
      for await (const key of await this.#kv.keys(filter)) {
        if (matches(key)) {
          keys.push(key);
        }
      }
    } catch (err) {
      throw this.#error(err);
    }
    return keys;
  }
}

/** What an object store keeps about an object. */
export interface ObjectMeta {
  readonly name: string;
  readonly size: number;
  /** `SHA-256=<base64url>`, as the object store writes it. */
  readonly digest: string;
  readonly modified: Date;
  readonly revision: number;
}

function objectMeta(info: ObjectInfo): ObjectMeta {
  return { name: info.name, size: info.size, digest: info.digest, modified: new Date(info.mtime), revision: info.revision };
}

/**
 * A typed handle on the object store of an `object_store` RPC (PROTOCOL
 * §12.4): objects are the RPC's response type, named by a string or
 * rendered from a request ({@link key}) as the service renders them.
 * Reads verify the object's SHA-256 (DATA_LOSS when it does not match or
 * the object does not decode).
 *
 * ```ts
 * const reports = await client.generateReportObjects();
 * const report = await reports.get(reports.key({ id: "r1" })); // "report r1.bin"
 * ```
 */
export class ObjectHandle<I extends DescMessage, O extends DescMessage> {
  readonly #os: ObjectStore;
  readonly #method: MethodSpec<I, O>;
  readonly #store: ObjectStoreSpec;
  readonly #codec: Codec<O>;

  private constructor(os: ObjectStore, method: MethodSpec<I, O>, store: ObjectStoreSpec, json: boolean) {
    this.#os = os;
    this.#method = method;
    this.#store = store;
    this.#codec = codec(method.output, json);
  }

  /** Binds to the object store (NOT_FOUND when missing); a `client_only` RPC's store is created when missing. Generated clients call this. */
  static async open<I extends DescMessage, O extends DescMessage>(
    nc: NatsConnection,
    spec: ServiceSpec,
    method: MethodSpec<I, O>,
    options: StoreOptions = {},
  ): Promise<ObjectHandle<I, O>> {
    const store = method.objectStore;
    if (store === undefined) {
      throw new NatsMicroError("INTERNAL", method.method, `${method.method} has no object_store`);
    }
    return openBucket(nc, method.method, store, options, async (js, jsm) => {
      if (store.clientOnly) {
        await ensureObjectBucket(js, jsm, store.bucket, false);
      }
      try {
        return new ObjectHandle(await new Objm(js).open(store.bucket.name, true), method, store, spec.json);
      } catch (err) {
        throw err instanceof Error && err.message === "object store not found" ? notFound(method.method, store.bucket.name) : err;
      }
    });
  }

  get bucket(): string {
    return this.#store.bucket.name;
  }

  /** The name a service stores the response to `request` under. */
  key(request: MessageInitShape<I>): string {
    return requestKey(this.#method.input, this.#store.key, request, "object", this.#method.method);
  }

  /** The name from the template's parts by placeholder. */
  keyOf(parts: KeyParts): string {
    return keyFromParts(this.#store.key, parts, "object", this.#method.method);
  }

  #error(err: unknown): NatsMicroError {
    return jetStreamError(err, this.#method.method, this.bucket, "client");
  }

  /** The object's size, digest and time, or `undefined`. */
  async info(name: string): Promise<ObjectMeta | undefined> {
    try {
      const info = await this.#os.info(name);
      return info === null || info.deleted ? undefined : objectMeta(info);
    } catch (err) {
      throw this.#error(err);
    }
  }

  /** The object, its SHA-256 checked against the store's digest, or `undefined` when there is none. */
  async get(name: string): Promise<MessageShape<O> | undefined> {
    const found = await this.getWithMeta(name);
    return found?.value;
  }

  /** The object and what the store keeps about it. */
  async getWithMeta(name: string): Promise<{ value: MessageShape<O>; meta: ObjectMeta } | undefined> {
    const method = this.#method.method;
    let parts: Uint8Array[];
    let meta: ObjectMeta;
    try {
      const result = await this.#os.get(name);
      if (result === null) {
        return undefined;
      }
      meta = objectMeta(result.info);
      parts = [];
      const verifier = new ChunkVerifier(method);
      const reader = result.data.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) {
          break;
        }
        verifier.update(value);
        parts.push(value);
      }
      const failed = await result.error;
      if (failed !== null && failed !== undefined) {
        throw failed;
      }
      const { sha256, size } = verifier.finish(undefined);
      const expected = meta.digest.toUpperCase().startsWith("SHA-256=") ? fromBase64(meta.digest.slice("SHA-256=".length)) : undefined;
      if (expected === undefined || expected.length !== sha256.length || !expected.every((b, i) => b === sha256[i]) || size !== meta.size) {
        throw new NatsMicroError("DATA_LOSS", method, `object ${JSON.stringify(name)} of bucket ${this.bucket}: the data does not match its digest ${meta.digest}`);
      }
    } catch (err) {
      throw this.#error(err);
    }
    let value: MessageShape<O>;
    try {
      value = this.#codec.decode(concat(parts));
    } catch (err) {
      throw new NatsMicroError("DATA_LOSS", method, `object ${JSON.stringify(name)} of bucket ${this.bucket} does not decode: ${describe(err)}`);
    }
    return { value, meta };
  }

  /** Stores the object under `name` (replacing one there). */
  async put(name: string, value: MessageInitShape<O>): Promise<ObjectMeta> {
    const body = this.#codec.encode(value);
    try {
      return objectMeta(await this.#os.putBlob({ name }, body));
    } catch (err) {
      throw this.#error(err);
    }
  }

  /** Deletes the object; false when there was none. */
  async delete(name: string): Promise<boolean> {
    try {
      const info = await this.#os.info(name);
      if (info === null || info.deleted) {
        return false;
      }
      await this.#os.delete(name);
      return true;
    } catch (err) {
      throw this.#error(err);
    }
  }
}

function notFound(method: string, bucket: string): NatsMicroError {
  return new NatsMicroError("NOT_FOUND", method, `bucket ${bucket} does not exist`);
}

// ---------------------------------------------------------------------------
// The service's side (PROTOCOL §12.2, §12.3).

/** A failed write, as the service reports it (logged as `persist_failed`, counted in STATS). */
export interface PersistFailure {
  readonly bucket: string;
  readonly key: string;
  readonly error: NatsMicroError;
  /** The caller gets the error (a `required` kv_store) rather than the reply. */
  readonly required: boolean;
  /** The text of an INTERNAL failure (withheld from the caller unless internal errors are exposed). */
  readonly detail?: string;
}

/** What a persisting method settles before its handler runs. */
interface Pending {
  /** The key or object name, or why there is none. */
  readonly key: string | NatsMicroError;
  /** For a compare-and-set write: the revision to write at (0: the key must hold no value), or why it could not be read. */
  readonly expect?: number | NatsMicroError;
}

/** How one RPC persists its responses. */
export interface MethodPersistence {
  /** Before the handler: renders the key, checks `Nats-Micro-KV-Revision` (throws INVALID_ARGUMENT when malformed), reads the revision for a compare-and-set. */
  before(request: Message, headers: MsgHdrs | undefined): Pending | Promise<Pending>;
  /**
   * After the handler: writes `body`. Resolves with the revision written
   * (key-value) or `undefined`; a failure is reported through `failed` and,
   * for a required write, rejects with the caller's error.
   */
  after(pending: Pending, body: Uint8Array): Promise<number | undefined>;
}

/**
 * The persistence of a service: the buckets of its persisting RPCs
 * created or updated at registration, then one writer per such RPC.
 */
export class ServicePersistence {
  readonly #js: JetStreamClient;
  readonly #kv = new Map<string, KV>();
  readonly #objects = new Map<string, ObjectStore>();
  readonly #exposeInternal: boolean;

  private constructor(js: JetStreamClient, exposeInternal: boolean) {
    this.#js = js;
    this.#exposeInternal = exposeInternal;
  }

  /**
   * Creates or updates every bucket the service's persisting RPCs (not
   * `client_only`) write: `undefined` when there are none. JetStream not
   * answering fails with FAILED_PRECONDITION naming JetStream and the
   * bucket, within the JetStream timeout.
   */
  static async start(nc: NatsConnection, spec: ServiceSpec, options: { jetStream?: JetStreamOptions; exposeInternalErrors?: boolean }): Promise<ServicePersistence | undefined> {
    const methods = Object.values(spec.methods).filter((m) => (m.kvStore !== undefined && !m.kvStore.clientOnly) || (m.objectStore !== undefined && !m.objectStore.clientOnly));
    if (methods.length === 0) {
      return undefined;
    }
    const first = methods[0] as MethodSpec;
    const firstBucket = first.kvStore?.bucket.name ?? first.objectStore?.bucket.name ?? "";
    const jsOptions = options.jetStream ?? {};
    const jsm = await manager(nc, jsOptions, first.method, firstBucket, "server");
    const js = jetstream(nc, jsOptions);
    const persistence = new ServicePersistence(js, options.exposeInternalErrors ?? false);
    for (const method of methods) {
      const kv = method.kvStore;
      const object = method.objectStore;
      const bucket = kv?.bucket.name ?? object?.bucket.name ?? "";
      try {
        if (kv !== undefined && !kv.clientOnly && !persistence.#kv.has(bucket)) {
          await ensureKvBucket(js, jsm, kv.bucket, true);
          const info = await jsm.streams.info(`KV_${bucket}`);
          persistence.#kv.set(bucket, await new Kvm(js).open(bucket, { allow_direct: info.config.allow_direct === true }));
        }
        if (object !== undefined && !object.clientOnly && !persistence.#objects.has(bucket)) {
          await ensureObjectBucket(js, jsm, object.bucket, true);
          persistence.#objects.set(bucket, await new Objm(js).open(bucket, false));
        }
      } catch (err) {
        const error = jetStreamError(err, method.method, bucket, "client");
        throw new NatsMicroError("FAILED_PRECONDITION", method.method, `cannot create or update JetStream bucket ${bucket}: ${error.message}`, undefined, { cause: err });
      }
    }
    return persistence;
  }

  /** The writer of one RPC, or `undefined` when it persists nothing. */
  method(method: MethodSpec, failed: (failure: PersistFailure) => void): MethodPersistence | undefined {
    if (method.kvStore !== undefined && !method.kvStore.clientOnly) {
      return this.#kvWriter(method, method.kvStore, failed);
    }
    if (method.objectStore !== undefined && !method.objectStore.clientOnly) {
      return this.#objectWriter(method, method.objectStore, failed);
    }
    return undefined;
  }

  /** The error a failed write gives, and the text to log. */
  #failure(err: unknown, method: string, bucket: string, conflict?: "ALREADY_EXISTS" | "ABORTED"): { error: NatsMicroError; detail?: string } {
    const error = jetStreamError(err, method, bucket, "server", conflict);
    if (error.code !== "INTERNAL") {
      return { error };
    }
    const text = error.message;
    return { error: new NatsMicroError("INTERNAL", method, this.#exposeInternal ? text : INTERNAL_MESSAGE, undefined, { cause: err }), detail: text };
  }

  #kvWriter(method: MethodSpec, store: KvStoreSpec, failed: (failure: PersistFailure) => void): MethodPersistence {
    const bucket = store.bucket.name;
    const kv = this.#kv.get(bucket) as KV;
    const js = this.#js;
    const required = store.failurePolicy === "required";
    const conflict = store.writeMode === "createOnly" ? "ALREADY_EXISTS" : store.writeMode === "compareAndSet" ? "ABORTED" : undefined;
    const renderedKey = (request: Message): string | NatsMicroError => {
      try {
        return renderKey(store.key, keyValues(method.input, store.key, request), "kv", method.method);
      } catch (err) {
        return isNatsMicroError(err) ? (err as NatsMicroError) : new NatsMicroError("INVALID_ARGUMENT", method.method, describe(err));
      }
    };
    const before = (request: Message, headers: MsgHdrs | undefined): Pending | Promise<Pending> => {
      const key = renderedKey(request);
      if (store.writeMode !== "compareAndSet") {
        return { key };
      }
      const header = protocolHeader(headers, KV_REVISION_HEADER);
      if (header !== undefined) {
        if (!/^[0-9]{1,16}$/.test(header) || !Number.isSafeInteger(Number(header))) {
          throw new NatsMicroError("INVALID_ARGUMENT", method.method, `malformed ${KV_REVISION_HEADER} ${JSON.stringify(header)}: a revision is a decimal number`).withBadRequest({
            field: "",
            description: `malformed ${KV_REVISION_HEADER} header`,
          });
        }
        return { key, expect: Number(header) };
      }
      if (typeof key !== "string") {
        return { key };
      }
      // The revision before the handler runs: a write by anyone from here to ours is a conflict.
      return kv.get(key).then(
        (entry) => ({ key, expect: entry === null ? 0 : entry.revision }),
        (err: unknown) => ({ key, expect: this.#failure(err, method.method, bucket).error }),
      );
    };
    const after = async (pending: Pending, body: Uint8Array): Promise<number | undefined> => {
      const report = (failure: { error: NatsMicroError; detail?: string }, key: string): undefined => {
        failed({ bucket, key, required, ...failure });
        if (required) {
          throw failure.error;
        }
        return undefined;
      };
      const key = pending.key;
      if (typeof key !== "string") {
        return report({ error: key }, "");
      }
      if (pending.expect instanceof NatsMicroError) {
        return report({ error: pending.expect }, key);
      }
      const how =
        store.writeMode === "createOnly" || pending.expect === 0
          ? { create: true }
          : store.writeMode === "compareAndSet"
            ? { expect: pending.expect as number }
            : {};
      try {
        return await writeKey(js, kv, bucket, key, body, { ...how, ...(store.keyTtl !== undefined && { ttl: store.keyTtl }) });
      } catch (err) {
        return report(this.#failure(err, method.method, bucket, conflict), key);
      }
    };
    return { before, after };
  }

  #objectWriter(method: MethodSpec, store: ObjectStoreSpec, failed: (failure: PersistFailure) => void): MethodPersistence {
    const bucket = store.bucket.name;
    const os = this.#objects.get(bucket) as ObjectStore;
    return {
      before: (request) => {
        try {
          return { key: renderKey(store.key, keyValues(method.input, store.key, request), "object", method.method) };
        } catch (err) {
          return { key: isNatsMicroError(err) ? (err as NatsMicroError) : new NatsMicroError("INVALID_ARGUMENT", method.method, describe(err)) };
        }
      },
      after: async (pending, body) => {
        // Object store writes are always best effort (PROTOCOL §12.3).
        if (typeof pending.key !== "string") {
          failed({ bucket, key: "", required: false, error: pending.key });
          return undefined;
        }
        try {
          await os.putBlob({ name: pending.key }, body);
        } catch (err) {
          failed({ bucket, key: pending.key, required: false, ...this.#failure(err, method.method, bucket) });
        }
        return undefined;
      },
    };
  }
}
