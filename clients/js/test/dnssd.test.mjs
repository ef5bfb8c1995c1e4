// DNS-SD discovery from Node against the real hub's advertisement. Multicast never leaves this
// machine: the hub runs in one network namespace, the Node "tablet" in another, joined by a
// veth pair this test creates (needs root and `ip`; otherwise the test says why and skips).
// The tablet finds the hub by `_poshub._tcp` alone, then connects to what it found.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BIN } from "./hub.mjs";

const HERE = join(fileURLToPath(new URL(".", import.meta.url)), "..");
const ip = (...args) => {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.error || r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.error?.message || r.stderr.trim()}`);
};

function makeLan() {
  const id = process.pid % 100000;
  const lan = { hub: `pjs-hub-${id}`, tab: `pjs-tab-${id}` };
  ip("netns", "add", lan.hub);
  lan.del = () => { for (const ns of [lan.hub, lan.tab]) spawnSync("ip", ["netns", "del", ns]); };
  try {
    ip("netns", "add", lan.tab);
    ip("link", "add", `jh${id}`, "netns", lan.hub, "type", "veth", "peer", "name", `jt${id}`, "netns", lan.tab);
    for (const [ns, dev, addr] of [[lan.hub, `jh${id}`, "10.78.0.1/24"], [lan.tab, `jt${id}`, "10.78.0.2/24"]]) {
      ip("-n", ns, "addr", "add", addr, "dev", dev);
      ip("-n", ns, "link", "set", dev, "up", "multicast", "on");
      ip("-n", ns, "link", "set", "lo", "up");
      ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev);
    }
  } catch (e) {
    lan.del();
    throw e;
  }
  return lan;
}

test("Node finds the hub by DNS-SD (_poshub._tcp) and connects to it", async (t) => {
  let lan;
  try {
    if (process.getuid?.() !== 0) throw new Error("not root");
    lan = makeLan();
  } catch (e) {
    t.skip(`cannot create private network namespaces for multicast (${e.message})`);
    return;
  }
  t.after(() => lan.del());
  const dir = mkdtempSync(join(tmpdir(), "poshub-dnssd-"));
  const env = { ...process.env, HUB_DB_PATH: join(dir, "hub.redb"), HUB_PORT: "18865", HUB_HTTP_PORT: "18866",
    HUB_MDNS_ENABLED: "true", TENANT_ID: "acme", STORE_ID: "shop-9", HUB_AUTH_MODE: "open", HUB_LOG_LEVEL: "warn" };
  const hub = spawn("ip", ["netns", "exec", lan.hub, BIN, "serve"], { env, stdio: ["ignore", "ignore", "inherit"] });
  t.after(() => { hub.kill("SIGKILL"); });

  // The tablet: browse, then connect to the first hub found and print what it learnt.
  const script = join(dir, "tablet.mjs");
  writeFileSync(script, `
    import WebSocket from ${JSON.stringify(join(HERE, "node_modules/ws/wrapper.mjs"))};
    import { browseHubs, HubClient } from ${JSON.stringify(join(HERE, "dist/node.js"))};
    const t0 = Date.now();
    let hubs = [];
    while (!hubs.length && Date.now() - t0 < 15000) hubs = await browseHubs({ timeoutMs: 2000 });
    if (!hubs.length) { console.log(JSON.stringify({ error: "nothing found" })); process.exit(0); }
    const c = new HubClient({ url: hubs[0].wsUrl, terminalId: "tab-1", WebSocket });
    const ok = await new Promise((r) => { c.on("authenticated", r); c.start(); });
    c.stop();
    console.log(JSON.stringify({ hubs, ms: Date.now() - t0, authOk: ok }));
  `);
  const out = spawnSync("ip", ["netns", "exec", lan.tab, process.execPath, script], { encoding: "utf8", timeout: 40000 });
  assert.equal(out.status, 0, out.stderr);
  const r = JSON.parse(out.stdout.trim().split("\n").pop());
  assert.ok(!r.error, r.error);
  console.log(`found ${r.hubs[0].instance} at ${r.hubs[0].wsUrl} in ${r.ms} ms`);
  const h = r.hubs[0];
  assert.match(h.instance, /^POS Hub - .*\(shop-9\/acme\)\._poshub\._tcp\.local$/);
  assert.equal(h.port, 18865);
  assert.equal(h.wsUrl, "ws://10.78.0.1:18865/");
  assert.equal(h.txt.httpPort, "18866");
  assert.equal(h.txt.storeId, "shop-9");
  assert.equal(r.authOk.realm.storeId, "shop-9");
});
