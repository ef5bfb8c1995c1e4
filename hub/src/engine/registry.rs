//! Authenticated terminals as the engine sees them, and the fan-out of events to them. Each
//! entry remembers the last seq it was given (or decided to skip because the terminal wrote it
//! itself); an event at or below that mark is already covered by the terminal's catch-up.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Session;
use crate::engine::outbox::{Broadcast, Outbox};

/// How much one terminal's queue may hold before it is switched to catch-up.
pub struct Limits {
    /// Events queued (each costs a queue slot even though its text is shared).
    pub events: usize,
    /// Window offset of the oldest byte still in the window: queued frames that end before it
    /// are held by that queue alone and count against `outbox::MAX_UNSHARED_BYTES`.
    pub window_start: u64,
}

struct Entry {
    session: Arc<Session>,
    /// Every event up to this seq was queued for (or is held in `held` for), or is covered by
    /// a catch-up of, this terminal.
    pushed_through: u64,
    /// Events of the delivery in progress admitted for this terminal, pushed as one frame by
    /// [`Registry::push_held`] (empty between deliveries).
    held: Vec<Arc<Broadcast>>,
}

impl Entry {
    fn push_held(&mut self) {
        if !self.held.is_empty() {
            self.session
                .outbox
                .push_events(std::mem::take(&mut self.held));
        }
    }
}

/// Connected, authenticated terminals by connection id and by terminal id.
#[derive(Default)]
pub struct Registry {
    by_conn: HashMap<u64, Entry>,
    by_terminal: HashMap<String, u64>,
}

impl Registry {
    /// Registers a session whose catch-up covers everything up to `head`; returns the session
    /// it replaces (same terminalId), if any.
    pub fn register(&mut self, session: Arc<Session>, head: u64) -> Option<Arc<Session>> {
        let old = self
            .by_terminal
            .insert(session.terminal_id.clone(), session.conn_id)
            .and_then(|old| self.by_conn.remove(&old))
            .map(|e| e.session);
        self.by_conn.insert(
            session.conn_id,
            Entry {
                session,
                pushed_through: head,
                held: Vec::new(),
            },
        );
        old
    }

    /// Removes a connection; returns its session if it was registered.
    pub fn unregister(&mut self, conn_id: u64) -> Option<Arc<Session>> {
        let e = self.by_conn.remove(&conn_id)?;
        if self.by_terminal.get(&e.session.terminal_id) == Some(&conn_id) {
            self.by_terminal.remove(&e.session.terminal_id);
        }
        Some(e.session)
    }

    pub fn by_terminal(&self, terminal_id: &str) -> Option<&Arc<Session>> {
        let conn = self.by_terminal.get(terminal_id)?;
        self.by_conn.get(conn).map(|e| &e.session)
    }

    /// Whether connection `conn_id` is registered (authenticated and not replaced).
    pub fn has_conn(&self, conn_id: u64) -> bool {
        self.by_conn.contains_key(&conn_id)
    }

    pub fn is_connected(&self, terminal_id: &str) -> bool {
        self.by_terminal.contains_key(terminal_id)
    }

    pub fn len(&self) -> usize {
        self.by_conn.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_conn.is_empty()
    }

    pub fn sessions(&self) -> impl Iterator<Item = &Arc<Session>> {
        self.by_conn.values().map(|e| &e.session)
    }

    /// Holds one event for every terminal but `exclude` (pushed by [`Registry::push_held`]);
    /// a terminal whose queue is full (see `Limits`) is left lagging at its mark, to be caught
    /// up when it drains. `scope` is the kitchen station bit of the event (0 = everyone): a
    /// terminal not subscribed to it counts it as delivered, as catch-up skips it too. `room`:
    /// events of this delivery from this one on (a terminal's batch is sized once).
    pub fn fan_out_scoped(
        &mut self,
        event: &Arc<Broadcast>,
        exclude: Option<u64>,
        limits: &Limits,
        scope: u8,
        room: usize,
    ) {
        let seq = event.seq;
        for (conn, e) in &mut self.by_conn {
            if seq <= e.pushed_through {
                continue;
            }
            // A lagging terminal's mark is where its catch-up will start: it must not move
            // past events it has not been given, whatever this event is.
            let outbox = &e.session.outbox;
            let lagging = outbox.lagging.load(Ordering::Acquire);
            let mask = outbox.stations.load(Ordering::Relaxed);
            if !crate::station::wants(mask, scope) {
                if !lagging {
                    e.pushed_through = seq;
                }
                continue;
            }
            if Some(*conn) == exclude && !lagging {
                e.pushed_through = seq;
            } else if outbox.admit(event, e.held.len(), limits) {
                if e.held.capacity() == 0 {
                    e.held.reserve_exact(room);
                }
                e.held.push(event.clone());
                e.pushed_through = seq;
            }
        }
    }

    /// Pushes the events held for connection `conn_id`, before a reply that must follow them.
    pub fn push_held(&mut self, conn_id: u64) {
        if let Some(e) = self.by_conn.get_mut(&conn_id) {
            e.push_held();
        }
    }

    /// Pushes the events held for every terminal: the end of a delivery.
    pub fn push_all_held(&mut self) {
        self.by_conn.values_mut().for_each(Entry::push_held);
    }

    /// Ends the lag of a terminal: live events flow again after `head`, and the caller replays
    /// what lies between the mark and `head`. Returns the outbox and the mark.
    pub fn resume(&mut self, conn_id: u64, head: u64) -> Option<(Arc<Outbox>, u64)> {
        let e = self.by_conn.get_mut(&conn_id)?;
        if !e.session.outbox.lagging.swap(false, Ordering::AcqRel) {
            return None;
        }
        let after = e.pushed_through;
        e.pushed_through = head;
        Some((e.session.outbox.clone(), after))
    }

    /// Every terminal was sent a catch-up through `seq`.
    pub fn cover(&mut self, seq: u64) {
        for e in self.by_conn.values_mut() {
            e.pushed_through = e.pushed_through.max(seq);
        }
    }

    /// After a failed commit the head went back; no mark may stay above it.
    pub fn clamp(&mut self, head: u64) {
        for e in self.by_conn.values_mut() {
            e.pushed_through = e.pushed_through.min(head);
        }
    }
}
