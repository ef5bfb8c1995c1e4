// The client library against the real hub binary (target/debug/poshub): kill -9 and restart,
// catch-up from the cursor, the outbox, leases past their TTL, RESYNC + STATE, close codes and
// the backoff. Run: npm run build && node --test test/  (POSHUB_BIN overrides the binary).
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync } from "node:fs";
import WebSocket from "ws";
import { Hub, until, sleep } from "./hub.mjs";
import { makeTerminal, online, onlineTerminals, order, hubOrders, appOrders } from "./app.mjs";
import { HubClient } from "../dist/index.js";
import { mutingProxy } from "./proxy.mjs";


test("kill -9 mid-session: reconnect, catch up from the cursor, flush the outbox, no duplicate apply", async (t) => {
  const hub = new Hub();
  await hub.start();
  t.after(() => hub.stop());
  // Terminal A can be held off the network (its address lookup waits) to make it miss events.
  let gate = Promise.resolve();
  const a = makeTerminal(hub, "till-A", { client: { url: async () => { await gate; return hub.url; } } });
  const b = makeTerminal(hub, "till-B");
  t.after(() => { a.client.stop(); b.client.stop(); });
  await a.client.start();
  await b.client.start();
  await online(a.client);
  await online(b.client);

  assert.equal((await a.client.acquireLease("A-1")).type, "LEASE_GRANTED");
  assert.equal((await b.client.acquireLease("B-1")).type, "LEASE_GRANTED");
  assert.equal((await a.client.writeOrder(order("A-1", 1), 0)).kind, "ack");
  assert.equal((await b.client.writeOrder(order("B-1", 1), 0)).kind, "ack");
  await until("A sees B-1", () => a.app.orders.get("B-1"));

  // A write whose ack may never arrive: the hub dies right after it was sent.
  const inDoubt = a.client.writeOrder(order("A-1", 2), 1);
  await new Promise((r) => setImmediate(r)); // handed to the socket
  await hub.kill9();
  let release;
  gate = new Promise((r) => { release = r; });
  await until("A offline", () => a.client.status !== "online");

  // Writes while the hub is away: kept in the outbox, in order.
  const offline1 = a.client.writeOrder(order("A-1", 3), 99); // on top of the in-doubt write
  const offline2 = a.client.writeOrder(order("A-2", 1), 0); // a new order, lease taken on reconnect
  assert.equal(a.client.pendingWrites.length, 3);

  await hub.start();
  // B is back first and writes while A is still away: A must catch up on these from its cursor.
  await online(b.client);
  assert.equal((await b.client.writeOrder(order("B-1", 2), 1)).kind, "ack");
  assert.equal((await b.client.acquireLease("B-2")).type, "LEASE_GRANTED");
  assert.equal((await b.client.writeOrder(order("B-2", 4), 0)).kind, "ack");
  const cursorBefore = a.client.cursor;
  release();

  const results = await Promise.all([inDoubt, offline1, offline2]);
  assert.deepEqual(results.map((r) => r.kind), ["ack", "ack", "ack"]);
  assert.equal(a.client.pendingWrites.length, 0);
  const status = await hub.get("/status");
  await until("A's cursor reaches the hub's seq", () => a.client.cursor >= status.seq);

  // The app's state equals the hub's, and every seq was applied once.
  assert.deepEqual(appOrders(a.app), await hubOrders(hub));
  assert.equal(new Set(a.app.applied).size, a.app.applied.length, `applied twice: ${a.app.applied}`);
  assert.equal(a.app.states, 0, "no STATE needed: the cursor was inside the hub's log");
  // A-1 went v1 -> v2 (in doubt) -> v3: the in-doubt write was applied exactly once.
  const stored = await hub.get("/orders/A-1");
  assert.equal(stored.version, 3);
  assert.equal(stored.snapshot.lines.length, 3);
  console.log(`caught up from cursor ${cursorBefore} to ${a.client.cursor}; ${a.client.connectAttempts} connection attempts; applied seqs ${a.app.applied.join(",")}`);
});

