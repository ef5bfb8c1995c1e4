/**
 * `HubClient`: one terminal's connection to the hub. It authenticates with its token and
 * cursor, reconnects with backoff after every close (except the ones that mean "stop"), keeps
 * the cursor in storage and moves it only past events the app has applied, sends the outbox
 * in order, renews leases, and turns `RESYNC_REQUIRED` + `STATE` into one state replacement.
 */
import { Backoff } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { Leases } from "./leases.js";
import { Outbox } from "./outbox.js";
import { memoryStorage } from "./storage.js";
import { EVENT_TYPES, } from "./messages.js";
/** The hub refuses frames larger than this (close 1009); the client refuses them first. */
export const MAX_FRAME_BYTES = 256 * 1024;
class RequestError extends Error {
    constructor(code, message) {
        super(message);
        this.code = code;
    }
}
function defaultEventId() {
    const c = globalThis.crypto;
    if (c?.randomUUID)
        return c.randomUUID();
    const hex = () => Math.floor(Math.random() * 0x10000).toString(16).padStart(4, "0");
    return `${hex()}${hex()}-${hex()}-4${hex().slice(1)}-${hex()}-${hex()}${hex()}${hex()}`;
}
export class HubClient extends Emitter {
    constructor(o) {
        super();
        this.o = o;
        this.ws = null;
        /** Bumped on every new socket: messages of an older one are ignored. */
        this.gen = 0;
        this.chain = Promise.resolve();
        this._status = "idle";
        this._cursor = 0;
        this.stopped = false;
        this.authFail = "";
        this.reqSeq = 0;
        this.pending = new Map();
        this.inFlight = new Map(); // posReference -> eventId
        this.waiters = new Map();
        this.leaseRetry = new Set();
        this.timers = [];
        this.lastRx = 0;
        /** Sockets opened so far (tests count them to check the backoff). */
        this.connectAttempts = 0;
        const ws = o.WebSocket ?? globalThis.WebSocket;
        if (!ws)
            throw new Error("no WebSocket here: pass options.WebSocket (the `ws` package in Node < 22)");
        this.WS = ws;
        this.storage = o.storage ?? memoryStorage();
        this.outbox = new Outbox(this.storage, `outbox.${o.terminalId}`);
        this.backoff = new Backoff(o.backoff);
        this.leases = new Leases((ref) => this.sendNow({ type: "LEASE_HEARTBEAT", posReference: ref }));
    }
    get status() { return this._status; }
    /** The seq of the last event the app applied (persisted). */
    get cursor() { return this._cursor; }
    /** Writes not yet acknowledged by the hub, oldest first. */
    get pendingWrites() { return this.outbox.list(); }
    get heldLeases() { return this.leases.list(); }
    get cursorKey() { return `cursor.${this.o.terminalId}`; }
    /** Loads the cursor and the outbox from storage and connects. */
    async start() {
        this.stopped = false;
        const c = Number((await this.storage.get(this.cursorKey)) ?? 0);
        this._cursor = Number.isFinite(c) && c >= 0 ? c : 0;
        await this.outbox.load();
        void this.connect();
    }
    /** Closes the connection and stops reconnecting; the outbox and cursor stay in storage. */
    stop() {
        this.stopped = true;
        this.teardown();
        this.ws?.close(1000, "client stopped");
        this.ws = null;
        this.setStatus("stopped");
    }
    setStatus(s) {
        if (s === this._status)
            return;
        this._status = s;
        this.emit("status", s);
    }
    async connect() {
        if (this.stopped)
            return;
        this.setStatus("connecting");
        const gen = ++this.gen;
        let url;
        try {
            url = typeof this.o.url === "string" ? this.o.url : await this.o.url();
        }
        catch (e) {
            this.emit("error", { code: "discovery", message: String(e) });
            return this.closed(gen, 1006, "no hub found");
        }
        if (gen !== this.gen || this.stopped)
            return;
        this.connectAttempts += 1;
        let ws;
        try {
            ws = new this.WS(url);
        }
        catch (e) {
            this.emit("error", { code: "url", message: String(e) });
            return this.closed(gen, 1006, String(e));
        }
        this.ws = ws;
        ws.onopen = () => {
            if (gen !== this.gen)
                return;
            this.lastRx = Date.now();
            const auth = {
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
            if (gen !== this.gen)
                return;
            this.lastRx = Date.now();
            const text = typeof ev.data === "string" ? ev.data : new TextDecoder().decode(ev.data);
            let m;
            try {
                m = JSON.parse(text);
            }
            catch {
                this.emit("error", { code: "bad_frame", message: `hub sent a frame that is not JSON: ${text.slice(0, 80)}` });
                return;
            }
            this.chain = this.chain.then(() => this.handle(gen, m)).catch((e) => {
                this.emit("error", { code: "apply_failed", message: String(e) });
                this.drop(gen, "the app failed to apply an event; replaying from the cursor");
            });
        };
        ws.onclose = (ev) => this.closed(gen, ev.code, ev.reason);
        ws.onerror = () => { };
    }
    /** Drops the current socket as if it had closed (liveness lost, apply failed). */
    drop(gen, reason) {
        if (gen !== this.gen)
            return;
        const ws = this.ws;
        this.closed(gen, 4100, reason);
        try {
            ws?.close(4100, reason.slice(0, 100));
        }
        catch { /* already closing */ }
    }
    teardown() {
        for (const t of this.timers)
            clearTimeout(t);
        this.timers = [];
        this.inFlight.clear();
        for (const [, p] of this.pending) {
            clearTimeout(p.timer);
            p.reject(new RequestError("offline", "connection to the hub lost"));
        }
        this.pending.clear();
    }
    closed(gen, code, reason) {
        if (gen !== this.gen)
            return;
        this.gen += 1; // ignore anything the old socket still delivers
        this.teardown();
        this.ws = null;
        if (this.stopped)
            return;
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
    startLiveness(gen) {
        const every = this.o.pingIntervalMs ?? 15000;
        const deadline = this.o.livenessTimeoutMs ?? every * 2.5;
        const tick = () => {
            if (gen !== this.gen)
                return;
            if (Date.now() - this.lastRx > deadline)
                return this.drop(gen, "no answer from the hub");
            this.sendNow({ type: "PING" });
            this.timers.push(setTimeout(tick, every));
        };
        this.timers.push(setTimeout(tick, every));
    }
    /** Sends if connected; false otherwise. */
    sendNow(m) {
        if (!this.ws || this.ws.readyState !== 1)
            return false;
        this.ws.send(JSON.stringify(m));
        return true;
    }
    /** Sends a message and waits for the reply that echoes its `requestId`. */
    request(m) {
        const requestId = `r${++this.reqSeq}`;
        return new Promise((resolve, reject) => {
            if (!this.sendNow({ ...m, requestId })) {
                reject(new RequestError("offline", "not connected to the hub"));
                return;
            }
            const timer = setTimeout(() => {
                this.pending.delete(requestId);
                reject(new RequestError("timeout", `no reply to ${m.type}`));
            }, this.o.requestTimeoutMs ?? 10000);
            this.pending.set(requestId, { resolve, reject, timer });
        });
    }
    async setCursor(seq) {
        this._cursor = seq;
        await this.storage.set(this.cursorKey, String(seq));
    }
    async applyOne(ev) {
        if (typeof ev.seq !== "number" || ev.seq <= this._cursor)
            return; // already applied
        await this.o.applyEvent?.(ev);
        await this.setCursor(ev.seq);
    }
    async handle(gen, m) {
        if (gen !== this.gen)
            return;
        const rid = m.requestId;
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
                for (const ev of m.events)
                    await this.applyOne(ev);
                if (m.toSeq > this._cursor)
                    await this.setCursor(m.toSeq);
                if (m.done)
                    this.emit("caughtUp", this._cursor);
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
                if (typeof rid === "string" && rid.startsWith("w:"))
                    await this.onWriteError(rid.slice(2), m);
                else if (typeof rid !== "string" || !this.pending.has(rid))
                    this.emit("error", { code: m.code, message: m.message });
                break;
            case "LEASE_GRANTED":
                this.leases.granted(m.posReference, m.ttlMs, m.expiresAt);
                this.pump();
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
            default:
                if (EVENT_TYPES.has(m.type))
                    await this.applyOne(m);
        }
        if (typeof rid === "string" && this.pending.has(rid)) {
            const p = this.pending.get(rid);
            this.pending.delete(rid);
            clearTimeout(p.timer);
            p.resolve(m);
        }
        this.emit("message", m);
    }
    /** After AUTH_OK: re-acquire held leases and those the outbox needs, then flush it. */
    afterAuth() {
        const refs = new Set([...this.leases.list(), ...this.outbox.list().map((e) => e.posReference)]);
        for (const ref of refs)
            this.sendNow({ type: "LEASE_ACQUIRE", posReference: ref });
        this.pump();
    }
    /** Sends every outbox entry that can go: one in flight per order, in outbox order. */
    pump() {
        if (this._status !== "online")
            return;
        for (const e of this.outbox.list()) {
            if (this.inFlight.has(e.posReference) || e.baseVersion === null)
                continue;
            // Later entries of the same order wait for this one's ack.
            this.inFlight.set(e.posReference, e.eventId);
            const sent = this.sendNow({
                type: "ORDER_SNAPSHOT", posReference: e.posReference, baseVersion: e.baseVersion,
                snapshot: e.snapshot, eventId: e.eventId, requestId: `w:${e.eventId}`,
            });
            if (!sent) {
                this.inFlight.delete(e.posReference);
                return;
            }
        }
    }
    async onAck(m) {
        const rid = m.requestId;
        const eventId = typeof rid === "string" && rid.startsWith("w:") ? rid.slice(2) : this.inFlight.get(m.posReference);
        if (!eventId)
            return;
        this.inFlight.delete(m.posReference);
        this.leaseRetry.delete(eventId);
        const entry = await this.outbox.ack(eventId, m.version);
        if (entry)
            this.emit("ack", entry, m);
        this.settle(eventId, { kind: "ack", version: m.version, seq: m.seq, eventId });
        this.pump();
    }
    async onConflict(m) {
        const eventId = this.inFlight.get(m.posReference);
        if (!eventId)
            return;
        this.inFlight.delete(m.posReference);
        const rejected = await this.outbox.drop(eventId);
        for (const e of rejected) {
            this.settle(e.eventId, { kind: "conflict", currentVersion: m.currentVersion, snapshot: m.snapshot, eventId: e.eventId });
        }
        this.emit("conflict", { posReference: m.posReference, currentVersion: m.currentVersion, snapshot: m.snapshot, rejected });
        this.pump();
    }
    async onWriteError(eventId, m) {
        const entry = this.outbox.list().find((e) => e.eventId === eventId);
        if (!entry)
            return;
        this.inFlight.delete(entry.posReference);
        if (m.code === "lease_required" && !this.leaseRetry.has(eventId)) {
            // The lease lapsed while we were away: take it again and resend once.
            this.leaseRetry.add(eventId);
            const r = await this.request({ type: "LEASE_ACQUIRE", posReference: entry.posReference }).catch(() => null);
            if (r?.type === "LEASE_GRANTED")
                return this.pump();
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
    settle(eventId, r) {
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
    async writeOrder(snapshot, baseVersion) {
        const eventId = (this.o.newEventId ?? defaultEventId)();
        const entry = {
            eventId, posReference: snapshot.posReference, snapshot, createdAt: Date.now(),
            baseVersion: this.outbox.hasPending(snapshot.posReference) ? null : baseVersion,
        };
        const size = JSON.stringify({ type: "ORDER_SNAPSHOT", ...entry }).length;
        if (size > MAX_FRAME_BYTES - 1024)
            throw new RequestError("too_large", `order snapshot is ${size} bytes; the hub takes at most ${MAX_FRAME_BYTES}`);
        const done = new Promise((resolve) => this.waiters.set(eventId, resolve));
        await this.outbox.add(entry);
        this.pump();
        return done;
    }
    /** Takes (or renews) an order's lease and keeps it renewed until released or revoked. */
    async acquireLease(posReference) {
        const r = await this.request({ type: "LEASE_ACQUIRE", posReference });
        if (r.type === "LEASE_GRANTED" || r.type === "LEASE_DENIED")
            return r;
        throw new RequestError(r.type === "ERROR" ? r.code : "unexpected", `LEASE_ACQUIRE answered ${r.type}`);
    }
    /** Gives an order's lease back. */
    async releaseLease(posReference) {
        this.leases.forget(posReference);
        await this.request({ type: "LEASE_RELEASE", posReference });
    }
    /** Sends a kitchen ticket (idempotent by `ticketId`). */
    async sendKitchenTicket(t) {
        return this.expect(await this.request({ type: "KITCHEN_TICKET", ...t }), "KITCHEN_TICKET_ACK");
    }
    /** Bumps (`done`), acknowledges or recalls a kitchen ticket. */
    async setTicketStatus(ticketId, status) {
        return this.expect(await this.request({ type: "KITCHEN_TICKET_STATUS", ticketId, status }), "KITCHEN_TICKET_ACK");
    }
    expect(r, type) {
        if (r.type === type)
            return r;
        if (r.type === "ERROR")
            throw new RequestError(r.code, r.message);
        throw new RequestError("unexpected", `expected ${type}, got ${r.type}`);
    }
}
export { RequestError };
