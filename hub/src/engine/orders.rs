//! Order snapshots: the versioned write of an order by its lease holder, with its event, the
//! automatic table status and the upstream queue entry, all in the batch's transaction.

use redb::ReadableTable;
use serde_json::Value;

use super::{Engine, Session, Tx};
use crate::protocol::inbound::OrderSnapshotMsg;
use crate::protocol::outbound;
use crate::store::live::{is_finished, LiveRec};
use crate::store::records::{dec, enc, AppliedRec, OrderRec, TableRec};
use crate::store::StoreError;

impl Engine {
    pub(super) fn order_snapshot(
        &mut self,
        tx: &mut Tx,
        s: &Session,
        m: &OrderSnapshotMsg,
        r: Option<&Value>,
    ) -> Result<(), StoreError> {
        let pos = m.pos_reference.as_str();
        // 1. A resent eventId answers with the original acknowledgement and changes nothing.
        if self.answered_resend(tx, s, m, r)? {
            return Ok(());
        }
        // 2. Single writer: the sender must hold the order's lease.
        let holds = self
            .leases
            .get(pos)
            .is_some_and(|l| l.terminal_id == s.terminal_id);
        if !holds {
            let text = outbound::error(
                "lease_required",
                &format!("acquire the lease on {pos} before writing it"),
                r,
            );
            self.reply(s, text);
            return Ok(());
        }
        // 3. Optimistic versioning against the stored order.
        let stored: Option<OrderRec> = tx.orders.get(pos)?.map(|g| dec(g.value())).transpose()?;
        let current = stored.as_ref().map_or(0, |o| o.version);
        if m.base_version < current {
            let snap = stored
                .as_ref()
                .map_or(Value::Null, |o| outbound::raw(&o.snapshot_json));
            let msg = outbound::conflict(pos, current, &snap);
            self.reply(s, outbound::reply(msg, r));
            return Ok(());
        }
        // 4. Store the new version and its event in this transaction.
        let version = current + 1;
        let terminal = s.terminal_id.clone();
        let seq = self.append(
            tx,
            "order_snapshot",
            Some(pos),
            &terminal,
            true,
            Some(s.conn_id),
            |seq, ts| outbound::order_updated(pos, version, &m.snapshot, &terminal, seq, ts),
        )?;
        let table_key = m.table.as_ref().map(|t| t.key.clone());
        let rec = OrderRec {
            version,
            seq,
            state: m.state.clone(),
            table_key: table_key.clone(),
            terminal_id: terminal.clone(),
            updated_ms: self.now_ms,
            snapshot_json: m.snapshot.get().to_string(),
        };
        put_order(tx, pos, &rec, stored.as_ref())?;
        if let Some(id) = &m.event_id {
            let a = AppliedRec {
                pos_reference: pos.to_string(),
                version,
                seq,
                ts_ms: self.now_ms,
            };
            tx.event_ids.insert(id.as_str(), enc(&a).as_slice())?;
        }
        self.reply(s, outbound::order_ack(pos, version, seq, r));
        // 5. Automatic table status.
        let prev_table = stored.and_then(|o| o.table_key);
        self.follow_table(tx, m, prev_table, &terminal)
    }

    /// Answers a resent eventId with the original acknowledgement (or `duplicate_event_id` if
    /// it was another order's); true if it was one.
    fn answered_resend(
        &mut self,
        tx: &mut Tx,
        s: &Session,
        m: &OrderSnapshotMsg,
        r: Option<&Value>,
    ) -> Result<bool, StoreError> {
        let pos = m.pos_reference.as_str();
        let Some(id) = &m.event_id else {
            return Ok(false);
        };
        let Some(g) = tx.event_ids.get(id.as_str())? else {
            return Ok(false);
        };
        let applied: AppliedRec = dec(g.value())?;
        let text = if applied.pos_reference == pos {
            outbound::order_ack(pos, applied.version, applied.seq, r)
        } else {
            outbound::error(
                "duplicate_event_id",
                "this eventId was already used for another order",
                r,
            )
        };
        self.reply(s, text);
        Ok(true)
    }

    /// A table that an order left, or that a finished order occupied, becomes available; the
    /// order's table becomes occupied.
    fn follow_table(
        &mut self,
        tx: &mut Tx,
        m: &OrderSnapshotMsg,
        prev_table: Option<String>,
        terminal: &str,
    ) -> Result<(), StoreError> {
        let p = m.pos_reference.as_str();
        let table_key = m.table.as_ref().map(|t| &t.key);
        let finished = m.state == "paid" || m.state == "cancelled";
        if let Some(prev) = prev_table.filter(|k| Some(k) != table_key) {
            self.free_table_of(tx, &prev, p, terminal)?;
        }
        if let Some(t) = &m.table {
            if finished {
                self.free_table_of(tx, &t.key, p, terminal)?;
            } else {
                let cur: Option<TableRec> = tx
                    .tables
                    .get(t.key.as_str())?
                    .map(|g| dec(g.value()))
                    .transpose()?;
                let already = cur.is_some_and(|c| {
                    c.status == "occupied" && c.pos_reference.as_deref() == Some(p)
                });
                if !already {
                    self.set_table(tx, &t.key, &t.json, "occupied", Some(p), terminal)?;
                }
            }
        }
        Ok(())
    }
}

/// Stores `rec` as order `p` and keeps the order indexes (`store::live`) in step, in the same
/// transaction: every order write goes through here. `before` is the stored version the caller
/// already read for its version check (not decoded a second time here).
pub(super) fn put_order(
    tx: &mut Tx,
    p: &str,
    rec: &OrderRec,
    before: Option<&OrderRec>,
) -> Result<(), StoreError> {
    tx.orders.insert(p, enc(rec).as_slice())?;
    if let Some(old) = before.filter(|o| is_finished(&o.state)) {
        tx.finished.remove((old.updated_ms, p))?;
    }
    let live = LiveRec::of(rec);
    if live.finished {
        tx.finished.insert((rec.updated_ms, p), ())?;
    }
    tx.live.insert(p, enc(&live).as_slice())?;
    Ok(())
}
