//! Kitchen and inventory messages: tickets, station subscriptions, stock levels.

use serde_json::{json, Value};

use super::raw;

/// A kitchen ticket as the messages about it show it (JSON texts as the terminal sent them).
pub struct Ticket<'a> {
    pub id: &'a str,
    pub station: &'a str,
    pub pos_reference: &'a str,
    pub table_json: Option<&'a str>,
    pub lines_json: &'a str,
    pub status: &'a str,
    pub terminal_id: &'a str,
}

/// `KITCHEN_TICKET_CREATED` (stored, broadcast to the station's subscribers).
pub fn kitchen_ticket_created(t: &Ticket, seq: u64, ts: u64) -> String {
    json!({"type": "KITCHEN_TICKET_CREATED", "ticketId": t.id, "station": t.station,
        "posReference": t.pos_reference, "tableId": t.table_json.map(raw),
        "lines": raw(t.lines_json), "status": t.status, "terminalId": t.terminal_id,
        "seq": seq, "ts": ts})
    .to_string()
}

/// `KITCHEN_TICKET_ACK`: the ticket or status change is stored (`duplicate`: it already was).
pub fn kitchen_ticket_ack(t: &Ticket, last_seq: u64, duplicate: bool) -> Value {
    let mut v = json!({"type": "KITCHEN_TICKET_ACK", "ticketId": t.id, "station": t.station,
        "status": t.status, "seq": last_seq});
    if duplicate {
        v["duplicate"] = Value::Bool(true);
    }
    v
}

/// `KITCHEN_TICKET_UPDATED` (stored, broadcast to the station's subscribers): a new status.
pub fn kitchen_ticket_updated(t: &Ticket, seq: u64, ts: u64) -> String {
    json!({"type": "KITCHEN_TICKET_UPDATED", "ticketId": t.id, "station": t.station,
        "posReference": t.pos_reference, "status": t.status, "terminalId": t.terminal_id,
        "seq": seq, "ts": ts})
    .to_string()
}

/// `SUBSCRIBED`: the stations whose tickets this terminal now receives.
pub fn subscribed(stations: &[&str], seq: u64) -> Value {
    json!({"type": "SUBSCRIBED", "stations": stations, "seq": seq})
}

/// `INVENTORY_ACK`: the adjustment is counted (`duplicate`: its eventId already was, and `seq`
/// is the original event's).
pub fn inventory_ack(product_id_json: &str, level: i64, seq: u64, duplicate: bool) -> Value {
    let mut v = json!({"type": "INVENTORY_ACK", "productId": raw(product_id_json),
        "level": level, "seq": seq});
    if duplicate {
        v["duplicate"] = Value::Bool(true);
    }
    v
}

/// One counted stock change, as `INVENTORY_UPDATED` broadcasts it.
pub struct InventoryChange<'a> {
    pub product_id_json: &'a str,
    pub level: i64,
    pub delta: i64,
    pub event_id: &'a str,
    pub terminal_id: &'a str,
}

/// `INVENTORY_UPDATED` (stored and broadcast): a product's new level after one change.
pub fn inventory_updated(c: &InventoryChange, seq: u64, ts: u64) -> String {
    json!({"type": "INVENTORY_UPDATED", "productId": raw(c.product_id_json), "level": c.level,
        "delta": c.delta, "eventId": c.event_id, "terminalId": c.terminal_id, "seq": seq,
        "ts": ts})
    .to_string()
}
