// What the browser tests share: the hub binary, free ports, a `serve --demo` hub on 127.0.0.1
// with its own database (killed when the tests end), and Debian's Chromium with the flags this
// closed network needs.
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import net from "node:net";
import { chromium } from "playwright-core";

export const ROOT = resolve(import.meta.dirname, "../../..");
export const BIN = process.env.POSHUB_BIN || join(ROOT, "target/debug/poshub");
export const SHOTS = join(ROOT, "target/browser");
const procs = new Set();

export function freePort() {
  return new Promise((ok, fail) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => ok(p)); });
    s.on("error", fail);
  });
}

/** Settings of a fresh demo hub on free loopback ports: `{env, base}` (base = its HTTP URL). */
export async function hubSettings(prefix, logLevel = "warn") {
  const [wsPort, httpPort] = [await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const env = { ...process.env, HUB_BIND: "127.0.0.1", HUB_PORT: String(wsPort), HUB_HTTP_PORT: String(httpPort),
    HUB_DB_PATH: join(dir, "hub.redb"), HUB_MDNS_ENABLED: "false", HUB_LOG_LEVEL: logLevel };
  return { env, base: `http://127.0.0.1:${httpPort}` };
}

/** Starts `poshub serve --demo` with `env` and waits (10 s at most) until `base/health` is ok. */
export async function startHub(env, base) {
  const p = spawn(BIN, ["serve", "--demo"], { env, stdio: ["ignore", "inherit", "inherit"] });
  procs.add(p);
  p.on("exit", () => procs.delete(p));
  const end = Date.now() + 10000;
  for (;;) {
    try { if ((await fetch(base + "/health")).ok) return p; } catch { /* not yet */ }
    if (Date.now() > end) throw new Error("hub did not become healthy");
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function launchBrowser() {
  mkdirSync(SHOTS, { recursive: true });
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** Kills every hub these tests started (also ones a test left running after a failure). */
export function killHubs() {
  for (const p of procs) p.kill("SIGKILL");
}
