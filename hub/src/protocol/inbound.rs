//! Parsing of terminal messages (SPEC §2): one JSON object per text frame, dispatched on `type`.
//! Every failure becomes a `ProtoError` with a stable code and a message naming the problem, so
//! a terminal with a bug gets told what is wrong and the socket stays open.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Longest identifier (posReference, terminalId, tableId, ...) the hub accepts.
pub const MAX_ID_LEN: usize = 128;
/// Deepest nesting of arrays and objects a frame may have, counting the frame itself. Far
/// below serde_json's recursion limit (128) so that everything accepted reads back intact,
/// also wrapped in the replies, `STATE` and the upstream envelopes (a few levels each).
pub const MAX_DEPTH: usize = 64;

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

/// Why a frame was refused; becomes `ERROR {code, message, requestId}`.
#[derive(Debug, Clone)]
pub struct ProtoError {
    pub code: &'static str,
    pub message: String,
    pub request_id: Option<Value>,
}

impl ProtoError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ProtoError {
            code,
            message: message.into(),
            request_id: None,
        }
    }
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

/// A table (or floor) id: a string or an integer, kept as sent and keyed canonically.
#[derive(Debug, Clone, PartialEq)]
pub struct TableId {
    /// The JSON text as the terminal sent it (`5` or `"T5"`).
    pub json: String,
    /// The key it is stored under (`5`, `T5`).
    pub key: String,
}

impl TableId {
    pub(crate) fn from_value(field: &str, v: &Value) -> Result<TableId, String> {
        match v {
            Value::String(s) if !s.is_empty() && s.len() <= MAX_ID_LEN => Ok(TableId {
                json: v.to_string(),
                key: s.clone(),
            }),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(TableId {
                json: n.to_string(),
                key: n.to_string(),
            }),
            _ => Err(format!(
                "`{field}` must be a non-empty string or an integer"
            )),
        }
    }
}

/// The canonical key of a stored table id's JSON text (`"T5"` -> `T5`, `5` -> `5`).
pub fn table_key_of(json: &str) -> String {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::String(s)) => s,
        _ => json.to_string(),
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    /// Borrowed when the frame has it verbatim, owned when it was written with escapes
    /// (`"\u0050ING"` is `"PING"`): dispatch is on the decoded string.
    #[serde(rename = "type", borrow)]
    ty: Option<Cow<'a, str>>,
    #[serde(rename = "requestId", default)]
    request_id: Option<Value>,
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

/// Order states of SPEC §2.3.
pub const ORDER_STATES: [&str; 4] = ["draft", "sent", "paid", "cancelled"];
/// Order types that draw ticket numbers.
pub const TICKET_ORDER_TYPES: [&str; 3] = ["takeout", "delivery", "dine_in"];

pub(super) fn invalid(msg: impl Into<String>) -> ProtoError {
    ProtoError::new("invalid_message", msg)
}

pub(super) fn fields<'a, T: Deserialize<'a>>(ty: &str, text: &'a str) -> Result<T, ProtoError> {
    serde_json::from_str(text).map_err(|e| {
        // serde's wording ("missing field `x`", "invalid type: ...") is precise; drop the
        // line/column noise, which is always 1:N for a single-line frame.
        let m = e.to_string();
        let m = m.split(" at line ").next().unwrap_or(&m).to_string();
        invalid(format!("{ty}: {m}"))
    })
}

pub(super) fn check_id(field: &str, v: &str) -> Result<(), ProtoError> {
    if v.is_empty() || v.len() > MAX_ID_LEN || v.chars().any(char::is_control) {
        return Err(invalid(format!(
            "`{field}` must be 1-{MAX_ID_LEN} characters without control characters"
        )));
    }
    Ok(())
}

fn pos_ref(ty: &str, text: &str) -> Result<String, ProtoError> {
    let m: PosRefMsg = fields(ty, text)?;
    check_id("posReference", &m.pos_reference)?;
    Ok(m.pos_reference)
}