test("a hub restarted on an older database (cursor outside its log) gives one STATE", async (t) => {
  const hub = new Hub();
  await hub.start();
  t.after(() => hub.stop());
  const [a, b] = await onlineTerminals(t, hub, "till-A", "till-B");
  await b.client.acquireLease("B-1");
  await b.client.writeOrder(order("B-1", 1), 0);
  await until("A applied B-1", () => a.app.orders.get("B-1"));

  // Keep a copy of the database as it is now (hub stopped so the copy is consistent).
  await hub.kill9();
  copyFileSync(hub.dbPath, hub.dbPath + ".old");
  await hub.start();
  await online(b.client);
  await b.client.acquireLease("B-2");
  for (let i = 1; i <= 3; i++) await b.client.writeOrder(order("B-2", i), i - 1);
  await until("A applied B-2 v3", () => a.app.orders.get("B-2")?.version === 3);
  const cursor = a.client.cursor;

  // The hub comes back on the old file: its seq is behind A's cursor.
  await hub.kill9();
  copyFileSync(hub.dbPath + ".old", hub.dbPath);
  await hub.start();
  await until("A resynced", () => a.app.states === 1 && a.client.status === "online");
  await sleep(300);
  assert.equal(a.app.states, 1, "exactly one STATE");
  assert.equal(a.app.resyncs, 1);
  assert.ok(a.client.cursor < cursor, `cursor moved back to the hub's seq (${cursor} -> ${a.client.cursor})`);
  assert.deepEqual(appOrders(a.app), await hubOrders(hub));
  assert.equal(a.app.orders.has("B-2"), false, "B-2 is gone with the newer database");
});

test("lease heartbeats keep an order for longer than its TTL; without them it lapses", async (t) => {
  const hub = new Hub({ HUB_LEASE_TTL_MS: "1500", HUB_HEARTBEAT_MS: "250" });
  await hub.start();
  t.after(() => hub.stop());
  const [a, b] = await onlineTerminals(t, hub, "till-A", "till-B");
  const granted = await a.client.acquireLease("A-1");
  assert.equal(granted.ttlMs, 1500);

  // A plain socket takes a lease and never renews it: the control that the TTL really is short.
  const raw = new WebSocket(hub.url);
  await new Promise((r) => raw.once("open", r));
  raw.send(JSON.stringify({ type: "AUTH", token: hub.token("till-C"), terminalId: "till-C" }));
  raw.send(JSON.stringify({ type: "LEASE_ACQUIRE", posReference: "C-1" }));
  t.after(() => raw.terminate());

  await sleep(4500); // three TTLs
  const deniedA = await b.client.acquireLease("A-1");
  assert.equal(deniedA.type, "LEASE_DENIED", "A still holds A-1 after 3 TTLs");
  assert.equal(deniedA.holder.terminalId, "till-A");
  assert.equal((await b.client.acquireLease("C-1")).type, "LEASE_GRANTED", "C-1 lapsed without heartbeats");
  assert.equal((await a.client.writeOrder(order("A-1", 1), 0)).kind, "ack");
  assert.deepEqual(a.app.revoked, []);
});

test("a revoked lease is reported; a stale write gets CONFLICT with the stored snapshot", async (t) => {
  const hub = new Hub({ HUB_LEASE_TTL_MS: "1000", HUB_HEARTBEAT_MS: "200" });
  await hub.start();
  t.after(() => hub.stop());
  const [a, b] = await onlineTerminals(t, hub, "till-A", "till-B");
  await a.client.acquireLease("X-1");
  assert.equal((await a.client.writeOrder(order("X-1", 1), 0)).kind, "ack");
  await a.client.releaseLease("X-1");
  await b.client.acquireLease("X-1");
  assert.equal((await b.client.writeOrder(order("X-1", 2), 1)).kind, "ack");
  await b.client.releaseLease("X-1");
  // A writes on top of version 1, which B has replaced.
  await a.client.acquireLease("X-1");
  const r = await a.client.writeOrder(order("X-1", 5), 1);
  assert.equal(r.kind, "conflict");
  assert.equal(r.currentVersion, 2);
  assert.equal(r.snapshot.lines.length, 2);
  assert.equal(a.app.conflicts.length, 1);
  assert.equal(a.client.pendingWrites.length, 0, "the refused write left the outbox");

  // The hub's reset revokes every lease: the app is told.
  const admin = (await import("node:fs")).readFileSync(hub.dir + "/admin-token", "utf8").trim();
  const res = await fetch(hub.http + "/admin/reset-leases", { method: "POST", headers: { authorization: `Bearer ${admin}` } });
  assert.equal(res.status, 200);
  await until("A told of LEASE_REVOKED", () => a.app.revoked.length === 1);
  assert.equal(a.app.revoked[0].posReference, "X-1");
  assert.deepEqual(a.client.heldLeases, []);
});

