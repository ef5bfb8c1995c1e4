//! Periodic engine work that is not a terminal's request: the `SYNC_STATUS` broadcast and the
//! compaction of events (and applied eventIds) older than the retention.

use redb::ReadableTable;

use super::{Engine, Out, Tx};
use crate::store::records::{dec, AppliedRec, EventRec};
use crate::store::{StoreError, META_COMPACTED_THROUGH};

impl Engine {
    pub(super) fn status_tick(&mut self, tx: &mut Tx) -> Result<(), StoreError> {
        use redb::ReadableTableMetadata;
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

    pub(super) fn compact(&mut self, tx: &mut Tx, cutoff_ms: u64) -> Result<(), StoreError> {
        let mut through = tx
            .meta
            .get(META_COMPACTED_THROUGH)?
            .map_or(0, |g| g.value());
        let mut removed = 0u64;
        loop {
            let Some((seq, ts)) = (match tx.events.first()? {
                Some((k, v)) => Some((k.value(), dec::<EventRec>(v.value())?.ts_ms)),
                None => None,
            }) else {
                break;
            };
            // Only a contiguous prefix goes, so "older than retention" is one number.
            if ts >= cutoff_ms || tx.pending.get(seq)?.is_some() || tx.dead.get(seq)?.is_some() {
                break;
            }
            tx.events.remove(seq)?;
            through = seq;
            removed += 1;
        }
        if removed > 0 {
            tx.meta.insert(META_COMPACTED_THROUGH, through)?;
            // A cursor at or below `through` must resync; the window must not answer it.
            self.window.forget_through(through);
            tx.event_ids
                .retain(|_, v| dec::<AppliedRec>(v).is_ok_and(|a| a.ts_ms >= cutoff_ms))?;
            self.dirty = true;
            tracing::info!(
                removed,
                through,
                "compacted forwarded events older than the retention"
            );
        }
        Ok(())
    }
}
