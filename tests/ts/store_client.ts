/**
 * One command of the persistence scenario (PROTOCOL §12) against whichever
 * server serves `store.v1.ProfileService` on NATS_URL, through the
 * generated client's typed handles and chunked helpers. Prints ONE JSON
 * line and exits 0, also on a typed error (`{"error": "<CODE>", ...}`).
 *
 * usage: NATS_URL=nats://... node store_client.js COMMAND ARGS
 *   kv-get KEY                              SaveProfile's bucket: {"found":true,"revision","id","name","version"} or {"found":false}
 *   kv-put KEY ID NAME                      puts Profile{id,name,version:7}: {"revision"}
 *   obj-get NAME                            GenerateReport's object store: {"id","size","sha256"}
 *   upload SIZE SEED                        pattern(SEED) from an async generator: {"size","sha256" (the server's),"peak_rss_kib"}
 *   download SIZE SEED FAIL_AFTER PATH      into PATH by the file helper: {"size","sha256" (of the file),"peak_rss_kib"}
 *                                           or {"error","file_exists"}
 */

import { createHash } from "node:crypto";
import { createReadStream, existsSync, readFileSync } from "node:fs";

import { connect } from "@nats-io/transport-node";
import * as runtime from "nats-micro-runtime";
import { receiveToFile } from "nats-micro-runtime/node";
import { ProfileServiceNatsClient } from "./gen/store/v1/store_nats.pb.js";
import { patternSource } from "./store_pattern.js";

/** The process's peak resident set (VmHWM), in KiB. */
function peakRssKib(): number {
  const match = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync("/proc/self/status", "utf8"));
  return match === null ? 0 : Number(match[1]);
}

/** Hex SHA-256 of a file, read in pieces. */
async function fileSha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const piece of createReadStream(path)) {
    hash.update(piece as Buffer);
  }
  return hash.digest("hex");
}

function arg(index: number): string {
  const value = process.argv[index + 3];
  if (value === undefined) {
    throw new Error(`missing argument ${index + 1} of ${process.argv[2] ?? "the command"}`);
  }
  return value;
}

const url = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";
const nc = await connect({ servers: url });
const client = new ProfileServiceNatsClient(nc);
const command = process.argv[2] ?? "";

async function run(): Promise<Record<string, unknown>> {
  switch (command) {
    case "kv-get": {
      const profiles = await client.saveProfileKv();
      const entry = await profiles.get(arg(0));
      if (entry === undefined) {
        return { found: false };
      }
      const { id, name, version } = entry.value;
      return { found: true, revision: entry.revision, id, name, version: Number(version) };
    }
    case "kv-put": {
      const profiles = await client.saveProfileKv();
      return { revision: await profiles.put(arg(0), { id: arg(1), name: arg(2), version: 7n }) };
    }
    case "obj-get": {
      const reports = await client.generateReportObjects();
      const report = await reports.get(arg(0));
      if (report === undefined) {
        return { error: "NOT_FOUND", message: `no object ${arg(0)}` };
      }
      return { id: report.id, size: report.body.length, sha256: createHash("sha256").update(report.body).digest("hex") };
    }
    case "upload": {
      const result = await client.uploadFrom(patternSource(Number(arg(0)), Number(arg(1))));
      return { size: Number(result.size), sha256: result.sha256, peak_rss_kib: peakRssKib() };
    }
    case "download": {
      const [size, seed, failAfter, path] = [BigInt(arg(0)), Number(arg(1)), BigInt(arg(2)), arg(3)];
      try {
        const result = await receiveToFile(path, (sink) => client.downloadTo({ size, seed, failAfter }, sink));
        return { size: result.size, sha256: await fileSha256(path), peak_rss_kib: peakRssKib() };
      } catch (err) {
        return { error: runtime.errorCode(err) || "UNKNOWN", message: err instanceof Error ? err.message : String(err), file_exists: existsSync(path) };
      }
    }
    default:
      throw new Error(`unknown command ${JSON.stringify(command)}`);
  }
}

try {
  console.log(JSON.stringify(await run()));
} catch (err) {
  const code = runtime.errorCode(err);
  if (code === "") {
    throw err;
  }
  console.log(JSON.stringify({ error: code, message: err instanceof Error ? err.message : String(err) }));
} finally {
  await nc.close();
}
