//! Inventory counters (docs/kitchen.md): one PN-counter per product. Each contributing terminal has
//! its own increment sum `P[t]` and decrement sum `N[t]`; the level is `ΣP − ΣN`. An adjustment
//! is counted once per `eventId` (a durable set of applied ids, never compacted), so resends from
//! a terminal's outbox do not count twice, and adjustments from several terminals all count
//! whatever order they arrive in. The pure counter ([`PnCounter`]) is what the property tests
//! exercise; [`Engine::inventory_adjust`] applies it in the engine's transaction, appends an
//! `INVENTORY_UPDATED` event (forwarded upstream) and answers `INVENTORY_ACK`.

use std::collections::{BTreeMap, BTreeSet};

use redb::ReadableTable;
use serde_json::Value;

use super::{Engine, Session, Tx};
use crate::protocol::kitchen::InventoryAdjustMsg;
use crate::protocol::outbound;
use crate::store::kitchen::{InvAppliedRec, InventoryRec};
use crate::store::records::{dec, enc};
use crate::store::StoreError;

/// A PN-counter: per replica (terminal) sums of increments and decrements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PnCounter {
    pub p: BTreeMap<String, u64>,
    pub n: BTreeMap<String, u64>,
}

impl PnCounter {
    /// Adds one adjustment of `replica`.
    pub fn add(&mut self, replica: &str, delta: i64) {
        let (side, by) = if delta >= 0 {
            (&mut self.p, delta.unsigned_abs())
        } else {
            (&mut self.n, delta.unsigned_abs())
        };
        let e = side.entry(replica.to_string()).or_insert(0);
        *e = e.saturating_add(by);
    }

    /// `ΣP − ΣN`, clamped to the i64 range.
    pub fn level(&self) -> i64 {
        let p: i128 = self.p.values().map(|&v| i128::from(v)).sum();
        let n: i128 = self.n.values().map(|&v| i128::from(v)).sum();
        i64::try_from(p - n).unwrap_or(if p > n { i64::MAX } else { i64::MIN })
    }

    /// CRDT merge: entry-wise maximum (commutative, associative, idempotent).
    pub fn merge(&mut self, other: &PnCounter) {
        for (side, o) in [(&mut self.p, &other.p), (&mut self.n, &other.n)] {
            for (k, &v) in o {
                let e = side.entry(k.clone()).or_insert(0);
                *e = (*e).max(v);
            }
        }
    }
}

/// A counter plus the ids it has counted: what the hub keeps per product, in pure form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    pub counter: PnCounter,
    pub applied: BTreeSet<String>,
}

impl Ledger {
    /// Applies an adjustment unless its eventId was already counted; true if it counted.
    pub fn apply(&mut self, event_id: &str, replica: &str, delta: i64) -> bool {
        if !self.applied.insert(event_id.to_string()) {
            return false;
        }
        self.counter.add(replica, delta);
        true
    }
}

impl From<&InventoryRec> for PnCounter {
    fn from(r: &InventoryRec) -> Self {
        PnCounter {
            p: r.p.clone(),
            n: r.n.clone(),
        }
    }
}

impl Engine {
    pub(super) fn inventory_adjust(
        &mut self,
        tx: &mut Tx,
        s: &Session,
        m: &InventoryAdjustMsg,
        r: Option<&Value>,
    ) -> Result<(), StoreError> {
        let key = m.product.key.as_str();
        let stored: Option<InventoryRec> =
            tx.k.inventory
                .get(key)?
                .map(|g| dec(g.value()))
                .transpose()?;
        // 1. A counted eventId counts once: answer with the current level and the original seq.
        if let Some(g) = tx.k.inv_applied.get(m.event_id.as_str())? {
            let a: InvAppliedRec = dec(g.value())?;
            let text = if a.product_key == key {
                let level = stored
                    .as_ref()
                    .map_or(0, |rec| PnCounter::from(rec).level());
                outbound::reply(
                    outbound::inventory_ack(&m.product.json, level, a.seq, true),
                    r,
                )
            } else {
                outbound::error(
                    "duplicate_event_id",
                    "this eventId was already used for another product",
                    r,
                )
            };
            self.reply(s, text);
            return Ok(());
        }
        // 2. Count it under the sending terminal.
        let mut rec = stored.unwrap_or_else(|| InventoryRec {
            product_id_json: m.product.json.clone(),
            ..InventoryRec::default()
        });
        let mut counter = PnCounter::from(&rec);
        counter.add(&s.terminal_id, m.delta);
        let level = counter.level();
        let terminal = s.terminal_id.clone();
        let pid = rec.product_id_json.clone();
        let seq = self.append(
            tx,
            "inventory_adjust",
            None,
            &terminal,
            true,
            Some(s.conn_id),
            |seq, ts| {
                let change = outbound::InventoryChange {
                    product_id_json: &pid,
                    level,
                    delta: m.delta,
                    event_id: &m.event_id,
                    terminal_id: &terminal,
                };
                outbound::inventory_updated(&change, seq, ts)
            },
        )?;
        rec.p = counter.p;
        rec.n = counter.n;
        rec.seq = seq;
        rec.updated_ms = self.now_ms;
        tx.k.inventory.insert(key, enc(&rec).as_slice())?;
        let applied = InvAppliedRec {
            product_key: key.to_string(),
            seq,
            ts_ms: self.now_ms,
        };
        tx.k.inv_applied
            .insert(m.event_id.as_str(), enc(&applied).as_slice())?;
        // The reply echoes the id as this request sent it (`4` or `"4"`), like a duplicate's.
        let ack = outbound::inventory_ack(&m.product.json, level, seq, false);
        self.reply(s, outbound::reply(ack, r));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_is_increments_minus_decrements_across_terminals() {
        let mut l = Ledger::default();
        assert!(l.apply("e1", "t1", 10));
        assert!(l.apply("e2", "t2", -3));
        assert!(!l.apply("e1", "t1", 10), "a resent eventId counts once");
        assert!(l.apply("e3", "t1", -2));
        assert_eq!(l.counter.level(), 5);
        assert_eq!(l.counter.p.get("t1"), Some(&10));
        assert_eq!(l.counter.n.get("t1"), Some(&2));
    }
}
