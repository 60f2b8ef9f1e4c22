/**
 * Serves the browser example by hand: a nats-server with a WebSocket
 * listener, the Rust order service and the bundled page, all on loopback
 * until Ctrl-C. Prints the address to open.
 */

import { OrderService, serveDirectory, SITE_DIR, startWebSocketNats } from "./harness.js";

const nats = await startWebSocketNats();
const service = await OrderService.start("rust", nats.url);
const site = await serveDirectory(SITE_DIR);
console.log(`nats-server on ${nats.url} and ${nats.wsUrl}; the Rust order service is serving`);
const ws = `?ws=${encodeURIComponent(nats.wsUrl)}`;
console.log(`open ${site.url}/${ws}   (Ctrl-C stops)`);
console.log(`the service page: ${site.url}/service.html${ws} (it shares the requests with the Rust service: same queue group)`);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    site.server.close();
    void service.stop().then(() => nats.server.stop());
  });
}
