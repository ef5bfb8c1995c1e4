/**
 * The wire messages of the poshub protocol (SPEC §2, README "The protocol in one minute").
 *
 * `CLIENT_FIELDS` / `HUB_FIELDS` list, per message type, the fields this library reads or
 * writes. The compiler checks that every listed field exists on the message's interface, and
 * `scripts/check-protocol.mjs` (run before every build) checks the same lists against the
 * hub's Rust sources, so a field renamed on either side fails the build.
 */

/** A table, floor or product id: the hub keeps strings and integers as sent. */
export type Id = string | number;

export interface OrderLine {
  id: string;
  productId: Id;
  quantity: number;
  unitPrice: number;
  taxIds?: Id[];
  isVoided?: boolean;
  note?: string;
  name?: string;
  [extra: string]: unknown;
}

/** The full state of one order, as terminals write it (unknown fields are kept by the hub). */
export interface OrderSnapshot {
  posReference: string;
  state?: "draft" | "sent" | "paid" | "cancelled";
  orderType?: "dine_in" | "takeout" | "delivery";
  tableId?: Id | null;
  lines: OrderLine[];
  totals?: { subtotal: number; tax: number; total: number };
  paymentLines?: unknown[];
  [extra: string]: unknown;
}

export interface KitchenLine {
  name?: string;
  quantity?: number;
  note?: string;
  [extra: string]: unknown;
}

export type Station = "kds" | "bds";
export type TicketStatus = "new" | "acked" | "done" | "recalled";

// ---- terminal → hub -------------------------------------------------------------------------

export interface AuthMsg {
  type: "AUTH";
  token?: string;
  terminalId: string;
  deviceId?: string;
  name?: string;
  cursor?: number;
  role?: string;
  stations?: Station[];
}
export interface PingMsg { type: "PING" }
export interface LeaseAcquireMsg { type: "LEASE_ACQUIRE"; posReference: string }
export interface LeaseHeartbeatMsg { type: "LEASE_HEARTBEAT"; posReference: string }
export interface LeaseReleaseMsg { type: "LEASE_RELEASE"; posReference: string }
export interface OrderSnapshotMsg {
  type: "ORDER_SNAPSHOT";
  posReference: string;
  baseVersion: number;
  snapshot: OrderSnapshot;
  eventId: string;
}
export interface SyncRequestMsg { type: "SYNC_REQUEST"; cursor: number }
export interface KitchenTicketMsg {
  type: "KITCHEN_TICKET";
  ticketId: string;
  station: Station;
  posReference: string;
  tableId?: Id | null;
  lines: KitchenLine[];
}
export interface KitchenTicketStatusMsg {
  type: "KITCHEN_TICKET_STATUS";
  ticketId: string;
  status: "acked" | "done" | "recalled";
}
export interface SubscribeMsg { type: "SUBSCRIBE"; stations: Station[] }

export type ClientMessage = (AuthMsg | PingMsg | LeaseAcquireMsg | LeaseHeartbeatMsg | LeaseReleaseMsg
  | OrderSnapshotMsg | SyncRequestMsg | KitchenTicketMsg | KitchenTicketStatusMsg | SubscribeMsg)
  & { requestId?: string | number };

// ---- hub → terminal -------------------------------------------------------------------------

