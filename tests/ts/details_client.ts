/**
 * The fixed error-details scenario (PROTOCOL §4.1) against whichever server
 * serves `details.v1.ExplainService` and `details.v1.ExplainOpenService` on
 * NATS_URL (proto/details/v1/details.proto): every case of `Explain` on
 * both services, checked against the proto's text; `plain` also as a raw
 * nats.js request (body exactly the 12 bytes, no marker header), and the
 * malformed request sent raw. Prints `ok CASE` per case (see checks.ts);
 * exits 1 on any mismatch, naming it.
 *
 * usage: NATS_URL=nats://... node details_client.js
 */

import assert from "node:assert/strict";

import type { NatsConnection } from "@nats-io/nats-core";
import { create, toBinary } from "@bufbuild/protobuf";
import * as runtime from "nats-micro-runtime";
import { ExplainRequestSchema, HintSchema } from "./gen/details/v1/details_pb.js";
import { ExplainOpenServiceNatsClient, ExplainServiceNatsClient } from "./gen/details/v1/details_nats.pb.js";
import { type Check, runChecks } from "./checks.js";

const PLAIN_DATA = new Uint8Array([0x00, 0xff, 0x7b, 0x22, 0x69, 0x64, 0x22, 0x3a, 0x34, 0x32, 0x7d, 0x0a]);
const RPC = "type.googleapis.com/google.rpc.";

interface Explainer {
  readonly label: string;
  readonly open: boolean;
  readonly subject: string;
  explain(text: string): Promise<unknown>;
}

/** Both services, each with its generated client. */
function services(nc: NatsConnection): Explainer[] {
  const withheld = new ExplainServiceNatsClient(nc);
  const open = new ExplainOpenServiceNatsClient(nc);
  const subject = (client: { endpoints(): runtime.EndpointInfo[] }) => client.endpoints()[0]?.subject ?? assert.fail("no endpoint");
  return [
    { label: "ExplainService", open: false, subject: subject(withheld), explain: (text) => withheld.explain({ case: text }) },
    { label: "ExplainOpenService", open: true, subject: subject(open), explain: (text) => open.explain({ case: text }) },
  ];
}

/** The error `Explain` fails with for `text`, checked for its code and message. */
async function explained(service: Explainer, text: string, code: string, message = text): Promise<runtime.NatsMicroError> {
  let error: unknown;
  try {
    await service.explain(text);
  } catch (err) {
    error = err;
  }
  assert.ok(error instanceof runtime.NatsMicroError, `${service.label} ${text}: expected a NatsMicroError, got ${String(error)}`);
  assert.equal(error.code, code, `${service.label} ${text}: code`);
  assert.equal(error.message, message, `${service.label} ${text}: message`);
  return error;
}

/** Checks that two byte strings are equal, whatever their classes (nats.js hands out Buffers). */
function sameBytes(actual: Uint8Array | undefined, expected: Uint8Array, what: string): void {
  assert.deepEqual([...(actual ?? [])], [...expected], what);
}

/** The type URLs of an error's details, in order. */
const typeUrls = (error: runtime.NatsMicroError) => error.detailsAny.map((d) => d.typeUrl);

/** Runs `check` against both services. */
const onBoth = (check: (service: Explainer, nc: NatsConnection) => Promise<void>) => async (nc: NatsConnection) => {
  for (const service of services(nc)) {
    await check(service, nc);
  }
};

