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
