/**
 * The bundled pages in headless Chromium (Playwright over the system's
 * chromium, `$CHROMIUM`), on a nats-server with a WebSocket listener.
 *
 * The client page, against the Rust, TypeScript (Node) and Python order
 * services one after the other: every call it makes, each typed error as the
 * generated checker recognised it (code, message, data), the endpoints from
 * ADR-32 discovery, and a screenshot of the rendered results.
 *
 * The service page, called by the Rust order client over plain NATS: the
 * client prints what it prints against the Rust service, and the page
 * counted the requests.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync } from "node:fs";
import type { Server } from "node:http";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, test } from "node:test";

import { type Browser, chromium, type Page } from "playwright-core";

import { LANGUAGES, OrderService, REPO, serveDirectory, SITE_DIR, startWebSocketNats, type WebSocketNats } from "./harness.js";

const CHROMIUM = process.env["CHROMIUM"] ?? "/usr/bin/chromium";
const SCREENSHOTS = join(REPO, "target", "browser");

/** The calls table, row by row: call, outcome, code, recognised by, message, data. */
const EXPECTED_CALLS = [
  ["place order", "ok", "", "", "placed ord-1 for 3998 cents (trace browser-1)", ""],
  ["look up order", "ok", "", "", "found ord-1 with 1 item(s)", ""],
  ["expired cart", "error", "ORDER_EXPIRED", "isOrderServiceOrderExpired", "order expired after 30 minutes", ""],
  ["declined card", "error", "PAYMENT_FAILED", "isOrderServicePaymentFailed", "the card was declined", ""],
  ["sold out", "error", "STOCK_UNAVAILABLE", "isOrderServiceStockUnavailable", "an item is out of stock", "sold-out"],
  ["empty order", "error", "INVALID_ARGUMENT", "isOrderServiceInvalidArgument", "an order needs at least one item", ""],
  ["unknown order", "error", "NOT_FOUND", "isOrderServiceNotFound", "no order ord-404", ""],
  ["stalled service", "error", "DEADLINE_EXCEEDED", "isOrderServiceDeadlineExceeded, isTimeout()", "no reply before the deadline", ""],
  ["nobody home", "error", "UNAVAILABLE", "isOrderServiceUnavailable, isNoResponders()", "no responders on the subject", ""],
];

const EXPECTED_ENDPOINTS = [
  { endpoint: "create_order", subject: "api.v1.create_order" },
  { endpoint: "get_order", subject: "api.v1.get_order" },
];

let nats: WebSocketNats;
let site: { server: Server; url: string };
let browser: Browser;
const running = new Set<OrderService>();

// Nothing outlives the test run, however it ends.
process.once("exit", () => {
  for (const service of running) {
    service.kill();
  }
  nats?.server.stop();
});

before(async () => {
  nats = await startWebSocketNats();
  site = await serveDirectory(SITE_DIR);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, timeout: 30_000 });
  mkdirSync(SCREENSHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  site?.server.close();
  nats?.server.stop();
});

