// A minimal POS app on top of the client, as the tests (and the README) use it: it keeps the
// orders it has applied and records every seq it applied, so a duplicate apply shows.
import WebSocket from "ws";
import { HubClient, memoryStorage } from "../dist/index.js";
import { until } from "./hub.mjs";

export function makeTerminal(hub, terminalId, opts = {}) {
  const app = { orders: new Map(), applied: [], states: 0, resyncs: 0, conflicts: [], revoked: [], errors: [] };
  const client = new HubClient({
    url: hub.url, terminalId, token: hub.token(terminalId), WebSocket,
    storage: opts.storage ?? memoryStorage(),
    backoff: { initialMs: 100, maxMs: 1000, ...(opts.backoff ?? {}) },
    applyEvent(ev) {
      app.applied.push(ev.seq);
      if (ev.type !== "ORDER_UPDATED") return;
      const cur = app.orders.get(ev.posReference);
      if (!cur || cur.version < ev.version) app.orders.set(ev.posReference, { version: ev.version, snapshot: ev.snapshot });
    },
    replaceState(s) {
      app.states += 1;
      app.orders = new Map(s.orders.map((o) => [o.posReference, { version: o.version, snapshot: o.snapshot }]));
    },
    ...opts.client,
  });
  client.on("ack", (entry, ack) => {
    const cur = app.orders.get(entry.posReference);
    if (!cur || cur.version < ack.version) app.orders.set(entry.posReference, { version: ack.version, snapshot: entry.snapshot });
  });
  client.on("resync", () => { app.resyncs += 1; });
  client.on("conflict", (c) => { app.conflicts.push(c); app.orders.set(c.posReference, { version: c.currentVersion, snapshot: c.snapshot }); });
  client.on("leaseRevoked", (m) => app.revoked.push(m));
  client.on("error", (e) => app.errors.push(e));
  return { app, client };
}

/** An order snapshot with `n` coffees. */
export function order(ref, n, extra = {}) {
  const lines = Array.from({ length: n }, (_, i) => ({ id: `l${i}`, productId: 101, quantity: 1, unitPrice: 3.5, taxIds: [1] }));
  const subtotal = 3.5 * n;
  return { posReference: ref, state: "draft", lines, totals: { subtotal, tax: 0, total: subtotal }, paymentLines: [], ...extra };
}

/** The hub's orders as {ref: {version, snapshot}}. */
export async function hubOrders(hub) {
  const out = {};
  for (const o of (await hub.get("/orders")).orders) {
    const full = await hub.get(`/orders/${encodeURIComponent(o.posReference)}`);
    out[o.posReference] = { version: o.version, snapshot: full.snapshot };
  }
  return out;
}

export const appOrders = (app) => Object.fromEntries([...app.orders].map(([k, v]) => [k, { version: v.version, snapshot: v.snapshot }]));

/** Resolves once `client` is online (15 s at most). */
export const online = (c) => until(`${c.status} -> online`, () => c.status === "online");

/** Terminals `ids` on `hub`, started and online; stopped when test `t` ends. */
export async function onlineTerminals(t, hub, ...ids) {
  const terms = ids.map((id) => makeTerminal(hub, id));
  t.after(() => { for (const x of terms) x.client.stop(); });
  for (const x of terms) await x.client.start();
  for (const x of terms) await online(x.client);
  return terms;
}
