//! Messages the hub sends to terminals (SPEC §2), built as JSON text once and shared between
//! every recipient. The hot path (`ORDER_UPDATED`, `ORDER_ACK`) embeds the stored snapshot text
//! without re-parsing it.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// Adds the echoed `requestId` (if any) and renders the message.
pub fn reply(mut v: Value, request_id: Option<&Value>) -> String {
    if let (Some(rid), Value::Object(map)) = (request_id, &mut v) {
        map.insert("requestId".into(), rid.clone());
    }
    v.to_string()
}

pub fn error(code: &str, message: &str, request_id: Option<&Value>) -> String {
    reply(
        json!({"type": "ERROR", "code": code, "message": message}),
        request_id,
    )
}

pub fn auth_fail(reason: &str, message: &str, request_id: Option<&Value>) -> String {
    reply(
        json!({"type": "AUTH_FAIL", "reason": reason, "message": message}),
        request_id,
    )
}

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
    out.push_str(&format!(
        r#"],"fromSeq":{from_seq},"toSeq":{to_seq},"done":{done}}}"#
    ));
    out
}
