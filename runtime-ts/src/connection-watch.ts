/** Checking that a service's connection still delivers messages. */

import type { NatsConnection } from "@nats-io/nats-core";
import { describe } from "./errors.js";

/** How often a service checks, by default, that its connection still delivers messages (milliseconds). */
export const DEFAULT_CONNECTION_CHECK_INTERVAL = 250;
/** How long a connection check waits for the server's PONG before the connection counts as deaf (milliseconds). */
const CONNECTION_CHECK_TIMEOUT = 1_000;

/**
 * Notices a connection that stopped delivering while it still reports
 * itself open, and reconnects it (the client library then subscribes again).
 * `@nats-io/nats-core` ends a connection's reader for good when anything
 * throws while it delivers a message (see
 * `tests/upstream/nats_js_header_throw.mjs`): this runtime never does, but
 * other code sharing the connection may (most simply, by reading `headers`
 * of a malformed message). One watch per connection, shared by the
 * services on it; it sends one PING per interval and does not keep the
 * process alive.
 */
export class ConnectionWatch {
  static readonly #watches = new WeakMap<NatsConnection, ConnectionWatch>();
  readonly #nc: NatsConnection;
  readonly #log: (message: string) => void;
  readonly #timer: ReturnType<typeof setInterval>;
  #users = 0;
  #probing = false;
  /** Between a disconnect and the reconnect that follows: the client library is already at work. */
  #reconnecting = false;

  private constructor(nc: NatsConnection, interval: number, log: (message: string) => void) {
    this.#nc = nc;
    this.#log = log;
    this.#timer = setInterval(() => void this.#probe(), interval);
    (this.#timer as { unref?: () => void }).unref?.();
    void (async () => {
      try {
        for await (const status of nc.status()) {
          if (this.#users === 0) {
            break;
          }
          if (status.type === "disconnect" || status.type === "reconnecting") {
            this.#reconnecting = true;
          } else if (status.type === "reconnect") {
            this.#reconnecting = false;
          }
        }
      } catch {
        // The connection closed: nothing left to watch.
      }
    })();
  }

  /** The watch of `nc`, started on first use; each call needs one {@link release}. */
  static acquire(nc: NatsConnection, interval: number, log: (message: string) => void): ConnectionWatch {
    let watch = ConnectionWatch.#watches.get(nc);
    if (watch === undefined) {
      watch = new ConnectionWatch(nc, interval, log);
      ConnectionWatch.#watches.set(nc, watch);
    }
    watch.#users += 1;
    return watch;
  }

  release(): void {
    this.#users -= 1;
    if (this.#users === 0) {
      clearInterval(this.#timer);
      ConnectionWatch.#watches.delete(this.#nc);
    }
  }

  async #probe(): Promise<void> {
    const nc = this.#nc;
    if (nc.isClosed()) {
      clearInterval(this.#timer);
      return;
    }
    if (this.#probing || this.#reconnecting || nc.isDraining()) {
      return;
    }
    this.#probing = true;
    try {
      let answered = false;
      const flushed = nc.flush().then(
        () => {
          answered = true;
        },
        () => {
          // Refused (closing, disconnected): the client library handles that itself.
          answered = true;
        },
      );
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([flushed, new Promise((resolve) => (timer = setTimeout(resolve, CONNECTION_CHECK_TIMEOUT)))]);
      clearTimeout(timer);
      if (!answered) {
        // A busy event loop may have delayed reading the PONG rather than lost it: let pending input in first.
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      if (!answered && !this.#reconnecting && !nc.isClosed() && !nc.isDraining()) {
        this.#log(`the NATS connection stopped delivering (no PONG within ${CONNECTION_CHECK_TIMEOUT} ms): reconnecting`);
        await nc.reconnect();
      }
    } catch (err) {
      this.#log(`checking the NATS connection: ${describe(err)}`);
    } finally {
      this.#probing = false;
    }
  }
}

/**
 * Whether a client's connection is up, and the calls out on it: when the
 * connection is lost, every call out fails at once (PROTOCOL §10.1)
 * instead of waiting out its timeout, since its reply cannot come. One per
 * connection, shared by every client on it, fed by the connection's status
 * events (no timer; a call costs one set insertion and removal).
 */
export class ConnectionEvents {
  static readonly #all = new WeakMap<NatsConnection, ConnectionEvents>();
  #connected = true;
  #closed = false;
  /** Fails a call out, by the call. */
  readonly #out = new Set<() => void>();
  /** Woken at the reconnect (or the close). */
  #waiting: (() => void)[] = [];

  private constructor(nc: NatsConnection) {
    void (async () => {
      try {
        for await (const status of nc.status()) {
          if (status.type === "disconnect") {
            this.#lost();
          } else if (status.type === "reconnect") {
            this.#connected = true;
            this.#wake();
          } else if (status.type === "close") {
            break;
          }
        }
      } catch {
        // The status iterator failed: treat as closed.
      }
      this.#closed = true;
      this.#lost();
    })();
    void nc.closed().then(() => {
      this.#closed = true;
      this.#lost();
    });
  }

  /** The events of `nc`, watched from first use on. */
  static of(nc: NatsConnection): ConnectionEvents {
    let events = ConnectionEvents.#all.get(nc);
    if (events === undefined) {
      events = new ConnectionEvents(nc);
      ConnectionEvents.#all.set(nc, events);
    }
    return events;
  }

  /** Whether the connection is up (as far as its status events tell). */
  get connected(): boolean {
    return this.#connected && !this.#closed;
  }

  /** `request`, or the error `lost()` makes as soon as the connection is lost while it is out. */
  guard<T>(request: Promise<T>, lost: () => unknown): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const fail = () => reject(lost());
      this.#out.add(fail);
      request.then(
        (value) => {
          this.#out.delete(fail);
          resolve(value);
        },
        (err: unknown) => {
          this.#out.delete(fail);
          reject(err);
        },
      );
    });
  }

  /**
   * Resolves `true` once the connection is up again, `false` when it closes
   * or `ms` milliseconds pass first.
   */
  whenConnected(ms: number): Promise<boolean> {
    if (this.connected) {
      return Promise.resolve(true);
    }
    if (this.#closed || ms <= 0) {
      return Promise.resolve(false);
    }
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.#waiting = this.#waiting.filter((wake) => wake !== woken);
        resolve(false);
      }, ms);
      const woken = () => {
        clearTimeout(timer);
        resolve(this.connected);
      };
      this.#waiting.push(woken);
    });
  }

  #lost(): void {
    this.#connected = false;
    const out = [...this.#out];
    this.#out.clear();
    for (const fail of out) {
      fail();
    }
    if (this.#closed) {
      this.#wake();
    }
  }

  #wake(): void {
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const wake of waiting) {
      wake();
    }
  }
}
