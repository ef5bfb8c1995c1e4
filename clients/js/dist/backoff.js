/**
 * Exponential backoff with jitter: the wait before attempt n is drawn from
 * [cap/2, cap] with cap = min(maxMs, initialMs * 2^n), so a room full of terminals that lost
 * the hub at the same moment do not come back in lockstep, and a hub that is down is tried a
 * handful of times a minute, not hammered.
 */
export class Backoff {
    constructor(o = {}) {
        this.attempt = 0;
        this.initialMs = o.initialMs ?? 250;
        this.maxMs = o.maxMs ?? 10000;
        this.random = o.random ?? Math.random;
    }
    /** The wait before the next attempt; each call doubles the ceiling up to `maxMs`. */
    next() {
        const cap = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 30));
        this.attempt += 1;
        return Math.round(cap / 2 + (this.random() * cap) / 2);
    }
    /** Called once a connection is authenticated: the next close starts from `initialMs` again. */
    reset() {
        this.attempt = 0;
    }
}
