// The browser terminal runs on the client library, so the field check exercises what apps
// embed: the hub is killed with SIGKILL while a terminal is editing an order, a line is added
// while it is down (kept in the page's outbox, in localStorage), and when the hub is back on
// the same database the page reconnects by itself and the line reaches the hub, once.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { SHOTS, hubSettings, startHub, launchBrowser, killHubs } from "./harness.mjs";

let browser;
after(async () => { await browser?.close(); killHubs(); });

test("a line added while the hub is down reaches it when it is back, once", async () => {
  const { env, base } = await hubSettings("poshub-offline-", "error");
  let hub = await startHub(env, base);
  browser = await launchBrowser();
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
