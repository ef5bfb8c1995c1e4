/**
 * The hub's kitchen / bar display (`GET /kitchen`), built on the client library: choose the
 * station, tickets appear live (table, items, notes, age), a tap bumps a ticket (`done`, the
 * terminals see `KITCHEN_TICKET_UPDATED`), the last bumped ones can be recalled.
 * URL parameters: `station=kds|bds`, `terminal=ID`, `token=...` (not needed with `--demo`).
 */
import { HubClient, memoryStorage, type HubEvent, type KitchenLine, type StateMsg, type Station, type TicketStatus, type Id } from "../src/index.js";

interface Ticket {
  ticketId: string; station: Station; posReference: string; tableId: Id | null;
  lines: KitchenLine[]; status: TicketStatus; createdAt: number;
}

const STATIONS: { id: Station; label: string }[] = [{ id: "kds", label: "Kitchen" }, { id: "bds", label: "Bar" }];
const $ = (id: string) => document.getElementById(id)!;
const esc = (v: unknown) => String(v ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const params = new URLSearchParams(location.search);
const saved = (k: string) => params.get(k) || localStorage.getItem(`poshub.kitchen.${k}`) || "";

let station = (saved("station") || "kds") as Station;
const terminalId = saved("terminal") || `kds-${Math.random().toString(36).slice(2, 7)}`;
localStorage.setItem("poshub.kitchen.terminal", terminalId);
const tickets = new Map<string, Ticket>();
let clockSkew = 0; // hub time - our time, so ages are right on a tablet with a wrong clock
let client: HubClient | null = null;

function apply(ev: HubEvent): void {
  if (ev.type === "KITCHEN_TICKET_CREATED") {
    tickets.set(ev.ticketId, { ticketId: ev.ticketId, station: ev.station, posReference: ev.posReference,
      tableId: ev.tableId, lines: ev.lines || [], status: ev.status, createdAt: ev.ts });
  } else if (ev.type === "KITCHEN_TICKET_UPDATED") {
    const t = tickets.get(ev.ticketId);
    if (t) t.status = ev.status;
  }
  render();
}

function replace(s: StateMsg): void {
  tickets.clear();
  for (const t of s.kitchenTickets || []) {
    tickets.set(t.ticketId, { ticketId: t.ticketId, station: t.station, posReference: t.posReference,
      tableId: t.tableId, lines: t.lines || [], status: t.status, createdAt: t.createdAt });
  }
  render();
}

function age(t: Ticket): string {
  const s = Math.max(0, Math.floor((Date.now() + clockSkew - t.createdAt) / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function render(): void {
  $("stations").innerHTML = STATIONS.map((s) =>
    `<button class="station${s.id === station ? " on" : ""}" data-station="${s.id}">${s.label}</button>`).join(" ");
  const open = [...tickets.values()].filter((t) => t.station === station && t.status !== "done")
    .sort((a, b) => a.createdAt - b.createdAt);
  const now = Date.now() + clockSkew;
  $("tickets").innerHTML = open.length ? open.map((t) => {
    const mins = (now - t.createdAt) / 60000;
    const cls = ["ticket", mins >= 15 ? "late" : mins >= 8 ? "warn" : "", t.status === "recalled" ? "recalled" : ""].join(" ");
    const items = t.lines.map((l) => `<li>${esc(l.quantity ?? 1)} × ${esc(l.name ?? l.productName ?? "item")}` +
      (l.note ? `<span class="note">» ${esc(l.note)}</span>` : "") + "</li>").join("");
    return `<button class="${cls}" data-ticket="${esc(t.ticketId)}" data-testid="ticket">` +
      `<div class="top"><span class="table">${t.tableId != null ? "T" + esc(t.tableId) : "Takeout"}</span>` +
      `<span class="age" data-age="${esc(t.ticketId)}">${age(t)}</span></div>` +
      `<div class="ref">${esc(t.posReference)}${t.status === "recalled" ? " · RECALLED" : ""}</div><ul>${items}</ul>` +
      `<div class="hint">tap to bump</div></button>`;
  }).join("") : `<div class="empty">No open tickets</div>`;
  const done = [...tickets.values()].filter((t) => t.station === station && t.status === "done").slice(-4).reverse();
  $("bumped").innerHTML = done.length ? "Recall: " + done.map((t) =>
    `<button data-recall="${esc(t.ticketId)}">${t.tableId != null ? "T" + esc(t.tableId) : esc(t.posReference)}</button>`).join("") : "";
}

function setStatus(text: string, ok: boolean): void {
  $("status").textContent = text;
  $("status").className = ok ? "online" : "offline";
}

function connect(): void {
  client?.stop();
  tickets.clear();
  render();
  const c = new HubClient({
    url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`,
    terminalId, token: saved("token") || undefined, name: `${station} display`, stations: [station],
    // The page keeps no tickets across reloads, so it starts from an empty cursor every time.
    storage: memoryStorage(), applyEvent: apply, replaceState: replace,
  });
  c.on("status", (s) => setStatus(s === "online" ? `online · ${station}` : s, s === "online"));
  c.on("authenticated", (m) => { clockSkew = m.serverTime - Date.now(); });
  c.on("fatal", (e) => setStatus(`refused: ${e.reason}`, false));
  c.on("replaced", () => setStatus("this display id is open elsewhere", false));
  client = c;
  void c.start();
}

async function setTicket(id: string, status: "done" | "recalled"): Promise<void> {
  const t = tickets.get(id);
  if (!t || !client) return;
  const before = t.status;
  t.status = status; // shown at once; put back if the hub refuses
  render();
  try {
    await client.setTicketStatus(id, status);
  } catch (e) {
    t.status = before;
    render();
    setStatus(`could not update ticket: ${(e as Error).message}`, false);
  }
}

document.addEventListener("click", (ev) => {
  const el = (ev.target as HTMLElement).closest<HTMLElement>("[data-station],[data-ticket],[data-recall]");
  if (!el) return;
  if (el.dataset.station) {
    station = el.dataset.station as Station;
    localStorage.setItem("poshub.kitchen.station", station);
    connect();
  } else if (el.dataset.ticket) {
    void setTicket(el.dataset.ticket, "done");
  } else if (el.dataset.recall) {
    void setTicket(el.dataset.recall, "recalled");
  }
});
setInterval(() => {
  for (const t of tickets.values()) {
    const el = document.querySelector(`[data-age="${CSS.escape(t.ticketId)}"]`);
    if (el) el.textContent = age(t);
  }
}, 1000);
connect();
