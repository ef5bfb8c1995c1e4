//! The terminal wire protocol (docs/protocol.md): JSON text frames in, JSON text frames out.
//! `parse` (below) is the one place that reads an inbound `type`; `outbound` is the one place that
//! writes one. The message index at the end of `docs/protocol.md` lists both directions, and
//! `tests/protocol_index.rs` keeps it and this module in step.

pub mod fields;
pub mod inbound;
pub mod kitchen;
pub mod outbound;

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use fields::MAX_DEPTH;
pub use fields::{ProtoError, TableId};
pub use inbound::{Inbound, Parsed};

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
        e.request_id.clone_from(&request_id);
        e
    };
    let Some(ty) = env.ty else {
        return Err(with_id(fields::invalid("missing field `type`")));
    };
    let depth = fields::nesting_depth(text);
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
        "AUTH" => inbound::auth(text).map(Inbound::Auth),
        "LEASE_ACQUIRE" => inbound::pos_ref(ty, text).map(Inbound::LeaseAcquire),
        "LEASE_HEARTBEAT" => inbound::pos_ref(ty, text).map(Inbound::LeaseHeartbeat),
        "LEASE_RELEASE" => inbound::pos_ref(ty, text).map(Inbound::LeaseRelease),
        "ORDER_SNAPSHOT" => inbound::order_snapshot(text).map(Inbound::OrderSnapshot),
        "TABLE_UPDATE" => inbound::table_update(text).map(Inbound::TableUpdate),
        "TABLE_LOCK_ACQUIRE" => inbound::table_id(ty, text).map(Inbound::TableLockAcquire),
        "TABLE_LOCK_HEARTBEAT" => inbound::table_id(ty, text).map(Inbound::TableLockHeartbeat),
        "TABLE_LOCK_RELEASE" => inbound::table_id(ty, text).map(Inbound::TableLockRelease),
        "TABLE_LOCK_FORCE_ACQUIRE" => {
            inbound::table_id(ty, text).map(Inbound::TableLockForceAcquire)
        }
        "FLOOR_PLAN_UPDATE" => inbound::floor_plan(text).map(Inbound::FloorPlanUpdate),
        "TICKET_NUMBER_REQUEST" => inbound::ticket_number_request(text),
        "SYNC_REQUEST" => inbound::sync_request(text).map(Inbound::SyncRequest),
        "KITCHEN_TICKET" => kitchen::kitchen_ticket(text).map(Inbound::KitchenTicket),
        "KITCHEN_TICKET_STATUS" => kitchen::kitchen_status(text).map(Inbound::KitchenTicketStatus),
        "INVENTORY_ADJUST" => kitchen::inventory_adjust(text).map(Inbound::InventoryAdjust),
        "SUBSCRIBE" => kitchen::subscribe(text).map(Inbound::Subscribe),
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

#[derive(Deserialize)]
struct Envelope<'a> {
    /// Borrowed when the frame has it verbatim, owned when it was written with escapes
    /// (`"\u0050ING"` is `"PING"`): dispatch is on the decoded string.
    #[serde(rename = "type", borrow)]
    ty: Option<Cow<'a, str>>,
    #[serde(rename = "requestId", default)]
    request_id: Option<Value>,
}
