/**
 * Serves `store.v1.ProfileService` (proto/store/v1/store.proto) with its
 * persistence (PROTOCOL §12), for the cross-language persistence tests:
 * Save/Create/Update/TouchProfile return the profile with `version` = how
 * many calls with that id this process has seen (name `reject`: the custom
 * error PROFILE_REJECTED, nothing persisted); OpenSession answers the key
 * its response is kept under; Annotate echoes; GenerateReport makes
 * pattern(0) of `size` bytes; Upload hashes what it receives as it streams;
 * Download streams pattern(seed), made on the fly, failing with UNAVAILABLE
 * "cut" once `fail_after` bytes went out when that is set.
 *
 * usage: NATS_URL=nats://... node store_server.js. Prints `ready ID` once
 * serving (its buckets created); stops on SIGTERM or when stdin closes.
 */

import { connect } from "@nats-io/transport-node";
import { registerProfileServiceHandlers } from "./gen/store/v1/store_nats.pb.js";
import { storeHandlers } from "./store_handlers.js";

const url = process.env["NATS_URL"] ?? "nats://127.0.0.1:4222";
const nc = await connect({ servers: url });
const service = await registerProfileServiceHandlers(nc, storeHandlers());
console.log(`ready ${service.id}`);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) {
    return;
  }
  stopping = true;
  await service.stop({ drainTimeout: 2_000 });
  await nc.drain();
  process.exit(0);
}
process.on("SIGTERM", () => void stop());
process.stdin.on("end", () => void stop());
process.stdin.resume();
