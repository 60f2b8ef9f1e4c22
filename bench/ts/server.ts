/**
 * The generated TypeScript contender's server (bench/src/external.rs): the
 * generated EchoService, echoing the payload back.
 *
 * usage: node server.js NATS_URL. Prints `ready` once serving; stops when
 * stdin closes.
 */

import { connect } from "@nats-io/transport-node";
import { registerEchoServiceHandlers, type IEchoServiceNats } from "./gen/bench/v1/echo_nats.pb.js";

const echo: IEchoServiceNats = {
  echo(request) {
    return { payload: request.payload };
  },
};

const nc = await connect({ servers: process.argv[2] ?? "" });
const service = await registerEchoServiceHandlers(nc, echo);
await nc.flush();
console.log("ready");
process.stdin.resume();
process.stdin.on("end", () => {
  void service.stop().then(() => nc.close());
});
