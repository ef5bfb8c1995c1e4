//! Table messages: status, locks, floor plans and ticket numbers.

use serde_json::{json, Value};

use super::raw;

/// `TABLE_UPDATED` (stored and broadcast): a table's status changed.
pub fn table_updated(
    table_id_json: &str,
    status: &str,
    pos_reference: Option<&str>,
    terminal_id: &str,
    seq: u64,
    ts: u64,
) -> String {
    json!({"type": "TABLE_UPDATED", "tableId": raw(table_id_json), "status": status,
        "posReference": pos_reference, "terminalId": terminal_id, "seq": seq, "ts": ts})
    .to_string()
}

/// `TABLE_LOCK_GRANTED`: the terminal holds the table until `expiresAt`.
pub fn table_lock_granted(table_id_json: &str, expires_at: u64) -> Value {
    json!({"type": "TABLE_LOCK_GRANTED", "tableId": raw(table_id_json), "expiresAt": expires_at})
}

/// Who holds a table lock, as `TABLE_LOCK_DENIED` shows it.
pub struct LockHolder<'a> {
    pub terminal_id: &'a str,
    pub uid_json: &'a str,
    pub user_name: &'a str,
    pub expires_at: u64,
}

/// `TABLE_LOCK_DENIED`: another terminal holds the table.
pub fn table_lock_denied(table_id_json: &str, holder: &LockHolder) -> Value {
    json!({"type": "TABLE_LOCK_DENIED", "tableId": raw(table_id_json),
        "holder": {"terminalId": holder.terminal_id, "uid": raw(holder.uid_json),
            "userName": holder.user_name, "expiresAt": holder.expires_at}})
}

/// `TABLE_LOCK_REVOKED`: the terminal lost the table's lock (`reason`: `forced`,
/// `not_holder`, `expired`).
pub fn table_lock_revoked(table_id_json: &str, reason: &str) -> Value {
    json!({"type": "TABLE_LOCK_REVOKED", "tableId": raw(table_id_json), "reason": reason})
}

/// `TABLE_LOCK_RELEASED` (stored and broadcast): a table is free again.
pub fn table_lock_released(table_id_json: &str, terminal_id: &str, seq: u64, ts: u64) -> String {
    json!({"type": "TABLE_LOCK_RELEASED", "tableId": raw(table_id_json), "terminalId": terminal_id,
        "seq": seq, "ts": ts})
    .to_string()
}

/// `TABLE_LOCKS_STATE` (stored and broadcast): every table lock now held.
pub fn table_locks_state(locks: &Value, seq: u64, ts: u64) -> String {
    json!({"type": "TABLE_LOCKS_STATE", "locks": locks, "seq": seq, "ts": ts}).to_string()
}

/// A stored floor plan, as `FLOOR_PLAN_CHANGED` carries it (JSON texts as the terminal sent them).
pub struct FloorPlan<'a> {
    pub floor_id_json: &'a str,
    pub tables_json: &'a str,
    pub layout_mode_json: Option<&'a str>,
    pub terminal_id: &'a str,
}

/// `FLOOR_PLAN_CHANGED` (stored and broadcast): a floor plan was saved.
pub fn floor_plan_changed(f: &FloorPlan, seq: u64, ts: u64) -> String {
    let mut v = json!({"type": "FLOOR_PLAN_CHANGED", "floorId": raw(f.floor_id_json),
        "tables": raw(f.tables_json), "terminalId": f.terminal_id, "seq": seq, "ts": ts});
    if let Some(l) = f.layout_mode_json {
        v["layoutMode"] = raw(l);
    }
    v.to_string()
}

/// `FLOOR_PLAN_SAVED`: the sender's floor plan is stored as event `seq`.
pub fn floor_plan_saved(floor_id_json: &str, seq: u64) -> Value {
    json!({"type": "FLOOR_PLAN_SAVED", "floorId": raw(floor_id_json), "seq": seq})
}

/// `TICKET_NUMBER`: the next number of `orderType` for `businessDate`.
pub fn ticket_number(order_type: &str, number: u64, business_date: &str) -> Value {
    json!({"type": "TICKET_NUMBER", "orderType": order_type, "number": number,
        "businessDate": business_date})
}
