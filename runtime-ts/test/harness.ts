/**
 * What the runtime's tests share: a real `nats-server` on a free loopback
 * port per test, a raw NATS client on a plain TCP socket (for what
 * `@nats-io/nats-core` will not send: arbitrary header blocks, duplicated
 * headers, any reply subject), and a small service on well-known types.
 *
 * The server binary is `$NATS_SERVER`, else the one `scripts/setup`
 * installs in `.venv/bin`. A missing binary fails the tests; nothing is
 * skipped.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect as tcpConnect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { StringValueSchema } from "@bufbuild/protobuf/wkt";
import type { Msg, NatsConnection } from "@nats-io/nats-core";
import { connect, type NodeConnectionOptions } from "@nats-io/transport-node";

import type { Logger, MethodSpec, ServiceEvent, ServiceSpec } from "../src/index.js";

/**
 * The repository root: the nearest directory above this file that holds
 * `runtime-ts/package.json` (this file runs from `runtime-ts/build/test/`,
 * and from examples/browser's build directory, which imports it too).
 */
export const REPO = repositoryRoot(dirname(fileURLToPath(import.meta.url)));

function repositoryRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, "runtime-ts", "package.json"))) {
      return dir;
    }
    if (dirname(dir) === dir) {
      throw new Error(`no repository (a directory with runtime-ts/package.json) above ${start}`);
    }
  }
}

