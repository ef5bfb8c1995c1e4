//! After a batch: delivery of its replies and broadcasts once the commit is durable (the
//! event window first, then the per-terminal fan-out), or, when the commit failed, telling
//! whoever asked and reloading the in-memory state from disk.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{Engine, Limits, Out};
use crate::engine::outbox::{Broadcast, Frame};
use crate::store::StoreError;

impl Engine {
    /// A commit failed: nothing of the batch happened. Tell whoever asked, and reload the
    /// in-memory state from what is really on disk.
    pub(super) fn failed(&mut self, e: &StoreError) {
        tracing::error!(error = %e, "commit failed; batch discarded");
        self.stats.commit_failures.fetch_add(1, Ordering::Relaxed);
        self.out.clear();
        self.upstream_waiters.discard();
        for (ob, rid) in std::mem::take(&mut self.askers) {
            self.count_refusal();
            ob.text(self.refusal_frame(rid.as_ref()));
        }
        // Their AUTH_OK was discarded with the batch: they reconnect (and are served).
        for ob in self.joined.drain(..) {
            ob.push(Frame::Close {
                code: 1013,
                reason: "storage failure; reconnect",
            });
        }
        for p in self.probes.drain(..) {
            let _ = p.send(Err(e.to_string()));
        }
        self.reload();
    }

    /// Reloads what the engine keeps in memory from what is really on disk.
    pub(super) fn reload(&mut self) {
        if let (Ok(seq), Ok(leases)) = (self.store.head_seq(), self.store.leases()) {
            self.seq = seq;
            self.leases = leases.into_iter().collect();
            self.reg.clamp(seq);
        } else {
            tracing::error!("cannot reload state after a failed commit");
        }
        if let Ok(locks) = self.store.table_locks() {
            self.locks = locks.into_iter().collect();
        }
    }

    pub(super) fn deliver(&mut self) {
        let limit = self.cfg.max_queued_broadcasts;
        let at = Instant::now();
        // The batch's events enter the window first (one lock per batch), so a catch-up queued
        // below can be served from memory up to the head.
        let window_start = {
            let mut w = self.window.writer();
            // This batch's frames count as shared while it is delivered (the batch holds them
            // anyway), so one batch larger than the window does not push every terminal out.
            let batch_start = w.end();
            for out in &mut self.out {
                if let Out::Event {
                    seq,
                    text,
                    scope,
                    end,
                    ..
                } = out
                {
                    *end = w.push(*seq, *scope, text);
                }
            }
            if self.cfg.event_window_bytes == 0 {
                0 // no window: nothing is shared with it, only the event count bounds a queue
            } else {
                w.start().min(batch_start)
            }
        };
        let lim = Limits {
            events: limit,
            window_start,
        };
        // Each terminal's events of this delivery go out as one frame (`Frame::Events`), pushed
        // before any reply to that terminal that follows them here, and at the end: a terminal
        // sees events and replies in seq order, as it did when each was pushed alone.
        let mut room = self
            .out
            .iter()
            .filter(|o| matches!(o, Out::Event { .. }))
            .count();
        for out in self.out.drain(..) {
            match out {
                Out::To(ob, frame) => {
                    self.reg.push_held(ob.conn_id);
                    ob.push(frame);
                }
                Out::Event {
                    seq,
                    text,
                    exclude,
                    scope,
                    end,
                } => {
                    let kind = crate::metrics::known_type(text.as_str());
                    let event = Arc::new(Broadcast {
                        seq,
                        text,
                        kind,
                        at,
                        end,
                    });
                    self.reg.fan_out_scoped(&event, exclude, &lim, scope, room);
                    room -= 1;
                }
                Out::WakePrinter(s) => self.stats.print.station(s).wake.notify_one(),
                Out::All(text) => {
                    self.reg.push_all_held();
                    let text = Arc::new(text);
                    for s in self.reg.sessions() {
                        s.outbox.push(Frame::Text(text.clone()));
                    }
                }
            }
        }
        self.reg.push_all_held();
    }
}
