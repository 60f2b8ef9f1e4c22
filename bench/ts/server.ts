/**
 * The TypeScript contenders' server (bench/src/external.rs): the generated
 * EchoService, echoing the payload back; or, with `raw`, a plain nats.js
 * responder that sends each request's bytes back (the floor).
 *
 * usage: node server.js NATS_URL [raw]. Prints `ready` once serving; stops
 * when stdin closes.
 */

import { connect } from "@nats-io/transport-node";
import { registerEchoServiceHandlers, type IEchoServiceNats } from "./gen/bench/v1/echo_nats.pb.js";

/** The raw responder's subject (load.ts sends to it). */
const RAW_SUBJECT = "bench.raw_ts.echo";

const echo: IEchoServiceNats = {
  echo(request) {
    return { payload: request.payload };
  },
};

const [url = "", mode] = process.argv.slice(2);
const nc = await connect({ servers: url });
let stop: () => Promise<void>;
if (mode === "raw") {
  const subscription = nc.subscribe(RAW_SUBJECT, {
    callback: (err, msg) => {
      if (!err) {
        msg.respond(msg.data);
      }
    },
  });
  stop = async () => subscription.unsubscribe();
} else {
  const service = await registerEchoServiceHandlers(nc, echo);
  stop = () => service.stop();
}
await nc.flush();
console.log("ready");
process.stdin.resume();
process.stdin.on("end", () => {
  void stop().then(() => nc.close());
});
