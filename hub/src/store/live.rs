//! The live-order index: the orders a `STATE` may carry (open ones, and paid or cancelled ones
//! changed within the last day), by reference. A store takes hundreds of orders a day and keeps
//! them all, so reading every order to build a `STATE` would cost the store's history; reading
//! this index costs the state. The engine keeps it in the same transaction as the order itself
//! (`engine::orders`) and drops finished orders from it once they are a day old (with the
//! hourly compaction). A database from before the index gets it built once, when it is opened.
//!
//! Beside it, `finished_orders` lists paid and cancelled orders by the time they last changed,
//! so order retention (`HUB_ORDER_RETENTION_MS`) finds the oldest without reading the orders.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::records::{dec, enc, OrderRec};
use super::{Store, StoreError, META, ORDERS};

/// posReference -> [`LiveRec`].
pub const LIVE_ORDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("live_orders");
/// `META` key: set once the index holds every live order (a database from before it is indexed
/// on open).
pub const META_LIVE_INDEXED: &str = "live_orders_indexed";
/// (last change in ms, posReference) of every paid or cancelled order.
pub const FINISHED_ORDERS: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("finished_orders");
/// How long a paid or cancelled order stays in a `STATE`.
pub const FINISHED_KEPT_MS: u64 = 86_400_000;

/// What the index keeps of an order: enough to decide whether a `STATE` carries it and to
/// estimate the `STATE`'s size without reading it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveRec {
    pub updated_ms: u64,
    pub finished: bool,
    /// Bytes of its snapshot JSON.
    pub bytes: u64,
}

/// Paid and cancelled orders are finished: a `STATE` carries them for a day only.
pub fn is_finished(state: &str) -> bool {
    state == "paid" || state == "cancelled"
}

impl LiveRec {
    pub fn of(o: &OrderRec) -> LiveRec {
        LiveRec {
            updated_ms: o.updated_ms,
            finished: is_finished(&o.state),
            bytes: o.snapshot_json.len() as u64,
        }
    }

    /// Whether a `STATE` built at `now_ms` carries this order.
    pub fn in_state(&self, now_ms: u64) -> bool {
        !self.finished || self.updated_ms >= now_ms.saturating_sub(FINISHED_KEPT_MS)
    }
}

/// Creates the index table, and fills it from the orders table if this database predates it
/// (one pass over every order, once).
pub fn create(txn: &WriteTransaction, now_ms: u64) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    let mut live = txn.open_table(LIVE_ORDERS)?;
    let mut finished = txn.open_table(FINISHED_ORDERS)?;
    if meta.get(META_LIVE_INDEXED)?.is_some() {
        return Ok(());
    }
    let orders = txn.open_table(ORDERS)?;
    let mut indexed = 0u64;
    for item in orders.iter()? {
        let (k, v) = item?;
        let rec = LiveRec::of(&dec::<OrderRec>(v.value())?);
        if rec.finished {
            finished.insert((rec.updated_ms, k.value()), ())?;
        }
        if rec.in_state(now_ms) {
            live.insert(k.value(), enc(&rec).as_slice())?;
            indexed += 1;
        }
    }
    meta.insert(META_LIVE_INDEXED, 1)?;
    if indexed > 0 {
        tracing::info!(indexed, "built the live-order index");
    }
    Ok(())
}

/// Per-entry JSON around an order's snapshot in a `STATE` (`posReference`, `version`, `seq`).
const ORDER_OVERHEAD: u64 = 80;
/// A table, lock, floor plan or kitchen ticket entry, on average.
const ENTRY_BYTES: u64 = 160;

impl Store {
    /// The live orders a `STATE` built at `now_ms` carries, by reference.
    pub fn live_orders(&self, now_ms: u64) -> Result<Vec<(String, OrderRec)>, StoreError> {
        let r = self.db()?.begin_read()?;
        let live = r.open_table(LIVE_ORDERS)?;
        let orders = r.open_table(ORDERS)?;
        let mut out = Vec::new();
        for item in live.iter()? {
            let (k, v) = item?;
            if !dec::<LiveRec>(v.value())?.in_state(now_ms) {
                continue;
            }
            if let Some(o) = orders.get(k.value())? {
                out.push((k.value().to_string(), dec(o.value())?));
            }
        }
        Ok(out)
    }

    /// An estimate of the bytes of a `STATE` built at `now_ms`: the live orders' snapshots plus
    /// a typical size for each table, lock, floor plan and kitchen ticket. It is compared with
    /// the bytes a replay would take, so it needs to be close, not exact.
    pub fn state_bytes(&self, now_ms: u64) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        let r = self.db()?.begin_read()?;
        let mut bytes = 0;
        for item in r.open_table(LIVE_ORDERS)?.iter()? {
            let rec: LiveRec = dec(item?.1.value())?;
            if rec.in_state(now_ms) {
                bytes += rec.bytes + ORDER_OVERHEAD;
            }
        }
        let entries = r.open_table(super::TABLES)?.len()?
            + r.open_table(super::TABLE_LOCKS)?.len()?
            + r.open_table(super::FLOOR_PLANS)?.len()?
            + r.open_table(super::kitchen::KITCHEN_TICKETS)?.len()?;
        Ok(bytes + entries * ENTRY_BYTES)
    }

    /// Average bytes of the (up to) `n` newest events at or below `to`: what one event of a
    /// replay costs, for comparing a replay with a `STATE`.
    pub fn avg_event_bytes(&self, to: u64, n: usize) -> Result<Option<u64>, StoreError> {
        let r = self.db()?.begin_read()?;
        let events = r.open_table(super::EVENTS)?;
        let (mut count, mut bytes) = (0u64, 0u64);
        for item in events.range(..=to)?.rev().take(n) {
            let rec: super::records::EventRec = dec(item?.1.value())?;
            count += 1;
            bytes += rec.message.len() as u64;
        }
        Ok((count > 0).then(|| bytes / count))
    }
}
