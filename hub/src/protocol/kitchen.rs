//! Parsing of the kitchen and inventory messages (docs/kitchen.md): `KITCHEN_TICKET`,
//! `KITCHEN_TICKET_STATUS`, `INVENTORY_ADJUST`, and `SUBSCRIBE {stations}` with which a display
//! chooses the stations whose kitchen traffic it receives.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::fields::{check_id, fields, invalid, ProtoError, TableId};
use crate::station::{self, Station};

/// Most lines one kitchen ticket may carry.
pub const MAX_TICKET_LINES: usize = 500;
/// Largest absolute inventory adjustment accepted in one message.
pub const MAX_DELTA: i64 = 1_000_000_000;
/// Statuses a display may set on a ticket.
pub const TICKET_STATUSES: [&str; 3] = ["acked", "done", "recalled"];

/// `KITCHEN_TICKET`.
#[derive(Debug)]
pub struct KitchenTicketMsg {
    pub ticket_id: String,
    pub station: Station,
    pub pos_reference: String,
    /// The lines as sent (a JSON array of objects), kept verbatim for displays.
    pub lines: Box<RawValue>,
    pub table: Option<TableId>,
}

/// `KITCHEN_TICKET_STATUS`.
#[derive(Debug)]
pub struct KitchenStatusMsg {
    pub ticket_id: String,
    pub status: String,
}

/// `INVENTORY_ADJUST`.
#[derive(Debug)]
pub struct InventoryAdjustMsg {
    pub product: TableId,
    pub delta: i64,
    pub event_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTicket {
    ticket_id: String,
    station: String,
    pos_reference: String,
    lines: Box<RawValue>,
    #[serde(default)]
    table_id: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStatus {
    ticket_id: String,
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAdjust {
    product_id: Value,
    delta: i64,
    event_id: String,
}

#[derive(Deserialize)]
struct RawSubscribe {
    stations: Vec<String>,
}

fn station_of(ty: &str, s: &str) -> Result<Station, ProtoError> {
    Station::parse(s).ok_or_else(|| invalid(format!("{ty}: `station` must be kds or bds")))
}

pub fn kitchen_ticket(text: &str) -> Result<KitchenTicketMsg, ProtoError> {
    const TY: &str = "KITCHEN_TICKET";
    let m: RawTicket = fields(TY, text)?;
    check_id("ticketId", &m.ticket_id)?;
    check_id("posReference", &m.pos_reference)?;
    let station = station_of(TY, &m.station)?;
    let lines: Vec<&RawValue> = serde_json::from_str(m.lines.get())
        .map_err(|_| invalid(format!("{TY}: `lines` must be an array")))?;
    if lines.len() > MAX_TICKET_LINES {
        return Err(invalid(format!(
            "{TY}: at most {MAX_TICKET_LINES} lines per ticket"
        )));
    }
    if lines.iter().any(|l| !l.get().trim_start().starts_with('{')) {
        return Err(invalid(format!("{TY}: every line must be an object")));
    }
    let table = match &m.table_id {
        None | Some(Value::Null) => None,
        Some(v) => Some(TableId::from_value("tableId", v).map_err(invalid)?),
    };
    Ok(KitchenTicketMsg {
        ticket_id: m.ticket_id,
        station,
        pos_reference: m.pos_reference,
        lines: m.lines,
        table,
    })
}

pub fn kitchen_status(text: &str) -> Result<KitchenStatusMsg, ProtoError> {
    const TY: &str = "KITCHEN_TICKET_STATUS";
    let m: RawStatus = fields(TY, text)?;
    check_id("ticketId", &m.ticket_id)?;
    if !TICKET_STATUSES.contains(&m.status.as_str()) {
        return Err(invalid(format!(
            "{TY}: `status` must be one of {}",
            TICKET_STATUSES.join(", ")
        )));
    }
    Ok(KitchenStatusMsg {
        ticket_id: m.ticket_id,
        status: m.status,
    })
}

pub fn inventory_adjust(text: &str) -> Result<InventoryAdjustMsg, ProtoError> {
    const TY: &str = "INVENTORY_ADJUST";
    let m: RawAdjust = fields(TY, text)?;
    check_id("eventId", &m.event_id)?;
    let product = TableId::from_value("productId", &m.product_id).map_err(invalid)?;
    // A range test rather than `abs()`: |i64::MIN| does not fit an i64 (it wraps in release).
    if m.delta == 0 || !(-MAX_DELTA..=MAX_DELTA).contains(&m.delta) {
        return Err(invalid(format!(
            "{TY}: `delta` must be a non-zero integer between -{MAX_DELTA} and {MAX_DELTA}"
        )));
    }
    Ok(InventoryAdjustMsg {
        product,
        delta: m.delta,
        event_id: m.event_id,
    })
}

/// `SUBSCRIBE {stations}` -> the subscription mask.
pub fn subscribe(text: &str) -> Result<u8, ProtoError> {
    let m: RawSubscribe = fields("SUBSCRIBE", text)?;
    station::mask_of(m.stations.iter().map(String::as_str))
        .map_err(|e| invalid(format!("SUBSCRIBE: {e}")))
}

#[cfg(test)]
mod tests {
    use crate::protocol::{parse, Inbound};

    fn code(text: &str) -> &'static str {
        parse(text).map_or_else(|e| e.code, |_| "ok")
    }

    #[test]
    fn kitchen_messages_are_validated() {
        let ok = r#"{"type":"KITCHEN_TICKET","ticketId":"k1","station":"bds","posReference":"A-1","lines":[{"name":"Beer","quantity":2}]}"#;
        assert_eq!(code(ok), "ok");
        let bad_station = ok.replace("bds", "grill");
        assert_eq!(code(&bad_station), "invalid_message");
        let bad_lines = ok.replace(r#"[{"name":"Beer","quantity":2}]"#, "[1]");
        assert_eq!(code(&bad_lines), "invalid_message");
        assert_eq!(
            code(r#"{"type":"KITCHEN_TICKET_STATUS","ticketId":"k1","status":"eaten"}"#),
            "invalid_message"
        );
        assert_eq!(
            code(r#"{"type":"INVENTORY_ADJUST","productId":7,"delta":0,"eventId":"e"}"#),
            "invalid_message"
        );
        assert_eq!(
            code(r#"{"type":"INVENTORY_ADJUST","productId":7,"delta":1.5,"eventId":"e"}"#),
            "invalid_message"
        );
        let p = parse(r#"{"type":"SUBSCRIBE","stations":["bds"]}"#).expect("valid");
        assert!(matches!(p.msg, Inbound::Subscribe(2)));
    }
}
