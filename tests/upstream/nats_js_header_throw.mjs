// Minimal reproduction for an upstream nats.js report (@nats-io/nats-core 3.3.0,
// @nats-io/transport-node 3.3.0).
//
// `Msg.headers` decodes the header block lazily and throws
// (`InvalidArgumentError: 'header' ' ' is not a valid character in a header
// name`, or `values cannot contain \r or \n`) on blocks that nats-server
// forwards unchanged from any client's `HPUB`. Read inside a subscription
// callback, as most code does, the exception propagates out of
// `ProtocolHandler.processMsg` into the transport's read loop, which logs
// `reader closed` and stops: the connection still reports itself open
// (`isClosed() === false`) but delivers nothing any more, to any
// subscription.
//
// Run: `node tests/upstream/nats_js_header_throw.mjs nats://127.0.0.1:4222`
// from the repository root (prints BROKEN with nats-core 3.3.0).
// nats-micro-runtime contains this: it validates the raw header block itself
// before touching `Msg.headers` and never lets an exception leave its
// callbacks (see `headerBlockProblem` in runtime-ts/src/headers.ts). This
// script uses plain nats.js and a TCP socket only.

import { connect as tcpConnect } from "node:net";
import { connect } from "@nats-io/transport-node";

const url = new URL(process.argv[2] ?? "nats://127.0.0.1:4222");
const nc = await connect({ servers: url.host });
const received = [];
nc.subscribe("repro", {
  callback: (_err, msg) => {
    msg.headers; // throws on the malformed block
    received.push(msg.string());
  },
});
await nc.flush();

const socket = tcpConnect(Number(url.port), url.hostname);
await new Promise((resolve) => socket.once("data", resolve)); // INFO
const block = "NATS/1.0\r\nX Bad: v\r\n\r\n"; // a space in a header name
socket.write('CONNECT {"verbose":false,"headers":true,"protocol":1}\r\n');
socket.write(`HPUB repro ${block.length} ${block.length + 3}\r\n${block}bad\r\n`); // the malformed message
socket.write("PUB repro 5\r\nafter\r\nPING\r\n"); // a normal one after it
await new Promise((resolve) => setTimeout(resolve, 1000));

console.log("closed:", nc.isClosed(), "received:", received);
console.log(received.includes("after") ? "OK" : "BROKEN");
socket.destroy();
await nc.close().catch(() => undefined);
process.exit(0);
