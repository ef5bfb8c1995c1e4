//! The engine: one OS thread that owns every write to the database. Terminal requests arrive on
//! a channel; the engine takes everything that is waiting (a batch), applies each request in
//! order inside one redb write transaction, commits it durably (fsync) once, and only then
//! sends the replies and broadcasts the batch produced. Many terminals' writes share one fsync
//! (group commit), so throughput grows with load while every acknowledged write is on disk.
//!
//! The engine also owns the registry of authenticated terminals, so the order in which a
//! terminal is registered and the order in which events are broadcast are the same order:
//! that is what makes catch-up gap-free and duplicate-free.

mod admin;
mod apply;
mod binding;
mod deliver;
pub mod inventory;
mod kitchen;
mod leases;
mod locks;
mod maintenance;
mod orders;
pub mod outbox;
mod registry;
mod sessions;
pub mod storage;
mod tables;
mod upstream;
pub mod window;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use redb::{ReadableTable, Table, WriteTransaction};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use crate::auth::Role;
use crate::clock::Clock;
use crate::config::Config;
use crate::engine::outbox::{Frame, Outbox, Utf8Bytes};
use crate::metrics::gauge_value;
use crate::protocol::Inbound;
use crate::store::records::{enc, EventRec, LeaseRec, LockRec, PendingRec};
use crate::store::{
    live, Store, StoreError, DEAD, EVENTS, EVENT_IDS, FLOOR_PLANS, LEASES, META, META_HEAD_SEQ,
    META_LAST_TS, ORDERS, PENDING, TABLES, TABLE_LOCKS, TERMINAL_SUBJECTS, TICKET_SEQ,
};

pub use admin::{write_backup, AdminCmd, EngineView, TerminalView};
pub use registry::{Limits, Registry};
pub use tables::business_date;
pub use upstream::UpstreamCmd;
pub use window::EventWindow;

/// Most commands applied in one transaction.
const MAX_BATCH: usize = 1024;

/// An authenticated terminal connection.
#[derive(Debug)]
pub struct Session {
    pub conn_id: u64,
    pub terminal_id: String,
    pub device_id: Option<String>,
    /// The `sub` of the JWT it authenticated with (`None` for Odoo sessions and open mode):
    /// the terminal id is bound to it while in use (see `binding`).
    pub subject: Option<String>,
    pub name: String,
    pub uid_json: String,
    pub role: Role,
    pub outbox: Arc<Outbox>,
    pub connected_ms: u64,
}

/// Work for the engine thread.
pub enum Cmd {
    /// A terminal passed AUTH: register it, answer `AUTH_OK`, replay from `cursor`.
    Connected {
        session: Arc<Session>,
        cursor: Option<u64>,
        request_id: Option<Value>,
    },
    /// The socket of `conn_id` is gone.
    Disconnected {
        conn_id: u64,
    },
    /// `HUB_GRACE_MS` after a disconnect: release what the terminal still holds.
    GraceExpired {
        terminal_id: String,
        conn_id: u64,
    },
    /// A terminal message that changes or reads state.
    Request {
        session: Arc<Session>,
        request_id: Option<Value>,
        msg: Inbound,
        permit: Option<OwnedSemaphorePermit>,
    },
    /// A lagging terminal has drained its queue: replay what it missed, then go live again.
    Resume {
        conn_id: u64,
    },
    LeaseTick,
    LockTick,
    StatusTick,
    /// Commit an empty-ish transaction to prove the database is writable; answers the head seq.
    Probe(oneshot::Sender<Result<u64, String>>),
    /// Drop events (and applied eventIds, kitchen tickets) older than the retention on the
    /// engine's clock, unless they wait for an upstream (`maintenance`).
    Compact,
    /// Outcomes of upstream work (forwarding, Odoo sessions, registers, cloud bridge).
    Upstream(upstream::UpstreamCmd),
    /// Inspection and administration (`/status`, `/reset`, backups).
    Admin(AdminCmd),
    /// A station's printer acknowledged print job `key`: drop it from the queue. `done` is
    /// answered once that is durable (or the commit failed).
    Printed {
        station: crate::station::Station,
        key: u64,
        done: oneshot::Sender<Result<u64, String>>,
    },
    Shutdown,
}