test("the backoff never hammers a hub that is down, and reconnects when it is back", async (t) => {
  const hub = new Hub();
  await hub.start();
  t.after(() => hub.stop());
  const a = makeTerminal(hub, "till-A", { backoff: { initialMs: 200, maxMs: 2000 } });
  t.after(() => a.client.stop());
  await a.client.start();
  await online(a.client);
  await hub.kill9();
  const before = a.client.connectAttempts;
  await sleep(8000);
  const attempts = a.client.connectAttempts - before;
  // Waits drawn from [cap/2, cap], cap = 200, 400, 800, 1600, 2000...: at least 100+200+400+
  // 800+1000+1000+1000+1000+1000+1000 = 7.5 s for 10 attempts, so at most 11 in 8 s.
  console.log(`connection attempts in 8 s with the hub down: ${attempts}`);
  assert.ok(attempts >= 4, `kept trying (${attempts})`);
  assert.ok(attempts <= 11, `no hammering (${attempts})`);
  await hub.start();
  await until("back online", () => a.client.status === "online", 5000);
});

test("close codes: replaced (4000) does not fight back; refused auth (4003) stops and reports", async (t) => {
  const hub = new Hub();
  await hub.start();
  t.after(() => hub.stop());
  const first = makeTerminal(hub, "till-A");
  const second = makeTerminal(hub, "till-A");
  t.after(() => { first.client.stop(); second.client.stop(); });
  let replaced = 0;
  first.client.on("replaced", () => { replaced += 1; });
  await first.client.start();
  await online(first.client);
  await second.client.start();
  await online(second.client);
  await until("first replaced", () => first.client.status === "replaced");
  await sleep(1500);
  assert.equal(replaced, 1);
  assert.equal(first.client.connectAttempts, 1, "the replaced client did not reconnect");
  assert.equal(second.client.status, "online");

  const bad = new HubClient({ url: hub.url, terminalId: "till-Z", token: "not-a-token", WebSocket, backoff: { initialMs: 50 } });
  const fatal = new Promise((r) => bad.on("fatal", r));
  await bad.start();
  const e = await fatal;
  assert.equal(e.code, 4003);
  assert.equal(e.reason, "invalid_token");
  await sleep(500);
  assert.equal(bad.connectAttempts, 1, "no retry after 4003");
  assert.equal(bad.status, "stopped");
});

test("a write whose ack was lost is resent with the same eventId and applied once", async (t) => {
  const hub = new Hub();
  await hub.start();
  t.after(() => hub.stop());
  const proxy = await mutingProxy(hub.wsPort);
  t.after(() => proxy.close());
  const a = makeTerminal(hub, "till-A", { client: { url: proxy.url, pingIntervalMs: 60_000 } });
  t.after(() => a.client.stop());
  const sent = [];
  await a.client.start();
  await online(a.client);
  await a.client.acquireLease("A-1");
  assert.equal((await a.client.writeOrder(order("A-1", 1), 0)).kind, "ack");

  proxy.muted = true; // the hub's answers no longer reach the client
  const write = a.client.writeOrder(order("A-1", 2), 1);
  sent.push(a.client.pendingWrites[0].eventId);
  await until("the hub applied it", async () => (await hub.get("/orders/A-1")).version === 2);
  assert.equal(a.client.pendingWrites.length, 1, "no ack seen: still in the outbox");
  proxy.cut(); // the connection drops; the client reconnects through the proxy and resends
  proxy.muted = false;
  const r = await write;
  assert.equal(r.kind, "ack");
  assert.equal(r.eventId, sent[0], "resent with the id it was created with");
  assert.equal(r.version, 2, "the hub answered with the original ack");
  const stored = await hub.get("/orders/A-1");
  assert.equal(stored.version, 2, "applied once");
  assert.equal(a.client.pendingWrites.length, 0);
  assert.ok(a.client.connectAttempts >= 2);
});
