/**
 * Exponential backoff with jitter: the wait before attempt n is drawn from
 * [cap/2, cap] with cap = min(maxMs, initialMs * 2^n), so a room full of terminals that lost
 * the hub at the same moment do not come back in lockstep, and a hub that is down is tried a
 * handful of times a minute, not hammered.
 */

export interface BackoffOptions {
  /** First wait (ms); default 250. */
  initialMs?: number;
  /** Longest wait (ms); default 10 000. */
  maxMs?: number;
  /** Random source in [0, 1), for tests. */
  random?: () => number;
}

export class Backoff {
  private attempt = 0;
  readonly initialMs: number;
  readonly maxMs: number;
  private readonly random: () => number;

  constructor(o: BackoffOptions = {}) {
    this.initialMs = o.initialMs ?? 250;
    this.maxMs = o.maxMs ?? 10_000;
    this.random = o.random ?? Math.random;
  }

  /** The wait before the next attempt; each call doubles the ceiling up to `maxMs`. */
  next(): number {
    const cap = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 30));
    this.attempt += 1;
    return Math.round(cap / 2 + (this.random() * cap) / 2);
  }

  /** Called once a connection is authenticated: the next close starts from `initialMs` again. */
  reset(): void {
    this.attempt = 0;
  }
}