fn table_id(ty: &str, text: &str) -> Result<TableId, ProtoError> {
    let m: TableIdMsg = fields(ty, text)?;
    TableId::from_value("tableId", &m.table_id).map_err(invalid)
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<Parsed, ProtoError> {
    let env: Envelope = serde_json::from_str(text).map_err(|e| {
        let code = if e.is_data() {
            "invalid_message"
        } else {
            "invalid_json"
        };
        let m = e.to_string();
        ProtoError::new(
            code,
            format!(
                "frame is not a JSON object: {}",
                m.split(" at line ").next().unwrap_or(&m)
            ),
        )
    })?;
    let request_id = env.request_id;
    let with_id = |mut e: ProtoError| {
        e.request_id = request_id.clone();
        e
    };
    let Some(ty) = env.ty else {
        return Err(with_id(invalid("missing field `type`")));
    };
    let depth = nesting_depth(text);
    if depth > MAX_DEPTH {
        return Err(with_id(ProtoError::new(
            "too_deep",
            format!(
                "JSON nested {depth} levels deep; the limit is {MAX_DEPTH} levels, the frame itself counting as one"
            ),
        )));
    }
    let ty = ty.as_ref();
    let msg = match ty {
        "PING" => Ok(Inbound::Ping),
        "AUTH" => fields(ty, text).map(Inbound::Auth),
        "LEASE_ACQUIRE" => pos_ref(ty, text).map(Inbound::LeaseAcquire),
        "LEASE_HEARTBEAT" => pos_ref(ty, text).map(Inbound::LeaseHeartbeat),
        "LEASE_RELEASE" => pos_ref(ty, text).map(Inbound::LeaseRelease),
        "ORDER_SNAPSHOT" => order_snapshot(text).map(Inbound::OrderSnapshot),
        "TABLE_UPDATE" => table_update(text).map(Inbound::TableUpdate),
        "TABLE_LOCK_ACQUIRE" => table_id(ty, text).map(Inbound::TableLockAcquire),
        "TABLE_LOCK_HEARTBEAT" => table_id(ty, text).map(Inbound::TableLockHeartbeat),
        "TABLE_LOCK_RELEASE" => table_id(ty, text).map(Inbound::TableLockRelease),
        "TABLE_LOCK_FORCE_ACQUIRE" => table_id(ty, text).map(Inbound::TableLockForceAcquire),
        "FLOOR_PLAN_UPDATE" => floor_plan(text).map(Inbound::FloorPlanUpdate),
        "TICKET_NUMBER_REQUEST" => fields::<RawTicket>(ty, text).and_then(|m| {
            if TICKET_ORDER_TYPES.contains(&m.order_type.as_str()) {
                Ok(Inbound::TicketNumberRequest(m.order_type))
            } else {
                Err(invalid(format!(
                    "`orderType` must be one of {}",
                    TICKET_ORDER_TYPES.join(", ")
                )))
            }
        }),
        "SYNC_REQUEST" => fields::<RawSync>(ty, text).map(|m| Inbound::SyncRequest(m.cursor)),
        "KITCHEN_TICKET" => super::kitchen::kitchen_ticket(text).map(Inbound::KitchenTicket),
        "KITCHEN_TICKET_STATUS" => {
            super::kitchen::kitchen_status(text).map(Inbound::KitchenTicketStatus)
        }
        "INVENTORY_ADJUST" => super::kitchen::inventory_adjust(text).map(Inbound::InventoryAdjust),
        "SUBSCRIBE" => super::kitchen::subscribe(text).map(Inbound::Subscribe),
        other => {
            let shown: String = other.chars().take(64).collect();
            Err(ProtoError::new(
                "unknown_type",
                format!("unknown message type {shown:?}"),
            ))
        }
    };
    match msg {
        Ok(msg) => Ok(Parsed { request_id, msg }),
        Err(e) => Err(with_id(e)),
    }
}

/// Deepest nesting of arrays and objects in the JSON text `text` (brackets inside strings do
/// not count). One pass over the bytes, no recursion: any depth is measured safely.
pub fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn order_snapshot(text: &str) -> Result<OrderSnapshotMsg, ProtoError> {
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

fn table_update(text: &str) -> Result<TableUpdateMsg, ProtoError> {
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

fn floor_plan(text: &str) -> Result<FloorPlanMsg, ProtoError> {
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

    fn code(text: &str) -> &'static str {
        parse(text).map(|_| "ok").unwrap_or_else(|e| e.code)
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
