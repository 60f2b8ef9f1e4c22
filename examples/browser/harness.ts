/**
 * What the browser example's test and `serve` share: a nats-server with a
 * WebSocket listener on loopback, the order service of each language as a
 * child process, and a static HTTP server for the bundled page.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { extname, join } from "node:path";

import { freePort, NatsServer, REPO, within } from "../../runtime-ts/test/harness.js";

export { REPO };

/** The bundled pages (index.html with app.js, service.html with service.js, style.css), written by examples/browser/run. */
export const SITE_DIR = join(REPO, "examples", "browser", "dist");

/** A nats-server whose clients connect on `url` (TCP) or on `wsUrl` (WebSocket, no TLS), both on loopback. */
export interface WebSocketNats {
  server: NatsServer;
  url: string;
  wsUrl: string;
}

export async function startWebSocketNats(): Promise<WebSocketNats> {
  const wsPort = await freePort();
  // snippet: websocket
  const config = `websocket { listen: "127.0.0.1:${wsPort}", no_tls: true }`;
  // end snippet
  const server = await NatsServer.start(config);
  return { server, url: server.url, wsUrl: `ws://127.0.0.1:${wsPort}` };
}

/** The order service of examples/ in each language, as its example runs it; `ready` matches its first line once serving. */
const ORDER_SERVICES = {
  rust: { command: join(REPO, "target", "debug", "order_server"), args: [], env: {}, ready: /^serving /m },
  typescript: { command: process.execPath, args: [join(REPO, "examples", "ts", "dist", "server.js")], env: {}, ready: /^ready /m },
  python: {
    command: join(REPO, ".venv", "bin", "python"),
    args: [join(REPO, "examples", "python", "order_server.py")],
    env: { PYTHONPATH: join(REPO, "target", "python-example") },
    ready: /^serving /m,
  },
} as const;

export type Language = keyof typeof ORDER_SERVICES;
export const LANGUAGES = Object.keys(ORDER_SERVICES) as Language[];

/** An order service process; {@link OrderService.stop} stops it gracefully (SIGTERM). */
export class OrderService {
  readonly language: Language;
  readonly #child: ChildProcess;
  readonly #exited: Promise<number | null>;
  /** Everything it printed (stdout and stderr), for failure messages. */
  output = "";

  private constructor(language: Language, child: ChildProcess) {
    this.language = language;
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    child.stdout?.on("data", (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (this.output += chunk.toString()));
  }

  /** Starts the `language` order service on `natsUrl` and waits until it serves. */
  static async start(language: Language, natsUrl: string): Promise<OrderService> {
    const { command, args, env, ready } = ORDER_SERVICES[language];
    const child = spawn(command, args, { env: { ...process.env, ...env, NATS_URL: natsUrl }, stdio: ["ignore", "pipe", "pipe"] });
    const service = new OrderService(language, child);
    const serving = new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (ready.test(service.output)) {
          resolve();
        }
      };
      child.stdout.on("data", check);
      child.once("error", reject);
      void service.#exited.then((code) => reject(new Error(`the ${language} order service exited (${code}) before serving:\n${service.output}`)));
    });
    try {
      await within(30_000, serving, `starting the ${language} order service`);
    } catch (err) {
      child.kill("SIGKILL");
      throw err;
    }
    return service;
  }

  /** Stops it with SIGTERM and returns its exit code (null when it had to be killed after 10 s). */
  async stop(): Promise<number | null> {
    if (this.#child.exitCode !== null) {
      return this.#child.exitCode;
    }
    this.#child.kill("SIGTERM");
    try {
      return await within(10_000, this.#exited, `stopping the ${this.language} order service`);
    } catch {
      this.#child.kill("SIGKILL");
      return null;
    }
  }

  /** Kills it at once (exit handlers: nothing may outlive the test). */
  kill(): void {
    this.#child.kill("SIGKILL");
  }
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
};

/** Serves the files of `dir` (not its subdirectories) on a free loopback port; `/` is index.html. */
export async function serveDirectory(dir: string): Promise<{ server: Server; url: string }> {
  const files = new Set(readdirSync(dir));
  const server = createServer((request, response) => {
    const path = new URL(request.url ?? "/", "http://localhost").pathname;
    const name = path === "/" ? "index.html" : path.slice(1);
    if (request.method !== "GET" || !files.has(name)) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "content-type": CONTENT_TYPES[extname(name)] ?? "application/octet-stream" });
    response.end(readFileSync(join(dir, name)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") {
    throw new Error(`the page server listens on ${String(address)}`);
  }
  return { server, url: `http://127.0.0.1:${address.port}` };
}
