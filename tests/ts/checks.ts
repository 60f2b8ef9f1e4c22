/**
 * The scripts in tests/ts are compiled by tests/tests/ts_interop.rs next to
 * the TypeScript it generates into `./gen` (protoc-gen-es and this plugin).
 *
 * Runs named checks against a NATS server: prints `ok NAME` or `FAILED NAME`
 * per check and a closing `N passed, N failed` line; exits 1 on a failure.
 */

import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";

/** A named check on a connection; it fails by throwing. */
export type Check = [string, (nc: NatsConnection) => Promise<void>];

export async function runChecks(url: string, checks: readonly Check[]): Promise<void> {
  const nc = await connect({ servers: url });
  let failed = 0;
  for (const [name, check] of checks) {
    try {
      await check(nc);
      console.log(`ok ${name}`);
    } catch (err) {
      failed += 1;
      console.log(`FAILED ${name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
  }
  console.log(`${checks.length - failed} passed, ${failed} failed`);
  await nc.close();
  process.exitCode = failed === 0 ? 0 : 1;
}