/// Live counters shared with the HTTP side (health, metrics).
#[derive(Debug, Default)]
pub struct EngineStats {
    pub commits: AtomicU64,
    pub committed_cmds: AtomicU64,
    pub commit_us_total: AtomicU64,
    pub last_batch: AtomicUsize,
    pub max_batch: AtomicUsize,
    pub terminals: AtomicUsize,
    pub leases: AtomicUsize,
    pub table_locks: AtomicUsize,
    pub head_seq: AtomicU64,
    pub commit_failures: AtomicU64,
    /// Times a lagging terminal was switched back to catch-up from its cursor.
    pub lag_resyncs: AtomicU64,
    /// Print spoolers: queue depth, printer state, printed and failed counts per station.
    pub print: crate::printer::PrintStats,
    /// Whether the database can be written, and the free space under it.
    pub storage: storage::StorageHealth,
}

/// Handle used by connections and timers to reach the engine.
#[derive(Clone)]
pub struct EngineHandle {
    pub tx: mpsc::UnboundedSender<Cmd>,
    pub stats: Arc<EngineStats>,
    /// Recent committed events in memory, so catch-up of a recent cursor skips the database.
    pub window: Arc<EventWindow>,
}

impl EngineHandle {
    pub fn send(&self, cmd: Cmd) -> bool {
        self.tx.send(cmd).is_ok()
    }

    /// Round-trips a write transaction through the engine.
    pub async fn probe(&self) -> Result<u64, String> {
        let (tx, rx) = oneshot::channel();
        if !self.send(Cmd::Probe(tx)) {
            return Err("hub is shutting down".into());
        }
        rx.await.map_err(|_| "engine stopped".to_string())?
    }
}

/// Something to do once the batch is durable.
enum Out {
    To(Arc<Outbox>, Frame),
    Event {
        seq: u64,
        text: Utf8Bytes,
        exclude: Option<u64>,
        /// Kitchen station bit the event is scoped to (0 = every terminal).
        scope: u8,
        /// Byte offset of the end of this event in the window (set when it enters it).
        end: u64,
    },
    All(Utf8Bytes),
    /// A print job was queued for this station: wake its spooler.
    WakePrinter(crate::station::Station),
}

/// The tables a batch writes, opened once per transaction.
struct Tx<'t> {
    meta: Table<'t, &'static str, u64>,
    orders: Table<'t, &'static str, &'static [u8]>,
    /// The live-order index (`store::live`), kept in step with `orders`.
    live: Table<'t, &'static str, &'static [u8]>,
    finished: Table<'t, (u64, &'static str), ()>,
    leases: Table<'t, &'static str, &'static [u8]>,
    events: Table<'t, u64, &'static [u8]>,
    pending: Table<'t, u64, &'static [u8]>,
    dead: Table<'t, u64, &'static [u8]>,
    tables: Table<'t, &'static str, &'static [u8]>,
    locks: Table<'t, &'static str, &'static [u8]>,
    floors: Table<'t, &'static str, &'static [u8]>,
    tickets: Table<'t, &'static str, u64>,
    event_ids: Table<'t, &'static str, &'static [u8]>,
    odoo_sessions: Table<'t, &'static str, &'static [u8]>,
    registers: Table<'t, u64, &'static [u8]>,
    subjects: Table<'t, &'static str, &'static str>,
    k: kitchen::KitchenTx<'t>,
}

