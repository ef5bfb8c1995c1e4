//! Per-connection outgoing queue. The engine and the connection's reader push frames; the
//! connection's writer task drains them to the socket. Broadcast events are bounded per
//! connection: when a terminal falls too far behind, the engine stops queueing events for it
//! and the terminal is moved back to catch-up from its cursor (no event is skipped, and no other
//! terminal waits for it).
//!
//! A queued event's text is the same shared buffer for every terminal and for the engine's
//! event window, so what a queue really costs is its slots plus the frames that have already
//! left the window (nobody else holds those). Both are bounded: `HUB_MAX_QUEUED_BROADCASTS`
//! slots, and `MAX_UNSHARED_BYTES` of frames older than the window.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
pub use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::Limits;

/// Bytes of queued frames that have left the event window (so only queues keep them alive)
/// beyond which a terminal is switched to catch-up: a queue never grows past about the window
/// plus this. Queues of terminals that still read are runs of seqs ending at the head, so
/// together they pin no more than the longest one. Large enough that a terminal merely slowed
/// by a saturated CPU (about 1 MB behind at 8,000 writes/s on the development machine) keeps
/// its live stream.
pub const MAX_UNSHARED_BYTES: u64 = 512 * 1024;

/// Frames other than events queued for one terminal beyond which its reader stops taking
/// requests (backpressure: a terminal that does not read its replies stops being read) and the
/// pongs and close replies of its WebSocket layer are dropped.
pub const MAX_QUEUED_OTHER: usize = 1024;

/// A broadcast event as every terminal's queue holds it: one allocation per event, shared by
/// all queues, so a queue slot costs a pointer rather than a copy of these fields.
#[derive(Debug)]
pub struct Broadcast {
    pub seq: u64,
    pub text: Utf8Bytes,
    /// Its message type as the metrics count it (`crate::metrics::known_type`), found once
    /// here rather than by every terminal's writer.
    pub kind: &'static str,
    /// The moment its commit completed (for the broadcast latency histogram).
    pub at: std::time::Instant,
    /// Offset of the end of this event in the engine's event window.
    pub end: u64,
}

/// One thing to send to a terminal. Kept to three words: with 50 terminals, a busy hub holds
/// tens of thousands of queued frames, and their slots cost more than the shared texts.
#[derive(Debug)]
pub enum Frame {
    /// A direct reply or a non-event broadcast (`SYNC_STATUS`); see [`Frame::text`].
    Text(Arc<Utf8Bytes>),
    /// A broadcast event.
    Event(Arc<Broadcast>),
    /// Broadcast events of one delivery, in seq order: one queue slot, one send and one
    /// wake-up of the writer for all of a group commit's events rather than one each (with 50
    /// terminals flat out, those were about a tenth of the hub's CPU; docs/benchmarks.md).
    Events(Box<[Arc<Broadcast>]>),
    /// Replay events with `after < seq <= to` from the database (`EVENTS_BULK`), or
    /// `RESYNC_REQUIRED` + `STATE` when `after` is older than what the hub retains.
    CatchUp { after: u64, to: u64 },
    /// A WebSocket-level ping to find dead connections.
    Ping,
    /// Whole WebSocket frames encoded by the reader's protocol layer (a pong, a close reply).
    Raw(Arc<[u8]>),
    /// Close the socket with this code.
    Close { code: u16, reason: &'static str },
}

// Every queued frame costs one slot per terminal; a wider `Frame` multiplies straight into the
// hub's peak memory with 50 terminals (docs/benchmarks.md), so widening it fails the build.
const _: () = assert!(std::mem::size_of::<Frame>() <= 3 * std::mem::size_of::<usize>());

impl Frame {
    /// A direct reply or a non-event broadcast.
    pub fn text(text: impl Into<Utf8Bytes>) -> Frame {
        Frame::Text(Arc::new(text.into()))
    }
}

/// The queue and its counters.
#[derive(Debug)]
pub struct Outbox {
    /// The connection this queue belongs to (`Session::conn_id`).
    pub conn_id: u64,
    tx: mpsc::UnboundedSender<Frame>,
    /// Events queued and not yet written.
    pub queued_events: AtomicUsize,
    /// Other frames queued and not yet written; the reader pauses when too many pile up.
    pub queued_other: AtomicUsize,
    /// Set by the engine when this terminal fell behind; cleared when it resumes catch-up.
    pub lagging: AtomicBool,
    /// Window offset below which nothing is queued any more: the end of the last event the
    /// writer took (or the start of the first one queued into an empty queue).
    taken_end: AtomicU64,
    /// Woken whenever the writer has drained frames.
    pub drained: Notify,
    /// Kitchen stations whose ticket events this terminal receives (`crate::station` mask).
    pub stations: AtomicU8,
}

/// Receiving side, owned by the writer task.
pub type OutboxRx = mpsc::UnboundedReceiver<Frame>;

impl Outbox {
    pub fn new(conn_id: u64) -> (Arc<Outbox>, OutboxRx) {
        let (tx, rx) = mpsc::unbounded_channel();
        let ob = Outbox {
            conn_id,
            tx,
            queued_events: AtomicUsize::new(0),
            queued_other: AtomicUsize::new(0),
            lagging: AtomicBool::new(false),
            taken_end: AtomicU64::new(0),
            drained: Notify::new(),
            stations: AtomicU8::new(crate::station::ALL_STATIONS),
        };
        (Arc::new(ob), rx)
    }

