// Drives the hub's own pages in headless Debian Chromium, as a field tech would: two browser
// terminals on a `serve --demo` hub, an order made in one appears live in the other and on the
// dashboard. Run: `npm install && node --test` (needs /usr/bin/chromium and a built poshub).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { SHOTS, hubSettings, startHub, launchBrowser, killHubs } from "./harness.mjs";

let browser, base;

before(async () => {
  const hub = await hubSettings("poshub-browser-");
  base = hub.base;
  await startHub(hub.env, base);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  killHubs();
});

async function terminal(id, name) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  await page.goto(`${base}/terminal?terminal=${id}&name=${name}`);
  await page.getByTestId("status").filter({ hasText: "online" }).waitFor({ timeout: 10000 });
  return page;
}

test("an order made on one terminal shows up live on the other and on the dashboard", async (t) => {
  const a = await terminal("till-A", "Ann");
  const b = await terminal("till-B", "Bob");
  const dash = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
  t.after(async () => {
    await a.screenshot({ path: join(SHOTS, "last-terminal-a.png") }).catch(() => {});
    await b.screenshot({ path: join(SHOTS, "last-terminal-b.png") }).catch(() => {});
  });
  await dash.goto(`${base}/dashboard`);
  await dash.getByTestId("open-warning").waitFor({ state: "visible", timeout: 10000 });

  // Till A seats table 3 and orders a burger and a coffee.
  await a.locator("[data-table='3']").click();
  await a.getByTestId("new-order").click();
  await a.getByTestId("lease").filter({ hasText: "editing" }).waitFor();
  await a.getByRole("button", { name: /Burger/ }).click();
  await a.getByRole("button", { name: /Coffee/ }).click();
  await a.getByTestId("total").filter({ hasText: "17.05" }).waitFor();
  const ref = (await a.getByTestId("order-ref").textContent()).trim();
  assert.ok(ref.startsWith("till-A-"), ref);

  // Till B sees it arrive with its two lines, and table 3 turns occupied. (Generous timeouts:
  // CI runs this on 2 busy cores; a failure leaves screenshots in target/browser/.)
  const row = b.locator(`[data-order='${ref}']`);
  await row.filter({ hasText: "2 items" }).waitFor({ timeout: 15000 });
  await b.locator("[data-table='3']").filter({ hasText: "occupied" }).waitFor({ timeout: 15000 });
  // Till B can look but not edit: the lease is A's.
  await row.click();
  await b.getByTestId("notice").filter({ hasText: "Ann" }).waitFor({ timeout: 15000 });
  assert.equal(await b.getByRole("button", { name: /Burger/ }).isDisabled(), true);

  // The dashboard shows table 3 occupied, under the name the terminals' floor plan gives it.
  await dash.locator("#tables .tbl.occupied").filter({ hasText: "T3" }).waitFor({ timeout: 15000 });

  // A takes payment; B sees the order paid and the table free again.
  await a.getByTestId("pay").click();
  await row.locator("[data-state]").filter({ hasText: "paid" }).waitFor({ timeout: 15000 });
  await b.locator("[data-table='3']").filter({ hasText: "available" }).waitFor({ timeout: 15000 });

  // The dashboard lists the order as paid, with both terminals connected.
  await dash.locator(`[data-order='${ref}']`).filter({ hasText: "paid" }).waitFor({ timeout: 15000 });
  await dash.locator("#terminals").filter({ hasText: "till-B" }).waitFor({ timeout: 15000 });
  assert.equal((await dash.locator("#k-terminals").textContent()).trim(), "2");

  await a.screenshot({ path: join(SHOTS, "terminal-a.png") });
  await b.screenshot({ path: join(SHOTS, "terminal-b.png") });
  await dash.screenshot({ path: join(SHOTS, "dashboard.png") });

  // The order really is stored on the hub.
  const stored = await (await fetch(`${base}/orders/${encodeURIComponent(ref)}`)).json();
  assert.equal(stored.snapshot.state, "paid");
  assert.equal(stored.snapshot.lines.length, 2);
});
