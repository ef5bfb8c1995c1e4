//! The event window: the most recent committed events, kept in memory as the exact broadcast
//! frames terminals receive, bounded by bytes (`HUB_EVENT_WINDOW_BYTES`).
//!
//! Each frame is the same reference-counted buffer the live fan-out queues for every terminal,
//! so the window costs its bytes once, however many terminals hold the same frames. A terminal
//! that fell behind (or reconnects with a recent cursor) is caught up from here without reading
//! the database; only a cursor older than the window goes to the redb reader.
//!
//! Only the engine writes (after each commit, before the batch's broadcasts are queued); the
//! connections' writer tasks read. The window always holds a contiguous run of seqs, so a read
//! that it can answer has no gap: `covers (first - 1, next - 1]`.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use crate::engine::outbox::Utf8Bytes;

struct Slot {
    seq: u64,
    /// Kitchen station bit the event is scoped to (0 = every terminal).
    scope: u8,
    text: Utf8Bytes,
}

struct Inner {
    frames: VecDeque<Slot>,
    /// Lowest seq the window can serve: `frames[0].seq` when it holds any.
    first: u64,
    /// The seq the next pushed event must have to extend the window.
    next: u64,
    /// Bytes of frame text held.
    bytes: usize,
    /// Bytes of every event ever pushed: the running offset of the end of the newest event.
    total: u64,
    /// Offset where the window starts: bytes of every event that has left it.
    start: u64,
}

/// A chunk of events read from the window, in seq order.
pub struct WindowChunk {
    pub events: Vec<(u64, Utf8Bytes)>,
    /// The chunk covers every seq up to this one (events a terminal does not want included).
    pub through: u64,
}

/// Shared between the engine (writer) and the connections (readers).
pub struct EventWindow {
    inner: Mutex<Inner>,
    max_bytes: usize,
}

impl EventWindow {
    /// An empty window just after `head`, holding at most `max_bytes` of frames (0 = off).
    pub fn new(head: u64, max_bytes: usize) -> Self {
        EventWindow {
            inner: Mutex::new(Inner {
                frames: VecDeque::new(),
                first: head + 1,
                next: head + 1,
                bytes: 0,
                total: 0,
                start: 0,
            }),
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the deque half-updated in a way that
        // breaks contiguity (each push/pop is one call), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens the window for the engine to append a batch's events under one lock.
    pub fn writer(&self) -> WindowWriter<'_> {
        WindowWriter {
            inner: self.lock(),
            max_bytes: self.max_bytes,
        }
    }

    /// Everything up to `head` is gone (a reset burnt the log): nothing older may be served.
    pub fn reset(&self, head: u64) {
        let mut w = self.lock();
        w.frames.clear();
        w.bytes = 0;
        w.start = w.total;
        w.first = head + 1;
        w.next = head + 1;
    }

    /// Events up to `seq` were compacted out of the log: a cursor at or below it must resync,
    /// so the window stops serving them too.
    pub fn forget_through(&self, seq: u64) {
        let mut w = self.lock();
        while w.frames.front().is_some_and(|s| s.seq <= seq) {
            w.pop_front();
        }
        let first = (seq + 1).min(w.next);
        w.first = w.first.max(first);
    }

    /// Whether every event with `after < seq <= to` can be served from memory.
    pub fn holds(&self, after: u64, to: u64) -> bool {
        let w = self.lock();
        after <= to && after + 1 >= w.first && to < w.next
    }

    /// Up to about `max_bytes` of the events with `after < seq <= to` that `mask` wants, or
    /// `None` when the window no longer (or does not yet) hold all of that range.
    pub fn read(&self, after: u64, to: u64, max_bytes: usize, mask: u8) -> Option<WindowChunk> {
        let w = self.lock();
        if after > to || after + 1 < w.first || to >= w.next {
            return None;
        }
        let mut chunk = WindowChunk {
            events: Vec::new(),
            through: to,
        };
        let skip = usize::try_from(after + 1 - w.first).ok()?;
        let mut bytes = 0;
        for s in w.frames.range(skip.min(w.frames.len())..) {
            if s.seq > to {
                break;
            }
            if !crate::station::wants(mask, s.scope) {
                continue;
            }
            bytes += s.text.len();
            chunk.events.push((s.seq, s.text.clone()));
            if bytes >= max_bytes {
                chunk.through = s.seq;
                break;
            }
        }
        Some(chunk)
    }
}

/// The engine's handle while it appends one batch.
pub struct WindowWriter<'a> {
    inner: MutexGuard<'a, Inner>,
    max_bytes: usize,
}

