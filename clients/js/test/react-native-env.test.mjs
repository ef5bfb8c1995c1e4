// The library in a React Native-like global environment, against the real hub. No React Native
// runtime can be installed here, so its globals are emulated: the built library is bundled (as
// Metro would) and run in a `node:vm` context whose globals are only what React Native gives an
// app — a browser-style WebSocket (here the `ws` package behind RN's onopen/onmessage/onclose
// API), timers returning numbers, fetch + AbortController, console, TextEncoder/TextDecoder,
// `window` = the global object without `location` — and none of localStorage, indexedDB,
// document, Buffer, process, require or crypto. The app stores through AsyncStorage-style async
// callbacks, finds the hub by manual discovery (no mDNS in RN), writes through the outbox and
// rides out a kill -9 of the hub.
import { test } from "node:test";
import assert from "node:assert/strict";
import vm from "node:vm";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import WsLib from "ws";
import { Hub, until } from "./hub.mjs";
import { order } from "./app.mjs";

const DIST = fileURLToPath(new URL("../dist/index.js", import.meta.url));

/** React Native's WebSocket: the browser API (handlers get plain event objects), no Node events. */
class RNWebSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;
  constructor(url, protocols) {
    this.url = url;
    this.binaryType = undefined;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    const ws = new WsLib(url, protocols);
    this.ws = ws;
    ws.on("open", () => this.onopen?.({ type: "open" }));
    ws.on("message", (data, isBinary) => this.onmessage?.({ type: "message",
      data: isBinary ? new Uint8Array(data).buffer : data.toString("utf8") }));
    ws.on("close", (code, reason) => this.onclose?.({ type: "close", code, reason: reason.toString("utf8") }));
    ws.on("error", (e) => this.onerror?.({ type: "error", message: e.message }));
  }
  get readyState() { return this.ws.readyState; }
  send(data) { this.ws.send(data); }
  close(code, reason) { this.ws.close(code, reason); }
}

/** React Native's URL polyfill: parses and gives href, but most getters throw. */
class RNURL {
  constructor(url, base) { this.href = base ? `${String(base).replace(/\/$/, "")}/${String(url).replace(/^\//, "")}` : String(url); }
  toString() { return this.href; }
  get host() { throw new Error("URL.host is not implemented"); }
  get hostname() { throw new Error("URL.hostname is not implemented"); }
  get port() { throw new Error("URL.port is not implemented"); }
  get protocol() { throw new Error("URL.protocol is not implemented"); }
  get pathname() { throw new Error("URL.pathname is not implemented"); }
}

/** RN timers hand out numbers (no `unref`, no Node Timeout objects). */
function rnTimers() {
  const live = new Map();
  let next = 1;
  const add = (make) => { const id = next++; live.set(id, make(id)); return id; };
  const clear = (id) => { const t = live.get(id); if (t) { clearTimeout(t); clearInterval(t); live.delete(id); } };
  return {
    setTimeout: (f, ms, ...a) => add((id) => setTimeout(() => { live.delete(id); f(...a); }, ms)),
    setInterval: (f, ms, ...a) => add(() => setInterval(() => f(...a), ms)),
    clearTimeout: clear,
    clearInterval: clear,
    setImmediate: (f, ...a) => add((id) => setTimeout(() => { live.delete(id); f(...a); }, 0)),
    clearImmediate: clear,
    requestAnimationFrame: (f) => add((id) => setTimeout(() => { live.delete(id); f(Date.now()); }, 16)),
    cancelAnimationFrame: clear,
    pending: () => live.size,
    /** Ends every timer still running, so a failed test does not hang the run. */
    clearAll: () => { for (const id of [...live.keys()]) clear(id); },
  };
}

