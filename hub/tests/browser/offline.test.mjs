// The browser terminal runs on the client library, so the field check exercises what apps
// embed: the hub is killed with SIGKILL while a terminal is editing an order, a line is added
// while it is down (kept in the page's outbox, in localStorage), and when the hub is back on
// the same database the page reconnects by itself and the line reaches the hub, once.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import net from "node:net";
import { chromium } from "playwright-core";

const ROOT = resolve(import.meta.dirname, "../../..");
const BIN = process.env.POSHUB_BIN || join(ROOT, "target/debug/poshub");
const SHOTS = join(ROOT, "target/browser");
const procs = new Set();
let browser;
after(async () => { await browser?.close(); for (const p of procs) p.kill("SIGKILL"); });

function freePort() {
  return new Promise((ok, fail) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => ok(p)); });
    s.on("error", fail);
  });
}

async function startHub(env, base) {
  const p = spawn(BIN, ["serve", "--demo"], { env, stdio: ["ignore", "ignore", "inherit"] });
  procs.add(p);
  p.on("exit", () => procs.delete(p));
  const end = Date.now() + 10000;
  for (;;) {
    try { if ((await fetch(base + "/health")).ok) return p; } catch { /* not yet */ }
    if (Date.now() > end) throw new Error("hub did not become healthy");
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("a line added while the hub is down reaches it when it is back, once", async () => {
  const [wsPort, httpPort] = [await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), "poshub-offline-"));
  const env = { ...process.env, HUB_BIND: "127.0.0.1", HUB_PORT: String(wsPort), HUB_HTTP_PORT: String(httpPort),
    HUB_DB_PATH: join(dir, "hub.redb"), HUB_MDNS_ENABLED: "false", HUB_LOG_LEVEL: "error" };
  const base = `http://127.0.0.1:${httpPort}`;
  let hub = await startHub(env, base);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
  mkdirSync(SHOTS, { recursive: true });
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  await page.goto(`${base}/terminal?terminal=till-O&name=Olga`);
  await page.getByTestId("status").filter({ hasText: "online" }).waitFor({ timeout: 10000 });
  await page.getByTestId("new-order").click();
  await page.getByTestId("lease").filter({ hasText: "editing" }).waitFor();
  await page.getByRole("button", { name: /Burger/ }).click();
  const ref = (await page.getByTestId("order-ref").textContent()).trim();
  const stored = async () => { const r = await fetch(`${base}/orders/${encodeURIComponent(ref)}`); return r.ok ? r.json() : null; };
  for (let i = 0; i < 100 && (await stored())?.snapshot.lines.length !== 1; i++) await new Promise((r) => setTimeout(r, 50));
  const before = await stored(); // v1: the new order, v2: with the burger
  assert.equal(before.snapshot.lines.length, 1);

  const gone = new Promise((r) => hub.once("exit", r));
  hub.kill("SIGKILL");
  await gone;
  await page.getByTestId("status").filter({ hasNotText: "online" }).waitFor({ timeout: 10000 });
  await page.getByRole("button", { name: /Coffee/ }).click();
  await page.getByTestId("total").filter({ hasText: "17.05" }).waitFor();
  const kept = await page.evaluate(() => JSON.parse(localStorage.getItem("poshub.outbox.till-O") || "[]").length);
  assert.equal(kept, 1, "the offline write is in the page's outbox");

  hub = await startHub(env, base);
  await page.getByTestId("status").filter({ hasText: "online" }).waitFor({ timeout: 15000 });
  for (let i = 0; i < 200 && (await stored()).version === before.version; i++) await new Promise((r) => setTimeout(r, 50));
  const after2 = await stored();
  assert.equal(after2.version, before.version + 1, "applied once");
  assert.deepEqual(after2.snapshot.lines.map((l) => l.name), ["Burger", "Coffee"]);
  assert.equal(await page.evaluate(() => JSON.parse(localStorage.getItem("poshub.outbox.till-O") || "[]").length), 0);
  await page.screenshot({ path: join(SHOTS, "terminal-after-outage.png") });
});
