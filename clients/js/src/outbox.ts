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

export class Outbox {
  private entries: OutboxEntry[] = [];
  private loaded = false;
  /** The storage write still running, if the storage is asynchronous. */
  private saving: Promise<void> | null = null;

  constructor(private readonly storage: KeyValueStorage, private readonly key: string) {}

  /** Reads the stored entries (once). A damaged record is reported, never silently dropped. */
  async load(): Promise<void> {
    if (this.loaded) return;
    const text = await this.storage.get(this.key);
    if (text) {
      const parsed: unknown = JSON.parse(text);
      if (!Array.isArray(parsed)) throw new Error(`outbox ${this.key}: stored value is not a list`);
      this.entries = parsed as OutboxEntry[];
    }
    this.loaded = true;
  }

  list(): readonly OutboxEntry[] {
    return this.entries;
  }

  get size(): number {
    return this.entries.length;
  }

  /** True when an earlier entry for the same order waits for its ack. */
  hasPending(posReference: string): boolean {
    return this.entries.some((e) => e.posReference === posReference);
  }

  async add(e: OutboxEntry): Promise<void> {
    this.entries.push(e);
    await this.save();
  }

  /** Removes an acknowledged entry; the next entry of that order is based on `version`. */
  async ack(eventId: string, version?: number): Promise<OutboxEntry | undefined> {
    const i = this.entries.findIndex((e) => e.eventId === eventId);
    if (i < 0) return undefined;
    const [done] = this.entries.splice(i, 1);
    const next = this.entries.find((e) => e.posReference === done.posReference);
    if (next && next.baseVersion === null && version !== undefined) next.baseVersion = version;
    await this.save();
    return done;
  }

  /** Removes an entry and every later one of the same order (they were built on top of it). */
  async drop(eventId: string): Promise<OutboxEntry[]> {
    const i = this.entries.findIndex((e) => e.eventId === eventId);
    if (i < 0) return [];
    const ref = this.entries[i].posReference;
    const gone = this.entries.filter((e, j) => j >= i && e.posReference === ref);
    this.entries = this.entries.filter((e) => !gone.includes(e));
    await this.save();
    return gone;
  }

  /**
   * Writes the list. A synchronous storage (localStorage, memory) has it before this returns,
   * so an app closed right after `writeOrder` loses nothing; asynchronous writes are chained so
   * they land in order.
   */
  private save(): Promise<void> {
    const text = JSON.stringify(this.entries);
    const write = () => this.storage.set(this.key, text);
    const r = this.saving ? this.saving.then(write) : write();
    if (!r || typeof (r as Promise<void>).then !== "function") return Promise.resolve();
    const p: Promise<void> = Promise.resolve(r).finally(() => {
      if (this.saving === p) this.saving = null;
    });
    this.saving = p;
    return p;
  }
}
