/**
 * The order service served from a web page: examples/ts's InMemoryOrders,
 * registered over NATS WebSocket (`?ws=`) with the generated registration,
 * as server.ts does in Node. Any client on the nats-server calls it. `#status`
 * gets `data-state="serving"`; the endpoints table shows the service's own
 * statistics, refreshed as requests arrive.
 */

import { wsconnect } from "@nats-io/nats-core";
import { registerOrderServiceHandlers } from "../ts/gen/order/v1/order_nats.pb.js";
import { InMemoryOrders } from "../ts/orders.js";
import { addRow, element, setStatus, showFailure, webSocketServer } from "./dom.js";

/** How often the statistics table is redrawn. */
const REFRESH_MS = 200;

async function main(): Promise<void> {
  const server = webSocketServer();
  const nc = await wsconnect({ servers: server });
  const service = await registerOrderServiceHandlers(nc, new InMemoryOrders(), { mergeMetadata: { language: "browser" } });
  setStatus("serving", `serving ${service.info().name} (id ${service.id}) over ${server}`);

  const refresh = (): void => {
    element<HTMLTableSectionElement>("#endpoints tbody").replaceChildren();
    for (const endpoint of service.stats().endpoints) {
      const [requests, errors] = [String(endpoint.num_requests), String(endpoint.num_errors)];
      addRow("#endpoints", [endpoint.name, endpoint.subject, requests, errors, endpoint.last_error], { endpoint: endpoint.name, requests, errors });
    }
  };
  refresh();
  setInterval(refresh, REFRESH_MS);
}

main().catch(showFailure);
