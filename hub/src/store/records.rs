//! The values kept in redb, encoded with postcard. JSON that comes from terminals (snapshots,
//! floor plans, uids, table ids) is stored as its original text, so unknown fields survive and
//! the bytes sent upstream or replayed are exactly what was accepted.

use serde::{Deserialize, Serialize};

/// The stored state of one order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderRec {
    pub version: u64,
    /// Sequence number of the event that produced this version.
    pub seq: u64,
    pub state: String,
    /// Canonical key of the order's table, if it has one.
    pub table_key: Option<String>,
    pub terminal_id: String,
    pub updated_ms: u64,
    pub snapshot_json: String,
}

/// A single-writer lease on an order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseRec {
    pub terminal_id: String,
    pub name: String,
    pub uid_json: String,
    pub granted_ms: u64,
    pub expires_ms: u64,
}

/// One entry of the append-only event log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRec {
    pub ts_ms: u64,
    /// Event kind, e.g. `order_snapshot`, `table_update`, `table_lock`, `floor_plan`.
    pub kind: String,
    pub pos_reference: Option<String>,
    pub terminal_id: String,
    /// The broadcast message exactly as terminals receive it (with its `seq`).
    pub message: String,
    /// Audience of the event: `None` for every terminal, or a kitchen station (`kds`, `bds`)
    /// for kitchen-ticket events, which reach only terminals subscribed to that station, live
    /// and in catch-up alike.
    pub scope: Option<String>,
}

/// Upstream bookkeeping of an event that still has to be forwarded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PendingRec {
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub last_error: Option<String>,
}

/// An event the forwarder gave up on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadRec {
    pub attempts: u32,
    pub last_error: String,
    pub dead_ms: u64,
}

/// Status of one table of the floor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableRec {
    pub table_id_json: String,
    pub status: String,
    pub pos_reference: Option<String>,
    pub terminal_id: Option<String>,
    pub updated_ms: u64,
}

/// A table lock held by one terminal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockRec {
    pub table_id_json: String,
    pub terminal_id: String,
    pub uid_json: String,
    pub user_name: String,
    pub expires_ms: u64,
}

/// A floor plan as the last terminal sent it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorRec {
    pub floor_id_json: String,
    pub tables_json: String,
    pub layout_mode_json: Option<String>,
    pub terminal_id: String,
    pub updated_ms: u64,
}

/// What an already applied `eventId` produced, to answer a resend with the same `ORDER_ACK`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppliedRec {
    pub pos_reference: String,
    pub version: u64,
    pub seq: u64,
    pub ts_ms: u64,
}

/// Encodes a record; postcard cannot fail on these plain structs short of running out of memory.
pub fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).unwrap_or_default()
}

/// Decodes a record, turning a damaged value into a storage error instead of a panic.
pub fn dec<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, super::StoreError> {
    postcard::from_bytes(b).map_err(|e| super::StoreError::Decode(e.to_string()))
}
