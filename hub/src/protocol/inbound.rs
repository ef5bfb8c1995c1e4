//! The messages a terminal may send (docs/protocol.md) and the parsers of the order, lease, table
//! and ticket-number ones; `super::parse` dispatches a frame on its `type` to them (the kitchen and
//! inventory ones are in `super::kitchen`). Every failure becomes a `ProtoError` with a stable
//! code and a message naming the problem, so a terminal with a bug gets told what is wrong and
//! the socket stays open.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::fields::{check_id, fields, invalid};
pub use super::fields::{nesting_depth, table_key_of, ProtoError, TableId, MAX_DEPTH, MAX_ID_LEN};

/// A message a terminal may send.
#[derive(Debug)]
pub enum Inbound {
    Ping,
    Auth(AuthMsg),
    LeaseAcquire(String),
    LeaseHeartbeat(String),
    LeaseRelease(String),
    OrderSnapshot(OrderSnapshotMsg),
    TableUpdate(TableUpdateMsg),
    TableLockAcquire(TableId),
    TableLockHeartbeat(TableId),
    TableLockRelease(TableId),
    TableLockForceAcquire(TableId),
    FloorPlanUpdate(FloorPlanMsg),
    TicketNumberRequest(String),
    SyncRequest(u64),
    KitchenTicket(super::kitchen::KitchenTicketMsg),
    KitchenTicketStatus(super::kitchen::KitchenStatusMsg),
    InventoryAdjust(super::kitchen::InventoryAdjustMsg),
    /// `SUBSCRIBE {stations}`: the new station subscription mask.
    Subscribe(u8),
}

impl Inbound {
    /// The wire `type` of this message (for metrics and logs).
    pub fn type_name(&self) -> &'static str {
        match self {
            Inbound::Ping => "PING",
            Inbound::Auth(_) => "AUTH",
            Inbound::LeaseAcquire(_) => "LEASE_ACQUIRE",
            Inbound::LeaseHeartbeat(_) => "LEASE_HEARTBEAT",
            Inbound::LeaseRelease(_) => "LEASE_RELEASE",
            Inbound::OrderSnapshot(_) => "ORDER_SNAPSHOT",
            Inbound::TableUpdate(_) => "TABLE_UPDATE",
            Inbound::TableLockAcquire(_) => "TABLE_LOCK_ACQUIRE",
            Inbound::TableLockHeartbeat(_) => "TABLE_LOCK_HEARTBEAT",
            Inbound::TableLockRelease(_) => "TABLE_LOCK_RELEASE",
            Inbound::TableLockForceAcquire(_) => "TABLE_LOCK_FORCE_ACQUIRE",
            Inbound::FloorPlanUpdate(_) => "FLOOR_PLAN_UPDATE",
            Inbound::TicketNumberRequest(_) => "TICKET_NUMBER_REQUEST",
            Inbound::SyncRequest(_) => "SYNC_REQUEST",
            Inbound::KitchenTicket(_) => "KITCHEN_TICKET",
            Inbound::KitchenTicketStatus(_) => "KITCHEN_TICKET_STATUS",
            Inbound::InventoryAdjust(_) => "INVENTORY_ADJUST",
            Inbound::Subscribe(_) => "SUBSCRIBE",
        }
    }
}

