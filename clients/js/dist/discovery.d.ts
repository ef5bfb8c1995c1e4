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
/** The WebSocket URL of a hub's HTTP address. */
export declare function wsUrlOf(httpUrl: string): string;
/** Tries the candidates in order; throws (naming every address tried) when none answers. */
export declare function discoverHub(o: DiscoveryOptions): Promise<FoundHub>;
