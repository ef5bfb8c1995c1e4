/**
 * `HubClient`: one terminal's connection to the hub. It authenticates with its token and
 * cursor, reconnects with backoff after every close (except the ones that mean "stop"), keeps
 * the cursor in storage and moves it only past events the app has applied, sends the outbox
 * in order, renews leases, and turns `RESYNC_REQUIRED` + `STATE` into one state replacement.
 */
import { type BackoffOptions } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { type OutboxEntry } from "./outbox.js";
import { type KeyValueStorage } from "./storage.js";
import { type AuthOk, type ClientMessage, type ErrorMsg, type HubEvent, type HubMessage, type KitchenLine, type KitchenTicketAck, type LeaseDenied, type LeaseGranted, type LeaseRevoked, type OrderAck, type OrderSnapshot, type Station, type StateMsg, type Id } from "./messages.js";
/** What the library needs of a WebSocket: the browser / React Native / Node ≥ 22 global, or `ws`. */
export interface WebSocketLike {
    readonly readyState: number;
    send(data: string): void;
    close(code?: number, reason?: string): void;
    onopen: ((ev: unknown) => void) | null;
    onmessage: ((ev: {
        data: unknown;
    }) => void) | null;
    onclose: ((ev: {
        code: number;
        reason: string;
    }) => void) | null;
    onerror: ((ev: unknown) => void) | null;
}
export type WebSocketCtor = new (url: string) => WebSocketLike;
/** The hub refuses frames larger than this (close 1009); the client refuses them first. */
export declare const MAX_FRAME_BYTES: number;
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
export type WriteResult = {
    kind: "ack";
    version: number;
    seq: number;
    eventId: string;
} | {
    kind: "conflict";
    currentVersion: number;
    snapshot: OrderSnapshot;
    eventId: string;
} | {
    kind: "failed";
    code: string;
    message: string;
    eventId: string;
};
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
    error: (e: {
        code: number | string;
        message: string;
    }) => void;
    /** The client stopped for good: 4003 (authentication refused). */
    fatal: (e: {
        code: number;
        reason: string;
    }) => void;
    /** Another connection with our terminalId took over (4000); we do not fight back. */
    replaced: () => void;
}
declare class RequestError extends Error {
    readonly code: string;
    constructor(code: string, message: string);
}
export declare class HubClient extends Emitter<ClientEvents> {
    private readonly o;
    private ws;
    /** Bumped on every new socket: messages of an older one are ignored. */
    private gen;
    private chain;
    private _status;
    private _cursor;
    private stopped;
    private authFail;
    private reqSeq;
    private pending;
    private inFlight;
    private waiters;
    private leaseRetry;
    private timers;
    private lastRx;
    private readonly storage;
    private readonly outbox;
    private readonly backoff;
    private readonly leases;
    private readonly WS;
    /** Sockets opened so far (tests count them to check the backoff). */
    connectAttempts: number;
    constructor(o: HubClientOptions);
    get status(): Status;
    /** The seq of the last event the app applied (persisted). */
    get cursor(): number;
    /** Writes not yet acknowledged by the hub, oldest first. */
    get pendingWrites(): readonly OutboxEntry[];
    get heldLeases(): string[];
    private get cursorKey();
    /** Loads the cursor and the outbox from storage and connects. */
    start(): Promise<void>;
    /** Closes the connection and stops reconnecting; the outbox and cursor stay in storage. */
    stop(): void;
    private setStatus;
    private connect;
    /** Drops the current socket as if it had closed (liveness lost, apply failed). */
    private drop;
    private teardown;
    private closed;
    private startLiveness;
    /** Sends if connected; false otherwise. */
    private sendNow;
    /** Sends a message and waits for the reply that echoes its `requestId`. */
    request(m: ClientMessage): Promise<HubMessage>;
    private setCursor;
    private applyOne;
    private handle;
    /** After AUTH_OK: re-acquire held leases and those the outbox needs, then flush it. */
    private afterAuth;
    /** Sends every outbox entry that can go: one in flight per order, in outbox order. */
    private pump;
    private onAck;
    private onConflict;
    private onWriteError;
    private settle;
    /**
     * Writes an order: the snapshot goes into the outbox (persisted) and is sent now or when the
     * hub is back. `baseVersion` is the version the change was made on; a second write to the
     * same order while the first is still unacknowledged is based on the first's result. The
     * promise settles when the hub answers (possibly after reconnects; not across app restarts —
     * listen to `ack` / `conflict` / `writeFailed` for those).
     */
    writeOrder(snapshot: OrderSnapshot, baseVersion: number): Promise<WriteResult>;
    /** Takes (or renews) an order's lease and keeps it renewed until released or revoked. */
    acquireLease(posReference: string): Promise<LeaseGranted | LeaseDenied>;
    /** Gives an order's lease back. */
    releaseLease(posReference: string): Promise<void>;
    /** Sends a kitchen ticket (idempotent by `ticketId`). */
    sendKitchenTicket(t: {
        ticketId: string;
        station: Station;
        posReference: string;
        tableId?: Id | null;
        lines: KitchenLine[];
    }): Promise<KitchenTicketAck>;
    /** Bumps (`done`), acknowledges or recalls a kitchen ticket. */
    setTicketStatus(ticketId: string, status: "acked" | "done" | "recalled"): Promise<KitchenTicketAck>;
    private expect;
}
export { RequestError };
