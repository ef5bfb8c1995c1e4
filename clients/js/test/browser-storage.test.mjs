// The browser storages in headless Debian Chromium (as installed by .ci/checks/browser.sh):
// the library's built ES modules are served (intercepted by the test, on the hub's origin) to a
// page of the hub; `localStorageStorage`
// and `indexedDbStorage` are written, the page is reloaded and read back, and a HubClient in
// the page with its outbox in IndexedDB writes an order to the real hub. Skips (saying why)
// when /usr/bin/chromium is absent.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { Hub } from "./hub.mjs";

const DIST = join(fileURLToPath(new URL(".", import.meta.url)), "../dist");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

test("localStorage and IndexedDB storages persist across a reload; an IndexedDB outbox writes to the hub", async (t) => {
  if (!existsSync(CHROMIUM)) { t.skip(`no Chromium at ${CHROMIUM}`); return; }
  const hub = new Hub();
  await hub.start();
  t.after(() => hub.stop());
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"] });
  t.after(() => browser.close());
  const page = await browser.newPage();
  const pageLog = [];
  page.on("console", (m) => pageLog.push(m.text()));
  t.after(() => { if (pageLog.length) console.log(`page console:\n  ${pageLog.slice(-10).join("\n  ")}`); });
  await page.route(`${hub.http}/__test/**`, (route) => {
    const path = new URL(route.request().url()).pathname;
    return route.fulfill({ contentType: "text/javascript", body: readFileSync(join(DIST, path.slice("/__test/lib/".length))) });
  });
  // The document itself comes from the hub (a served page is "local", which lets it open the
  // WebSocket; a document made up by the test would be blocked by local-network checks).
  await page.goto(`${hub.http}/health`);
  await page.evaluate(async () => {
    const lib = await import("/__test/lib/index.js");
    await lib.localStorageStorage("t.").set("cursor.x", "41");
    const idb = lib.indexedDbStorage("poshub-test");
    await idb.set("outbox.x", "[1,2]");
    await idb.set("gone", "soon");
    await idb.remove("gone");
  });
  await page.reload();
  const back = await page.evaluate(async () => {
    const lib = await import("/__test/lib/index.js");
    const idb = lib.indexedDbStorage("poshub-test");
    return { ls: lib.localStorageStorage("t.").get("cursor.x"), idb: await idb.get("outbox.x"), gone: (await idb.get("gone")) ?? null };
  });
  assert.deepEqual(back, { ls: "41", idb: "[1,2]", gone: null });

  // A client in the page, outbox in IndexedDB, against the real hub.
  const r = await page.evaluate(async ({ url, token }) => {
    const lib = await import("/__test/lib/index.js");
    const storage = lib.indexedDbStorage("poshub-test");
    const c = new lib.HubClient({ url, terminalId: "web-1", token, storage });
    await new Promise((ok, fail) => {
      c.on("authenticated", ok);
      setTimeout(() => fail(new Error(`not connected after 10 s: ${c.status}`)), 10000);
      c.start();
    });
    await c.acquireLease("W-1");
    const snap = { posReference: "W-1", state: "draft", lines: [{ id: "l1", productId: 1, quantity: 1, unitPrice: 2 }], paymentLines: [] };
    const p = c.writeOrder(snap, 0);
    const queued = JSON.parse(await storage.get("outbox.web-1")).length;
    const res = await p;
    const left = JSON.parse(await storage.get("outbox.web-1")).length;
    c.stop();
    return { queued, kind: res.kind, left };
  }, { url: hub.http.replace("http", "ws") + "/ws", token: hub.token("web-1") });
  assert.deepEqual(r, { queued: 1, kind: "ack", left: 0 });
  assert.equal((await hub.get("/orders/W-1")).version, 1);
});
