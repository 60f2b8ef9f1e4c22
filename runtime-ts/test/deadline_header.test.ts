/**
 * The one definition of the deadline header (PROTOCOL.md section 3.2): the
 * table shared by the Rust, TypeScript and Python runtimes, run against this
 * runtime's parser, and its duplicates on the wire against a live service.
 */

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { fromBinary } from "@bufbuild/protobuf";
import { StringValueSchema } from "@bufbuild/protobuf/wkt";
import { headers as natsHeaders } from "@nats-io/nats-core";

import { decodeTimeout, ERROR_CODE_HEADER, MAX_TIMEOUT_MICROS, requestBudget, Service, TIMEOUT_HEADER } from "../src/index.js";
import { ECHO_SUBJECT, Inbox, logSink, NatsServer, RawClient, REPO, SPEC, stringValue, within } from "./harness.js";

interface Cases {
  values: [string, number | null][];
  duplicates: [string[], number | null][];
}

/** `tests/deadline_header_cases.json`, or where it lived before, `runtime-py/tests/`. */
function cases(): Cases {
  const shared = join(REPO, "tests", "deadline_header_cases.json");
  const path = existsSync(shared) ? shared : join(REPO, "runtime-py", "tests", "deadline_header_cases.json");
  const table = JSON.parse(readFileSync(path, "utf8")) as Cases;
  assert.ok(table.values.length > 10 && table.duplicates.length > 0, `${path} holds the table`);
  return table;
}

/** Milliseconds (as the runtime gives them) back to whole microseconds. */
const micros = (ms: number | undefined): number | null => (ms === undefined ? null : Math.round(ms * 1000));

test("every value of the shared table decodes as it says", () => {
  for (const [value, expected] of cases().values) {
    assert.equal(micros(decodeTimeout(value)), expected, JSON.stringify(value));
  }
  assert.equal(MAX_TIMEOUT_MICROS, 86_400_000_000);
});

test("only the first occurrence counts (the shared duplicates table), and an invalid first value is reported", () => {
  for (const [values, expected] of cases().duplicates) {
    const headers = natsHeaders();
    for (const value of values) {
      headers.append(TIMEOUT_HEADER, value);
    }
    const invalid: string[] = [];
    assert.equal(micros(requestBudget(headers, (v) => invalid.push(v))), expected, JSON.stringify(values));
    assert.deepEqual(invalid, expected === null ? [values[0]] : [], JSON.stringify(values));
  }
  // The name is compared case-sensitively (PROTOCOL.md section 3.1), as in the other runtimes.
  const lower = natsHeaders();
  lower.append("nats-micro-timeout", "0");
  assert.equal(requestBudget(lower), undefined);
  assert.equal(requestBudget(undefined), undefined);
  assert.equal(requestBudget(natsHeaders()), undefined);
});

test("on the wire: duplicated headers and other digits reach the handler as the table says", async () => {
  const server = await NatsServer.start();
  const nc = await server.connect();
  try {
    // The handler answers with the milliseconds it has left; the server's own timeout is a minute.
    const debug = logSink();
    const service = await Service.start(
      nc,
      SPEC,
      { echo: (_request, ctx) => ({ value: String(ctx.remaining() ?? "none") }), hang: () => ({ value: "" }) },
      { timeout: 60_000, debug: debug.log },
    );
    const replies = new Inbox(nc, "_INBOX.deadline.>");
    await nc.flush();
    const raw = await RawClient.connect(server.port);
    const wire: [string[], number | null][] = [
      ...cases().duplicates,
      [["0", "5000000"], 0],
      [["5000000", "0"], 5_000_000],
      [["０"], null],
      [["0x0", "0"], null],
    ];
    for (const [i, [values, expected]] of wire.entries()) {
      const block = Buffer.from(`NATS/1.0\r\n${values.map((v) => `${TIMEOUT_HEADER}: ${v}\r\n`).join("")}\r\n`, "utf8");
      raw.hpub(ECHO_SUBJECT, `_INBOX.deadline.${i}`, block, stringValue("x"));
      const reply = (await replies.wait(i + 1, 2_000))[i];
      const code = reply?.headers?.get(ERROR_CODE_HEADER) ?? "";
      const left = (): number => (reply === undefined ? NaN : Number(fromBinary(StringValueSchema, reply.data).value));
      const what = `${JSON.stringify(values)}: ${code} ${code === "" ? left() : ""}`;
      if (expected === null) {
        // Ignored: the server's minute applies.
        assert.equal(code, "", what);
        assert.ok(left() > 5_000, what);
      } else if (expected < 1_000) {
        // Spent (or nearly) before the handler could start.
        assert.ok(code === "DEADLINE_EXCEEDED" || left() <= expected / 1000, what);
      } else {
        assert.equal(code, "", what);
        assert.ok(left() <= expected / 1000 && left() > expected / 1000 - 1_000, what);
      }
    }
    assert.ok(debug.lines.some((line) => line.includes(`invalid ${TIMEOUT_HEADER}`)), "an invalid value is logged at debug level");
    raw.close();
    await within(2_000, service.stop(), "stop()");
  } finally {
    await nc.close();
    server.stop();
  }
});
