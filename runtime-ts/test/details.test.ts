/**
 * Typed error details (PROTOCOL §4.1): the encoding of an error reply's body
 * (plain data without details, a marked Status with them, data beside
 * details, DebugInfo withheld, truncation to max_payload) and its lenient
 * reading; then on a real nats-server: details across a re-raising hop,
 * truncation under a small max_payload, the BadRequest of a malformed
 * request, uncoded failures without details, and shed requests with their
 * RetryInfo and STATS count (§5).
 */

import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema, StringValueSchema } from "@bufbuild/protobuf/wkt";
import { headers as natsHeaders } from "@nats-io/nats-core";
import type { MsgHdrs, NatsConnection } from "@nats-io/nats-core";

import {
  Client,
  DETAILS_TRUNCATED,
  ERROR_CODE_HEADER,
  ERROR_DETAILS_HEADER,
  ErrorInfoSchema,
  hasCode,
  LocalizedMessageSchema,
  NatsMicroError,
  type RequestContext,
  Service,
  StatusSchema,
  STATUS_MARKER,
} from "../src/index.js";
import { errorBody, errorFromReply, readErrorBody } from "../src/details.js";
import { ECHO_SUBJECT, logSink, NatsServer, SPEC, sleep } from "./harness.js";

const DATA = new Uint8Array([0x00, 0xff, 0x7b, 0x7d]);

/** A detail no runtime knows, as the proto's `unknown` case sends it. */
const UNLISTED: Any = create(AnySchema, { typeUrl: "type.googleapis.com/details.v1.Unlisted", value: new Uint8Array([0x08, 0x01]) });

function marked(value = STATUS_MARKER): MsgHdrs {
  const headers = natsHeaders();
  headers.set(ERROR_DETAILS_HEADER, value);
  return headers;
}

const bytes = (value: Uint8Array | undefined) => [...(value ?? [])];

// --- encoding -----------------------------------------------------------------

test("an error without details is its data, byte for byte, with no marker", () => {
  const { body, marked: isMarked } = errorBody(new NatsMicroError("NOT_FOUND", "Get", "gone", DATA), "gone", false, 1024);
  assert.equal(isMarked, false);
  assert.deepEqual(bytes(body), bytes(DATA));
});

test("details travel in a Status with the gRPC code number, and data beside them comes back as data", () => {
  const error = new NatsMicroError("FAILED_PRECONDITION", "Get", "no", DATA).withErrorInfo("STOCK_LOW", "shop.example", { sku: "A-1" }).withRetryInfo(1_500);
  const sent = errorBody(error, "no", false, undefined);
  assert.equal(sent.marked, true);
  const read = readErrorBody(marked(), sent.body);
  assert.deepEqual(bytes(read.data), bytes(DATA));
  assert.deepEqual(
    read.details.map((d) => d.typeUrl),
    ["type.googleapis.com/google.rpc.ErrorInfo", "type.googleapis.com/google.rpc.RetryInfo"],
  );
  const back = new NatsMicroError("FAILED_PRECONDITION", "Get", "no", read.data, { details: read.details });
  assert.deepEqual(back.errorInfo()?.metadata, { sku: "A-1" });
  assert.equal(back.retryDelay(), 1_500);
  const custom = errorBody(new NatsMicroError("QUOTA_GONE", "Get", "x").withRetryInfo(1), "x", false, undefined);
  assert.equal(readStatus(custom.body).code, 2, "a custom code is UNKNOWN in the Status");
  assert.equal(readStatus(sent.body).code, 9);
});

/** An error body as the Status it is. */
function readStatus(body: Uint8Array) {
  return fromBinary(StatusSchema, body);
}

test("DebugInfo is withheld unless internal errors are exposed; alone, it leaves a plain reply", () => {
  const error = new NatsMicroError("INTERNAL", "Get", "oops").withDebugInfo(["frame 1"], "secret").withErrorInfo("DEBUGGED", "shop.example");
  const withheld = readErrorBody(marked(), errorBody(error, "oops", false, undefined).body);
  assert.deepEqual(withheld.details.map((d) => d.typeUrl), ["type.googleapis.com/google.rpc.ErrorInfo"]);
  const exposed = readErrorBody(marked(), errorBody(error, "oops", true, undefined).body);
  assert.equal(exposed.details.length, 2);
  const onlyDebug = errorBody(new NatsMicroError("INTERNAL", "Get", "oops", DATA).withDebugInfo([], "secret"), "oops", false, undefined);
  assert.equal(onlyDebug.marked, false);
  assert.deepEqual(bytes(onlyDebug.body), bytes(DATA));
});

