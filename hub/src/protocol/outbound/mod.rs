//! Messages the hub sends to terminals (docs/protocol.md): one typed builder per message `type`,
//! and the only place in the hub that names an outbound `type` (`tests/protocol_index.rs` checks
//! this against the message index of `docs/protocol.md`). Builders return the message as a
//! `Value` (a reply then gets its `requestId` from `reply`) or, for the stored and broadcast
//! events, as JSON text built once and shared between every recipient. The hot path
//! (`ORDER_UPDATED`, `EVENTS_BULK`) embeds the stored text without re-parsing it.
//!
//! By feature: `orders` (leases, snapshots), `tables` (status, locks, floor plans, ticket
//! numbers), `kitchen` (tickets, station subscriptions, inventory); session and sync messages
//! are here.

mod kitchen;
mod orders;
mod tables;

pub use kitchen::*;
pub use orders::*;
pub use tables::*;

use std::fmt::Write as _; // `write!` into a String cannot fail: its Result is dropped.

use serde_json::value::RawValue;
use serde_json::{json, Value};

/// Adds the echoed `requestId` (if any) and renders the message.
pub fn reply(mut v: Value, request_id: Option<&Value>) -> String {
    if let (Some(rid), Value::Object(map)) = (request_id, &mut v) {
        map.insert("requestId".into(), rid.clone());
    }
    v.to_string()
}

/// `ERROR`: a request was refused (`code` is one of docs/protocol.md's error codes).
pub fn error(code: &str, message: &str, request_id: Option<&Value>) -> String {
    reply(
        json!({"type": "ERROR", "code": code, "message": message}),
        request_id,
    )
}

/// `AUTH_FAIL`: the `AUTH` was refused; the connection is closed after it.
pub fn auth_fail(reason: &str, message: &str, request_id: Option<&Value>) -> String {
    reply(
        json!({"type": "AUTH_FAIL", "reason": reason, "message": message}),
        request_id,
    )
}

/// Parses stored JSON text back into a value for embedding; stored text is always valid JSON,
/// and a damaged one shows as `null` rather than breaking the reply.
pub fn raw(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// One chunk of catch-up: `events` are the stored broadcast messages in seq order; the chunk
/// covers `fromSeq..=toSeq`; `done` marks the last chunk before live broadcasts resume.
/// The messages are JSON the hub produced itself (validated on the way in), so they are
/// spliced in as they are rather than parsed again: catch-up runs flat out under overload.
pub fn events_bulk<S: AsRef<str>>(
    events: &[(u64, S)],
    from_seq: u64,
    to_seq: u64,
    done: bool,
) -> String {
    let len: usize = events.iter().map(|(_, m)| m.as_ref().len() + 1).sum();
    let mut out = String::with_capacity(len + 96);
    out.push_str(r#"{"type":"EVENTS_BULK","events":["#);
    for (i, (_, m)) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(m.as_ref());
    }
    let _ = write!(
        out,
        r#"],"fromSeq":{from_seq},"toSeq":{to_seq},"done":{done}}}"#
    );
    out
}

/// What `AUTH_OK` tells a terminal about its session and the hub.
pub struct AuthOk<'a> {
    pub terminal_id: &'a str,
    /// The user id as JSON text (a number or a string, as the token had it).
    pub uid_json: &'a str,
    pub role: &'a str,
    pub name: &'a str,
    pub tenant_id: &'a str,
    pub store_id: &'a str,
    pub hub_version: &'a str,
    /// The newest seq, so the terminal knows how far catch-up goes.
    pub seq: u64,
    pub server_time: u64,
}

/// `AUTH_OK`: the terminal is in; catch-up follows if it sent a cursor.
pub fn auth_ok(m: &AuthOk) -> Value {
    json!({
        "type": "AUTH_OK",
        "terminalId": m.terminal_id,
        "uid": raw(m.uid_json),
        "role": m.role,
        "name": m.name,
        "realm": {"tenantId": m.tenant_id, "storeId": m.store_id},
        "hubVersion": m.hub_version,
        "seq": m.seq,
        "serverTime": m.server_time,
    })
}

/// `PONG`, the answer to `PING`.
pub fn pong() -> Value {
    json!({"type": "PONG"})
}

/// `SYNC_STATUS`, broadcast every status tick: terminals online, events not yet upstream, dead
/// letters, the upstream's state.
pub fn sync_status(
    terminals: usize,
    pending_events: u64,
    dead_letters: u64,
    upstream_state: &str,
    upstream_last_ok: Option<u64>,
    seq: u64,
) -> Value {
    json!({
        "type": "SYNC_STATUS",
        "terminals": terminals,
        "pendingEvents": pending_events,
        "deadLetters": dead_letters,
        "upstream": {"state": upstream_state, "lastSuccessAt": upstream_last_ok},
        "seq": seq,
    })
}

/// `CLOUD_EVENT`: an event pulled from the cloud bridge, stored and broadcast as it came.
pub fn cloud_event(event: &Value, seq: u64, ts: u64) -> String {
    json!({"type": "CLOUD_EVENT", "event": event, "seq": seq, "ts": ts}).to_string()
}

/// `RESYNC_REQUIRED`: the events after `cursor` are no longer all in the log; the terminal
/// must take a full `STATE` (`seq` is the newest seq).
pub fn resync_required(reason: &str, cursor: u64, seq: u64) -> String {
    json!({"type": "RESYNC_REQUIRED", "reason": reason, "cursor": cursor, "seq": seq}).to_string()
}

/// The current state of everything a terminal shows, sent as one `STATE` message. Orders and
/// kitchen tickets, the bulk of it, are each serialised once as they are read (`state_order`),
/// with the stored snapshot spliced in as text: building a `STATE` of a busy day's orders
/// costs about its own size in memory, not a parsed tree of every snapshot.
pub struct State {
    pub orders: Vec<Box<RawValue>>,
    pub tables: Vec<Value>,
    pub table_locks: Vec<Value>,
    pub floor_plans: Vec<Value>,
    pub kitchen_tickets: Vec<Box<RawValue>>,
    pub inventory: Value,
    pub seq: u64,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct StateMsg<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    orders: &'a [Box<RawValue>],
    tables: &'a [Value],
    table_locks: &'a [Value],
    floor_plans: &'a [Value],
    kitchen_tickets: &'a [Box<RawValue>],
    inventory: &'a Value,
    seq: u64,
}

/// `STATE`: the full state instead of the event log (cursor 0, or a resync).
pub fn state(m: &State) -> String {
    serde_json::to_string(&StateMsg {
        ty: "STATE",
        orders: &m.orders,
        tables: &m.tables,
        table_locks: &m.table_locks,
        floor_plans: &m.floor_plans,
        kitchen_tickets: &m.kitchen_tickets,
        inventory: &m.inventory,
        seq: m.seq,
    })
    .unwrap_or_default()
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct StateOrder<'a> {
    pos_reference: &'a str,
    version: u64,
    seq: u64,
    snapshot: &'a RawValue,
}

/// One order of a `STATE`: `{posReference, version, seq, snapshot}`, with the stored snapshot
/// text as it is (`None` if it is not JSON, which the hub never stores).
pub fn state_order(
    pos_reference: &str,
    version: u64,
    seq: u64,
    snapshot_json: &str,
) -> Option<Box<RawValue>> {
    let snapshot: &RawValue = serde_json::from_str(snapshot_json).ok()?;
    serde_json::value::to_raw_value(&StateOrder {
        pos_reference,
        version,
        seq,
        snapshot,
    })
    .ok()
}
