/**
 * Persistence and chunked transfer (PROTOCOL §12) in the runtime: key
 * templates rendered over well-known types (nested fields, every scalar
 * kind, 64-bit integers exactly, enums by name, presence, invalid keys
 * naming the placeholder), key filters, the chunk digest and its checks,
 * re-chunking; then on real nats-servers: trailing headers of a half-close
 * reaching the handler, a chunked transfer whose digest is corrupted, and
 * registration without JetStream failing fast.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";

import { create } from "@bufbuild/protobuf";
import {
  AnySchema,
  BytesValueSchema,
  Field_Kind,
  FieldSchema,
  OptionSchema,
  StringValueSchema,
  UInt64ValueSchema,
  ValueSchema,
} from "@bufbuild/protobuf/wkt";
import { headers as createHeaders } from "@nats-io/nats-core";
import { sha256 } from "@noble/hashes/sha2";

import {
  CHUNKED_DIGEST_HEADER,
  CHUNKED_SIZE_HEADER,
  ChunkDigest,
  ChunkVerifier,
  Client,
  createSha256,
  digestHeaderValue,
  hasCode,
  type KeyTemplateSpec,
  keyFilter,
  keyFromParts,
  NatsMicroError,
  rechunk,
  renderKey,
  requestEndHeaders,
  requestKey,
  Service,
  type ServiceHandlers,
  type ServiceSpec,
  chunkedDownload,
  chunkedUploadReader,
} from "../src/index.js";
import { logSink, NatsServer, within } from "./harness.js";

function invalid(field: string, text?: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(hasCode(err, "INVALID_ARGUMENT"), String(err));
    assert.equal((err as NatsMicroError).badRequest()?.fieldViolations[0]?.field, field);
    if (text !== undefined) {
      assert.match((err as Error).message, text);
    }
    return true;
  };
}

const FIELD_TEMPLATE: KeyTemplateSpec = {
  text: "f.{name}.{number}.{kind}.{packed}",
  segments: [
    "f.",
    { placeholder: "name", path: ["name"], kind: "string" },
    ".",
    { placeholder: "number", path: ["number"], kind: "integer" },
    ".",
    { placeholder: "kind", path: ["kind"], kind: "enum", names: { "1": "TYPE_DOUBLE", "9": "TYPE_STRING" } },
    ".",
    { placeholder: "packed", path: ["packed"], kind: "bool" },
  ],
};

test("a key renders strings, integers, enums by name (undeclared in decimal) and bools", () => {
  const field = { name: "id", number: -7, kind: Field_Kind.TYPE_STRING, packed: true };
  assert.equal(requestKey(FieldSchema, FIELD_TEMPLATE, field, "kv"), "f.id.-7.TYPE_STRING.true");
  assert.equal(requestKey(FieldSchema, FIELD_TEMPLATE, { ...field, kind: Field_Kind.TYPE_INT64, packed: false }, "kv"), "f.id.-7.3.false");
  // Numbers and bools without presence render their zero values.
  assert.equal(requestKey(FieldSchema, FIELD_TEMPLATE, { name: "z" }, "kv"), "f.z.0.0.false");
});

test("64-bit integers render exactly", () => {
  const template: KeyTemplateSpec = { text: "u.{value}", segments: ["u.", { placeholder: "value", path: ["value"], kind: "integer" }] };
  assert.equal(requestKey(UInt64ValueSchema, template, { value: 18446744073709551615n }, "kv"), "u.18446744073709551615");
  assert.equal(renderKey(template, [-9223372036854775808n], "kv"), "u.-9223372036854775808");
});

test("a missing value is INVALID_ARGUMENT with a field violation for the placeholder, never a key like `user.`", () => {
  assert.throws(() => requestKey(FieldSchema, FIELD_TEMPLATE, { number: 1 }, "kv", "Get"), invalid("name", /\{name\} is missing/));
  // A nested placeholder whose message is unset.
  const nested: KeyTemplateSpec = { text: "o.{value.type_url}", segments: ["o.", { placeholder: "value.type_url", path: ["value", "type_url"], kind: "string" }] };
  assert.throws(() => requestKey(OptionSchema, nested, { name: "x" }, "object"), invalid("value.type_url"));
  assert.equal(requestKey(OptionSchema, nested, { value: create(AnySchema, { typeUrl: "t/u" }) }, "object"), "o.t/u");
  // A field with presence (a oneof member) that is unset, though its zero value would render.
  const member: KeyTemplateSpec = { text: "{string_value}", segments: [{ placeholder: "string_value", path: ["string_value"], kind: "string", presence: true }] };
  assert.equal(requestKey(ValueSchema, member, { kind: { case: "stringValue", value: "s" } }, "kv"), "s");
  assert.throws(() => requestKey(ValueSchema, member, { kind: { case: "numberValue", value: 1 } }, "kv"), invalid("string_value"));
  const bool: KeyTemplateSpec = { text: "b{bool_value}", segments: ["b", { placeholder: "bool_value", path: ["bool_value"], kind: "bool", presence: true }] };
  assert.equal(requestKey(ValueSchema, bool, { kind: { case: "boolValue", value: false } }, "kv"), "bfalse");
  assert.throws(() => requestKey(ValueSchema, bool, {}, "kv"), invalid("bool_value"));
});

test("a key-value key must be valid as a whole; an object name only needs its values", () => {
  const template: KeyTemplateSpec = { text: "user.{value}", segments: ["user.", { placeholder: "value", path: ["value"], kind: "string" }] };
  for (const bad of ["a b", "a*", "a>", "ü"]) {
    assert.throws(() => requestKey(StringValueSchema, template, { value: bad }, "kv"), invalid("value", /cannot hold/));
  }
  for (const empty of ["a.", ".a", "a..b"]) {
    assert.throws(() => requestKey(StringValueSchema, template, { value: empty }, "kv"), invalid("value", /empty token/));
  }
  assert.equal(requestKey(StringValueSchema, template, { value: "a.b/c=d-e_f" }, "kv"), "user.a.b/c=d-e_f");
  assert.equal(requestKey(StringValueSchema, template, { value: "a b*" }, "object"), "user.a b*");
  assert.throws(() => requestKey(StringValueSchema, template, { value: "" }, "object"), invalid("value"));
});

test("keys from parts, and the filter of keys with some parts left out", () => {
  assert.equal(keyFromParts(FIELD_TEMPLATE, { name: "a", number: 2n, kind: 1, packed: true }, "kv"), "f.a.2.TYPE_DOUBLE.true");
  assert.throws(() => keyFromParts(FIELD_TEMPLATE, { name: "a" }, "kv"), invalid("number"));
  const some = keyFilter(FIELD_TEMPLATE, { name: "a", packed: true });
  assert.equal(some.filter, "f.a.*.*.true");
  assert.ok(some.matches("f.a.2.TYPE_DOUBLE.true"));
  assert.ok(!some.matches("f.b.2.TYPE_DOUBLE.true"));
  const partial: KeyTemplateSpec = {
    text: "{region}.n{number}",
    segments: [{ placeholder: "region", path: ["region"], kind: "string" }, ".n", { placeholder: "number", path: ["number"], kind: "integer" }],
  };
  const byRegion = keyFilter(partial, { region: "eu" });
  // A token only partly a placeholder is a wildcard too; the matcher keeps its literal part.
  assert.equal(byRegion.filter, "eu.*");
  assert.ok(byRegion.matches("eu.n5"));
  assert.ok(!byRegion.matches("eu.x5"));
  assert.equal(keyFilter(partial, {}).filter, "*.*");
});

test("the chunk digest: sha-256 in padded standard base64, on Node's crypto and on @noble/hashes alike", () => {
  const data = new TextEncoder().encode("abc");
  const hash = createSha256();
  hash.update(data);
  assert.deepEqual(hash.digest(), new Uint8Array(createHash("sha256").update(data).digest()));
  assert.deepEqual(sha256(data), new Uint8Array(createHash("sha256").update(data).digest()));
  assert.equal(digestHeaderValue(sha256(data)), `sha-256=${createHash("sha256").update(data).digest("base64")}`);
  const sender = new ChunkDigest();
  sender.update(data.subarray(0, 1));
  sender.update(data.subarray(1));
  assert.deepEqual(sender.headers(), { [CHUNKED_SIZE_HEADER]: "3", [CHUNKED_DIGEST_HEADER]: digestHeaderValue(sha256(data)) });
});

test("the receiver's checks: size and digest, DATA_LOSS on a mismatch or a malformed header, unverified without them", () => {
  const data = new TextEncoder().encode("hello world");
  const verify = (entries: Record<string, string> | undefined) => {
    const verifier = new ChunkVerifier("Download");
    verifier.update(data.subarray(0, 5));
    verifier.update(data.subarray(5));
    let headers;
    if (entries !== undefined) {
      headers = createHeaders();
      for (const [name, value] of Object.entries(entries)) {
        headers.set(name, value);
      }
    }
    return verifier.finish(headers);
  };
  const good = { [CHUNKED_SIZE_HEADER]: "11", [CHUNKED_DIGEST_HEADER]: digestHeaderValue(sha256(data)) };
  assert.deepEqual(verify(good), { size: 11, sha256: sha256(data), digestVerified: true });
  assert.equal(verify(undefined).digestVerified, false);
  const dataLoss = (err: unknown) => hasCode(err, "DATA_LOSS");
  assert.throws(() => verify({ ...good, [CHUNKED_SIZE_HEADER]: "12" }), dataLoss);
  assert.throws(() => verify({ ...good, [CHUNKED_SIZE_HEADER]: "-1" }), dataLoss);
  assert.throws(() => verify({ ...good, [CHUNKED_DIGEST_HEADER]: digestHeaderValue(new Uint8Array(32)) }), dataLoss);
  assert.throws(() => verify({ ...good, [CHUNKED_DIGEST_HEADER]: "md5=abc" }), dataLoss);
  assert.throws(() => verify({ ...good, [CHUNKED_DIGEST_HEADER]: "sha-256=@@" }), dataLoss);
});

test("re-chunking: exact chunks from any pieces, the last one shorter, nothing for nothing", async () => {
  const collect = async (pieces: Uint8Array[], size: number) => {
    const out: number[] = [];
    for await (const chunk of rechunk(pieces, size)) {
      out.push(chunk.length);
    }
    return out;
  };
  const bytes = (n: number) => new Uint8Array(n);
  assert.deepEqual(await collect([bytes(10)], 4), [4, 4, 2]);
  assert.deepEqual(await collect([bytes(3), bytes(3), bytes(3)], 4), [4, 4, 1]);
  assert.deepEqual(await collect([bytes(1), bytes(9)], 3), [3, 3, 3, 1]);
  assert.deepEqual(await collect([], 3), []);
  assert.deepEqual(await collect([bytes(0)], 3), []);
  // A ReadableStream source, with content kept in order.
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(Uint8Array.from([1, 2, 3]));
      controller.enqueue(Uint8Array.from([4, 5]));
      controller.close();
    },
  });
  const chunks: number[][] = [];
  for await (const chunk of rechunk(stream, 2)) {
    chunks.push([...chunk]);
  }
  assert.deepEqual(chunks, [[1, 2], [3, 4], [5]]);
});

const base = { metadata: {}, queueGroupDisabled: false } as const;
const CHUNKS = {
  protoName: "test.v1.Chunks",
  name: "Chunks",
  version: "1.0.0",
  description: "chunked transfer tests",
  subjectPrefix: "api.chunks",
  metadata: {},
  json: false,
  queueGroupDisabled: false,
  methods: {},
  streams: {
    up: { ...base, method: "Up", endpoint: "up", input: BytesValueSchema, output: StringValueSchema, kind: "client", chunked: { field: "value", chunkSize: 1000 } },
    down: { ...base, method: "Down", endpoint: "down", input: StringValueSchema, output: BytesValueSchema, kind: "server", chunked: { field: "value", chunkSize: 1000 } },
  },
} as const satisfies ServiceSpec;

test("a chunked upload and download over a real server: trailing headers reach the handler, and a corrupted digest is DATA_LOSS", async () => {
  const server = await NatsServer.start();
  const nc = await server.connect();
  try {
    const handlers: ServiceHandlers<typeof CHUNKS> = {
      async up(requests) {
        const upload = chunkedUploadReader(CHUNKS.streams.up, requests);
        const hash = createHash("sha256");
        for await (const chunk of upload) {
          hash.update(chunk);
        }
        return { value: `${upload.result?.size} ${upload.result?.digestVerified} ${hash.digest("hex")} ${requestEndHeaders(requests)?.get("X-Note")}` };
      },
      async *down(request, ctx) {
        const data = new Uint8Array(2500).fill(7);
        yield* chunkedDownload(CHUNKS.streams.down, data, ctx);
        if (request.value === "corrupt") {
          ctx.setResponseHeader(CHUNKED_DIGEST_HEADER, digestHeaderValue(new Uint8Array(32)));
        }
      },
    };
    const service = await Service.start(nc, CHUNKS, handlers);
    const client = new Client(nc, CHUNKS, NatsMicroError);
    const data = new Uint8Array(4321).map((_, i) => i % 251);
    const answer = await client.upload(CHUNKS.streams.up, [data.subarray(0, 100), data.subarray(100)], { headers: { "X-Open": "1" } });
    assert.equal(answer.value.split(" ").slice(0, 3).join(" "), `4321 true ${createHash("sha256").update(data).digest("hex")}`);
    // Trailing headers of a half-close, by hand.
    const stream = client.clientStream(CHUNKS.streams.up);
    await stream.send({ value: data });
    assert.equal((await stream.closeAndReceive({ "X-Note": "the end" })).value.split(" ").slice(3).join(" "), "the end");
    const downloaded = await client.downloadBytes(CHUNKS.streams.down, { value: "" });
    assert.equal(downloaded.data.length, 2500);
    assert.equal(downloaded.digestVerified, true);
    const aborted: unknown[] = [];
    await assert.rejects(
      client.download(CHUNKS.streams.down, { value: "corrupt" }, { write: () => undefined, abort: (reason) => void aborted.push(reason) }),
      (err: unknown) => hasCode(err, "DATA_LOSS"),
    );
    assert.equal(aborted.length, 1);
    await assert.rejects(client.upload(CHUNKS.streams.up, data, { chunkSize: (nc.info?.max_payload ?? 0) + 1 }), (err: unknown) => hasCode(err, "INVALID_ARGUMENT") && /max_payload/.test(String(err)));
    await service.stop();
  } finally {
    await nc.close();
    server.stop();
  }
});

const PERSISTING = {
  protoName: "test.v1.Persisting",
  name: "Persisting",
  version: "1.0.0",
  description: "persistence tests",
  subjectPrefix: "api.persisting",
  metadata: {},
  json: false,
  queueGroupDisabled: false,
  methods: {
    save: {
      ...base,
      method: "Save",
      endpoint: "save",
      input: StringValueSchema,
      output: StringValueSchema,
      kvStore: {
        bucket: { name: "things", description: "", history: 1, compression: false, metadata: {} },
        key: { text: "thing.{value}", segments: ["thing.", { placeholder: "value", path: ["value"], kind: "string" }] },
        clientOnly: false,
        writeMode: "lastWriteWins",
        failurePolicy: "required",
      },
    },
  },
} as const satisfies ServiceSpec;

test("without JetStream, registration fails at once with FAILED_PRECONDITION naming JetStream and the bucket", async () => {
  const server = await NatsServer.start();
  const nc = await server.connect();
  try {
    const sink = logSink();
    await within(
      10_000,
      assert.rejects(Service.start(nc, PERSISTING, { save: (r) => r }, { logger: sink.logger }), (err: unknown) => {
        assert.ok(hasCode(err, "FAILED_PRECONDITION"), String(err));
        assert.match((err as Error).message, /JetStream/);
        assert.match((err as Error).message, /things/);
        return true;
      }),
      "registration",
    );
  } finally {
    await nc.close();
    server.stop();
  }
});
