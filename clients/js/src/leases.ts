/**
 * Order leases held by this terminal: each one is renewed with `LEASE_HEARTBEAT` every third of
 * its TTL (the hub's lease tick runs every `HUB_HEARTBEAT_MS` = TTL/3 by default, and the
 * browser terminal has always renewed at that pace), re-acquired after a reconnect, and
 * forgotten when the hub revokes it.
 */

export interface HeldLease {
  posReference: string;
  ttlMs: number;
  expiresAt: number;
  timer: ReturnType<typeof setInterval>;
}

/** Fraction of the TTL between two heartbeats. */
export const HEARTBEAT_FRACTION = 1 / 3;

export class Leases {
  private held = new Map<string, HeldLease>();

  constructor(private readonly heartbeat: (posReference: string) => void) {}

  /** Records a grant (or a renewal by re-acquire) and (re)starts its heartbeat timer. */
  granted(posReference: string, ttlMs: number, expiresAt: number): void {
    this.forget(posReference);
    const every = Math.max(50, Math.floor(ttlMs * HEARTBEAT_FRACTION));
    const timer = setInterval(() => this.heartbeat(posReference), every);
    (timer as { unref?: () => void }).unref?.();
    this.held.set(posReference, { posReference, ttlMs, expiresAt, timer });
  }

  renewed(posReference: string, expiresAt: number): void {
    const l = this.held.get(posReference);
    if (l) l.expiresAt = expiresAt;
  }

  /** Stops renewing; true if the lease was held. */
  forget(posReference: string): boolean {
    const l = this.held.get(posReference);
    if (!l) return false;
    clearInterval(l.timer);
    this.held.delete(posReference);
    return true;
  }

  has(posReference: string): boolean {
    return this.held.has(posReference);
  }

  list(): string[] {
    return [...this.held.keys()];
  }

  get(posReference: string): HeldLease | undefined {
    return this.held.get(posReference);
  }

  /**
   * Stops every heartbeat timer but keeps the list, so a stopped client runs no timer (React
   * Native timers are not `unref`-able) and a restarted one still re-acquires what it held.
   */
  pause(): void {
    for (const l of this.held.values()) clearInterval(l.timer);
  }

  clear(): void {
    for (const ref of this.list()) this.forget(ref);
  }
}
