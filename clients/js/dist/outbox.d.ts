/**
 * The outbox: order writes kept in storage until the hub acknowledges them, so a write made
 * while the hub is away survives an app restart and is sent, in order, once it is back. Each
 * entry keeps the `eventId` it was created with; a resend after an ambiguous loss (sent, hub
 * killed before the ack reached us) carries the same id, and the hub answers it with the
 * original `ORDER_ACK` instead of applying it twice.
 */
import type { KeyValueStorage } from "./storage.js";
import type { OrderSnapshot } from "./messages.js";
export interface OutboxEntry {
    eventId: string;
    posReference: string;
    /** `null`: written on top of an earlier entry of the same order still in the outbox; the
     * version that entry is acknowledged with becomes this one's base. */
    baseVersion: number | null;
    snapshot: OrderSnapshot;
    createdAt: number;
}
export declare class Outbox {
    private readonly storage;
    private readonly key;
    private entries;
    private loaded;
    private saving;
    constructor(storage: KeyValueStorage, key: string);
    /** Reads the stored entries (once). A damaged record is reported, never silently dropped. */
    load(): Promise<void>;
    list(): readonly OutboxEntry[];
    get size(): number;
    /** True when an earlier entry for the same order waits for its ack. */
    hasPending(posReference: string): boolean;
    add(e: OutboxEntry): Promise<void>;
    /** Removes an acknowledged entry; the next entry of that order is based on `version`. */
    ack(eventId: string, version?: number): Promise<OutboxEntry | undefined>;
    /** Removes an entry and every later one of the same order (they were built on top of it). */
    drop(eventId: string): Promise<OutboxEntry[]>;
    private save;
}
