/**
 * The outbox: order writes kept in storage until the hub acknowledges them, so a write made
 * while the hub is away survives an app restart and is sent, in order, once it is back. Each
 * entry keeps the `eventId` it was created with; a resend after an ambiguous loss (sent, hub
 * killed before the ack reached us) carries the same id, and the hub answers it with the
 * original `ORDER_ACK` instead of applying it twice.
 */
export class Outbox {
    constructor(storage, key) {
        this.storage = storage;
        this.key = key;
        this.entries = [];
        this.loaded = false;
        this.saving = Promise.resolve();
    }
    /** Reads the stored entries (once). A damaged record is reported, never silently dropped. */
    async load() {
        if (this.loaded)
            return;
        const text = await this.storage.get(this.key);
        if (text) {
            const parsed = JSON.parse(text);
            if (!Array.isArray(parsed))
                throw new Error(`outbox ${this.key}: stored value is not a list`);
            this.entries = parsed;
        }
        this.loaded = true;
    }
    list() {
        return this.entries;
    }
    get size() {
        return this.entries.length;
    }
    /** True when an earlier entry for the same order waits for its ack. */
    hasPending(posReference) {
        return this.entries.some((e) => e.posReference === posReference);
    }
    async add(e) {
        this.entries.push(e);
        await this.save();
    }
    /** Removes an acknowledged entry; the next entry of that order is based on `version`. */
    async ack(eventId, version) {
        const i = this.entries.findIndex((e) => e.eventId === eventId);
        if (i < 0)
            return undefined;
        const [done] = this.entries.splice(i, 1);
        const next = this.entries.find((e) => e.posReference === done.posReference);
        if (next && next.baseVersion === null && version !== undefined)
            next.baseVersion = version;
        await this.save();
        return done;
    }
    /** Removes an entry and every later one of the same order (they were built on top of it). */
    async drop(eventId) {
        const i = this.entries.findIndex((e) => e.eventId === eventId);
        if (i < 0)
            return [];
        const ref = this.entries[i].posReference;
        const gone = this.entries.filter((e, j) => j >= i && e.posReference === ref);
        this.entries = this.entries.filter((e) => !gone.includes(e));
        await this.save();
        return gone;
    }
    save() {
        const text = JSON.stringify(this.entries);
        this.saving = this.saving.then(() => this.storage.set(this.key, text));
        return this.saving;
    }
}
