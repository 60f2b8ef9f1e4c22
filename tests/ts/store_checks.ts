/**
 * Persistence and chunked transfer (PROTOCOL §12) of the generated
 * TypeScript, end to end on a real nats-server with JetStream (NATS_URL,
 * `-js -sd <tmp>`) and one without (NATS_URL_PLAIN): the scenario's
 * service in this process (its events kept), its generated client's typed
 * handles and chunked helpers. Prints `ok NAME` per check (see checks.ts).
 *
 * usage: NATS_URL=nats://... NATS_URL_PLAIN=nats://... node store_checks.js
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createReadStream, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { connect } from "@nats-io/transport-node";
import { headers as createHeaders } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import * as runtime from "nats-micro-runtime";
import { receiveToFile, sendFile } from "nats-micro-runtime/node";
import { SessionKind } from "./gen/store/v1/store_pb.js";
import {
  type IProfileServiceNats,
  ProfileServiceNatsClient,
  registerProfileServiceHandlers,
} from "./gen/store/v1/store_nats.pb.js";
import { type Check, runChecks } from "./checks.js";
import { storeHandlers } from "./store_handlers.js";
import { pattern, patternSource } from "./store_pattern.js";

const MIB = 1024 * 1024;
const events: runtime.ServiceEvent[] = [];
const logger: runtime.Logger = { event: (e) => void events.push(e), warn: () => undefined };

/** Figures printed beside the checks (`figure NAME VALUE`). */
function figure(name: string, value: string): void {
  console.log(`figure ${name} ${value}`);
}

async function rejects(promise: Promise<unknown>, code: string, text?: RegExp): Promise<runtime.NatsMicroError> {
  try {
    await promise;
  } catch (err) {
    assert.equal(runtime.errorCode(err), code, `expected ${code}, got ${String(err)}`);
    if (text !== undefined) {
      assert.match((err as Error).message, text);
    }
    return err as runtime.NatsMicroError;
  }
  assert.fail(`expected ${code}, got success`);
}

/** The STATS data of one endpoint of the service. */
async function statsData(service: runtime.Service, endpoint: string): Promise<{ num_errors: number; data: Record<string, number> }> {
  const found = service.stats().endpoints.find((e) => e.name === endpoint);
  assert.ok(found, `endpoint ${endpoint}`);
  return { num_errors: found.num_errors, data: found.data as Record<string, number> };
}