/// A parsed message with the `requestId` its reply must echo.
#[derive(Debug)]
pub struct Parsed {
    pub request_id: Option<Value>,
    pub msg: Inbound,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthMsg {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub terminal_id: Option<String>,
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub cursor: Option<u64>,
    /// Only honoured in `open` mode, where there is no token to carry a role.
    #[serde(default)]
    pub role: Option<String>,
    /// Kitchen stations whose ticket traffic this terminal wants (`["bds"]` for a bar
    /// display); absent = every station.
    #[serde(default)]
    pub stations: Option<Vec<String>>,
}

/// `ORDER_SNAPSHOT`: the snapshot is kept as the terminal's original JSON text.
#[derive(Debug)]
pub struct OrderSnapshotMsg {
    pub pos_reference: String,
    pub base_version: u64,
    pub snapshot: Box<RawValue>,
    pub event_id: Option<String>,
    pub state: String,
    pub table: Option<TableId>,
}

#[derive(Debug)]
pub struct TableUpdateMsg {
    pub table: TableId,
    pub status: String,
    pub pos_reference: Option<String>,
}

#[derive(Debug)]
pub struct FloorPlanMsg {
    pub floor_id: TableId,
    pub tables: Box<RawValue>,
    pub layout_mode: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PosRefMsg {
    pos_reference: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TableIdMsg {
    table_id: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOrderSnapshot {
    pos_reference: String,
    base_version: u64,
    snapshot: Box<RawValue>,
    #[serde(default)]
    event_id: Option<String>,
}

/// The few snapshot fields the hub acts on; everything else is carried through untouched.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotFields {
    #[serde(default)]
    pos_reference: Option<Value>,
    #[serde(default)]
    state: Option<Value>,
    #[serde(default)]
    table_id: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTableUpdate {
    table_id: Value,
    status: String,
    #[serde(default)]
    pos_reference: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFloorPlan {
    floor_id: Value,
    tables: Box<RawValue>,
    #[serde(default)]
    layout_mode: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTicket {
    order_type: String,
}

#[derive(Deserialize)]
struct RawSync {
    cursor: u64,
}

/// Order states of `ORDER_SNAPSHOT` (docs/protocol.md "Orders").
pub const ORDER_STATES: [&str; 4] = ["draft", "sent", "paid", "cancelled"];
/// Order types that draw ticket numbers.
pub const TICKET_ORDER_TYPES: [&str; 3] = ["takeout", "delivery", "dine_in"];

/// `TICKET_NUMBER_REQUEST {orderType}`: one of `TICKET_ORDER_TYPES`.
pub(super) fn ticket_number_request(text: &str) -> Result<Inbound, ProtoError> {
    let m: RawTicket = fields("TICKET_NUMBER_REQUEST", text)?;
    if TICKET_ORDER_TYPES.contains(&m.order_type.as_str()) {
        Ok(Inbound::TicketNumberRequest(m.order_type))
    } else {
        Err(invalid(format!(
            "`orderType` must be one of {}",
            TICKET_ORDER_TYPES.join(", ")
        )))
    }
}

/// `AUTH {token | odooSession, ...}`: which credential counts is the connection's business.
pub(super) fn auth(text: &str) -> Result<AuthMsg, ProtoError> {
    fields("AUTH", text)
}

/// `SYNC_REQUEST {cursor}`.
pub(super) fn sync_request(text: &str) -> Result<u64, ProtoError> {
    fields::<RawSync>("SYNC_REQUEST", text).map(|m| m.cursor)
}

pub(super) fn pos_ref(ty: &str, text: &str) -> Result<String, ProtoError> {
    let m: PosRefMsg = fields(ty, text)?;
    check_id("posReference", &m.pos_reference)?;
    Ok(m.pos_reference)
}

pub(super) fn table_id(ty: &str, text: &str) -> Result<TableId, ProtoError> {
    let m: TableIdMsg = fields(ty, text)?;
    TableId::from_value("tableId", &m.table_id).map_err(invalid)
}

pub(super) fn order_snapshot(text: &str) -> Result<OrderSnapshotMsg, ProtoError> {
    let m: RawOrderSnapshot = fields("ORDER_SNAPSHOT", text)?;
    check_id("posReference", &m.pos_reference)?;
    if let Some(id) = &m.event_id {
        check_id("eventId", id)?;
    }
    let not_object = || invalid("ORDER_SNAPSHOT: `snapshot` must be a JSON object");
    if !m.snapshot.get().trim_start().starts_with('{') {
        return Err(not_object());
    }
    let f: SnapshotFields = serde_json::from_str(m.snapshot.get()).map_err(|_| not_object())?;
    if let Some(p) = &f.pos_reference {
        if p.as_str() != Some(m.pos_reference.as_str()) {
            return Err(invalid(
                "ORDER_SNAPSHOT: `snapshot.posReference` differs from `posReference`",
            ));
        }
    }
    let state = match &f.state {
        None | Some(Value::Null) => "draft".to_string(),
        Some(Value::String(s)) if ORDER_STATES.contains(&s.as_str()) => s.clone(),
        Some(_) => {
            return Err(invalid(format!(
                "ORDER_SNAPSHOT: `snapshot.state` must be one of {}",
                ORDER_STATES.join(", ")
            )))
        }
    };
    let table = match &f.table_id {
        None | Some(Value::Null) => None,
        Some(v) => Some(TableId::from_value("snapshot.tableId", v).map_err(invalid)?),
    };
    Ok(OrderSnapshotMsg {
        pos_reference: m.pos_reference,
        base_version: m.base_version,
        snapshot: m.snapshot,
        event_id: m.event_id,
        state,
        table,
    })
}

pub(super) fn table_update(text: &str) -> Result<TableUpdateMsg, ProtoError> {
    let m: RawTableUpdate = fields("TABLE_UPDATE", text)?;
    let table = TableId::from_value("tableId", &m.table_id).map_err(invalid)?;
    if m.status.is_empty() || m.status.len() > 32 {
        return Err(invalid("TABLE_UPDATE: `status` must be 1-32 characters"));
    }
    if let Some(p) = &m.pos_reference {
        check_id("posReference", p)?;
    }
    Ok(TableUpdateMsg {
        table,
        status: m.status,
        pos_reference: m.pos_reference,
    })
}

pub(super) fn floor_plan(text: &str) -> Result<FloorPlanMsg, ProtoError> {
    let m: RawFloorPlan = fields("FLOOR_PLAN_UPDATE", text)?;
    let floor_id = TableId::from_value("floorId", &m.floor_id).map_err(invalid)?;
    if !m.tables.get().trim_start().starts_with('[') {
        return Err(invalid("FLOOR_PLAN_UPDATE: `tables` must be an array"));
    }
    Ok(FloorPlanMsg {
        floor_id,
        tables: m.tables,
        layout_mode: m.layout_mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse;

    fn code(text: &str) -> &'static str {
        parse(text).map_or_else(|e| e.code, |_| "ok")
    }

    #[test]
    fn codes_for_bad_frames() {
        assert_eq!(code("{nope"), "invalid_json");
        assert_eq!(code("[1,2]"), "invalid_message");
        assert_eq!(code(r#"{"type":"FLY"}"#), "unknown_type");
        assert_eq!(code(r#"{"type":"LEASE_ACQUIRE"}"#), "invalid_message");
        assert_eq!(
            code(r#"{"type":"LEASE_ACQUIRE","posReference":7}"#),
            "invalid_message"
        );
        assert_eq!(
            code(r#"{"type":"SYNC_REQUEST","cursor":-1}"#),
            "invalid_message"
        );
        assert_eq!(
            code(r#"{"type":"ORDER_SNAPSHOT","posReference":"A","baseVersion":0,"snapshot":[]}"#),
            "invalid_message"
        );
        assert_eq!(
            code(r#"{"type":"TABLE_LOCK_ACQUIRE","tableId":{"x":1}}"#),
            "invalid_message"
        );
        assert_eq!(code(r#"{"type":"PING"}"#), "ok");
        assert_eq!(code(r#"{"type":"\u0050ING"}"#), "ok");
    }

    #[test]
    fn depth_skips_brackets_in_strings() {
        assert_eq!(nesting_depth(r#"{"a":[{"b":"[[[{{"}]}"#), 3);
        assert_eq!(nesting_depth(r#"{"a":"\"[","b":[1]}"#), 2);
        assert_eq!(nesting_depth("7"), 0);
        let deep = format!(
            r#"{{"type":"PING","x":{}1{}}}"#,
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert_eq!(code(&deep), "too_deep");
    }

    #[test]
    fn request_id_is_kept_even_on_errors() {
        let e = parse(r#"{"type":"LEASE_ACQUIRE","requestId":"r-9"}"#).unwrap_err();
        assert_eq!(e.request_id, Some(Value::from("r-9")));
    }

    #[test]
    fn snapshot_text_and_unknown_fields_are_kept() {
        let text = r#"{"type":"ORDER_SNAPSHOT","posReference":"A-1","baseVersion":0,"snapshot":{"posReference":"A-1","state":"paid","tableId":4,"custom":{"x":[1,2]}}}"#;
        let Parsed {
            msg: Inbound::OrderSnapshot(m),
            ..
        } = parse(text).expect("valid")
        else {
            panic!("wrong variant")
        };
        assert!(m.snapshot.get().contains(r#""custom":{"x":[1,2]}"#));
        assert_eq!(m.state, "paid");
        assert_eq!(m.table.map(|t| t.key), Some("4".to_string()));
    }
}