const checks: Check[] = [
  [
    "plain",
    onBoth(async (service, nc) => {
      const error = await explained(service, "plain", "NOT_FOUND");
      sameBytes(error.data, PLAIN_DATA, `${service.label}: data`);
      assert.deepEqual(error.detailsAny, [], `${service.label}: details`);
      const raw = await nc.request(service.subject, toBinary(ExplainRequestSchema, create(ExplainRequestSchema, { case: "plain" })), { timeout: 5_000 });
      assert.equal(runtime.codeFromWire(raw.headers?.get(runtime.ERROR_CODE_HEADER) ?? ""), "NOT_FOUND", `${service.label}: raw code`);
      assert.equal(raw.headers?.get(runtime.ERROR_MESSAGE_HEADER), "plain", `${service.label}: raw message`);
      assert.equal(raw.headers?.has(runtime.ERROR_DETAILS_HEADER), false, `${service.label}: a marker header on a plain error`);
      sameBytes(raw.data, PLAIN_DATA, `${service.label}: raw body`);
    }),
  ],
  [
    "standard",
    onBoth(async (service) => {
      const error = await explained(service, "standard", "FAILED_PRECONDITION");
      const where = `${service.label} standard`;
      assert.equal(new TextDecoder().decode(error.data), "d", `${where}: data`);
      const names = ["ErrorInfo", "RetryInfo", "QuotaFailure", "PreconditionFailure", "BadRequest", "RequestInfo", "ResourceInfo", "Help", "LocalizedMessage"];
      assert.deepEqual(typeUrls(error), names.map((n) => RPC + n), `${where}: detail types`);
      const info = error.errorInfo();
      assert.deepEqual([info?.reason, info?.domain, info?.metadata], ["STOCK_LOW", "shop.example", { sku: "A-1" }], `${where}: ErrorInfo`);
      assert.equal(error.retryDelay(), 1_500, `${where}: RetryInfo`);
      const quota = error.quotaFailure()?.violations.map((v) => [v.subject, v.description]);
      assert.deepEqual(quota, [["user:7", "daily"]], `${where}: QuotaFailure`);
      const precondition = error.preconditionFailure()?.violations.map((v) => [v.type, v.subject, v.description]);
      assert.deepEqual(precondition, [["TOS", "user:7", "terms"]], `${where}: PreconditionFailure`);
      const bad = error.badRequest()?.fieldViolations.map((v) => [v.field, v.description]);
      assert.deepEqual(bad, [["items[0].qty", "must be positive"]], `${where}: BadRequest`);
      const request = error.requestInfo();
      assert.deepEqual([request?.requestId, request?.servingData], ["r-1", "s"], `${where}: RequestInfo`);
      const resource = error.resourceInfo();
      assert.deepEqual(
        [resource?.resourceType, resource?.resourceName, resource?.owner, resource?.description],
        ["order", "o-9", "u-7", "locked"],
        `${where}: ResourceInfo`,
      );
      assert.deepEqual(error.help()?.links.map((l) => [l.description, l.url]), [["docs", "https://example.com/h"]], `${where}: Help`);
      const localized = error.localizedMessage();
      assert.deepEqual([localized?.locale, localized?.message], ["fr-FR", "échec"], `${where}: LocalizedMessage`);
    }),
  ],
  [
    "custom",
    onBoth(async (service) => {
      const error = await explained(service, "custom", "QUOTA_GONE");
      const where = `${service.label} custom`;
      assert.equal(error.data.length, 0, `${where}: data`);
      assert.deepEqual(typeUrls(error), ["type.googleapis.com/details.v1.Hint", RPC + "RetryInfo"], `${where}: detail types`);
      // snippet: ts-error-details-client
      const hint = error.detail(HintSchema); // any message type, by its schema
      const delay = error.retryDelay(); // the RetryInfo's delay in milliseconds
      // end snippet
      assert.deepEqual([hint?.text, hint?.level], ["hint", 7], `${where}: Hint`);
      assert.equal(delay, 250, `${where}: RetryInfo`);
    }),
  ],
  [
    "debug",
    onBoth(async (service) => {
      const error = await explained(service, "debug", "INTERNAL");
      const where = `${service.label} debug`;
      const expected = service.open ? [RPC + "DebugInfo", RPC + "ErrorInfo"] : [RPC + "ErrorInfo"];
      assert.deepEqual(typeUrls(error), expected, `${where}: detail types (DebugInfo only when internal errors are exposed)`);
      if (service.open) {
        const debug = error.debugInfo();
        assert.deepEqual([debug?.stackEntries, debug?.detail], [["frame 1", "frame 2"], "secret"], `${where}: DebugInfo`);
      }
      assert.deepEqual([error.errorInfo()?.reason, error.errorInfo()?.domain], ["DEBUGGED", "shop.example"], `${where}: ErrorInfo`);
    }),
  ],
  [
    "unknown",
    onBoth(async (service) => {
      const error = await explained(service, "unknown", "ABORTED");
      const where = `${service.label} unknown`;
      assert.deepEqual(typeUrls(error), ["type.googleapis.com/details.v1.Unlisted"], `${where}: detail types`);
      sameBytes(error.detailsAny[0]?.value, new Uint8Array([0x08, 0x01]), `${where}: the unknown detail's bytes`);
    }),
  ],
  [
    "oversized",
    onBoth(async (service) => {
      const error = await explained(service, "oversized", "INVALID_ARGUMENT");
      const where = `${service.label} oversized`;
      const kept = error.detailsAny.length - 1;
      assert.ok(kept >= 0 && kept < 200, `${where}: ${kept + 1} details`);
      assert.deepEqual(typeUrls(error), [...Array<string>(kept).fill(RPC + "LocalizedMessage"), RPC + "ErrorInfo"], `${where}: detail types`);
      for (const message of error.details(runtime.LocalizedMessageSchema)) {
        assert.ok(message.locale === "en" && message.message === "x".repeat(8192), `${where}: a LocalizedMessage changed`);
      }
      const marker = error.errorInfo();
      assert.deepEqual(
        [marker?.reason, marker?.domain, marker?.metadata],
        ["DETAILS_TRUNCATED", "nats-micro", { dropped: String(200 - kept) }],
        `${where}: the truncation marker`,
      );
    }),
  ],
  [
    "malformed",
    onBoth(async (service, nc) => {
      const where = `${service.label} malformed`;
      const raw = await nc.request(service.subject, new Uint8Array([0xff, 0xff, 0xff]), { timeout: 5_000 });
      let error: unknown;
      try {
        runtime.replyFromMessage(raw, "Explain");
      } catch (err) {
        error = err;
      }
      assert.ok(error instanceof runtime.NatsMicroError, `${where}: expected an error reply`);
      assert.equal(error.code, "INVALID_ARGUMENT", `${where}: code`);
      const violations = error.badRequest()?.fieldViolations ?? [];
      assert.equal(violations.length, 1, `${where}: one field violation`);
      assert.ok((violations[0]?.description ?? "") !== "", `${where}: the violation has a description`);
    }),
  ],
];

await runChecks(process.env["NATS_URL"] ?? "nats://127.0.0.1:4222", checks);