impl WindowWriter<'_> {
    /// Appends a committed event; returns the byte offset of its end, which the fan-out hands
    /// to each terminal's queue so it can tell how much of what it holds has left the window.
    pub fn push(&mut self, seq: u64, scope: u8, text: &Utf8Bytes) -> u64 {
        let w = &mut *self.inner;
        if seq != w.next {
            // Not the next seq (a reset burnt one): restart the window at this event.
            w.frames.clear();
            w.bytes = 0;
            w.start = w.total;
            w.first = seq;
        }
        w.total += text.len() as u64;
        w.bytes += text.len();
        w.next = seq + 1;
        w.frames.push_back(Slot {
            seq,
            scope,
            text: text.clone(),
        });
        while w.bytes > self.max_bytes {
            w.pop_front();
        }
        w.total
    }

    /// Offset of the end of the newest event pushed.
    pub fn end(&self) -> u64 {
        self.inner.total
    }

    /// Offset of the oldest byte still in the window: an event queued for a terminal that
    /// ends at or before it is held by that queue alone.
    pub fn start(&self) -> u64 {
        self.inner.start
    }
}

impl Inner {
    fn pop_front(&mut self) {
        if let Some(s) = self.frames.pop_front() {
            self.bytes -= s.text.len();
            self.start += s.text.len() as u64;
            self.first = s.seq + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Utf8Bytes {
        Utf8Bytes::from("x".repeat(n))
    }

    #[test]
    fn serves_a_contiguous_range_and_drops_the_oldest_past_its_bytes() {
        let win = EventWindow::new(10, 300);
        {
            let mut w = win.writer();
            for seq in 11..=15 {
                w.push(seq, 0, &text(100));
            }
            assert_eq!(w.start(), 200);
        }
        assert!(!win.holds(10, 15));
        assert!(win.holds(12, 15));
        assert!(win.read(11, 15, 1 << 20, 0xff).is_none());
        let c = win.read(12, 15, 1 << 20, 0xff).expect("held");
        assert_eq!(
            c.events.iter().map(|e| e.0).collect::<Vec<_>>(),
            [13, 14, 15]
        );
        assert_eq!(c.through, 15);
        let c = win.read(12, 15, 150, 0xff).expect("held");
        assert_eq!(c.events.len(), 2);
        assert_eq!(c.through, 14);
        assert!(win.read(15, 16, 1 << 20, 0xff).is_none(), "not there yet");
        assert_eq!(
            win.read(15, 15, 1 << 20, 0xff).map(|c| c.events.len()),
            Some(0)
        );
    }

    #[test]
    fn a_gap_in_seqs_or_a_reset_restarts_it() {
        let win = EventWindow::new(0, 1000);
        {
            let mut w = win.writer();
            w.push(1, 0, &text(10));
            w.push(2, 0, &text(10));
            w.push(4, 0, &text(10));
        }
        assert!(!win.holds(1, 4));
        assert!(win.holds(3, 4));
        win.reset(7);
        assert!(!win.holds(3, 4));
        assert!(win.holds(7, 7));
        win.writer().push(8, 0, &text(10));
        win.forget_through(8);
        assert!(!win.holds(7, 8));
        assert!(win.holds(8, 8));
    }
}