    /// Queues a frame; a closed connection silently drops it (it is gone).
    pub fn push(&self, frame: Frame) {
        let (counter, n) = match &frame {
            Frame::Event(_) => (&self.queued_events, 1),
            Frame::Events(batch) => (&self.queued_events, batch.len()),
            _ => (&self.queued_other, 1),
        };
        counter.fetch_add(n, Ordering::Relaxed);
        if self.tx.send(frame).is_err() {
            counter.fetch_sub(n, Ordering::Relaxed);
        }
    }

    pub fn text(&self, text: impl Into<Utf8Bytes>) {
        self.push(Frame::text(text));
    }

    /// Whether a broadcast event ending at window offset `end` may join this queue, behind
    /// `held` events the engine holds for it but has not pushed yet (see
    /// [`Outbox::push_events`]). False (and the terminal marked lagging) when the queue would
    /// hold more than `limits.events` events, or more than `MAX_UNSHARED_BYTES` of frames that
    /// have left the window.
    pub fn admit(&self, event: &Broadcast, held: usize, limits: &Limits) -> bool {
        if self.lagging.load(Ordering::Acquire) {
            return false;
        }
        let queued = self.queued_events.load(Ordering::Acquire) + held;
        if queued == 0 {
            // Nothing older is held: the queue starts at this event. (The writer stored its
            // last end before the count reached 0, so this store comes after it.)
            self.taken_end.store(
                event.end.saturating_sub(event.text.len() as u64),
                Ordering::Relaxed,
            );
        } else if queued >= limits.events
            || limits.window_start > self.taken_end.load(Ordering::Relaxed) + MAX_UNSHARED_BYTES
        {
            self.lagging.store(true, Ordering::Release);
            return false;
        }
        true
    }

    /// Queues events admitted by [`Outbox::admit`], in seq order, as one frame.
    pub fn push_events(&self, mut events: Vec<Arc<Broadcast>>) {
        match events.len() {
            0 => {}
            1 => {
                if let Some(e) = events.pop() {
                    self.push(Frame::Event(e));
                }
            }
            _ => self.push(Frame::Events(events.into_boxed_slice())),
        }
    }

    /// Called by the writer for the frames it took off the queue in one batch: `events`
    /// events, the last ending at window offset `end`, and `others` other frames.
    pub fn took(&self, events: usize, end: Option<u64>, others: usize) {
        if let Some(end) = end {
            // Stored before the count drops, so a count of 0 means this end is visible.
            self.taken_end.store(end, Ordering::Relaxed);
        }
        if events > 0 {
            self.queued_events.fetch_sub(events, Ordering::Release);
        }
        if others > 0 {
            self.queued_other.fetch_sub(others, Ordering::Relaxed);
        }
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
