// Runs the real hub binary for the client tests: real redb file, loopback ports, killed with
// SIGKILL to simulate a power cut, restarted on the same ports and database. Every hub started
// here is killed when the test process exits, also when a test fails.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";

export const ROOT = resolve(fileURLToPath(new URL(".", import.meta.url)), "../../..");
export const BIN = process.env.POSHUB_BIN || join(ROOT, "target/debug/poshub");
const live = new Set();
process.on("exit", () => { for (const p of live) try { p.kill("SIGKILL"); } catch { /* gone */ } });

export function freePort() {
  return new Promise((ok, fail) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => ok(p)); });
    s.on("error", fail);
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `f` until it returns a truthy value; fails with `what` after `ms`. */
export async function until(what, f, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

export class Hub {
  constructor(env = {}) {
    this.dir = mkdtempSync(join(tmpdir(), "poshub-client-"));
    this.extraEnv = env;
    this.dbPath = join(this.dir, "hub.redb");
    this.proc = null;
  }

  async ports() {
    if (!this.wsPort) [this.wsPort, this.httpPort] = [await freePort(), await freePort()];
  }

  env() {
    return { ...process.env, HUB_BIND: "127.0.0.1", HUB_PORT: String(this.wsPort), HUB_HTTP_PORT: String(this.httpPort),
      HUB_DB_PATH: this.dbPath, HUB_MDNS_ENABLED: "false", HUB_LOG_LEVEL: "warn", ...this.extraEnv };
  }

  get http() { return `http://127.0.0.1:${this.httpPort}`; }
  get url() { return `ws://127.0.0.1:${this.wsPort}/`; }

  /** Starts (or restarts) the hub and waits for /health. */
  async start(args = ["serve"]) {
    await this.ports();
    const p = spawn(BIN, args, { env: this.env(), stdio: ["ignore", "ignore", "inherit"] });
    live.add(p);
    p.on("exit", () => live.delete(p));
    this.proc = p;
    await until("the hub to answer /health", async () => {
      if (p.exitCode !== null) throw new Error(`hub exited with ${p.exitCode}`);
      try { return (await fetch(this.http + "/health")).ok; } catch { return false; }
    });
  }

  /** SIGKILL, as a power cut would; resolves once the process is gone. */
  async kill9() {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode) return;
    const gone = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await gone;
  }

  async stop() {
    await this.kill9();
  }

  /** A terminal token signed by this hub's key (`poshub token issue`). */
  token(terminal, role = "cashier") {
    return execFileSync(BIN, ["token", "issue", "--terminal", terminal, "--role", role], { env: this.env() }).toString().trim();
  }

  async get(path) {
    const r = await fetch(this.http + path);
    if (!r.ok) throw new Error(`GET ${path}: ${r.status}`);
    return r.json();
  }
}
