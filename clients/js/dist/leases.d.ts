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
export declare const HEARTBEAT_FRACTION: number;
export declare class Leases {
    private readonly heartbeat;
    private held;
    constructor(heartbeat: (posReference: string) => void);
    /** Records a grant (or a renewal by re-acquire) and (re)starts its heartbeat timer. */
    granted(posReference: string, ttlMs: number, expiresAt: number): void;
    renewed(posReference: string, expiresAt: number): void;
    /** Stops renewing; true if the lease was held. */
    forget(posReference: string): boolean;
    has(posReference: string): boolean;
    list(): string[];
    get(posReference: string): HeldLease | undefined;
    clear(): void;
}