test("details over the limit are dropped from the last, a DETAILS_TRUNCATED ErrorInfo is appended, and the data is kept", () => {
  const error = new NatsMicroError("INVALID_ARGUMENT", "Get", "big", DATA);
  for (let i = 0; i < 50; i++) {
    error.withLocalizedMessage("en", `${i}:${"x".repeat(100)}`);
  }
  const whole = errorBody(error, "big", false, undefined).body.length;
  assert.equal(errorBody(error, "big", false, whole).dropped, 0, "a body exactly at the limit is whole");
  for (const limit of [whole - 1, 2_000, 500, 200]) {
    const sent = errorBody(error, "big", false, limit);
    assert.ok(sent.body.length <= limit, `${sent.body.length} bytes over the limit ${limit}`);
    const read = readErrorBody(marked(), sent.body);
    assert.deepEqual(bytes(read.data), bytes(DATA));
    const back = new NatsMicroError("INVALID_ARGUMENT", "Get", "big", read.data, { details: read.details });
    const kept = back.details(LocalizedMessageSchema);
    assert.equal(kept.length, 50 - sent.dropped);
    assert.deepEqual(kept.map((m) => m.message), error.details(LocalizedMessageSchema).slice(0, kept.length).map((m) => m.message), "the first ones are kept");
    const marker = back.details(ErrorInfoSchema).at(-1);
    assert.deepEqual([marker?.reason, marker?.domain, marker?.metadata], [DETAILS_TRUNCATED, "nats-micro", { dropped: String(sent.dropped) }]);
    assert.equal(read.details.at(-1)?.typeUrl, "type.googleapis.com/google.rpc.ErrorInfo", "the marker comes last");
  }
  const tiny = errorBody(error, "big", false, 40);
  assert.deepEqual([tiny.marked, bytes(tiny.body), tiny.dropped], [false, bytes(DATA), 50], "with no room for the marker, the data alone");
});

// --- lenient reading ----------------------------------------------------------

test("a marked body that is not a Status, or another marker value, is the data with no details", () => {
  const garbage = new Uint8Array([0xff, 0xff, 0xff]);
  for (const headers of [marked(), marked("google.rpc.Other")]) {
    const read = readErrorBody(headers, garbage);
    assert.deepEqual([bytes(read.data), read.details], [bytes(garbage), []]);
  }
  const status = toBinary(StatusSchema, create(StatusSchema, { code: 5, message: "x", details: [UNLISTED] }));
  const unmarked = readErrorBody(natsHeaders(), status);
  assert.deepEqual([bytes(unmarked.data), unmarked.details], [bytes(status), []], "a body that merely looks like a Status is data");
  const headers = marked();
  headers.set(ERROR_CODE_HEADER, "404");
  headers.set("Nats-Service-Error", "gone");
  const error = errorFromReply(headers, garbage, "Get");
  assert.deepEqual([error?.code, error?.message, bytes(error?.data)], ["NOT_FOUND", "gone", bytes(garbage)], "code and message survive");
});

test("any type URL prefix names the type; unknown details are kept as they came", () => {
  const info = toBinary(ErrorInfoSchema, create(ErrorInfoSchema, { reason: "R" }));
  const odd = create(AnySchema, { typeUrl: "example.com/types/google.rpc.ErrorInfo", value: info });
  const body = toBinary(StatusSchema, create(StatusSchema, { code: 10, message: "x", details: [odd, UNLISTED] }));
  const error = new NatsMicroError("ABORTED", "Get", "x", undefined, { details: readErrorBody(marked(), body).details });
  assert.equal(error.errorInfo()?.reason, "R");
  assert.deepEqual(error.detailsAny.map((d) => [d.typeUrl, bytes(d.value)]), [
    ["example.com/types/google.rpc.ErrorInfo", bytes(info)],
    [UNLISTED.typeUrl, [0x08, 0x01]],
  ]);
  assert.equal(error.detail(StringValueSchema), undefined, "no detail of a type not sent");
});

// --- on a real server -----------------------------------------------------------

let server: NatsServer | undefined;
let nc: NatsConnection | undefined;

afterEach(async () => {
  await nc?.close();
  server?.stop();
  [server, nc] = [undefined, undefined];
});

async function connected(config?: string): Promise<NatsConnection> {
  server = await NatsServer.start(config);
  nc = await server.connect();
  return nc;
}

/** What `call` rejects with. */
async function failure(call: () => Promise<unknown>): Promise<NatsMicroError> {
  try {
    await call();
  } catch (err) {
    assert.ok(err instanceof NatsMicroError, String(err));
    return err;
  }
  assert.fail("expected the call to fail");
}

