// More of the connection contract against the real hub: the outbox survives an app restart
// (pluggable storage), a silent hub is detected by PING liveness, a flood close (1008) is
// reported and followed by a reconnect, and browser discovery tries bootstrap, last, manual.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import WebSocket from "ws";
import { Hub, until, freePort } from "./hub.mjs";
import { makeTerminal, online, order } from "./app.mjs";
import { HubClient, memoryStorage, discoverHub } from "../dist/index.js";
import { mutingProxy } from "./proxy.mjs";


test("writes kept in storage while the hub is down are sent by the next app start", async (t) => {
  const hub = new Hub();
  await hub.start();
  t.after(() => hub.stop());
  const storage = memoryStorage(); // stands for localStorage / AsyncStorage: outlives the client
  const first = makeTerminal(hub, "till-A", { storage });
  await first.client.start();
  await online(first.client);
  await first.client.acquireLease("A-1");
  await first.client.writeOrder(order("A-1", 1), 0);
  await hub.kill9();
  await until("offline", () => first.client.status !== "online");
  void first.client.writeOrder(order("A-1", 2), 1);
  void first.client.writeOrder(order("A-2", 1), 0);
  first.client.stop(); // the app is closed with two writes not sent
  assert.equal(JSON.parse(storage.data.get("outbox.till-A")).length, 2);

  await hub.start();
  const second = makeTerminal(hub, "till-A", { storage });
  t.after(() => second.client.stop());
  const acks = [];
  second.client.on("ack", (e, a) => acks.push([e.posReference, a.version]));
  await second.client.start();
  await until("outbox flushed", () => second.client.pendingWrites.length === 0 && acks.length === 2);
  assert.deepEqual(acks, [["A-1", 2], ["A-2", 1]]);
  assert.equal((await hub.get("/orders/A-2")).version, 1);
  assert.equal(JSON.parse(storage.data.get("outbox.till-A")).length, 0);
});

test("a hub that goes silent is detected by PING liveness and the client reconnects", async (t) => {
  const hub = new Hub();
  await hub.start();
  t.after(() => hub.stop());
  const proxy = await mutingProxy(hub.wsPort);
  t.after(() => proxy.close());
  const a = makeTerminal(hub, "till-A", { client: { url: proxy.url, pingIntervalMs: 200, livenessTimeoutMs: 700 } });
  t.after(() => a.client.stop());
  await a.client.start();
  await online(a.client);
  proxy.muted = true; // the socket stays open, nothing comes back (a pulled cable)
  const t0 = Date.now();
  await until("the client gives the socket up", () => a.client.status !== "online", 5000);
  const ms = Date.now() - t0;
  console.log(`silent hub detected after ${ms} ms (liveness timeout 700 ms)`);
  proxy.muted = false;
  await online(a.client);
  assert.ok(a.client.connectAttempts >= 2);
});

test("a flood closed with 1008 is reported, then the client reconnects", async (t) => {
  const hub = new Hub({ HUB_RATE_LIMIT_PER_SEC: "20" });
  await hub.start();
  t.after(() => hub.stop());
  const a = makeTerminal(hub, "till-A");
  t.after(() => a.client.stop());
  await a.client.start();
  await online(a.client);
  for (let i = 0; i < 400 && a.client.status === "online"; i++) a.client.request({ type: "PING" }).catch(() => {});
  await until("1008 reported", () => a.app.errors.some((e) => e.code === 1008), 10000);
  await online(a.client);
});

test("browser discovery: bootstrap URL first, then the last hub that answered, then manual entry", async (t) => {
  const hub = new Hub();
  await hub.start();
  t.after(() => hub.stop());
  const dead = `http://127.0.0.1:${await freePort()}`; // nothing listens there
  let doc = { hubs: [dead, hub.http] };
  const boot = http.createServer((_, res) => { res.setHeader("content-type", "application/json"); res.end(JSON.stringify(doc)); });
  await new Promise((r) => boot.listen(0, "127.0.0.1", r));
  t.after(() => boot.close());
  const bootstrapUrl = `http://127.0.0.1:${boot.address().port}/hubs.json`;
  const storage = memoryStorage();

  const viaBoot = await discoverHub({ bootstrapUrl, manual: [dead], storage });
  assert.deepEqual(viaBoot, { httpUrl: hub.http, wsUrl: hub.http.replace("http", "ws") + "/ws", source: "bootstrap" });
  doc = { hubs: [dead] }; // the bootstrap document is out of date
  assert.equal((await discoverHub({ bootstrapUrl, manual: [dead], storage })).source, "last");
  const fresh = await discoverHub({ bootstrapUrl, manual: [dead, hub.http.replace("http://", "")], storage: memoryStorage() });
  assert.equal(fresh.source, "manual");
  await assert.rejects(discoverHub({ bootstrapUrl, manual: [dead], storage: memoryStorage(), timeoutMs: 500 }), /no hub answered; tried/);

  // The found address is what a client connects to.
  const c = new HubClient({ url: async () => (await discoverHub({ bootstrapUrl, storage })).wsUrl, terminalId: "till-D", token: hub.token("till-D"), WebSocket });
  t.after(() => c.stop());
  await c.start();
  await online(c);
});

test("an event the app fails to apply is not skipped: the cursor stays and it is replayed once", async (t) => {
  const hub = new Hub();
  await hub.start();
  t.after(() => hub.stop());
  let failOnce = true;
  const applied = [];
  const a = makeTerminal(hub, "till-A", { client: {
    applyEvent(ev) {
      if (ev.type === "ORDER_UPDATED" && ev.posReference === "B-2" && failOnce) { failOnce = false; throw new Error("disk full"); }
      applied.push(`${ev.seq}:${ev.posReference}`);
    },
  } });
  const b = makeTerminal(hub, "till-B");
  t.after(() => { a.client.stop(); b.client.stop(); });
  await a.client.start();
  await b.client.start();
  await online(a.client);
  await online(b.client);
  await b.client.acquireLease("B-1");
  await b.client.acquireLease("B-2");
  await b.client.writeOrder(order("B-1", 1), 0);
  await until("A applied B-1", () => applied.length === 1);
  const cursor = a.client.cursor;
  const w = await b.client.writeOrder(order("B-2", 1), 0);
  await until("A applied B-2 after a reconnect", () => applied.length === 2, 10000);
  assert.deepEqual(applied, [`${cursor}:B-1`, `${w.seq}:B-2`]);
  assert.equal(a.client.cursor, w.seq);
  assert.ok(a.app.errors.some((e) => e.code === "apply_failed"));
  assert.equal(a.client.connectAttempts, 2, "one reconnect to replay from the cursor");
});

test("a snapshot too large for the hub is refused before it enters the outbox", async (t) => {
  const hub = new Hub();
  await hub.start();
  t.after(() => hub.stop());
  const a = makeTerminal(hub, "till-A");
  t.after(() => a.client.stop());
  await a.client.start();
  await online(a.client);
  const huge = order("A-1", 1, { note: "x".repeat(300 * 1024) });
  await assert.rejects(a.client.writeOrder(huge, 0), /at most 262144/);
  assert.equal(a.client.pendingWrites.length, 0);
  assert.equal(a.client.status, "online", "nothing sent that would have closed the socket with 1009");
});
