/**
 * The hub's browser terminal (`GET /terminal`), built on the same client library POS apps
 * embed: connection, backoff, cursor, outbox (in localStorage, so a write made while the hub
 * is away survives a reload), leases and their heartbeats all come from the library; this file
 * is only the screen. "Send to kitchen" sends the order's lines as kitchen tickets (drinks to
 * the bar) and shows what the kitchen display does with them.
 */
import {
  HubClient, localStorageStorage, memoryStorage, type HubEvent, type HubMessage, type Id,
  type KeyValueStorage, type OrderSnapshot, type StateMsg, type Station, type TicketStatus,
} from "../src/index.js";

interface Product { id: number; name: string; price: number; station: Station }
interface Entry { version: number; snapshot: OrderSnapshot }
interface TableInfo { tableId: Id; status: string; posReference?: string | null }

const $ = (id: string) => document.getElementById(id) as HTMLInputElement;
const esc = (v: unknown) => String(v ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const PRODUCTS: Product[] = [
  { id: 101, name: "Coffee", price: 3.5, station: "bds" }, { id: 102, name: "Burger", price: 12, station: "kds" },
  { id: 103, name: "Salad", price: 9.5, station: "kds" }, { id: 104, name: "Beer", price: 5, station: "bds" },
];
const TAX = 0.1;
const st = {
  client: null as HubClient | null, connected: false, terminalId: "",
  orders: new Map<string, Entry>(),
  tables: new Map<string, TableInfo>(),
  kitchen: new Map<string, Map<string, TicketStatus>>(), // posReference -> ticketId -> status
  floor: [] as { id: Id; name?: string }[], leases: new Set<string>(), current: null as string | null,
  selectedTable: null as Id | null,
};
const params = new URLSearchParams(location.search);
$("terminalId").value = params.get("terminal") || localStorage.getItem("poshub.terminal") || ("web-" + Math.random().toString(36).slice(2, 6));
$("name").value = params.get("name") || localStorage.getItem("poshub.name") || "";
$("token").value = params.get("token") || localStorage.getItem("poshub.token") || "";

function log(line: string): void {
  const el = $("log");
  el.textContent = new Date().toLocaleTimeString() + " " + line + "\n" + (el.textContent || "").slice(0, 6000);
}
function notice(text: string): void { $("notice").textContent = text || ""; }
const tableKey = (id: Id) => String(id);

/** The outbox lives in localStorage; the cursor does not, since the page keeps no state across reloads. */
function pageStorage(): KeyValueStorage {
  const mem = memoryStorage();
  const ls = localStorageStorage("poshub.");
  const pick = (k: string) => (k.startsWith("cursor.") ? mem : ls);
  return { get: (k) => pick(k).get(k), set: (k, v) => pick(k).set(k, v), remove: (k) => pick(k).remove(k) };
}

function applyEvent(e: HubEvent): void {
  switch (e.type) {
    case "ORDER_UPDATED": {
      const cur = st.orders.get(e.posReference);
      if (!cur || cur.version < e.version) st.orders.set(e.posReference, { version: e.version, snapshot: e.snapshot });
      if (e.terminalId !== st.terminalId) log("order " + e.posReference + " v" + e.version + " from " + e.terminalId);
      break;
    }
    case "TABLE_UPDATED":
      st.tables.set(tableKey(e.tableId), { tableId: e.tableId, status: e.status, posReference: e.posReference });
      break;
    case "FLOOR_PLAN_CHANGED":
      st.floor = (e.tables || []) as typeof st.floor;
      break;
    case "KITCHEN_TICKET_CREATED": case "KITCHEN_TICKET_UPDATED":
      kitchenStatus(e.posReference, e.ticketId, e.status);
      if (e.type === "KITCHEN_TICKET_UPDATED" && e.terminalId !== st.terminalId) log("kitchen: " + e.posReference + " " + e.status);
      break;
  }
  render();
}
function kitchenStatus(ref: string, ticketId: string, status: TicketStatus): void {
  const m = st.kitchen.get(ref) || new Map<string, TicketStatus>();
  m.set(ticketId, status);
  st.kitchen.set(ref, m);
}
function replaceState(m: StateMsg): void {
  st.orders = new Map(m.orders.map((o) => [o.posReference, { version: o.version, snapshot: o.snapshot }]));
  st.tables = new Map(m.tables.map((t) => [tableKey(t.tableId), t]));
  if (m.floorPlans && m.floorPlans[0]) st.floor = (m.floorPlans[0].tables || []) as typeof st.floor;
  st.kitchen.clear();
  for (const t of m.kitchenTickets || []) kitchenStatus(t.posReference, t.ticketId, t.status);
  render();
}

// Floor plans and table states seeded on the hub (e.g. by --demo) may predate any event.
async function loadFloor(): Promise<void> {
  try {
    const r = await (await fetch("/tables", { cache: "no-store" })).json();
    if (r.floorPlans && r.floorPlans[0] && !st.floor.length) st.floor = r.floorPlans[0].tables || [];
    for (const t of r.tables || []) if (!st.tables.has(tableKey(t.tableId))) st.tables.set(tableKey(t.tableId), t);
    render();
  } catch (e) { log("could not load the floor plan: " + e); }
}

function onMessage(m: HubMessage): void {
  switch (m.type) {
    case "LEASE_GRANTED": st.leases.add(m.posReference); notice(""); break;
    case "LEASE_DENIED": st.leases.delete(m.posReference); notice("order is being edited on " + (m.holder.name || m.holder.terminalId)); break;
    case "LEASE_REVOKED": case "LEASE_RELEASED": st.leases.delete(m.posReference); break;
    case "AUTH_FAIL": notice("authentication failed: " + m.reason); break;
    case "KITCHEN_TICKET_ACK": break;
    default: return;
  }
  render();
}

function connect(): void {
  st.client?.stop();
  st.terminalId = $("terminalId").value.trim() || "web";
  localStorage.setItem("poshub.terminal", st.terminalId);
  localStorage.setItem("poshub.name", $("name").value);
  localStorage.setItem("poshub.token", $("token").value);
  st.orders.clear(); st.tables.clear(); st.kitchen.clear(); st.leases.clear();
  const c = new HubClient({
    url: (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws",
    terminalId: st.terminalId, token: $("token").value || undefined, name: $("name").value || st.terminalId,
    role: ($("role") as unknown as HTMLSelectElement).value, storage: pageStorage(),
    applyEvent, replaceState,
  });
  st.client = c;
  c.on("status", (s) => {
    st.connected = s === "online";
    if (!st.connected) { $("status").textContent = s; $("status").className = "offline"; }
    render();
  });
  c.on("authenticated", (m) => {
    $("status").textContent = "online · " + m.role; $("status").className = "online";
    log("connected as " + m.terminalId + " (" + m.role + "), hub seq " + m.seq);
    void loadFloor();
  });
  c.on("message", onMessage);
  c.on("ack", (entry, ack) => {
    const cur = st.orders.get(entry.posReference);
    if (cur && cur.version < ack.version) cur.version = ack.version;
    render();
  });
  c.on("conflict", (x) => {
    st.orders.set(x.posReference, { version: x.currentVersion, snapshot: x.snapshot });
    notice("someone else changed " + x.posReference + "; showing their version");
    render();
  });
  c.on("writeFailed", (e, err) => notice(err.code + ": " + err.message + " (" + e.posReference + ")"));
  c.on("error", (e) => notice(e.code + ": " + e.message));
  c.on("fatal", () => notice("authentication failed"));
  c.on("replaced", () => notice("this terminal connected elsewhere"));
  void c.start();
}

function totals(lines: OrderSnapshot["lines"]) {
  const subtotal = lines.filter((l) => !l.isVoided).reduce((s, l) => s + l.quantity * l.unitPrice, 0);
  const tax = Math.round(subtotal * TAX * 100) / 100;
  return { subtotal, tax, total: Math.round((subtotal + tax) * 100) / 100 };
}
/** Changes an order locally at once and hands the new snapshot to the library's outbox. */
function write(ref: string, change: (s: OrderSnapshot) => void): void {
  const cur = st.orders.get(ref) || { version: 0, snapshot: { posReference: ref, state: "draft", lines: [], paymentLines: [] } as OrderSnapshot };
  const snap = JSON.parse(JSON.stringify(cur.snapshot)) as OrderSnapshot;
  change(snap);
  snap.totals = totals(snap.lines || []);
  st.orders.set(ref, { version: cur.version, snapshot: snap });
  st.client?.writeOrder(snap, cur.version).catch((e: Error) => notice(e.message));
  render();
}
function newOrder(): void {
  const n = Number(localStorage.getItem("poshub.n." + st.terminalId) || 0) + 1;
  localStorage.setItem("poshub.n." + st.terminalId, String(n));
  const ref = st.terminalId + "-" + Date.now().toString(36) + "-" + n;
  st.current = ref;
  void st.client?.acquireLease(ref).catch((e: Error) => notice(e.message));
  write(ref, (s) => { s.orderType = st.selectedTable != null ? "dine_in" : "takeout"; if (st.selectedTable != null) s.tableId = st.selectedTable; });
}
function select(ref: string): void {
  st.current = ref;
  if (!st.leases.has(ref)) void st.client?.acquireLease(ref).catch((e: Error) => notice(e.message));
  render();
}
/** What the kitchen has not had yet: each line's quantity beyond `sentQuantity`, which is kept
 *  in the order's snapshot (so every terminal, and a reloaded page, knows what was sent). */
function unsentLines(lines: OrderSnapshot["lines"]) {
  return lines.filter((l) => !l.isVoided)
    .map((l) => ({ l, quantity: l.quantity - Number(l.sentQuantity ?? 0) }))
    .filter((x) => x.quantity > 0);
}
/** Marks the order sent and gives each station what it has not had yet as one ticket
 *  (idempotent ids): sending again after adding items sends only the new items. */
function sendToKitchen(): void {
  const ref = st.current;
  const cur = ref && st.orders.get(ref);
  if (!ref || !cur || !st.client) return;
  const pending = unsentLines(cur.snapshot.lines);
  if (!pending.length) { notice("kitchen: nothing new to send"); return; }
  write(ref, (s) => {
    s.state = "sent";
    for (const l of s.lines) if (!l.isVoided) l.sentQuantity = l.quantity;
  });
  const sent = st.kitchen.get(ref)?.size ?? 0;
  for (const station of ["kds", "bds"] as Station[]) {
    const lines = pending.filter(({ l }) => PRODUCTS.find((p) => p.id === l.productId)?.station === station)
      .map(({ l, quantity }) => ({ name: String(l.name ?? l.productId), quantity, ...(l.note ? { note: l.note } : {}) }));
    if (!lines.length) continue;
    const ticketId = `${ref}-${station}-${sent + 1}`;
    kitchenStatus(ref, ticketId, "new");
    st.client.sendKitchenTicket({ ticketId, station, posReference: ref, tableId: cur.snapshot.tableId ?? null, lines })
      .catch((e: Error) => notice("kitchen: " + e.message));
  }
  render();
}
function kitchenBadge(ref: string): string {
  const m = st.kitchen.get(ref);
  if (!m || !m.size) return "";
  const all = [...m.values()];
  const s = all.every((x) => x === "done") ? "done" : all.some((x) => x === "recalled") ? "recalled" : "in kitchen";
  return "<span class='kitchen " + (s === "done" ? "done" : "") + "' data-kitchen='" + esc(s) + "'>kitchen: " + esc(s) + "</span>";
}

function render(): void {
  ($("new-order") as unknown as HTMLButtonElement).disabled = !st.connected;
  const floor = st.floor.length ? st.floor : [...st.tables.values()].map((t) => ({ id: t.tableId, name: "T" + t.tableId }));
  $("floor").innerHTML = floor.length ? floor.map((t) => {
    const info = st.tables.get(tableKey(t.id)) || ({} as Partial<TableInfo>);
    const cls = ["table-btn", info.status || "available", st.selectedTable === t.id ? "selected" : ""].join(" ");
    return "<button class='" + cls + "' data-table='" + esc(t.id) + "'><b>" + esc(t.name || t.id) + "</b><small>" + esc(info.status || "available") + "</small></button>";
  }).join("") : "<span class='empty'>no floor plan</span>";
  const list = [...st.orders.entries()].sort((a, b) => (a[0] < b[0] ? 1 : -1));
  $("orders").innerHTML = list.length ? list.map(([ref, o]) =>
    "<div class='order" + (ref === st.current ? " active" : "") + "' data-order='" + esc(ref) + "'><span>" + esc(ref) +
    (o.snapshot.tableId != null ? " · T" + esc(o.snapshot.tableId) : "") + " · " + (o.snapshot.lines || []).length + " items</span>" +
    "<span>" + kitchenBadge(ref) + "<span class='state " + esc(o.snapshot.state) + "' data-state>" + esc(o.snapshot.state) + "</span></span></div>").join("")
    : "<span class='empty'>no orders</span>";
  const cur = st.current ? st.orders.get(st.current) : undefined;
  const mine = !!(cur && st.current && st.leases.has(st.current));
  $("order-ref").textContent = st.current || "";
  $("lease").textContent = st.current ? (mine ? "(editing)" : "(read only)") : "";
  const lines = cur ? (cur.snapshot.lines || []) : [];
  $("lines").innerHTML = cur ? (lines.length ? lines.map((l) => "<div><span>" + esc(l.quantity) + " × " + esc(l.name || l.productId) + "</span><span>" + (l.quantity * l.unitPrice).toFixed(2) + "</span></div>").join("") : "<span class='empty'>no lines yet</span>") : "<span class='empty'>select or start an order</span>";
  $("total").textContent = cur ? "Total " + ((cur.snapshot.totals || { total: 0 }).total || 0).toFixed(2) : "";
  const open = !!cur && cur.snapshot.state !== "paid" && cur.snapshot.state !== "cancelled";
  $("products").innerHTML = PRODUCTS.map((p) => "<button data-product='" + p.id + "'" + (mine && open ? "" : " disabled") + ">" + esc(p.name) + " " + p.price.toFixed(2) + "</button>").join("");
  const btn = (id: string) => $(id) as unknown as HTMLButtonElement;
  btn("send").disabled = !(mine && open && lines.length);
  btn("pay").disabled = !(mine && open && lines.length);
  btn("release").disabled = !mine;
}

document.addEventListener("click", (ev) => {
  const t = (ev.target as HTMLElement).closest<HTMLElement>("[data-table],[data-order],[data-product]");
  if (!t) return;
  if (t.dataset.table !== undefined) {
    const raw = t.dataset.table;
    const id: Id = Number.isNaN(Number(raw)) ? raw : Number(raw);
    st.selectedTable = st.selectedTable === id ? null : id; render();
  } else if (t.dataset.order !== undefined) {
    select(t.dataset.order);
  } else if (t.dataset.product !== undefined && st.current) {
    const p = PRODUCTS.find((x) => String(x.id) === t.dataset.product)!;
    write(st.current, (s) => { s.lines = s.lines || []; s.lines.push({ id: "l" + Date.now().toString(36) + s.lines.length, productId: p.id, name: p.name, quantity: 1, unitPrice: p.price, taxIds: [1] }); });
  }
});
$("connect").onclick = connect;
$("new-order").onclick = newOrder;
$("send").onclick = sendToKitchen;
$("pay").onclick = () => st.current && write(st.current, (s) => { s.state = "paid"; s.paymentLines = [{ method: "cash", amount: totals(s.lines).total }]; });
$("release").onclick = () => {
  if (!st.current) return;
  const ref = st.current;
  st.leases.delete(ref);
  void st.client?.releaseLease(ref).catch(() => { /* released on the hub's side when we reconnect or expire */ });
  render();
};
render();
if (params.get("autoconnect") !== "0") connect();
