/**
 * `HubClient`: one terminal's connection to the hub. It authenticates with its token and
 * cursor, reconnects with backoff after every close (except the ones that mean "stop"), keeps
 * the cursor in storage and moves it only past events the app has applied, sends the outbox
 * in order, renews leases, and turns `RESYNC_REQUIRED` + `STATE` into one state replacement.
 */

import { Backoff, type BackoffOptions } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { Leases } from "./leases.js";
import { Outbox, type OutboxEntry } from "./outbox.js";
import { memoryStorage, type KeyValueStorage } from "./storage.js";
import {
  EVENT_TYPES, type AuthOk, type ClientMessage, type Conflict, type ErrorMsg, type HubEvent,
  type HubMessage, type KitchenLine, type KitchenTicketAck, type LeaseDenied, type LeaseGranted,
  type LeaseRevoked, type OrderAck, type OrderSnapshot, type Station, type StateMsg, type Id,
} from "./messages.js";

/** What the library needs of a WebSocket: the browser / React Native / Node ≥ 22 global, or `ws`. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
export type WebSocketCtor = new (url: string) => WebSocketLike;

/** The hub refuses frames larger than this (close 1009); the client refuses them first. */
export const MAX_FRAME_BYTES = 256 * 1024;

export type Status = "idle" | "connecting" | "online" | "offline" | "replaced" | "stopped";

export interface HubClientOptions {
  /** `ws://hub:8080/ws`, or a function that finds it (see `discover`). */
  url: string | (() => string | Promise<string>);
  terminalId: string;
  token?: string;
  name?: string;
  /** Only honoured by a hub in `open` auth mode (demo). */
  role?: string;
  /** Kitchen stations whose tickets this terminal wants; absent = all. */
  stations?: Station[];
  /** Default: `globalThis.WebSocket`. In Node < 22 pass `ws`'s `WebSocket`. */
  WebSocket?: WebSocketCtor;
  /** Where the cursor and the outbox live; default: in memory. */
  storage?: KeyValueStorage;
  backoff?: BackoffOptions;
  /** PING every this often (ms); default 15 000. */
  pingIntervalMs?: number;
  /** No frame at all for this long (ms) = the hub is gone; default 2.5 × pingIntervalMs. */
  livenessTimeoutMs?: number;
  /** How long a request waits for its reply (ms); default 10 000. */
  requestTimeoutMs?: number;
  /** Applies one event to the app's state; the cursor moves past it once this returns. */
  applyEvent?: (ev: HubEvent) => void | Promise<void>;
  /** Replaces the app's whole state (after `RESYNC_REQUIRED`, or on a first connect with no cursor). */
  replaceState?: (state: StateMsg) => void | Promise<void>;
  /** Event ids for the outbox; default `crypto.randomUUID()`. */
  newEventId?: () => string;
}

export type WriteResult =
  | { kind: "ack"; version: number; seq: number; eventId: string }
  | { kind: "conflict"; currentVersion: number; snapshot: OrderSnapshot; eventId: string }
  | { kind: "failed"; code: string; message: string; eventId: string };

export interface ConflictInfo {
  posReference: string;
  currentVersion: number;
  /** The order as the hub stores it. */
  snapshot: OrderSnapshot;
  /** The outbox entries that were refused (the conflicting one and any built on it). */
  rejected: OutboxEntry[];
}

export interface ClientEvents {
  status: (s: Status) => void;
  authenticated: (m: AuthOk) => void;
  /** Catch-up finished: every event up to the hub's seq at connect time is applied. */
  caughtUp: (cursor: number) => void;
  /** The hub is replacing our state (cursor outside its window). */
  resync: (reason: string) => void;
  ack: (entry: OutboxEntry, ack: OrderAck) => void;
  conflict: (c: ConflictInfo) => void;
  writeFailed: (entry: OutboxEntry, error: ErrorMsg) => void;
  leaseRevoked: (m: LeaseRevoked) => void;
  /** Every message from the hub, after the library handled it. */
  message: (m: HubMessage) => void;
  /** Something the app should see but that does not stop the client (1008/1009 closes, ERRORs). */
  error: (e: { code: number | string; message: string }) => void;
  /** The client stopped for good: 4003 (authentication refused). */
  fatal: (e: { code: number; reason: string }) => void;
  /** Another connection with our terminalId took over (4000); we do not fight back. */
  replaced: () => void;
}

class RequestError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

