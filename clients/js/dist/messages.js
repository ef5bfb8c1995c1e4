/**
 * The wire messages of the poshub protocol (SPEC §2, README "The protocol in one minute").
 *
 * `CLIENT_FIELDS` / `HUB_FIELDS` list, per message type, the fields this library reads or
 * writes. The compiler checks that every listed field exists on the message's interface, and
 * `scripts/check-protocol.mjs` (run before every build) checks the same lists against the
 * hub's Rust sources, so a field renamed on either side fails the build.
 */
/** The `type`s that are events (applied in seq order, cursor advanced past them). */
export const EVENT_TYPES = new Set([
    "ORDER_UPDATED", "TABLE_UPDATED", "FLOOR_PLAN_CHANGED", "TABLE_LOCKS_STATE", "TABLE_LOCK_RELEASED",
    "KITCHEN_TICKET_CREATED", "KITCHEN_TICKET_UPDATED", "INVENTORY_UPDATED",
]);
/** Fields this library sends, per client message type (checked against the hub's parser). */
export const CLIENT_FIELDS = {
    AUTH: ["token", "terminalId", "name", "cursor", "role", "stations"],
    PING: [],
    LEASE_ACQUIRE: ["posReference"],
    LEASE_HEARTBEAT: ["posReference"],
    LEASE_RELEASE: ["posReference"],
    ORDER_SNAPSHOT: ["posReference", "baseVersion", "snapshot", "eventId"],
    SYNC_REQUEST: ["cursor"],
    KITCHEN_TICKET: ["ticketId", "station", "posReference", "tableId", "lines"],
    KITCHEN_TICKET_STATUS: ["ticketId", "status"],
    SUBSCRIBE: ["stations"],
};
/** Fields this library reads, per hub message type (checked against what the hub builds). */
export const HUB_FIELDS = {
    AUTH_OK: ["terminalId", "role", "name", "realm", "seq", "serverTime"],
    AUTH_FAIL: ["reason", "message"],
    PONG: [],
    ERROR: ["code", "message"],
    LEASE_GRANTED: ["posReference", "expiresAt", "ttlMs"],
    LEASE_DENIED: ["posReference", "holder", "expiresAt"],
    LEASE_RENEWED: ["posReference", "expiresAt"],
    LEASE_REVOKED: ["posReference", "reason"],
    LEASE_RELEASED: ["posReference"],
    ORDER_ACK: ["posReference", "version", "seq"],
    CONFLICT: ["posReference", "currentVersion", "snapshot"],
    KITCHEN_TICKET_ACK: ["ticketId", "station", "status", "seq"],
    SUBSCRIBED: ["stations", "seq"],
    EVENTS_BULK: ["events", "fromSeq", "toSeq", "done"],
    RESYNC_REQUIRED: ["reason", "cursor", "seq"],
    STATE: ["orders", "tables", "tableLocks", "floorPlans", "kitchenTickets", "inventory", "seq"],
    SYNC_STATUS: ["terminals", "pendingEvents", "seq"],
    ORDER_UPDATED: ["posReference", "version", "snapshot", "terminalId", "seq", "ts"],
    TABLE_UPDATED: ["tableId", "status", "posReference", "terminalId", "seq"],
    FLOOR_PLAN_CHANGED: ["floorId", "tables", "seq"],
    TABLE_LOCKS_STATE: ["locks", "seq"],
    TABLE_LOCK_RELEASED: ["tableId", "terminalId", "seq"],
    KITCHEN_TICKET_CREATED: ["ticketId", "station", "posReference", "tableId", "lines", "status", "terminalId", "seq", "ts"],
    KITCHEN_TICKET_UPDATED: ["ticketId", "station", "posReference", "status", "terminalId", "seq", "ts"],
    INVENTORY_UPDATED: ["productId", "level", "seq"],
};