test("details, data and unknown details survive a handler that re-raises a downstream error", async () => {
  const conn = await connected();
  const downstream = await Service.start(conn, SPEC, {
    echo: () => {
      throw new NatsMicroError("ABORTED", "Echo", "downstream", DATA, { details: [UNLISTED] }).withDebugInfo(["f"], "hidden").withErrorInfo("R", "d");
    },
    hang: () => ({ value: "" }),
  });
  const forwarding = await Service.start(
    conn,
    { ...SPEC, name: "Forwarding", subjectPrefix: "api.forward" },
    {
      echo: async (request: { value: string }) => new Client(conn, SPEC, NatsMicroError).unary(SPEC.methods.echo, request),
      hang: () => ({ value: "" }),
    },
  );
  const error = await failure(() => new Client(conn, { ...SPEC, subjectPrefix: "api.forward" }, NatsMicroError).unary(SPEC.methods.echo, { value: "x" }));
  assert.deepEqual([error.code, error.message, bytes(error.data)], ["ABORTED", "downstream", bytes(DATA)]);
  assert.deepEqual(error.detailsAny.map((d) => d.typeUrl), [UNLISTED.typeUrl, "type.googleapis.com/google.rpc.ErrorInfo"], "DebugInfo withheld at the first hop");
  assert.deepEqual(bytes(error.detailsAny[0]?.value), [0x08, 0x01]);
  await Promise.all([downstream.stop(), forwarding.stop()]);
});

test("under a small max_payload the reply is sent, truncated with its marker", async () => {
  const conn = await connected("max_payload: 8192\n");
  const service = await Service.start(conn, SPEC, {
    echo: () => {
      const error = new NatsMicroError("INVALID_ARGUMENT", "Echo", "big");
      for (let i = 0; i < 40; i++) {
        error.withLocalizedMessage("en", "x".repeat(1_000));
      }
      throw error;
    },
    hang: () => ({ value: "" }),
  }, { logger: logSink().logger });
  const error = await failure(() => new Client(conn, SPEC, NatsMicroError).unary(SPEC.methods.echo, { value: "x" }));
  const kept = error.details(LocalizedMessageSchema).length;
  assert.ok(kept > 0 && kept < 40, `${kept} kept`);
  assert.deepEqual(error.errorInfo()?.metadata, { dropped: String(40 - kept) });
  await service.stop();
});

test("a request that does not decode is INVALID_ARGUMENT with a BadRequest; an uncoded failure has no details", async () => {
  const conn = await connected();
  const service = await Service.start(conn, SPEC, {
    echo: () => {
      throw new Error("secret");
    },
    hang: () => ({ value: "" }),
  }, { logger: logSink().logger });
  const reply = await conn.request(ECHO_SUBJECT, new Uint8Array([0xff, 0xff, 0xff]), { timeout: 2_000 });
  assert.equal(reply.headers?.get(ERROR_DETAILS_HEADER), STATUS_MARKER);
  const malformed = errorFromReply(reply.headers, reply.data, "Echo");
  assert.equal(malformed?.code, "INVALID_ARGUMENT");
  const violations = malformed?.badRequest()?.fieldViolations ?? [];
  assert.equal(violations.length, 1);
  assert.match(violations[0]?.description ?? "", /malformed request for Echo/);
  const uncoded = await failure(() => new Client(conn, SPEC, NatsMicroError).unary(SPEC.methods.echo, { value: "x" }));
  assert.deepEqual([uncoded.code, uncoded.detailsAny.length], ["INTERNAL", 0]);
  await service.stop();
});

test("a shed request carries a RetryInfo of the service's hint and is counted in STATS data.shed", async () => {
  const conn = await connected();
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  const service = await Service.start(conn, SPEC, {
    echo: (request: { value: string }) => ({ value: request.value }),
    hang: async (request: { value: string }, _ctx: RequestContext) => (await held, { value: request.value }),
  }, { maxConcurrency: 1, pendingMsgLimit: 1, retryAfterHint: 750, logger: logSink().logger });
  // One attempt per call: shed calls are otherwise retried after the hint (PROTOCOL §10.1), and this counts sheds.
  const client = new Client(conn, SPEC, NatsMicroError, { retryPolicy: { maxAttempts: 1 } });
  const calls = [0, 1, 2, 3].map(() => client.unary(SPEC.methods.hang, { value: "x" }, { timeout: 5_000 }));
  const shed = await Promise.race([Promise.any(calls.map((c) => c.then(() => Promise.reject(new Error("served")), (e: unknown) => e))), sleep(3_000)]);
  assert.ok(hasCode(shed, "RESOURCE_EXHAUSTED"), String(shed));
  assert.equal((shed as NatsMicroError).retryDelay(), 750);
  release();
  const settled = await Promise.allSettled(calls);
  assert.equal(settled.filter((s) => s.status === "rejected").length, 2);
  const hang = service.stats().endpoints.find((e) => e.name === "hang");
  assert.deepEqual([hang?.num_errors, hang?.data], [2, { shed: 2 }]);
  assert.deepEqual(service.stats().endpoints.find((e) => e.name === "echo")?.data, { shed: 0 });
  await service.stop();
  await assert.rejects(Service.start(conn, SPEC, { echo: () => ({ value: "" }), hang: () => ({ value: "" }) }, { retryAfterHint: Number.NaN }), /retryAfterHint/);
  assert.equal(new NatsMicroError("UNAVAILABLE", "", "").withRetryInfo(-5).retryDelay(), 0, "a negative hint is no wait");
});