/** Share of the PNG's pixels that are not near-white, decoded by the browser itself. */
async function inkedShare(png: Buffer): Promise<{ width: number; height: number; inked: number }> {
  const page = await browser.newPage();
  try {
    return await page.evaluate(async (base64) => {
      const image = new Image();
      image.src = `data:image/png;base64,${base64}`;
      await image.decode();
      const canvas = document.createElement("canvas");
      canvas.width = image.width;
      canvas.height = image.height;
      const context = canvas.getContext("2d");
      if (context === null) {
        throw new Error("no 2d canvas");
      }
      context.drawImage(image, 0, 0);
      const { data } = context.getImageData(0, 0, image.width, image.height);
      let inked = 0;
      for (let i = 0; i < data.length; i += 4) {
        if ((data[i] ?? 255) < 200 || (data[i + 1] ?? 255) < 200 || (data[i + 2] ?? 255) < 200) {
          inked += 1;
        }
      }
      return { width: image.width, height: image.height, inked: inked / (image.width * image.height) };
    }, png.toString("base64"));
  } finally {
    await page.close();
  }
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Screenshots the page and its results table (`table`, `rows` rows) and checks both are PNGs with something drawn. */
async function checkScreenshots(page: Page, name: string, table: string, rows: number): Promise<void> {
  const path = join(SCREENSHOTS, `${name}.png`);
  const full = await page.screenshot({ path, fullPage: true });
  assert.deepEqual(full.subarray(0, 8), PNG_SIGNATURE, `${path} is not a PNG`);
  assert.ok(full.length > 10_000, `${path} is only ${full.length} bytes`);
  const whole = await inkedShare(full);
  assert.ok(whole.width >= 800 && whole.height >= 400, `${path} is ${whole.width}x${whole.height}`);
  assert.ok(whole.inked > 0.005, `${path} is blank (${(whole.inked * 100).toFixed(1)}% ink)`);
  // The results table alone: one rendered line per row, with text on it (about 8% ink; its borders and
  // header shading are lighter than the threshold, so an empty table has under 1%).
  const shot = await page.locator(table).screenshot({ path: join(SCREENSHOTS, `${name}-table.png`) });
  const results = await inkedShare(shot);
  assert.ok(results.height >= (rows + 1) * 20, `${table} is only ${results.height} px high`);
  assert.ok(results.inked > 0.03 && results.inked < 0.5, `${table} is ${(results.inked * 100).toFixed(1)}% ink`);
}

/**
 * Opens `path` of the site, connected to the nats-server's WebSocket, and waits until `#status` is in `state`
 * (or failed). `pageErrors` collects uncaught errors and console errors.
 */
async function openPage(path: string, state: string): Promise<{ page: Page; pageErrors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const pageErrors: string[] = [];
  page.on("pageerror", (err) => pageErrors.push(err.message));
  page.on("console", (message) => {
    if (message.type() === "error") {
      pageErrors.push(message.text());
    }
  });
  await page.goto(`${site.url}${path}?ws=${encodeURIComponent(nats.wsUrl)}`);
  const status = page.locator(`#status[data-state="${state}"], #status[data-state="failed"]`);
  await status.waitFor({ timeout: 20_000 });
  assert.equal(await status.getAttribute("data-state"), state, `the page failed: ${await status.textContent()}`);
  return { page, pageErrors };
}

for (const language of LANGUAGES) {
  test(`the page calls the ${language} order service over NATS WebSocket`, { timeout: 90_000 }, async () => {
    const service = await OrderService.start(language, nats.url);
    running.add(service);
    const { page, pageErrors } = await openPage("/", "done");
    try {

      const endpoints = await page.$$eval("#endpoints tbody tr", (rows) =>
        rows.map((row) => ({ endpoint: row.dataset["endpoint"], subject: row.dataset["subject"] })),
      );
      assert.deepEqual(endpoints, EXPECTED_ENDPOINTS);
      const calls = await page.$$eval("#calls tbody tr", (rows) =>
        rows.map((row) => Array.from(row.querySelectorAll("td"), (cell) => cell.textContent ?? "")),
      );
      assert.deepEqual(calls, EXPECTED_CALLS);
      assert.ok(await page.locator('#calls tr[data-call="sold out"]').isVisible(), "the results are not visible");
      assert.deepEqual(pageErrors, []);
      await checkScreenshots(page, `order-page-${language}`, "#calls", EXPECTED_CALLS.length);
    } finally {
      await page.close();
      running.delete(service);
      const code = await service.stop();
      assert.equal(code, 0, `the ${language} order service did not stop cleanly:\n${service.output}`);
    }
  });
}

/** What examples' Rust order client prints, one line per call, calling whatever serves on the nats-server. */
async function runRustClient(): Promise<string[]> {
  const { stdout } = await promisify(execFile)(join(REPO, "target", "debug", "order_client"), {
    env: { ...process.env, NATS_URL: nats.url },
    timeout: 30_000,
  });
  return stdout.trimEnd().split("\n");
}

test("the Rust order client gets from the page's service what it gets from the Rust one", { timeout: 90_000 }, async () => {
  // The reference: the Rust service (examples/tests/example.rs pins its lines).
  const service = await OrderService.start("rust", nats.url);
  running.add(service);
  const expected = await runRustClient().finally(() => running.delete(service));
  assert.equal(await service.stop(), 0, `the Rust order service did not stop cleanly:\n${service.output}`);
  for (const typed of ["ORDER_EXPIRED", "PAYMENT_FAILED", "drop item sold-out", "INVALID_ARGUMENT", "NOT_FOUND (no order ord-404)"]) {
    assert.ok(expected.some((line) => line.includes(typed)), `${typed} missing from the reference:\n${expected.join("\n")}`);
  }

  const { page, pageErrors } = await openPage("/service.html", "serving");
  try {
    assert.deepEqual(await runRustClient(), expected);
    // The page served them all: 5 CreateOrder (4 failing) and 2 GetOrder (1 failing).
    await page.locator('#endpoints tr[data-endpoint="create_order"][data-requests="5"][data-errors="4"]').waitFor({ timeout: 5_000 });
    await page.locator('#endpoints tr[data-endpoint="get_order"][data-requests="2"][data-errors="1"]').waitFor({ timeout: 5_000 });
    assert.deepEqual(pageErrors, []);
    await checkScreenshots(page, "order-service-page", "#endpoints", 2);
  } finally {
    await page.close();
  }
});