function serverBinary(): string {
  const binary = process.env["NATS_SERVER"] ?? join(REPO, ".venv", "bin", "nats-server");
  if (!existsSync(binary)) {
    throw new Error(`${binary} is missing: run \`bash scripts/setup\` (or set NATS_SERVER)`);
  }
  return binary;
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
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

/** A running `nats-server`; {@link NatsServer.stop} kills it. */
export class NatsServer {
  readonly url: string;
  readonly port: number;
  readonly #child: ChildProcess;
  readonly #configDir: string | undefined;

  private constructor(port: number, child: ChildProcess, configDir: string | undefined) {
    this.port = port;
    this.url = `nats://127.0.0.1:${port}`;
    this.#child = child;
    this.#configDir = configDir;
  }

  /**
   * Starts a server (with `config`, a nats-server configuration, if given;
   * on `port`, else a free one) and waits until it accepts connections.
   */
  static async start(config?: string, port?: number): Promise<NatsServer> {
    port ??= await freePort();
    const args = ["-a", "127.0.0.1", "-p", String(port)];
    let configDir: string | undefined;
    if (config !== undefined) {
      configDir = mkdtempSync(join(tmpdir(), "nats-micro-ts-"));
      const path = join(configDir, "server.conf");
      writeFileSync(path, config);
      args.push("-c", path);
    }
    const child = spawn(serverBinary(), args, { stdio: "ignore" });
    const server = new NatsServer(port, child, configDir);
    const started = Date.now();
    for (;;) {
      if (await accepts(port)) {
        return server;
      }
      if (Date.now() - started > 10_000 || child.exitCode !== null) {
        server.stop();
        throw new Error(`nats-server did not start on port ${port}`);
      }
      await sleep(20);
    }
  }

  /** Connects a client (`@nats-io/transport-node`). */
  connect(options: NodeConnectionOptions = {}): Promise<NatsConnection> {
    return connect({ servers: this.url, ...options });
  }

  stop(): void {
    this.#child.kill("SIGKILL");
    if (this.#configDir !== undefined) {
      rmSync(this.#configDir, { recursive: true, force: true });
    }
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects when `promise` takes longer than `ms`. */
export async function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Speaks just enough of the NATS protocol over a plain TCP socket to
 * publish anything (`HPUB` with any header block, any reply subject).
 */
export class RawClient {
  readonly #socket: Socket;
  #buffer = "";
  #waiters: (() => void)[] = [];
  /** `-ERR` lines the server sent. */
  readonly errors: string[] = [];
  #pongs = 0;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Buffer) => {
      this.#buffer += chunk.toString("latin1");
      let end: number;
      while ((end = this.#buffer.indexOf("\r\n")) >= 0) {
        const line = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 2);
        if (line === "PONG") {
          this.#pongs += 1;
        } else if (line === "PING") {
          socket.write("PONG\r\n");
        } else if (line.startsWith("-ERR")) {
          this.errors.push(line);
        }
      }
      for (const wake of this.#waiters.splice(0)) {
        wake();
      }
    });
    socket.on("close", () => {
      for (const wake of this.#waiters.splice(0)) {
        wake();
      }
    });
    socket.on("error", () => undefined);
  }

  static async connect(port: number, auth?: { user: string; pass: string }): Promise<RawClient> {
    const socket = tcpConnect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const client = new RawClient(socket);
    const credentials = auth === undefined ? "" : `,"user":${JSON.stringify(auth.user)},"pass":${JSON.stringify(auth.pass)}`;
    socket.write(`CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1${credentials}}\r\n`);
    await client.ping();
    return client;
  }

  /** Round trip: everything sent before has been processed by the server (false if the server closed the connection). */
  async ping(): Promise<boolean> {
    const want = this.#pongs + 1;
    this.#socket.write("PING\r\n");
    const started = Date.now();
    while (this.#pongs < want) {
      if (this.#socket.destroyed || this.#socket.readableEnded || Date.now() - started > 2_000) {
        return false;
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, 50);
      });
      clearTimeout(timer);
    }
    return true;
  }

  /** `HPUB subject reply hdr_len total_len`: the header block sent as is. */
  hpub(subject: string, reply: string, headerBlock: Uint8Array, payload: Uint8Array = new Uint8Array(0)): void {
    const total = headerBlock.length + payload.length;
    const head = Buffer.from(`HPUB ${subject} ${reply} ${headerBlock.length} ${total}\r\n`, "latin1");
    this.#socket.write(Buffer.concat([head, headerBlock, payload, Buffer.from("\r\n")]));
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** Collects the messages of one subscription, to wait for them. */
export class Inbox {
  readonly messages: Msg[] = [];
  #waiters: (() => void)[] = [];

  constructor(nc: NatsConnection, subject: string) {
    nc.subscribe(subject, {
      callback: (err, message) => {
        if (err === null) {
          this.messages.push(message);
          for (const wake of this.#waiters.splice(0)) {
            wake();
          }
        }
      },
    });
  }

  /** Waits until `count` messages arrived (at most `ms`). */
  async wait(count: number, ms: number): Promise<Msg[]> {
    const deadline = Date.now() + ms;
    while (this.messages.length < count) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`expected ${count} messages within ${ms} ms, got ${this.messages.length}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
    return this.messages;
  }
}

function method(name: string, endpoint: string): MethodSpec<typeof StringValueSchema, typeof StringValueSchema> {
  return { method: name, endpoint, input: StringValueSchema, output: StringValueSchema, metadata: {}, queueGroupDisabled: false };
}

/** A service on `google.protobuf.StringValue`: `Echo` (`api.test.echo`) and `Hang` (`api.test.hang`). */
export const SPEC = {
  protoName: "test.v1.TestService",
  name: "TestService",
  version: "1.0.0",
  description: "runtime tests",
  subjectPrefix: "api.test",
  metadata: {},
  json: false,
  queueGroupDisabled: false,
  methods: {
    echo: method("Echo", "echo"),
    hang: method("Hang", "hang"),
  },
} satisfies ServiceSpec;

export const ECHO_SUBJECT = "api.test.echo";
export const HANG_SUBJECT = "api.test.hang";

/** A StringValue message as bytes. */
export function stringValue(value: string): Uint8Array {
  // field 1, length-delimited
  const bytes = new TextEncoder().encode(value);
  if (bytes.length > 127) {
    throw new Error("short strings only");
  }
  return Uint8Array.from([0x0a, bytes.length, ...bytes]);
}

/**
 * A log sink that keeps what it is given: `log` for plain messages (debug
 * notes), `logger` for a service (its events are kept structured in
 * `events`, and as `<event> <json>` in `lines`, beside its warnings).
 */
export function logSink(): { lines: string[]; events: ServiceEvent[]; log: (message: string) => void; logger: Logger } {
  const lines: string[] = [];
  const events: ServiceEvent[] = [];
  const log = (message: string) => {
    lines.push(message);
  };
  const logger: Logger = {
    event: (event) => {
      events.push(event);
      lines.push(`${event.event} ${JSON.stringify(event)}`);
    },
    warn: log,
  };
  return { lines, events, log, logger };
}
