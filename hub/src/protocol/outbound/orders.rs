//! Lease and order messages: who may write an order, and the accepted snapshots.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::reply;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OrderUpdated<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    pos_reference: &'a str,
    version: u64,
    snapshot: &'a RawValue,
    terminal_id: &'a str,
    seq: u64,
    ts: u64,
}

/// `ORDER_UPDATED`, the broadcast (and stored event message) of an accepted snapshot. `ts` is
/// the hub's commit time in ms, which lets a terminal measure fan-out delay.
pub fn order_updated(
    pos_reference: &str,
    version: u64,
    snapshot: &RawValue,
    terminal_id: &str,
    seq: u64,
    ts: u64,
) -> String {
    serde_json::to_string(&OrderUpdated {
        ty: "ORDER_UPDATED",
        pos_reference,
        version,
        snapshot,
        terminal_id,
        seq,
        ts,
    })
    .unwrap_or_default()
}

pub fn order_ack(
    pos_reference: &str,
    version: u64,
    seq: u64,
    request_id: Option<&Value>,
) -> String {
    reply(
        json!({"type": "ORDER_ACK", "posReference": pos_reference, "version": version, "seq": seq}),
        request_id,
    )
}

/// `CONFLICT`: the snapshot was based on an old version; `snapshot` is the current one.
pub fn conflict(pos_reference: &str, current_version: u64, snapshot: &Value) -> Value {
    json!({"type": "CONFLICT", "posReference": pos_reference, "currentVersion": current_version,
        "snapshot": snapshot})
}

/// `LEASE_GRANTED`: the terminal may write the order until `expiresAt` (renewed by heartbeats).
pub fn lease_granted(pos_reference: &str, expires_at: u64, ttl_ms: u64) -> Value {
    json!({"type": "LEASE_GRANTED", "posReference": pos_reference, "expiresAt": expires_at,
        "ttlMs": ttl_ms})
}

/// `LEASE_DENIED`: another terminal holds the order's lease until `expiresAt`.
pub fn lease_denied(
    pos_reference: &str,
    holder_id: &str,
    holder_name: &str,
    expires_at: u64,
) -> Value {
    json!({"type": "LEASE_DENIED", "posReference": pos_reference,
        "holder": {"terminalId": holder_id, "name": holder_name}, "expiresAt": expires_at})
}

/// `LEASE_RENEWED`: a heartbeat moved the lease's expiry.
pub fn lease_renewed(pos_reference: &str, expires_at: u64) -> Value {
    json!({"type": "LEASE_RENEWED", "posReference": pos_reference, "expiresAt": expires_at})
}

/// `LEASE_REVOKED`: the terminal no longer holds the lease (`reason`: `not_holder`, `expired`,
/// `reset`).
pub fn lease_revoked(pos_reference: &str, reason: &str) -> Value {
    json!({"type": "LEASE_REVOKED", "posReference": pos_reference, "reason": reason})
}

/// `LEASE_RELEASED`: the lease was given back.
pub fn lease_released(pos_reference: &str) -> Value {
    json!({"type": "LEASE_RELEASED", "posReference": pos_reference})
}