interface Pending {
  resolve: (m: HubMessage) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * A v4 UUID: `crypto.randomUUID()` where there is one (browsers, Node >= 19), else 16 bytes from
 * `crypto.getRandomValues` (React Native with a polyfill) or, without either (bare React Native,
 * Node 18 ESM), from Math.random; the version and variant bits set as RFC 4122 asks.
 */
function defaultEventId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string; getRandomValues?: (a: Uint8Array) => Uint8Array } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  const b = new Uint8Array(16);
  if (c?.getRandomValues) c.getRandomValues(b);
  else for (let i = 0; i < b.length; i++) b[i] = Math.floor(Math.random() * 256);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export class HubClient extends Emitter<ClientEvents> {
  private ws: WebSocketLike | null = null;
  /** Bumped on every new socket: messages of an older one are ignored. */
  private gen = 0;
  private chain: Promise<void> = Promise.resolve();
  private _status: Status = "idle";
  private _cursor = 0;
  private stopped = false;
  private authFail = "";
  private reqSeq = 0;
  private pending = new Map<string, Pending>();
  private inFlight = new Map<string, string>(); // posReference -> eventId
  private waiters = new Map<string, (r: WriteResult) => void>();
  private leaseRetry = new Set<string>();
  private timers: ReturnType<typeof setTimeout>[] = [];
  private lastRx = 0;
  private readonly storage: KeyValueStorage;
  private readonly outbox: Outbox;
  private readonly backoff: Backoff;
  private readonly leases: Leases;
  private readonly WS: WebSocketCtor;
  /** Sockets opened so far (tests count them to check the backoff). */
  connectAttempts = 0;

  constructor(private readonly o: HubClientOptions) {
    super();
    const ws = o.WebSocket ?? (globalThis as { WebSocket?: WebSocketCtor }).WebSocket;
    if (!ws) throw new Error("no WebSocket here: pass options.WebSocket (the `ws` package in Node < 22)");
    this.WS = ws;
    this.storage = o.storage ?? memoryStorage();
    this.outbox = new Outbox(this.storage, `outbox.${o.terminalId}`);
    this.backoff = new Backoff(o.backoff);
    this.leases = new Leases((ref) => this.sendNow({ type: "LEASE_HEARTBEAT", posReference: ref }));
  }

  get status(): Status { return this._status; }
  /** The seq of the last event the app applied (persisted). */
  get cursor(): number { return this._cursor; }
  /** Writes not yet acknowledged by the hub, oldest first. */
  get pendingWrites(): readonly OutboxEntry[] { return this.outbox.list(); }
  get heldLeases(): string[] { return this.leases.list(); }
  private get cursorKey(): string { return `cursor.${this.o.terminalId}`; }

  /** Loads the cursor and the outbox from storage and connects. */
  async start(): Promise<void> {
    this.stopped = false;
    const c = Number((await this.storage.get(this.cursorKey)) ?? 0);
    this._cursor = Number.isFinite(c) && c >= 0 ? c : 0;
    await this.outbox.load();
    void this.connect();
  }

  /**
   * Closes the connection and stops reconnecting and every timer; the outbox and cursor stay in
   * storage, and the leases it held are re-acquired by the next `start()`.
   */
  stop(): void {
    this.stopped = true;
    this.gen += 1; // a LEASE_GRANTED still in flight must not restart a heartbeat
    this.teardown();
    this.leases.pause();
    this.ws?.close(1000, "client stopped");
    this.ws = null;
    this.setStatus("stopped");
  }

  private setStatus(s: Status): void {
    if (s === this._status) return;
    this._status = s;
    this.emit("status", s);
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    this.setStatus("connecting");
    const gen = ++this.gen;
    let url: string;
    try {
      url = typeof this.o.url === "string" ? this.o.url : await this.o.url();
    } catch (e) {
      this.emit("error", { code: "discovery", message: String(e) });
      return this.closed(gen, 1006, "no hub found");
    }
    if (gen !== this.gen || this.stopped) return;
    this.connectAttempts += 1;
    let ws: WebSocketLike;
    try {
      ws = new this.WS(url);
    } catch (e) {
      this.emit("error", { code: "url", message: String(e) });
      return this.closed(gen, 1006, String(e));
    }
    this.ws = ws;
    ws.onopen = () => {
      if (gen !== this.gen) return;
      this.lastRx = Date.now();
      const auth: ClientMessage = {
        type: "AUTH", terminalId: this.o.terminalId, cursor: this._cursor,
        ...(this.o.token ? { token: this.o.token } : {}),
        ...(this.o.name ? { name: this.o.name } : {}),
        ...(this.o.role ? { role: this.o.role } : {}),
        ...(this.o.stations ? { stations: this.o.stations } : {}),
      };
      ws.send(JSON.stringify(auth));
      this.startLiveness(gen);
    };
    ws.onmessage = (ev) => {
      if (gen !== this.gen) return;
      this.lastRx = Date.now();
      const text = typeof ev.data === "string" ? ev.data : new TextDecoder().decode(ev.data as ArrayBuffer);
      let m: HubMessage;
      try {
        m = JSON.parse(text) as HubMessage;
      } catch {
        this.emit("error", { code: "bad_frame", message: `hub sent a frame that is not JSON: ${text.slice(0, 80)}` });
        return;
      }
      this.chain = this.chain.then(() => this.handle(gen, m)).catch((e: unknown) => {
        this.emit("error", { code: "apply_failed", message: String(e) });
        this.drop(gen, "the app failed to apply an event; replaying from the cursor");
      });
    };
    ws.onclose = (ev) => this.closed(gen, ev.code, ev.reason);
    ws.onerror = () => { /* a close event follows */ };
  }

  /** Drops the current socket as if it had closed (liveness lost, apply failed). */
  private drop(gen: number, reason: string): void {
    if (gen !== this.gen) return;
    const ws = this.ws;
    this.closed(gen, 4100, reason);
    try { ws?.close(4100, reason.slice(0, 100)); } catch { /* already closing */ }
  }

  private teardown(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
    this.inFlight.clear();
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new RequestError("offline", "connection to the hub lost"));
    }
    this.pending.clear();
  }

  private closed(gen: number, code: number, reason: string): void {
    if (gen !== this.gen) return;
    this.gen += 1; // ignore anything the old socket still delivers
    this.teardown();
    this.ws = null;
    if (this.stopped) return;
    if (code === 4000) {
      this.stopped = true;
      this.setStatus("replaced");
      this.emit("replaced");
      return;
    }
    if (code === 4003) {
      this.stopped = true;
      this.setStatus("stopped");
      this.emit("fatal", { code, reason: this.authFail || reason || "authentication refused" });
      return;
    }
    if (code === 1008 || code === 1009) {
      this.emit("error", { code, message: code === 1009 ? "the hub refused a frame as too large" : `the hub closed the connection: ${reason || "policy violation"}` });
    }
    this.setStatus("offline");
    const wait = this.backoff.next();
    this.timers.push(setTimeout(() => void this.connect(), wait));
  }

  private startLiveness(gen: number): void {
    const every = this.o.pingIntervalMs ?? 15_000;
    const deadline = this.o.livenessTimeoutMs ?? every * 2.5;
    const tick = () => {
      if (gen !== this.gen) return;
      if (Date.now() - this.lastRx > deadline) return this.drop(gen, "no answer from the hub");
      this.sendNow({ type: "PING" });
      this.timers.push(setTimeout(tick, every));
    };
    this.timers.push(setTimeout(tick, every));
  }

  /** Sends if connected; false otherwise. */
  private sendNow(m: ClientMessage): boolean {
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.ws.send(JSON.stringify(m));
    return true;
  }

  /** Sends a message and waits for the reply that echoes its `requestId`. */
  request(m: ClientMessage): Promise<HubMessage> {
    const requestId = `r${++this.reqSeq}`;
    return new Promise((resolve, reject) => {
      if (!this.sendNow({ ...m, requestId } as ClientMessage)) {
        reject(new RequestError("offline", "not connected to the hub"));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new RequestError("timeout", `no reply to ${m.type}`));
      }, this.o.requestTimeoutMs ?? 10_000);
      this.pending.set(requestId, { resolve, reject, timer });
    });
  }

  private async setCursor(seq: number): Promise<void> {
    this._cursor = seq;
    await this.storage.set(this.cursorKey, String(seq));
  }

  /**
   * Our own write's event is not broadcast back to us; once its ack has been handed to the app
   * the cursor may move past it, but only when it is the very next seq: an ack can overtake
   * events still coming through catch-up, and the cursor must never skip those.
   */
  private async ownEvent(seq: number): Promise<void> {
    if (seq === this._cursor + 1) await this.setCursor(seq);
  }

  private async applyOne(ev: HubEvent): Promise<void> {
    if (typeof ev.seq !== "number" || ev.seq <= this._cursor) return; // already applied
    await this.o.applyEvent?.(ev);
    await this.setCursor(ev.seq);
  }

  private async handle(gen: number, m: HubMessage): Promise<void> {
    if (gen !== this.gen) return;
    const rid = (m as { requestId?: unknown }).requestId;
    switch (m.type) {
      case "AUTH_OK":
        this.backoff.reset();
        this.setStatus("online");
        this.emit("authenticated", m);
        this.afterAuth();
        break;
      case "AUTH_FAIL":
        this.authFail = m.reason;
        break;
      case "EVENTS_BULK":
        for (const ev of m.events) await this.applyOne(ev);
        if (m.toSeq > this._cursor) await this.setCursor(m.toSeq);
        if (m.done) this.emit("caughtUp", this._cursor);
        break;
      case "RESYNC_REQUIRED":
        this.emit("resync", m.reason);
        break;
      case "STATE":
        await this.o.replaceState?.(m);
        await this.setCursor(m.seq);
        this.emit("caughtUp", this._cursor);
        break;
      case "ORDER_ACK":
        await this.onAck(m);
        break;
      case "CONFLICT":
        await this.onConflict(m);
        break;
      case "ERROR":
        if (typeof rid === "string" && rid.startsWith("w:")) await this.onWriteError(rid.slice(2), m);
        else if (typeof rid !== "string" || !this.pending.has(rid)) this.emit("error", { code: m.code, message: m.message });
        break;
      case "LEASE_GRANTED":
        this.leases.granted(m.posReference, m.ttlMs, m.expiresAt);
        this.pump();
        break;
      case "LEASE_DENIED":
        // A lease we held (re-acquired after a reconnect) went to someone else meanwhile.
        if (this.leases.forget(m.posReference)) {
          this.emit("leaseRevoked", { type: "LEASE_REVOKED", posReference: m.posReference, reason: "taken" });
        }
        break;
      case "LEASE_RENEWED":
        this.leases.renewed(m.posReference, m.expiresAt);
        break;
      case "LEASE_RELEASED":
        this.leases.forget(m.posReference);
        break;
      case "LEASE_REVOKED":
        this.leases.forget(m.posReference);
        this.emit("leaseRevoked", m);
        break;
      case "KITCHEN_TICKET_ACK":
        await this.ownEvent(m.seq);
        break;
      default:
        if (EVENT_TYPES.has(m.type)) await this.applyOne(m as HubEvent);
    }
    if (typeof rid === "string" && this.pending.has(rid)) {
      const p = this.pending.get(rid)!;
      this.pending.delete(rid);
      clearTimeout(p.timer);
      p.resolve(m);
    }
    this.emit("message", m);
  }

  /** After AUTH_OK: re-acquire held leases and those the outbox needs, then flush it. */
  private afterAuth(): void {
    const refs = new Set([...this.leases.list(), ...this.outbox.list().map((e) => e.posReference)]);
    for (const ref of refs) this.sendNow({ type: "LEASE_ACQUIRE", posReference: ref });
    this.pump();
  }

  /** Sends every outbox entry that can go: one in flight per order, in outbox order. */
  private pump(): void {
    if (this._status !== "online") return;
    for (const e of this.outbox.list()) {
      if (this.inFlight.has(e.posReference) || e.baseVersion === null) continue;
      // Later entries of the same order wait for this one's ack.
      this.inFlight.set(e.posReference, e.eventId);
      const sent = this.sendNow({
        type: "ORDER_SNAPSHOT", posReference: e.posReference, baseVersion: e.baseVersion,
        snapshot: e.snapshot, eventId: e.eventId, requestId: `w:${e.eventId}`,
      });
      if (!sent) { this.inFlight.delete(e.posReference); return; }
    }
  }

  private async onAck(m: OrderAck): Promise<void> {
    const rid = (m as { requestId?: unknown }).requestId;
    const eventId = typeof rid === "string" && rid.startsWith("w:") ? rid.slice(2) : this.inFlight.get(m.posReference);
    if (!eventId) return;
    this.inFlight.delete(m.posReference);
    this.leaseRetry.delete(eventId);
    const entry = await this.outbox.ack(eventId, m.version);
    if (entry) this.emit("ack", entry, m);
    await this.ownEvent(m.seq);
    this.settle(eventId, { kind: "ack", version: m.version, seq: m.seq, eventId });
    this.pump();
  }

  private async onConflict(m: Conflict): Promise<void> {
    const eventId = this.inFlight.get(m.posReference);
    if (!eventId) return;
    this.inFlight.delete(m.posReference);
    const rejected = await this.outbox.drop(eventId);
    for (const e of rejected) {
      this.settle(e.eventId, { kind: "conflict", currentVersion: m.currentVersion, snapshot: m.snapshot, eventId: e.eventId });
    }
    this.emit("conflict", { posReference: m.posReference, currentVersion: m.currentVersion, snapshot: m.snapshot, rejected });
    this.pump();
  }

  private async onWriteError(eventId: string, m: ErrorMsg): Promise<void> {
    const entry = this.outbox.list().find((e) => e.eventId === eventId);
    if (!entry) return;
    this.inFlight.delete(entry.posReference);
    if (m.code === "lease_required" && !this.leaseRetry.has(eventId)) {
      // The lease lapsed while we were away: take it again and resend once.
      this.leaseRetry.add(eventId);
      const r = await this.request({ type: "LEASE_ACQUIRE", posReference: entry.posReference }).catch(() => null);
      if (r?.type === "LEASE_GRANTED") return this.pump();
    }
    if (m.code === "storage_full" || m.code === "storage_error" || m.code === "rate_limited") {
      // The hub cannot take it now; it stays in the outbox and goes again shortly.
      this.timers.push(setTimeout(() => this.pump(), 1000));
      return;
    }
    const gone = await this.outbox.drop(eventId);
    for (const e of gone) {
      this.emit("writeFailed", e, m);
      this.settle(e.eventId, { kind: "failed", code: m.code, message: m.message, eventId: e.eventId });
    }
    this.pump();
  }

  private settle(eventId: string, r: WriteResult): void {
    const w = this.waiters.get(eventId);
    this.waiters.delete(eventId);
    w?.(r);
  }

  /**
   * Writes an order: the snapshot goes into the outbox (persisted) and is sent now or when the
   * hub is back. `baseVersion` is the version the change was made on; a second write to the
   * same order while the first is still unacknowledged is based on the first's result. The
   * promise settles when the hub answers (possibly after reconnects; not across app restarts —
   * listen to `ack` / `conflict` / `writeFailed` for those).
   */
  async writeOrder(snapshot: OrderSnapshot, baseVersion: number): Promise<WriteResult> {
    const eventId = (this.o.newEventId ?? defaultEventId)();
    const entry: OutboxEntry = {
      eventId, posReference: snapshot.posReference, snapshot, createdAt: Date.now(),
      baseVersion: this.outbox.hasPending(snapshot.posReference) ? null : baseVersion,
    };
    const size = JSON.stringify({ type: "ORDER_SNAPSHOT", ...entry }).length;
    if (size > MAX_FRAME_BYTES - 1024) throw new RequestError("too_large", `order snapshot is ${size} bytes; the hub takes at most ${MAX_FRAME_BYTES}`);
    const done = new Promise<WriteResult>((resolve) => this.waiters.set(eventId, resolve));
    await this.outbox.add(entry);
    this.pump();
    return done;
  }

  /** Takes (or renews) an order's lease and keeps it renewed until released or revoked. */
  async acquireLease(posReference: string): Promise<LeaseGranted | LeaseDenied> {
    const r = await this.request({ type: "LEASE_ACQUIRE", posReference });
    if (r.type === "LEASE_GRANTED" || r.type === "LEASE_DENIED") return r;
    throw new RequestError(r.type === "ERROR" ? r.code : "unexpected", `LEASE_ACQUIRE answered ${r.type}`);
  }

  /** Gives an order's lease back. */
  async releaseLease(posReference: string): Promise<void> {
    this.leases.forget(posReference);
    await this.request({ type: "LEASE_RELEASE", posReference });
  }

  /** Sends a kitchen ticket (idempotent by `ticketId`). */
  async sendKitchenTicket(t: { ticketId: string; station: Station; posReference: string; tableId?: Id | null; lines: KitchenLine[] }): Promise<KitchenTicketAck> {
    return this.expect(await this.request({ type: "KITCHEN_TICKET", ...t }), "KITCHEN_TICKET_ACK");
  }

  /** Bumps (`done`), acknowledges or recalls a kitchen ticket. */
  async setTicketStatus(ticketId: string, status: "acked" | "done" | "recalled"): Promise<KitchenTicketAck> {
    return this.expect(await this.request({ type: "KITCHEN_TICKET_STATUS", ticketId, status }), "KITCHEN_TICKET_ACK");
  }

  private expect<T extends HubMessage["type"]>(r: HubMessage, type: T): Extract<HubMessage, { type: T }> {
    if (r.type === type) return r as Extract<HubMessage, { type: T }>;
    if (r.type === "ERROR") throw new RequestError(r.code, r.message);
    throw new RequestError("unexpected", `expected ${type}, got ${r.type}`);
  }
}

export { RequestError };
