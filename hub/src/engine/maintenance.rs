//! Periodic engine work that is not a terminal's request: the `SYNC_STATUS` broadcast and the
//! compaction of events (and applied eventIds) older than the retention.
//!
//! Compaction is what keeps the database the size of the retention, not of the store's
//! history: an event older than `HUB_EVENT_RETENTION_MS` goes unless it still waits for a
//! configured upstream (pending) or is a dead letter. With no upstream configured nothing
//! waits: pending marks are dropped with their events, so a hub that forwards nowhere keeps
//! the same bounded log as one that forwards everything. Events kept because they wait are
//! removed by a later compaction once they no longer do.

use redb::{ReadableTable, ReadableTableMetadata};

use super::{Cmd, Engine, Out, Tx};
use crate::store::live::{is_finished, LiveRec};
use crate::store::records::{dec, AppliedRec, EventRec, OrderRec};
use crate::store::{StoreError, META_COMPACTED_THROUGH};

/// Most events one compaction transaction removes: a year-old backlog goes in bounded steps
/// (each a normal group commit, with terminals' writes in between), not in one huge commit.
const COMPACT_STEP: usize = 20_000;

impl Engine {
    pub(super) fn status_tick(&mut self, tx: &mut Tx) -> Result<(), StoreError> {
        let msg = crate::protocol::outbound::sync_status(
            self.reg.len(),
            tx.pending.len()?,
            tx.dead.len()?,
            self.upstream_state,
            self.upstream_last_ok,
            self.seq,
        );
        self.out.push(Out::All(msg.to_string().into()));
        Ok(())
    }

    /// The retention cutoff on the engine's clock (so a test or the year benchmark that moves
    /// an injected clock compacts as production would).
    pub(super) fn retention_cutoff(&self) -> u64 {
        let retention = u64::try_from(self.cfg.event_retention.as_millis()).unwrap_or(u64::MAX);
        self.now_ms.saturating_sub(retention)
    }

    /// Removes up to `COMPACT_STEP` events older than `cutoff_ms` that nothing waits for, and
    /// queues another step when more remain.
    pub(super) fn compact(&mut self, tx: &mut Tx, cutoff_ms: u64) -> Result<(), StoreError> {
        let through0 = tx
            .meta
            .get(META_COMPACTED_THROUGH)?
            .map_or(0, |g| g.value());
        let mut gone = Vec::new();
        // 1. Events below the compacted mark that were kept because they waited (a backlog for
        //    a down upstream, dead letters since requeued) and no longer wait.
        for item in tx.events.range(..=through0)? {
            let seq = item?.0.value();
            if gone.len() < COMPACT_STEP && !self.still_waits(tx, seq)? {
                gone.push(seq);
            }
        }
        // 2. The log past the mark, oldest first, up to the first event inside the retention.
        //    The mark becomes the newest event removed: every event at or below it that is not
        //    kept is gone, so a cursor below it must resync and one above it replays in full.
        let mut through = through0;
        let mut more = gone.len() >= COMPACT_STEP;
        for item in tx.events.range(through0 + 1..)? {
            let (k, v) = item?;
            if gone.len() >= COMPACT_STEP {
                more = true;
                break;
            }
            let seq = k.value();
            if dec::<EventRec>(v.value())?.ts_ms >= cutoff_ms {
                break;
            }
            if !self.still_waits(tx, seq)? {
                gone.push(seq);
                through = seq;
            }
        }
        for &seq in &gone {
            tx.events.remove(seq)?;
            if !self.forwarding {
                tx.pending.remove(seq)?;
            }
        }
        if through > through0 {
            tx.meta.insert(META_COMPACTED_THROUGH, through)?;
            // A cursor at or below `through` must resync; the window must not answer it.
            self.window.forget_through(through);
        }
        if !gone.is_empty() {
            tx.event_ids
                .retain(|_, v| dec::<AppliedRec>(v).is_ok_and(|a| a.ts_ms >= cutoff_ms))?;
            self.dirty = true;
            self.count_after_commit(self.metrics.events_compacted.clone(), gone.len() as u64);
            tracing::info!(
                removed = gone.len(),
                through,
                more,
                "compacted events older than the retention"
            );
        }
        if more {
            // The next step runs in its own transaction, after what terminals queued meanwhile.
            let _ = self.tx.send(Cmd::Compact);
        }
        Ok(())
    }

    /// Drops paid and cancelled orders changed more than a day ago from the live-order index
    /// (they stay in the orders table; a `STATE` no longer carries them).
    pub(super) fn prune_live(&mut self, tx: &mut Tx) -> Result<(), StoreError> {
        let now = self.now_ms;
        let before = tx.live.len()?;
        tx.live
            .retain(|_, v| dec::<LiveRec>(v).map_or(true, |r| r.in_state(now)))?;
        if tx.live.len()? != before {
            self.dirty = true;
        }
        Ok(())
    }

    /// Deletes paid and cancelled orders whose last change is older than
    /// `HUB_ORDER_RETENTION_MS` (at most `COMPACT_STEP` per run), unless their latest version
    /// still waits for an upstream: the orders table holds what a store works with, not its
    /// whole history (that is upstream, and in the backups).
    pub(super) fn retire_orders(&mut self, tx: &mut Tx) -> Result<(), StoreError> {
        let retention = u64::try_from(self.cfg.order_retention.as_millis()).unwrap_or(u64::MAX);
        let cutoff = self.now_ms.saturating_sub(retention);
        let mut old = Vec::new();
        for item in tx.finished.range(..(cutoff, ""))? {
            let key = item?.0;
            let (ts, p) = key.value();
            old.push((ts, p.to_string()));
            if old.len() >= COMPACT_STEP {
                break;
            }
        }
        let mut retired = 0u64;
        for (ts, p) in old {
            let order = match tx.orders.get(p.as_str())? {
                Some(g) => Some(dec::<OrderRec>(g.value())?),
                None => None,
            };
            // The order itself decides, not only its index entry: one changed since (or an
            // entry left stale) only loses the entry.
            let due = order.filter(|o| is_finished(&o.state) && o.updated_ms == ts);
            if let Some(o) = due {
                if self.still_waits(tx, o.seq)? {
                    continue;
                }
                tx.orders.remove(p.as_str())?;
                tx.live.remove(p.as_str())?;
                retired += 1;
            }
            tx.finished.remove((ts, p.as_str()))?;
        }
        if retired > 0 {
            self.dirty = true;
            self.count_after_commit(self.metrics.orders_retired.clone(), retired);
            tracing::info!(
                retired,
                "deleted finished orders older than the order retention"
            );
        }
        Ok(())
    }

    /// Adds `n` to `counter` once this batch's commit has succeeded: a counter read over HTTP
    /// never runs ahead of what the database shows (or counts what a failed commit undid).
    fn count_after_commit(
        &mut self,
        counter: prometheus_client::metrics::counter::Counter,
        n: u64,
    ) {
        self.after_commit.push(Box::new(move || {
            counter.inc_by(n);
        }));
    }

    /// Whether event `seq` must stay: it waits for a configured upstream, or is a dead letter
    /// (kept for the operator to requeue or inspect).
    fn still_waits(&self, tx: &Tx, seq: u64) -> Result<bool, StoreError> {
        Ok((self.forwarding && tx.pending.get(seq)?.is_some()) || tx.dead.get(seq)?.is_some())
    }
}
