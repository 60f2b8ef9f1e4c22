/** What both pages (the client, app.ts, and the service, service.ts) do to the document. */

export function element<T extends HTMLElement>(selector: string): T {
  const found = document.querySelector<T>(selector);
  if (found === null) {
    throw new Error(`the page has no ${selector}`);
  }
  return found;
}

/** Appends a row of `cells` to the body of `table`, with `attributes` as its `data-*` attributes. */
export function addRow(table: string, cells: readonly string[], attributes: Readonly<Record<string, string>>): void {
  const row = element<HTMLTableSectionElement>(`${table} tbody`).insertRow();
  for (const [name, value] of Object.entries(attributes)) {
    row.dataset[name] = value;
  }
  for (const text of cells) {
    row.insertCell().textContent = text;
  }
}

/** Sets `#status`: its `data-state` (what the test waits for) and its text. */
export function setStatus(state: string, text: string): void {
  const status = element<HTMLParagraphElement>("#status");
  status.dataset["state"] = state;
  status.textContent = text;
}

/** Shows an uncaught failure in `#status` (state `failed`) rather than only in the console. */
export function showFailure(err: unknown): void {
  setStatus("failed", `failed: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
}

/** The nats-server WebSocket address: `?ws=ws://HOST:PORT`, default ws://127.0.0.1:8080. */
export function webSocketServer(): string {
  return new URLSearchParams(location.search).get("ws") ?? "ws://127.0.0.1:8080";
}