/** A vm context holding only React Native's globals, with the library loaded as `poshub`. */
async function reactNativeContext() {
  const timers = rnTimers();
  const ctx = vm.createContext({
    WebSocket: RNWebSocket, fetch, Headers, Request, Response, FormData, AbortController, AbortSignal,
    ...timers, queueMicrotask, console, TextEncoder, TextDecoder, URL: RNURL, URLSearchParams, atob, btoa,
    navigator: { product: "ReactNative" }, performance: { now: () => performance.now() },
  });
  vm.runInContext("globalThis.window = globalThis; globalThis.self = globalThis;", ctx);
  const absent = vm.runInContext(`["localStorage", "indexedDB", "document", "location", "Buffer", "process",
    "require", "module", "crypto", "global", "structuredClone"].filter((n) => n in globalThis)`, ctx);
  assert.deepEqual([...absent], [], "the emulated RN global has nothing RN lacks");
  const bundle = await build({ entryPoints: [DIST], bundle: true, format: "iife", globalName: "poshub",
    platform: "neutral", write: false, logLevel: "silent" });
  vm.runInContext(bundle.outputFiles[0].text, ctx, { filename: "poshub-client.bundle.js" });
  return { ctx, lib: ctx.poshub, timers };
}

/** AsyncStorage's API (async, strings only), outliving the client as the app's storage does. */
function asyncStorage() {
  const data = new Map();
  const later = () => new Promise((r) => setTimeout(r, 1));
  return {
    data,
    getItem: async (k) => { await later(); return data.has(k) ? data.get(k) : null; },
    setItem: async (k, v) => { await later(); assert.equal(typeof v, "string"); data.set(k, v); },
    removeItem: async (k) => { await later(); data.delete(k); },
  };
}

test("React Native globals only: discover, write through the outbox, survive a hub kill -9", async (t) => {
  const hub = new Hub();
  await hub.start();
  t.after(() => hub.stop());
  const { lib, timers } = await reactNativeContext();
  t.after(() => timers.clearAll());
  const AsyncStorage = asyncStorage();
  const storage = lib.callbackStorage({
    get: (k) => AsyncStorage.getItem(k), set: (k, v) => AsyncStorage.setItem(k, v), remove: (k) => AsyncStorage.removeItem(k),
  });
  const errors = [];
  const client = new lib.HubClient({
    // No mDNS in RN: an address typed in at setup (or a bootstrap URL), then the last one that answered.
    url: async () => (await lib.discoverHub({ manual: [hub.http.replace(/^http:\/\//, "")], storage, timeoutMs: 1000 })).wsUrl,
    terminalId: "rn-till", token: hub.token("rn-till"), storage,
    backoff: { initialMs: 100, maxMs: 1000 },
  });
  client.on("error", (e) => errors.push(e));
  t.after(() => client.stop());
  const online = () => until(`${client.status} -> online`, () => client.status === "online");
  await client.start();
  await online();

  assert.equal((await client.acquireLease("RN-1")).type, "LEASE_GRANTED");
  const first = await client.writeOrder(order("RN-1", 1), 0);
  assert.equal(first.kind, "ack", JSON.stringify(first));
  assert.match(first.eventId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, "a v4 UUID without crypto.randomUUID");
  assert.equal((await hub.get("/orders/RN-1")).version, 1);
  assert.equal(AsyncStorage.data.get("discovery.lastHub"), hub.http);

  await hub.kill9();
  await until("the client notices", () => client.status !== "online");
  const second = client.writeOrder(order("RN-1", 2), 1);
  await until("the write is in AsyncStorage", () => JSON.parse(AsyncStorage.data.get("outbox.rn-till") ?? "[]").length === 1);
  await hub.start();
  const acked = await second;
  assert.equal(acked.kind, "ack", JSON.stringify(acked));
  assert.equal(acked.version, 2);
  assert.notEqual(acked.eventId, first.eventId);
  assert.equal((await hub.get("/orders/RN-1")).version, 2);
  assert.equal(JSON.parse(AsyncStorage.data.get("outbox.rn-till")).length, 0, "outbox flushed");
  assert.ok(Number(AsyncStorage.data.get("cursor.rn-till")) >= 2, "cursor kept in AsyncStorage");
  assert.deepEqual(errors.filter((e) => e.code !== "discovery"), []);
  client.stop();
  assert.equal(timers.pending(), 0, "stop() leaves no timer running");

  // The app comes back to the foreground: the lease it held is taken again and renewed.
  await client.start();
  await online();
  assert.deepEqual([...client.heldLeases], ["RN-1"]);
  const third = await client.writeOrder(order("RN-1", 3), 2);
  assert.equal(third.kind, "ack", JSON.stringify(third));
  assert.ok(timers.pending() > 0, "the lease heartbeat runs again");
  client.stop();
  assert.equal(timers.pending(), 0);
});