impl<'t> Tx<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Tx<'t>, StoreError> {
        Ok(Tx {
            meta: txn.open_table(META)?,
            orders: txn.open_table(ORDERS)?,
            live: txn.open_table(live::LIVE_ORDERS)?,
            finished: txn.open_table(live::FINISHED_ORDERS)?,
            leases: txn.open_table(LEASES)?,
            events: txn.open_table(EVENTS)?,
            pending: txn.open_table(PENDING)?,
            dead: txn.open_table(DEAD)?,
            tables: txn.open_table(TABLES)?,
            locks: txn.open_table(TABLE_LOCKS)?,
            floors: txn.open_table(FLOOR_PLANS)?,
            tickets: txn.open_table(TICKET_SEQ)?,
            event_ids: txn.open_table(EVENT_IDS)?,
            odoo_sessions: txn.open_table(crate::store::upstream::ODOO_SESSIONS)?,
            registers: txn.open_table(crate::store::upstream::REGISTERS)?,
            subjects: txn.open_table(TERMINAL_SUBJECTS)?,
            k: kitchen::KitchenTx::open(txn)?,
        })
    }
}

/// The engine's state; lives on its own thread.
pub struct Engine {
    cfg: Arc<Config>,
    store: Store,
    rx: mpsc::UnboundedReceiver<Cmd>,
    tx: mpsc::UnboundedSender<Cmd>,
    rt: tokio::runtime::Handle,
    stats: Arc<EngineStats>,
    window: Arc<EventWindow>,
    seq: u64,
    now_ms: u64,
    /// Where `now_ms` comes from (the system clock, or a test's `ManualClock`).
    clock: Arc<dyn Clock>,
    dirty: bool,
    leases: HashMap<String, LeaseRec>,
    locks: HashMap<String, LockRec>,
    reg: Registry,
    /// Terminals that disconnected and whose grace period runs: terminal -> (conn id, the
    /// engine time the grace period ends).
    disconnected: HashMap<String, (u64, u64)>,
    out: Vec<Out>,
    /// Who asked for something in this batch (told about a failed commit).
    askers: Vec<(Arc<Outbox>, Option<Value>)>,
    /// Terminals authenticated in this batch (their `AUTH_OK` is lost if the commit fails).
    joined: Vec<Arc<Outbox>>,
    /// Set while storage is full or failing: writes are refused until it recovers.
    fault: Option<storage::Fault>,
    probes: Vec<oneshot::Sender<Result<u64, String>>>,
    after_commit: Vec<admin::AfterCommit>,
    backups: Vec<admin::PendingBackup>,
    metrics: Arc<crate::metrics::Metrics>,
    upstream_state: &'static str,
    /// An upstream (Odoo or the cloud bridge) is configured: pending events wait for it.
    forwarding: bool,
    /// When the upstream last accepted something (ms), for `SYNC_STATUS`.
    upstream_last_ok: Option<u64>,
    upstream_waiters: upstream::Waiters,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    crate::clock::SystemClock.now_ms()
}

impl Engine {
    /// Loads the state the engine keeps in memory and starts its thread.
    pub fn start(
        cfg: Arc<Config>,
        store: Store,
        rt: tokio::runtime::Handle,
        metrics: Arc<crate::metrics::Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Result<(EngineHandle, std::thread::JoinHandle<()>), StoreError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(EngineStats::default());
        let seq = store.head_seq()?;
        let leases: HashMap<String, LeaseRec> = store.leases()?.into_iter().collect();
        let locks: HashMap<String, LockRec> = store.table_locks()?.into_iter().collect();
        stats.head_seq.store(seq, Ordering::Relaxed);
        stats.leases.store(leases.len(), Ordering::Relaxed);
        stats.table_locks.store(locks.len(), Ordering::Relaxed);
        let window = Arc::new(EventWindow::new(seq, cfg.event_window_bytes));
        let forwarding = cfg.odoo_url.is_some() || cfg.cloud_bridge_url.is_some();
        let upstream_state = if forwarding { "idle" } else { "disabled" };
        let engine = Engine {
            cfg,
            store,
            rx,
            tx: tx.clone(),
            rt,
            stats: stats.clone(),
            window: window.clone(),
            seq,
            now_ms: clock.now_ms(),
            clock,
            dirty: false,
            leases,
            locks,
            reg: Registry::default(),
            disconnected: HashMap::new(),
            out: Vec::new(),
            askers: Vec::new(),
            joined: Vec::new(),
            fault: None,
            probes: Vec::new(),
            after_commit: Vec::new(),
            backups: Vec::new(),
            metrics,
            upstream_state,
            forwarding,
            upstream_last_ok: None,
            upstream_waiters: upstream::Waiters::default(),
        };
        let join = std::thread::Builder::new()
            .name("poshub-engine".into())
            .spawn(move || engine.run())
            .map_err(|e| StoreError::Db(redb::StorageError::Io(e).into()))?;
        Ok((EngineHandle { tx, stats, window }, join))
    }

