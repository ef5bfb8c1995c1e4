/**
 * Finding the hub from a browser, which cannot browse mDNS: a bootstrap URL (a small JSON
 * document the site publishes: `{"hubs": ["http://192.168.1.20:8080"]}`), then the last hub
 * that answered (kept in storage), then the addresses typed in by hand, tried in that order.
 * A candidate answers when its `GET /health` does; its WebSocket is `/ws` on the same port.
 */

import type { KeyValueStorage } from "./storage.js";

export interface DiscoveryOptions {
  bootstrapUrl?: string;
  /** Addresses entered by hand (`http://hub.local:8080`, or `host:port`). */
  manual?: string[];
  /** Remembers the last hub that answered. */
  storage?: KeyValueStorage;
  /** Per-candidate timeout (ms); default 2 000. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export interface FoundHub {
  httpUrl: string;
  wsUrl: string;
  source: "bootstrap" | "last" | "manual";
}

const LAST_KEY = "discovery.lastHub";

function normalise(a: string): string {
  const s = a.trim().replace(/\/+$/, "");
  return /^https?:\/\//.test(s) ? s : `http://${s}`;
}

/** The WebSocket URL of a hub's HTTP address. */
export function wsUrlOf(httpUrl: string): string {
  return normalise(httpUrl).replace(/^http/, "ws") + "/ws";
}

async function withTimeout<T>(ms: number, f: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ctl = new AbortController();
  const t = setTimeout(() => ctl.abort(), ms);
  try {
    return await f(ctl.signal);
  } finally {
    clearTimeout(t);
  }
}

/** Tries the candidates in order; throws (naming every address tried) when none answers. */
export async function discoverHub(o: DiscoveryOptions): Promise<FoundHub> {
  const f = o.fetch ?? fetch;
  const ms = o.timeoutMs ?? 2000;
  const tried: string[] = [];
  const alive = async (base: string) => {
    tried.push(base);
    try {
      return await withTimeout(ms, async (signal) => (await f(`${base}/health`, { signal })).ok);
    } catch {
      return false;
    }
  };
  const found = async (base: string, source: FoundHub["source"]): Promise<FoundHub> => {
    await o.storage?.set(LAST_KEY, base);
    return { httpUrl: base, wsUrl: wsUrlOf(base), source };
  };
  if (o.bootstrapUrl) {
    try {
      const doc = await withTimeout(ms, async (signal) => (await f(o.bootstrapUrl!, { signal })).json()) as { hubs?: unknown; url?: unknown };
      const list = Array.isArray(doc.hubs) ? doc.hubs : typeof doc.url === "string" ? [doc.url] : [];
      for (const h of list) if (typeof h === "string" && (await alive(normalise(h)))) return found(normalise(h), "bootstrap");
    } catch {
      tried.push(`${o.bootstrapUrl} (bootstrap unreachable)`);
    }
  }
  const last = await o.storage?.get(LAST_KEY);
  if (last && (await alive(last))) return found(last, "last");
  for (const m of o.manual ?? []) if (await alive(normalise(m))) return found(normalise(m), "manual");
  throw new Error(`no hub answered; tried ${tried.join(", ") || "nothing (no bootstrap URL, no last hub, no manual address)"}`);
}
