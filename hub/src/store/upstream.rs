//! Upstream state kept in redb: which events are due for forwarding (read side of the
//! `pending_upstream` and `dead_letters` tables), cached Odoo session validations, registers
//! waiting to be pushed to Odoo, and the cloud bridge's pull cursor. Writes go through the
//! engine (`engine/upstream.rs`); the upstream tasks read here inside `spawn_blocking`.

use std::collections::HashMap;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::records::{dec, DeadRec, EventRec, OrderRec, PendingRec};
use super::{Store, StoreError, DEAD, EVENTS, META, ORDERS, PENDING};

/// Odoo session validations: sha256(session id) hex -> `SessionRec`.
pub const ODOO_SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("odoo_sessions");
/// Registers (`pos.config`) created on the hub: id -> `RegisterRec`.
pub const REGISTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("registers");

/// `META` key: last register id handed out.
pub const META_REGISTER_ID: &str = "register_last_id";
/// `META` key: the cloud bridge's pull cursor.
pub const META_BRIDGE_CURSOR: &str = "bridge_cursor";

/// A session id Odoo accepted, and who it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRec {
    pub uid_json: String,
    pub name: Option<String>,
    pub role: Option<String>,
    pub validated_ms: u64,
}

/// A register to create in Odoo (docs/upstream.md "Register push").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRec {
    pub name: String,
    /// `pending_create`, `synced` or `sync_error`.
    pub state: String,
    pub odoo_id: Option<i64>,
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub last_error: Option<String>,
    pub created_ms: u64,
}

/// One event picked for forwarding.
#[derive(Debug, Clone)]
pub struct DueEvent {
    pub seq: u64,
    pub event: EventRec,
    pub pending: PendingRec,
}

/// What to send for one order (or one order-less event): its due pending events, oldest
/// first, and for orders the newest stored snapshot (the coalesced state).
#[derive(Debug, Clone)]
pub struct DueGroup {
    pub pos_reference: Option<String>,
    pub events: Vec<DueEvent>,
    /// Newest stored snapshot JSON of the order, if the order still exists.
    pub latest_snapshot: Option<String>,
}

/// A dead letter as shown to operators.
#[derive(Debug, Clone)]
pub struct DeadView {
    pub seq: u64,
    pub kind: String,
    pub pos_reference: Option<String>,
    pub rec: DeadRec,
}

/// Most pending rows looked at per drain round (bounds the work when many are backing off).
const MAX_SCAN: usize = 50_000;

impl Store {
    /// Up to `max_groups` groups of pending events that may be sent now, in seq order of their
    /// oldest event. An order whose oldest pending event is still backing off blocks all of its
    /// newer events, so one order's updates are never sent out of order.
    pub fn due_groups(&self, now_ms: u64, max_groups: usize) -> Result<Vec<DueGroup>, StoreError> {
        let r = self.db()?.begin_read()?;
        let pending = r.open_table(PENDING)?;
        let events = r.open_table(EVENTS)?;
        let orders = r.open_table(ORDERS)?;
        let mut groups: Vec<DueGroup> = Vec::new();
        let mut by_order: HashMap<String, Option<usize>> = HashMap::new();
        for item in pending.iter()?.take(MAX_SCAN) {
            let (k, v) = item?;
            let seq = k.value();
            let pending_rec: PendingRec = dec(v.value())?;
            let Some(ev) = events.get(seq)? else {
                continue; // compacted away; nothing left to send
            };
            let event: EventRec = dec(ev.value())?;
            let due = pending_rec.next_attempt_ms <= now_ms;
            let item = DueEvent {
                seq,
                event,
                pending: pending_rec,
            };
            match item.event.pos_reference.clone() {
                Some(pr) => match by_order.get(&pr) {
                    Some(None) => {} // blocked by an older event still waiting
                    Some(Some(i)) => groups[*i].events.push(item),
                    None if !due || groups.len() >= max_groups => {
                        by_order.insert(pr, None);
                    }
                    None => {
                        let latest = orders
                            .get(pr.as_str())?
                            .map(|g| dec::<OrderRec>(g.value()))
                            .transpose()?
                            .map(|o| o.snapshot_json);
                        by_order.insert(pr.clone(), Some(groups.len()));
                        groups.push(DueGroup {
                            pos_reference: Some(pr),
                            events: vec![item],
                            latest_snapshot: latest,
                        });
                    }
                },
                None if due && groups.len() < max_groups => groups.push(DueGroup {
                    pos_reference: None,
                    events: vec![item],
                    latest_snapshot: None,
                }),
                None => {}
            }
        }
        Ok(groups)
    }

    /// Every dead letter, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadView>, StoreError> {
        let r = self.db()?.begin_read()?;
        let dead = r.open_table(DEAD)?;
        let events = r.open_table(EVENTS)?;
        let mut out = Vec::new();
        for item in dead.iter()? {
            let (k, v) = item?;
            let ev: Option<EventRec> =
                events.get(k.value())?.map(|g| dec(g.value())).transpose()?;
            out.push(DeadView {
                seq: k.value(),
                kind: ev.as_ref().map(|e| e.kind.clone()).unwrap_or_default(),
                pos_reference: ev.and_then(|e| e.pos_reference),
                rec: dec(v.value())?,
            });
        }
        Ok(out)
    }

    /// A cached Odoo session validation, by the hash of the session id.
    pub fn odoo_session(&self, key: &str) -> Result<Option<SessionRec>, StoreError> {
        let r = self.db()?.begin_read()?;
        let t = r.open_table(ODOO_SESSIONS)?;
        let v = t.get(key)?;
        v.map(|g| dec(g.value())).transpose()
    }

    /// Every register, by id.
    pub fn registers(&self) -> Result<Vec<(u64, RegisterRec)>, StoreError> {
        let r = self.db()?.begin_read()?;
        let t = r.open_table(REGISTERS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value(), dec(v.value())?));
        }
        Ok(out)
    }

    /// The cloud bridge's pull cursor (0 before the first pull).
    pub fn bridge_cursor(&self) -> Result<u64, StoreError> {
        let r = self.db()?.begin_read()?;
        let t = r.open_table(META)?;
        let v = t.get(META_BRIDGE_CURSOR)?.map_or(0, |g| g.value());
        Ok(v)
    }
}