    fn run(mut self) {
        let mut batch = Vec::with_capacity(256);
        while let Some(first) = self.rx.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            let stop = self.process(&mut batch);
            if stop {
                break;
            }
        }
        // Every command queued before the shutdown has been committed and answered.
        for s in self.reg.sessions() {
            s.outbox.push(Frame::Close {
                code: 1001,
                reason: "hub shutting down",
            });
        }
        tracing::info!(seq = self.seq, "engine stopped; database closed");
    }

    /// Applies, commits and delivers one batch; returns true on shutdown.
    fn process(&mut self, batch: &mut Vec<Cmd>) -> bool {
        let started = Instant::now();
        self.now_ms = self.clock.now_ms();
        self.dirty = false;
        let n = batch.len();
        if !self.writable() {
            return self.serve_read_only(batch.drain(..));
        }
        let mut stop = false;
        let mut permits = Vec::new();
        // Consumed one by one: what a failure leaves unapplied is still answered (below).
        let mut cmds = batch.drain(..);
        let result: Result<(), StoreError> = (|| {
            let mut txn = self.store.db()?.begin_write()?;
            txn.set_quick_repair(true);
            {
                let mut tx = Tx::open(&txn)?;
                let head_before = self.seq;
                self.expire_due(&mut tx)?;
                for cmd in cmds.by_ref() {
                    match cmd {
                        Cmd::Shutdown => stop = true,
                        Cmd::Request {
                            session,
                            request_id,
                            msg,
                            permit,
                        } => {
                            permits.extend(permit);
                            self.request(&mut tx, &session, request_id.as_ref(), msg)?;
                        }
                        other => self.command(&mut tx, other)?,
                    }
                }
                if self.seq != head_before {
                    tx.meta.insert(META_HEAD_SEQ, self.seq)?;
                }
                if self.dirty {
                    let last = tx.meta.get(META_LAST_TS)?.map_or(0, |g| g.value());
                    tx.meta.insert(META_LAST_TS, last.max(self.now_ms))?;
                }
            }
            if self.dirty || !self.probes.is_empty() {
                txn.commit()?;
            } else {
                txn.abort()?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.record_batch(n, started);
                self.deliver();
                self.upstream_waiters.resolve();
                for p in self.probes.drain(..) {
                    let _ = p.send(Ok(self.seq));
                }
                for f in self.after_commit.drain(..) {
                    f();
                }
                self.run_backups();
            }
            Err(e) => {
                self.after_commit.clear();
                for reply in self.backups.drain(..) {
                    let _ = reply.send(Err(e.to_string()));
                }
                self.storage_failed(&e);
                self.failed(&e);
                // The rest of the batch is answered now, not retried forever.
                let rest: Vec<Cmd> = cmds.collect();
                stop |= self.serve_read_only(rest);
            }
        }
        self.askers.clear();
        self.joined.clear();
        drop(permits);
        stop
    }

    /// Counts a committed batch in the engine's stats and the process metrics.
    fn record_batch(&self, n: usize, started: Instant) {
        let st = &self.stats;
        if self.dirty {
            st.commits.fetch_add(1, Ordering::Relaxed);
            st.committed_cmds.fetch_add(n as u64, Ordering::Relaxed);
            st.commit_us_total
                .fetch_add(crate::clock::micros(started.elapsed()), Ordering::Relaxed);
            st.last_batch.store(n, Ordering::Relaxed);
            st.max_batch.fetch_max(n, Ordering::Relaxed);
        }
        st.head_seq.store(self.seq, Ordering::Relaxed);
        st.leases.store(self.leases.len(), Ordering::Relaxed);
        st.table_locks.store(self.locks.len(), Ordering::Relaxed);
        if self.dirty {
            // A batch holds at most a few thousand commands: exact as f64 (below 2^52).
            #[allow(clippy::cast_precision_loss)]
            self.metrics.commit_batch.observe(n as f64);
            self.metrics
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        self.metrics.head_seq.set(self.seq);
        self.metrics.leases.set(gauge_value(self.leases.len()));
        self.metrics.table_locks.set(gauge_value(self.locks.len()));
        self.metrics.terminals.set(gauge_value(self.reg.len()));
    }

    /// Appends an event in the current transaction and schedules its broadcast.
    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        tx: &mut Tx,
        kind: &str,
        pos_reference: Option<&str>,
        terminal_id: &str,
        forward: bool,
        exclude: Option<u64>,
        build: impl FnOnce(u64, u64) -> String,
    ) -> Result<u64, StoreError> {
        self.append_scoped(
            tx,
            kind,
            pos_reference,
            terminal_id,
            forward,
            exclude,
            None,
            build,
        )
    }

    /// `append` for an event only the terminals subscribed to `scope` (a kitchen station)
    /// receive, live and in catch-up.
    #[allow(clippy::too_many_arguments)]
    fn append_scoped(
        &mut self,
        tx: &mut Tx,
        kind: &str,
        pos_reference: Option<&str>,
        terminal_id: &str,
        forward: bool,
        exclude: Option<u64>,
        scope: Option<crate::station::Station>,
        build: impl FnOnce(u64, u64) -> String,
    ) -> Result<u64, StoreError> {
        self.seq += 1;
        let seq = self.seq;
        let message = build(seq, self.now_ms);
        let rec = EventRec {
            ts_ms: self.now_ms,
            kind: kind.to_string(),
            pos_reference: pos_reference.map(str::to_string),
            terminal_id: terminal_id.to_string(),
            message,
            scope: scope.map(|s| s.as_str().to_string()),
        };
        tx.events.insert(seq, enc(&rec).as_slice())?;
        if forward {
            tx.pending
                .insert(seq, enc(&PendingRec::default()).as_slice())?;
        }
        self.dirty = true;
        self.out.push(Out::Event {
            seq,
            // The frame lives as long as the window or a queue holds it: copy it into an
            // allocation of its exact size (serialisers leave up to twice the length allocated;
            // their buffer is freed here and reused for the next event).
            text: Utf8Bytes::from(rec.message.as_str()),
            exclude,
            scope: scope.map_or(0, crate::station::Station::bit),
            end: 0,
        });
        Ok(seq)
    }

    fn reply(&mut self, s: &Session, text: String) {
        self.out.push(Out::To(s.outbox.clone(), Frame::text(text)));
    }

    /// A lagging terminal drained its queue: catch it up from where its queue stopped.
    pub(super) fn resume(&mut self, conn_id: u64) {
        if let Some((ob, after)) = self.reg.resume(conn_id, self.seq) {
            self.stats.lag_resyncs.fetch_add(1, Ordering::Relaxed);
            self.metrics.lag_resyncs.inc();
            self.out.push(Out::To(
                ob,
                Frame::CatchUp {
                    after,
                    to: self.seq,
                },
            ));
        }
    }
}