interface Reply { requestId?: string | number }
export interface AuthOk extends Reply {
  type: "AUTH_OK"; terminalId: string; uid: unknown; role: string; name: string;
  realm: { tenantId: string; storeId: string }; hubVersion: string; seq: number; serverTime: number;
}
export interface AuthFail extends Reply { type: "AUTH_FAIL"; reason: string; message: string }
export interface Pong extends Reply { type: "PONG" }
export interface ErrorMsg extends Reply { type: "ERROR"; code: string; message: string }
export interface LeaseGranted extends Reply { type: "LEASE_GRANTED"; posReference: string; expiresAt: number; ttlMs: number }
export interface LeaseDenied extends Reply {
  type: "LEASE_DENIED"; posReference: string; holder: { terminalId: string; name?: string }; expiresAt: number;
}
export interface LeaseRenewed extends Reply { type: "LEASE_RENEWED"; posReference: string; expiresAt: number }
export interface LeaseRevoked extends Reply { type: "LEASE_REVOKED"; posReference: string; reason: string }
export interface LeaseReleased extends Reply { type: "LEASE_RELEASED"; posReference: string }
export interface OrderAck extends Reply { type: "ORDER_ACK"; posReference: string; version: number; seq: number }
export interface Conflict extends Reply {
  type: "CONFLICT"; posReference: string; currentVersion: number; snapshot: OrderSnapshot;
}
export interface KitchenTicketAck extends Reply {
  type: "KITCHEN_TICKET_ACK"; ticketId: string; station: Station; status: TicketStatus; seq: number; duplicate?: boolean;
}
export interface Subscribed extends Reply { type: "SUBSCRIBED"; stations: Station[]; seq: number }
export interface EventsBulk { type: "EVENTS_BULK"; events: HubEvent[]; fromSeq: number; toSeq: number; done: boolean }
export interface ResyncRequired { type: "RESYNC_REQUIRED"; reason: string; cursor: number; seq: number }
export interface KitchenTicket {
  ticketId: string; station: Station; posReference: string; tableId: Id | null; status: TicketStatus;
  lines: KitchenLine[]; terminalId: string; seq: number; createdAt: number; updatedAt: number; printedAt: number | null;
}
export interface StateMsg {
  type: "STATE";
  orders: { posReference: string; version: number; snapshot: OrderSnapshot }[];
  tables: { tableId: Id; status: string; posReference?: string | null }[];
  tableLocks: unknown[];
  floorPlans: { floorId: Id; tables: unknown[] }[];
  kitchenTickets: KitchenTicket[];
  inventory: unknown[];
  seq: number;
}
export interface SyncStatus { type: "SYNC_STATUS"; terminals: number; pendingEvents: number; seq: number }

// Events: broadcasts that carry a `seq` and are replayed in `EVENTS_BULK`.
export interface OrderUpdated {
  type: "ORDER_UPDATED"; posReference: string; version: number; snapshot: OrderSnapshot; terminalId: string; seq: number; ts: number;
}
export interface TableUpdated {
  type: "TABLE_UPDATED"; tableId: Id; status: string; posReference: string | null; terminalId: string; seq: number; ts: number;
}
export interface FloorPlanChanged { type: "FLOOR_PLAN_CHANGED"; floorId: Id; tables: unknown[]; seq: number }
export interface TableLocksState { type: "TABLE_LOCKS_STATE"; locks: unknown[]; seq: number; ts: number }
export interface TableLockReleased { type: "TABLE_LOCK_RELEASED"; tableId: Id; terminalId: string; seq: number; ts: number }
export interface KitchenTicketCreated {
  type: "KITCHEN_TICKET_CREATED"; ticketId: string; station: Station; posReference: string; tableId: Id | null;
  lines: KitchenLine[]; status: TicketStatus; terminalId: string; seq: number; ts: number;
}
export interface KitchenTicketUpdated {
  type: "KITCHEN_TICKET_UPDATED"; ticketId: string; station: Station; posReference: string; status: TicketStatus;
  terminalId: string; seq: number; ts: number;
}
export interface InventoryUpdated { type: "INVENTORY_UPDATED"; productId: Id; level: number; seq: number }

export type HubEvent = OrderUpdated | TableUpdated | FloorPlanChanged | TableLocksState | TableLockReleased
  | KitchenTicketCreated | KitchenTicketUpdated | InventoryUpdated;

export type HubMessage = AuthOk | AuthFail | Pong | ErrorMsg | LeaseGranted | LeaseDenied | LeaseRenewed
  | LeaseRevoked | LeaseReleased | OrderAck | Conflict | KitchenTicketAck | Subscribed | EventsBulk
  | ResyncRequired | StateMsg | SyncStatus | HubEvent;

/** The `type`s that are events (applied in seq order, cursor advanced past them). */
export const EVENT_TYPES: ReadonlySet<string> = new Set<HubEvent["type"]>([
  "ORDER_UPDATED", "TABLE_UPDATED", "FLOOR_PLAN_CHANGED", "TABLE_LOCKS_STATE", "TABLE_LOCK_RELEASED",
  "KITCHEN_TICKET_CREATED", "KITCHEN_TICKET_UPDATED", "INVENTORY_UPDATED",
]);

type FieldsOf<U, K extends string> = readonly Exclude<keyof Extract<U, { type: K }>, "type" | "requestId">[];

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
} as const satisfies { [K in ClientMessage["type"]]: FieldsOf<ClientMessage, K> };

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
} as const satisfies { [K in HubMessage["type"]]: FieldsOf<HubMessage, K> };
