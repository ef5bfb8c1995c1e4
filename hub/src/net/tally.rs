//! What one terminal's writer sent, counted locally and added to the shared metrics once per
//! flush. Counting each frame straight into the shared counters cost a hash lookup and a
//! contended atomic add per frame, and the broadcast latency histogram a mutex and a clock
//! read per frame: with 50 terminals flat out, hundreds of thousands a second (a `perf`
//! profile put the two at about 11 % of the hub's CPU; docs/benchmarks.md).

use std::time::Instant;

use prometheus_client::metrics::counter::Counter;

use crate::metrics::{known_type, Metrics};

/// Counts since the last flush. Kept across flushes so each type is looked up once.
pub struct Tally<'m> {
    metrics: &'m Metrics,
    /// Outgoing frames by type: the type's name, its counter, frames since the last flush.
    by_type: Vec<(&'static str, &'m Counter, u64)>,
    /// Events written since the last flush, as runs of one commit (same commit instant).
    runs: Vec<(Instant, u64)>,
}

impl<'m> Tally<'m> {
    pub fn new(metrics: &'m Metrics) -> Tally<'m> {
        Tally {
            metrics,
            by_type: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// A frame with this JSON text was queued for the socket.
    pub fn frame(&mut self, text: &str) {
        self.count(known_type(text));
    }

    /// A broadcast event of type `kind` whose commit completed at `at` was queued for the
    /// socket.
    pub fn event(&mut self, kind: &'static str, at: Instant) {
        self.count(kind);
        match self.runs.last_mut() {
            Some((a, n)) if *a == at => *n += 1,
            _ => self.runs.push((at, 1)),
        }
    }

    fn count(&mut self, kind: &'static str) {
        // The names come from one table, so the pointer comparison is the usual answer.
        if let Some(e) = self
            .by_type
            .iter_mut()
            .find(|(t, _, _)| std::ptr::eq(*t, kind) || *t == kind)
        {
            e.2 += 1;
        } else if let Some(counter) = self.metrics.out_counter(kind) {
            self.by_type.push((kind, counter, 1));
        }
    }

    /// Everything counted was flushed to the socket: add it to the shared metrics, the
    /// broadcast latency measured to now (durable commit → written to the socket).
    pub fn written(&mut self) {
        for (_, counter, n) in &mut self.by_type {
            if *n > 0 {
                counter.inc_by(*n);
                *n = 0;
            }
        }
        if self.runs.is_empty() {
            return;
        }
        let now = Instant::now();
        for (at, n) in self.runs.drain(..) {
            self.metrics
                .broadcast_seconds
                .observe_n(now.saturating_duration_since(at), n);
        }
    }
}
