/**
 * The restart scenario of PROTOCOL §10.3 for the TypeScript chaos client
 * against the TypeScript chaos server (the Rust harness, tests/tests/chaos.rs,
 * runs every pairing): a nats-server on a free loopback port is killed
 * under load and restarted on the same port a second later. Checks that
 * no reply was wrong, that at least 99.9 % of Get calls succeeded, that no
 * Put executed twice and that every Put the client counted as ok executed
 * exactly once; prints the figures as one line of JSON.
 *
 * usage: NATS_SERVER=path/to/nats-server node chaos_restart.js (run from
 * the compiled program's dist/, next to chaos_server.js and
 * chaos_client.js). Exits 1 when a check fails.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const natsServer = process.env["NATS_SERVER"] ?? "nats-server";

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The lines a child prints, as they come. */
function lines(child: ChildProcess): AsyncIterator<string> {
  if (child.stdout === null) {
    throw new Error("no stdout");
  }
  return createInterface({ input: child.stdout })[Symbol.asyncIterator]();
}

async function line(reader: AsyncIterator<string>, what: string): Promise<string> {
  const next = await reader.next();
  if (next.done === true) {
    throw new Error(`${what} ended without a line`);
  }
  return next.value;
}

function startNats(port: number): ChildProcess {
  return spawn(natsServer, ["-a", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
}

const port = await freePort();
const url = `nats://127.0.0.1:${port}`;
let nats = startNats(port);
await sleep(300);
const env = { ...process.env, NATS_URL: url, CHAOS_SECONDS: "8", CHAOS_CONCURRENCY: "32" };
const server = spawn("node", [join(here, "chaos_server.js")], { env, stdio: ["ignore", "pipe", "inherit"] });
const serverLines = lines(server);
if ((await line(serverLines, "the chaos server")) !== "ready") {
  throw new Error("the chaos server did not start");
}
const client = spawn("node", [join(here, "chaos_client.js")], { env, stdio: ["ignore", "pipe", "ignore"] });
const clientLines = lines(client);
if ((await line(clientLines, "the chaos client")) !== "ready") {
  throw new Error("the chaos client did not start");
}
await sleep(2_000);
nats.kill("SIGKILL");
await once(nats, "exit");
await sleep(1_000);
nats = startNats(port);
const report = JSON.parse(await line(clientLines, "the chaos client")) as {
  get_ok: number;
  get_failed: number;
  put_ok: number;
  put_failed: number;
  wrong: number;
  put_ok_ids: number[];
  recovery_ms: number;
  retries: number;
};
server.kill("SIGTERM");
const putLine = await line(serverLines, "the chaos server");
nats.kill("SIGKILL");
const executed = new Map<number, number>();
for (const id of putLine.replace(/^put-ids ?/, "").split(",").filter((id) => id !== "")) {
  executed.set(Number(id), (executed.get(Number(id)) ?? 0) + 1);
}
const twice = [...executed].filter(([, count]) => count > 1).map(([id]) => id);
const notOnce = report.put_ok_ids.filter((id) => executed.get(id) !== 1);
const getRatio = report.get_ok / Math.max(1, report.get_ok + report.get_failed);
const problems = [
  ...(report.wrong === 0 ? [] : [`${report.wrong} wrong replies`]),
  ...(getRatio >= 0.999 ? [] : [`only ${(getRatio * 100).toFixed(3)} % of Get calls succeeded`]),
  ...(twice.length === 0 ? [] : [`Put executed twice: ${twice.join(",")}`]),
  ...(notOnce.length === 0 ? [] : [`Put counted ok but not executed exactly once: ${notOnce.join(",")}`]),
];
const { put_ok_ids: _ids, ...figures } = report;
console.log(JSON.stringify({ ...figures, put_executed: executed.size, get_success_ratio: getRatio }));
if (problems.length > 0) {
  console.error(problems.join("\n"));
  process.exit(1);
}