/** Waits (at most `ms`) until `done` holds, polling. */
async function until(what: string, ms: number, done: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await done())) {
    if (Date.now() > deadline) {
      assert.fail(`${what} within ${ms} ms`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

const hex = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

async function patternSha(size: number, seed: number): Promise<string> {
  const hash = createHash("sha256");
  for await (const piece of patternSource(size, seed)) {
    hash.update(piece);
  }
  return hash.digest("hex");
}

const url = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";
const plainUrl = process.env["NATS_URL_PLAIN"] ?? "";
const serviceConnection = await connect({ servers: url });

// The scenario's handlers; UpdateProfile with name "race" writes the key itself while it runs.
let raceClient: ProfileServiceNatsClient | undefined;
const base = storeHandlers();
const handlers: IProfileServiceNats = {
  ...base,
  async updateProfile(request, ctx) {
    if (request.name === "race" && raceClient !== undefined) {
      const cas = await raceClient.updateProfileKv();
      await cas.put(cas.key(request), { id: request.id, name: "someone else" });
    }
    return base.updateProfile(request, ctx);
  },
  async *download(request, ctx) {
    // Seed 99: the right bytes, a wrong digest on the end.
    yield* base.download(request, ctx);
    if (request.seed === 99) {
      ctx.setResponseHeader(runtime.CHUNKED_DIGEST_HEADER, runtime.digestHeaderValue(new Uint8Array(32)));
    }
  },
};
const service = await registerProfileServiceHandlers(serviceConnection, handlers, { logger });

const checks: Check[] = [
  [
    "registration creates every bucket with the proto's settings, and not the client-only one",
    async (nc) => {
      const jsm = await jetstreamManager(nc);
      const profiles = (await jsm.streams.info("KV_profiles")).config;
      assert.equal(profiles.description, 'Profiles by id "quoted" \\ and escaped');
      assert.equal(profiles.max_msgs_per_subject, 5);
      assert.equal(profiles.compression, "s2");
      assert.equal(profiles.metadata?.["owner"], "store-scenario");
      const sessions = (await jsm.streams.info("KV_sessions")).config;
      assert.equal(sessions.max_msgs_per_subject, 3);
      assert.equal(sessions.max_age, 3600 * 1e9);
      assert.equal(sessions.allow_msg_ttl, true);
      assert.equal(sessions.subject_delete_marker_ttl, 1e9);
      const reports = (await jsm.streams.info("OBJ_reports")).config;
      assert.equal(reports.description, "Generated reports");
      assert.equal(reports.compression, "s2");
      assert.equal(reports.max_age, 3600 * 1e9);
      const names: string[] = [];
      for await (const name of jsm.streams.names()) {
        names.push(name);
      }
      assert.ok(!names.includes("KV_notes"), `client_only bucket created by the server: ${names.join(", ")}`);
    },
  ],
  [
    "registering again updates a bucket to the proto's settings",
    async (nc) => {
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.info("KV_profiles_touched");
      await jsm.streams.update("KV_profiles_touched", { ...info.config, description: "changed", max_msgs_per_subject: 9 });
      const again = await registerProfileServiceHandlers(nc, storeHandlers(), { logger, queueGroup: "other" });
      await again.stop();
      const config = (await jsm.streams.info("KV_profiles_touched")).config;
      assert.equal(config.description ?? "", "");
      assert.equal(config.max_msgs_per_subject, 1);
    },
  ],
  [
    "last write wins: each save is persisted before the reply, which carries its revision",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      const revisions: string[] = [];
      for (const name of ["ann", "bob"]) {
        await client.saveProfile({ id: "lww", name }, { onHeaders: (h) => void revisions.push(h.get(runtime.KV_REVISION_HEADER)) });
      }
      const profiles = await client.saveProfileKv();
      const entry = await profiles.get(profiles.key({ id: "lww" }));
      assert.equal(entry?.key, "user.lww");
      assert.equal(entry?.value.name, "bob");
      assert.equal(entry?.value.version, 2n);
      assert.equal(String(entry?.revision), revisions[1]);
      assert.ok(Number(revisions[1]) > Number(revisions[0]), revisions.join(","));
    },
  ],
  [
    "required: an unrenderable key fails the call with INVALID_ARGUMENT naming the field, nothing persisted, counted and logged",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      const before = await statsData(service, "save_profile");
      const empty = await rejects(client.saveProfile({ id: "", name: "x" }), "INVALID_ARGUMENT", /\{id\}/);
      assert.equal(empty.badRequest()?.fieldViolations[0]?.field, "id");
      const spaced = await rejects(client.saveProfile({ id: "a b", name: "x" }), "INVALID_ARGUMENT", /\{id\}/);
      assert.equal(spaced.badRequest()?.fieldViolations[0]?.field, "id");
      await rejects(client.saveProfile({ id: "a..b", name: "x" }), "INVALID_ARGUMENT", /empty token/);
      const after = await statsData(service, "save_profile");
      assert.equal(after.data["persist_failures"], (before.data["persist_failures"] ?? 0) + 3);
      assert.equal(after.num_errors, before.num_errors + 3);
      const logged = events.filter((e) => e.event === "persist_failed" && e.endpoint === "save_profile");
      assert.ok(logged.length >= 3);
      assert.equal(logged.at(-1)?.level, "error");
      assert.equal((logged.at(-1) as { bucket: string }).bucket, "profiles");
      assert.deepEqual(await (await client.saveProfileKv()).keys({ id: "a b".replace(" ", "") }), []);
    },
  ],
  [
    "a handler's error persists nothing",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      await rejects(client.saveProfile({ id: "rejected", name: "reject" }), "PROFILE_REJECTED");
      assert.equal(await (await client.saveProfileKv()).get("user.rejected"), undefined);
    },
  ],
  [
    "create-only, required: the second create is ALREADY_EXISTS",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      await client.createProfile({ id: "c1", name: "first" });
      await rejects(client.createProfile({ id: "c1", name: "second" }), "ALREADY_EXISTS");
      const created = await client.createProfileKv();
      assert.equal((await created.get("user.c1"))?.value.name, "first");
      // A deleted key holds no value: creating it again succeeds.
      await created.delete("user.c1");
      await client.createProfile({ id: "c1", name: "third" });
      assert.equal((await created.get("user.c1"))?.value.name, "third");
    },
  ],
  [
    "create-only, best effort: a conflict leaves the reply standing, logged (warn) and counted",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      const before = await statsData(service, "touch_profile");
      await client.touchProfile({ id: "t1", name: "first" });
      const second = await client.touchProfile({ id: "t1", name: "second" });
      assert.equal(second.name, "second");
      const noKey = await client.touchProfile({ id: "", name: "no key" });
      assert.equal(noKey.name, "no key");
      const after = await statsData(service, "touch_profile");
      assert.equal(after.data["persist_failures"], (before.data["persist_failures"] ?? 0) + 2);
      assert.equal(after.num_errors, before.num_errors);
      const logged = events.filter((e) => e.event === "persist_failed" && e.endpoint === "touch_profile");
      assert.equal(logged.at(-2)?.level, "warn");
      assert.equal((logged.at(-2) as { key: string }).key, "user.t1");
      assert.equal((logged.at(-1) as { key: string }).key, "");
      assert.equal((await (await client.touchProfileKv()).get("user.t1"))?.value.name, "first");
    },
  ],
  [
    "compare-and-set: by the revision header, stale or malformed, and by the revision read before the handler",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      raceClient = client;
      let revision = "";
      await client.updateProfile({ id: "cas", name: "v1" }, { onHeaders: (h) => void (revision = h.get(runtime.KV_REVISION_HEADER)) });
      const first = revision;
      await client.updateProfile({ id: "cas", name: "v2" }, { headers: { [runtime.KV_REVISION_HEADER]: first }, onHeaders: (h) => void (revision = h.get(runtime.KV_REVISION_HEADER)) });
      await rejects(client.updateProfile({ id: "cas", name: "stale" }, { headers: { [runtime.KV_REVISION_HEADER]: first } }), "ABORTED");
      await rejects(client.updateProfile({ id: "cas", name: "exists" }, { headers: { [runtime.KV_REVISION_HEADER]: "0" } }), "ABORTED");
      const cas = await client.updateProfileKv();
      const versionBefore = (await cas.get("user.cas"))?.value.version;
      await rejects(client.updateProfile({ id: "cas", name: "bad" }, { headers: { [runtime.KV_REVISION_HEADER]: "x1" } }), "INVALID_ARGUMENT");
      // The handler did not run for the malformed header: the next version is one more than the stale calls made.
      const next = await client.updateProfile({ id: "cas", name: "v3" }, { headers: { [runtime.KV_REVISION_HEADER]: revision } });
      assert.equal(next.version, (versionBefore ?? 0n) + 3n);
      // A write by someone else while the handler runs.
      await rejects(client.updateProfile({ id: "cas", name: "race" }), "ABORTED");
      assert.equal((await cas.get("user.cas"))?.value.name, "someone else");
    },
  ],
  [
    "a key from nested fields and every scalar kind, as the client handle renders it; missing parts are INVALID_ARGUMENT",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      const request = {
        tenant: { region: "eu", id: -5n },
        number: 18446744073709551615n,
        serial: 4294967295,
        delta: -3,
        slot: 7,
        active: true,
        kind: SessionKind.CLI,
        label: "x",
      };
      const session = await client.openSession(request);
      assert.equal(session.key, "eu.-5.n18446744073709551615.u4294967295.s-3.f7.true.SESSION_KIND_CLI.x");
      const sessions = await client.openSessionKv();
      assert.equal(sessions.key(request), session.key);
      assert.equal((await sessions.get(session.key))?.value.key, session.key);
      assert.equal(sessions.key({ ...request, kind: 9 as SessionKind, active: false, label: "y" }), "eu.-5.n18446744073709551615.u4294967295.s-3.f7.false.9.y");
      // The handler renders the key too (its response is the key), so these fail in the handler already.
      const { label: _label, ...unlabelled } = request;
      await rejects(client.openSession(unlabelled), "INVALID_ARGUMENT", /\{label\}/);
      await rejects(client.openSession({ ...request, tenant: undefined }), "INVALID_ARGUMENT", /\{tenant\.region\}/);
      assert.throws(() => sessions.key(unlabelled), (err: unknown) => runtime.errorCode(err) === "INVALID_ARGUMENT");
    },
  ],
  [
    "per-key TTL: a session key expires (limit markers)",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      const session = await client.openSession({ tenant: { region: "us", id: 1n }, label: "ttl" });
      const sessions = await client.openSessionKv();
      assert.ok(await sessions.get(session.key));
      await until("the session key expires", 15_000, async () => (await sessions.get(session.key)) === undefined);
    },
  ],
  [
    "history keeps the proto's revisions, with delete and purge markers",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      for (const name of ["h1", "h2", "h3"]) {
        await client.saveProfile({ id: "hist", name });
      }
      const profiles = await client.saveProfileKv();
      await profiles.delete("user.hist");
      const history = await profiles.history("user.hist");
      assert.deepEqual(
        history.map((c) => (c.operation === "PUT" ? c.value.name : c.operation)),
        ["h1", "h2", "h3", "DEL"],
      );
      assert.equal(await profiles.get("user.hist"), undefined);
      await profiles.purge("user.hist");
      assert.deepEqual((await profiles.history("user.hist")).map((c) => c.operation), ["PURGE"]);
    },
  ],
  [
    "watch of one key: puts with values and revisions, deletes and purges",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      const profiles = await client.saveProfileKv();
      const watch = await profiles.watch("user.w1", { updatesOnly: true });
      const changes = watch[Symbol.asyncIterator]();
      const seen: string[] = [];
      // Each change is awaited before the next write: a purge is a rollup
      // that removes the key's earlier messages, so a change not yet
      // delivered when the purge lands is gone for every watcher.
      const next = async () => {
        const { value: change, done } = await within(10_000, changes.next(), "the watch");
        assert.ok(!done, `the watch ended after ${seen.join(", ")}`);
        seen.push(change.operation === "PUT" ? `PUT ${change.value.name} ${change.revision > 0}` : change.operation);
      };
      await client.saveProfile({ id: "w1", name: "one" });
      await client.saveProfile({ id: "other", name: "not watched" });
      await next();
      await profiles.put("user.w1", { id: "w1", name: "two" });
      await next();
      await profiles.delete("user.w1");
      await next();
      await profiles.purge("user.w1");
      await next();
      await changes.return?.();
      assert.deepEqual(seen, ["PUT one true", "PUT two true", "DEL", "PURGE"]);
    },
  ],
  [
    "keys by template parts",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      await client.saveProfile({ id: "k1", name: "k" });
      await client.saveProfile({ id: "k2", name: "k" });
      const profiles = await client.saveProfileKv();
      assert.deepEqual(await profiles.keys({ id: "k1" }), ["user.k1"]);
      const all = await profiles.keys();
      assert.ok(all.includes("user.k1") && all.includes("user.k2"), all.join(","));
      assert.equal(profiles.keyOf({ id: "k2" }), "user.k2");
    },
  ],
  [
    "client-only: no server writes; the handle creates the bucket and reads, writes, creates and updates with typed errors",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      await client.annotate({ id: "n1", text: "not persisted" });
      // snippet: ts-kv-handle
      const notes = await client.annotateKv(); // Annotate's bucket, `notes`
      const key = notes.key({ id: "n1" }); // "note.n1", as a service renders it
      assert.equal(await notes.get(key), undefined);
      const revision = await notes.create(key, { id: "n1", text: "hello" });
      await rejects(notes.create(key, { id: "n1", text: "again" }), "ALREADY_EXISTS");
      const updated = await notes.update(key, { id: "n1", text: "updated" }, revision);
      await rejects(notes.update(key, { id: "n1", text: "stale" }, revision), "ABORTED");
      // end snippet
      assert.deepEqual(await notes.get("note.n1").then((e) => [e?.value.text, e?.revision]), ["updated", updated]);
      await rejects(notes.get("bad key"), "INVALID_ARGUMENT");
    },
  ],
  [
    "a value that does not decode is DATA_LOSS",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      await jetstream(nc).publish("$KV.profiles.user.garbage", new Uint8Array([0xff, 0xff, 0xff]));
      await rejects((await client.saveProfileKv()).get("user.garbage"), "DATA_LOSS");
    },
  ],
  [
    "object store: a report is kept under its rendered name before the reply",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      const report = await client.generateReport({ id: "r0", size: 100_000 });
      const reports = await client.generateReportObjects();
      assert.equal(reports.key({ id: "r0" }), "report r0.bin");
      const stored = await reports.get("report r0.bin");
      assert.equal(hex(stored?.body ?? new Uint8Array()), hex(report.body));
      // A report over max_payload: its reply cannot be sent (RESOURCE_EXHAUSTED), but it was kept first.
      await rejects(client.generateReport({ id: "r1", size: 10 * MIB }, { timeout: 60_000 }), "RESOURCE_EXHAUSTED");
      const big = await reports.getWithMeta("report r1.bin");
      assert.equal(hex(big?.value.body ?? new Uint8Array()), hex(pattern(0, 10 * MIB, 0)));
      assert.ok(big !== undefined && big.meta.size > 10 * MIB && big.meta.digest.startsWith("SHA-256="));
    },
  ],
  [
    "object store: a 10 MiB object round trip through the typed handle, digest checked",
    async (nc) => {
      const reports = await new ProfileServiceNatsClient(nc).generateReportObjects();
      const body = pattern(0, 10 * MIB, 4);
      const started = performance.now();
      await reports.put("round trip", { id: "rt", body });
      const stored = await reports.get("round trip");
      figure("object_10mib_round_trip_ms", (performance.now() - started).toFixed(0));
      assert.equal(hex(stored?.body ?? new Uint8Array()), hex(body));
      assert.ok(((await reports.info("round trip"))?.size ?? 0) > body.length);
    },
  ],
  [
    "object store: a digest that does not match the data is DATA_LOSS",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      const reports = await client.generateReportObjects();
      await reports.put("tampered", { id: "t", body: pattern(0, 1000, 1) });
      // Rewrite the object's metadata with another object's digest.
      const js = jetstream(nc);
      const jsm = await jetstreamManager(nc);
      const encoded = Buffer.from("tampered").toString("base64url");
      const subject = `$O.reports.M.${encoded.padEnd(Math.ceil(encoded.length / 4) * 4, "=")}`;
      const meta = JSON.parse(new TextDecoder().decode((await jsm.streams.getMessage("OBJ_reports", { last_by_subj: subject }))?.data)) as Record<string, unknown>;
      meta["digest"] = `SHA-256=${Buffer.from(createHash("sha256").update("other").digest()).toString("base64url")}`;
      const rollup = createHeaders();
      rollup.set("Nats-Rollup", "sub");
      await js.publish(subject, new TextEncoder().encode(JSON.stringify(meta)), { headers: rollup });
      await rejects(reports.get("tampered"), "DATA_LOSS");
      assert.equal(await reports.delete("tampered"), true);
      assert.equal(await reports.get("tampered"), undefined);
    },
  ],
  [
    "chunked: 50 MiB uploaded from an async generator and downloaded to a file, checksums verified",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      const size = 50 * MIB;
      let started = performance.now();
      // snippet: ts-chunked-upload
      const uploaded = await client.uploadFrom(patternSource(size, 3)); // any AsyncIterable<Uint8Array>
      // end snippet
      const uploadMs = performance.now() - started;
      assert.equal(uploaded.size, BigInt(size));
      assert.equal(uploaded.sha256, await patternSha(size, 3));
      const dir = mkdtempSync(join(tmpdir(), "store-checks-"));
      try {
        const path = join(dir, "download.bin");
        started = performance.now();
        // snippet: ts-chunked-client
        const result = await receiveToFile(path, (sink) => client.downloadTo({ size: BigInt(size), seed: 5 }, sink));
        // end snippet
        const downloadMs = performance.now() - started;
        assert.equal(result.size, size);
        assert.equal(result.digestVerified, true);
        const hash = createHash("sha256");
        for await (const piece of createReadStream(path)) {
          hash.update(piece as Buffer);
        }
        assert.equal(hash.digest("hex"), await patternSha(size, 5));
        assert.deepEqual(readdirSync(dir), ["download.bin"]);
        // And back up from the file.
        const again = await sendFile(path, (source) => client.uploadFrom(source, { chunkSize: 256 * 1024 }));
        assert.equal(again.sha256, await patternSha(size, 5));
        figure("chunked_50mib_upload_mb_s", (size / MIB / (uploadMs / 1000)).toFixed(1));
        figure("chunked_50mib_download_mb_s", (size / MIB / (downloadMs / 1000)).toFixed(1));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  ],
  [
    "chunked: bytes both ways, an empty payload, and a chunk over max_payload refused before sending",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      const data = pattern(0, 300_000, 8);
      assert.equal((await client.uploadBytes(data, { chunkSize: 1000 })).sha256, hex(data));
      assert.equal((await client.uploadBytes(new Uint8Array(0))).size, 0n);
      const down = await client.downloadBytes({ size: 200_000n, seed: 8 });
      assert.equal(hex(down.data), hex(pattern(0, 200_000, 8)));
      assert.equal((await client.downloadBytes({ size: 0n, seed: 1 })).data.length, 0);
      const maxPayload = nc.info?.max_payload ?? 0;
      await rejects(client.uploadBytes(data, { chunkSize: maxPayload }), "INVALID_ARGUMENT", /max_payload/);
    },
  ],
  [
    "chunked: an interrupted download fails with the stream's error and leaves no file",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      const dir = mkdtempSync(join(tmpdir(), "store-checks-"));
      try {
        const path = join(dir, "cut.bin");
        await rejects(receiveToFile(path, (sink) => client.downloadTo({ size: BigInt(20 * MIB), seed: 1, failAfter: BigInt(5 * MIB) }, sink)), "UNAVAILABLE", /cut/);
        assert.deepEqual(readdirSync(dir), []);
        await rejects(client.downloadBytes({ size: BigInt(MIB), seed: 1, failAfter: 100_000n }), "UNAVAILABLE");
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  ],
  [
    "chunked: a corrupted digest is DATA_LOSS, both ways",
    async (nc) => {
      const client = new ProfileServiceNatsClient(nc);
      const dir = mkdtempSync(join(tmpdir(), "store-checks-"));
      try {
        const path = join(dir, "corrupt.bin");
        await rejects(receiveToFile(path, (sink) => client.downloadTo({ size: 100_000n, seed: 99 }, sink)), "DATA_LOSS");
        assert.deepEqual(readdirSync(dir), []);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      // An upload whose half-close claims another digest.
      const upload = client.upload();
      await upload.send({ data: pattern(0, 1000, 2) });
      await rejects(upload.closeAndReceive({ [runtime.CHUNKED_SIZE_HEADER]: "1000", [runtime.CHUNKED_DIGEST_HEADER]: runtime.digestHeaderValue(new Uint8Array(32)) }), "DATA_LOSS");
      const short = client.upload();
      await short.send({ data: pattern(0, 1000, 2) });
      await rejects(short.closeAndReceive({ [runtime.CHUNKED_SIZE_HEADER]: "1001" }), "DATA_LOSS");
      // Without the headers (a Go-plugin sender) only order and completeness are checked.
      const plain = client.upload();
      await plain.send({ data: pattern(0, 1000, 2) });
      assert.equal((await plain.closeAndReceive()).size, 1000n);
    },
  ],
  [
    "no JetStream: registration fails fast with FAILED_PRECONDITION naming JetStream and the bucket; so does a handle",
    async () => {
      assert.ok(plainUrl !== "", "NATS_URL_PLAIN");
      const plain = await connect({ servers: plainUrl });
      try {
        const started = performance.now();
        await rejects(registerProfileServiceHandlers(plain, storeHandlers(), { logger }), "FAILED_PRECONDITION", /JetStream.*profiles|profiles.*JetStream/);
        assert.ok(performance.now() - started < 10_000);
        await rejects(new ProfileServiceNatsClient(plain).saveProfileKv(), "FAILED_PRECONDITION", /JetStream/);
        assert.equal(plain.isClosed(), false);
      } finally {
        await plain.close();
      }
    },
  ],
  [
    "a bucket that does not exist is NOT_FOUND, naming it",
    async (nc) => {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.delete("KV_profiles_created");
      await rejects(new ProfileServiceNatsClient(nc).createProfileKv(), "NOT_FOUND", /profiles_created/);
      await jsm.streams.delete("OBJ_reports");
      await rejects(new ProfileServiceNatsClient(nc).generateReportObjects(), "NOT_FOUND", /reports/);
    },
  ],
];

/** Rejects when `promise` takes longer than `ms`. */
async function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

await runChecks(url, checks);
await service.stop();
await serviceConnection.close();
