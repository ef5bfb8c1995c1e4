//! A full or failing disk must not stop the hub (docs/storage.md "When the disk is full"). Before
//! each batch the writer checks the free space against `HUB_MIN_FREE_MB`; below it, and after a
//! write that failed (ENOSPC or another I/O error), the engine serves in read-only mode: every
//! write is answered at once with `ERROR storage_full` (or `storage_error`), while authentication,
//! catch-up, subscriptions, `/status` and a stop keep working. redb latches the first I/O error and
//! refuses everything after it, so recovery closes and reopens the database (which repairs it from
//! its last durable commit: nothing acknowledged is lost). About once a second the writer checks
//! whether space is back and, if so, resumes writing without a restart.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::binding::ReadOnlyClaim;
use super::{AdminCmd, Cmd, Engine, Out, Session};
use crate::engine::outbox::Frame;
use crate::protocol::{outbound, Inbound};
use crate::store::StoreError;

/// How often a writer in fault tries to recover (free space, reopen).
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Free space needed to leave the `full` state when the reserve is off (`HUB_MIN_FREE_MB=0`).
const MIN_TO_RESUME: u64 = 1 << 20;
/// How long a reopen waits for readers of the old database handle.
const REOPEN_WAIT: Duration = Duration::from_millis(500);

/// What the writer knows about the database, for `/health`, the dashboard and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbState {
    Writable,
    /// Below `HUB_MIN_FREE_MB`, or the file system said ENOSPC.
    Full,
    /// Another I/O failure; retried like a full disk.
    Failed,
}

impl DbState {
    pub fn as_str(self) -> &'static str {
        match self {
            DbState::Writable => "writable",
            DbState::Full => "full",
            DbState::Failed => "error",
        }
    }

    /// The `ERROR` code a refused write gets.
    fn code(self) -> &'static str {
        match self {
            DbState::Full => "storage_full",
            _ => "storage_error",
        }
    }

    fn message(self) -> &'static str {
        match self {
            DbState::Full => {
                "the hub's storage is full; this change was not saved (reads still work)"
            }
            _ => "the hub could not save this change; retry",
        }
    }
}

/// Shared between the writer and the HTTP side.
#[derive(Debug, Default)]
pub struct StorageHealth {
    state: AtomicU8,
    free_bytes: AtomicU64,
    error: Mutex<Option<String>>,
}

impl StorageHealth {
    /// The state, free bytes on the file system, and the last error while not writable.
    pub fn get(&self) -> (DbState, u64, Option<String>) {
        let state = match self.state.load(Ordering::Acquire) {
            0 => DbState::Writable,
            1 => DbState::Full,
            _ => DbState::Failed,
        };
        let error = self.error.lock().ok().and_then(|e| e.clone());
        (state, self.free_bytes.load(Ordering::Relaxed), error)
    }

    fn set(&self, state: DbState, error: Option<String>) {
        if let Ok(mut e) = self.error.lock() {
            *e = error;
        }
        self.state.store(state as u8, Ordering::Release);
    }
}

/// The writer cannot write: why, and what recovery needs.
pub(super) struct Fault {
    state: DbState,
    /// redb latched an I/O error: the database must be closed and opened again.
    reopen: bool,
    error: String,
    next_try: Instant,
}

/// Free bytes (for an unprivileged user) on the file system holding `path`.
pub fn free_bytes(path: &std::path::Path) -> Option<u64> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// Whether a failed write is a full disk, another I/O failure (both need a reopen), or neither
/// (a damaged record: only that batch is lost).
fn classify(e: &StoreError) -> Option<DbState> {
    let StoreError::Db(e) = e else { return None };
    match e {
        redb::Error::Io(io)
            if io.kind() == std::io::ErrorKind::StorageFull
                || io.raw_os_error() == Some(libc::ENOSPC)
                || io.raw_os_error() == Some(libc::EDQUOT) =>
        {
            Some(DbState::Full)
        }
        redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed => {
            Some(DbState::Failed)
        }
        _ => None,
    }
}

impl Engine {
    /// Before a batch: can it write? Checks the reserve and, in fault, tries to recover (at
    /// most once a second).
    pub(super) fn writable(&mut self) -> bool {
        let free = free_bytes(self.store.path());
        if let Some(f) = free {
            self.stats.storage.free_bytes.store(f, Ordering::Relaxed);
            self.metrics.db_free_bytes.set(f);
        }
        let reserve = self.cfg.min_free_bytes;
        let Some(fault) = self.fault.as_mut() else {
            if free.is_some_and(|f| f < reserve) {
                let error = format!(
                    "{} MiB free, below HUB_MIN_FREE_MB ({} MiB)",
                    free.unwrap_or(0) >> 20,
                    reserve >> 20
                );
                self.enter_fault(DbState::Full, false, error);
                return false;
            }
            return true;
        };
        let now = Instant::now();
        if now < fault.next_try {
            return false;
        }
        fault.next_try = now + RETRY_EVERY;
        let (state, reopen) = (fault.state, fault.reopen);
        let needed = if state == DbState::Full {
            reserve.max(MIN_TO_RESUME)
        } else {
            reserve
        };
        if free.is_some_and(|f| f < needed) {
            return false;
        }
        if reopen {
            if let Err(e) = self.store.reopen(REOPEN_WAIT) {
                tracing::warn!(error = %e, "database not reopened yet; writes stay refused");
                return false;
            }
            self.reload();
        }
        tracing::info!(
            was = state.as_str(),
            free_bytes = free,
            "storage writable again; writes resume"
        );
        self.fault = None;
        self.stats.storage.set(DbState::Writable, None);
        true
    }

    fn enter_fault(&mut self, state: DbState, reopen: bool, error: String) {
        tracing::error!(state = state.as_str(), error = %error, "writes refused until storage recovers");
        self.stats.storage.set(state, Some(error.clone()));
        self.fault = Some(Fault {
            state,
            reopen,
            error,
            next_try: Instant::now() + RETRY_EVERY,
        });
    }

    /// A write failed: enter fault if the disk is full or failing, and reopen the database at
    /// once so reads work again (its last durable commit is what they see).
    pub(super) fn storage_failed(&mut self, e: &StoreError) {
        let Some(state) = classify(e) else { return };
        let reopened = self.store.reopen(REOPEN_WAIT);
        if let Err(re) = &reopened {
            tracing::warn!(error = %re, "database not reopened yet");
        }
        self.enter_fault(state, reopened.is_err(), e.to_string());
    }

    /// The state refused writes are told about (`storage_error` outside a fault).
    pub(super) fn refusal(&self) -> DbState {
        self.fault.as_ref().map_or(DbState::Failed, |f| f.state)
    }

    /// Counts a refused or discarded write.
    pub(super) fn count_refusal(&self) {
        let counter = match self.refusal() {
            DbState::Full => &self.metrics.storage_full,
            _ => &self.metrics.storage_errors,
        };
        counter.inc();
    }

    /// The `ERROR` frame for a write that was refused or discarded.
    pub(super) fn refusal_frame(&self, rid: Option<&Value>) -> String {
        let state = self.refusal();
        outbound::error(state.code(), state.message(), rid)
    }

    /// Serves a batch without writing: reads, catch-up and connection bookkeeping work; writes
    /// are answered with the refusal at once. Returns true on shutdown.
    pub(super) fn serve_read_only(&mut self, cmds: impl IntoIterator<Item = Cmd>) -> bool {
        let mut stop = false;
        let why = self
            .fault
            .as_ref()
            .map_or_else(|| "storage failure".to_string(), |f| f.error.clone());
        for cmd in cmds {
            match cmd {
                Cmd::Shutdown => stop = true,
                Cmd::Request {
                    session,
                    request_id,
                    msg,
                    permit: _,
                } => match msg {
                    Inbound::SyncRequest(after) => self.out.push(Out::To(
                        session.outbox.clone(),
                        Frame::CatchUp {
                            after,
                            to: self.seq,
                        },
                    )),
                    Inbound::Subscribe(mask) => self.subscribe(&session, mask, request_id.as_ref()),
                    Inbound::Ping | Inbound::Auth(_) => {}
                    _ => {
                        self.count_refusal();
                        let text = self.refusal_frame(request_id.as_ref());
                        self.out
                            .push(Out::To(session.outbox.clone(), Frame::text(text)));
                    }
                },
                Cmd::Connected {
                    session,
                    cursor,
                    request_id,
                } => self.connected_read_only(&session, cursor, request_id.as_ref()),
                Cmd::Disconnected { conn_id } => self.disconnected(conn_id),
                Cmd::Resume { conn_id } => self.resume(conn_id),
                Cmd::GraceExpired { .. } => self.later(cmd),
                Cmd::Probe(p) | Cmd::Printed { done: p, .. } => {
                    let _ = p.send(Err(why.clone()));
                }
                Cmd::Admin(AdminCmd::View(reply)) => self.view(reply),
                Cmd::Admin(AdminCmd::Backup { reply, .. }) => {
                    let _ = reply.send(Err(why.clone()));
                }
                // Ticks come again; upstream outcomes are retried by the forwarder; admin
                // writes see their reply dropped (the HTTP side answers 503).
                Cmd::LeaseTick
                | Cmd::LockTick
                | Cmd::StatusTick
                | Cmd::Compact
                | Cmd::Upstream(_)
                | Cmd::Admin(_) => {}
            }
        }
        self.deliver();
        // Nothing here is written, so nothing can be lost with a later failed commit.
        self.askers.clear();
        self.joined.clear();
        stop
    }

    /// A login while the database cannot be written: admitted when its terminal claim needs no
    /// write (see [`Engine::claim_read_only`]); otherwise `AUTH_FAIL` with the storage
    /// refusal's code and close 1013 (try again later), so the terminal reconnects once space
    /// is back.
    fn connected_read_only(
        &mut self,
        session: &Arc<Session>,
        cursor: Option<u64>,
        request_id: Option<&Value>,
    ) {
        if session.outbox.is_closed() {
            return;
        }
        match self.claim_read_only(session) {
            ReadOnlyClaim::Admit => self.admit(session, cursor, request_id),
            ReadOnlyClaim::Refuse => self.refuse_claim(session, request_id),
            ReadOnlyClaim::NeedsWrite => {
                let msg = "the hub cannot record this terminal's first login while its storage \
                           cannot be written; try again once space is back";
                let fail = outbound::auth_fail(self.refusal().code(), msg, request_id);
                self.out
                    .push(Out::To(session.outbox.clone(), Frame::text(fail)));
                self.out.push(Out::To(
                    session.outbox.clone(),
                    Frame::Close {
                        code: 1013,
                        reason: "database not writable, try again later",
                    },
                ));
            }
        }
    }

    /// Sends `cmd` to the engine again in a second (a grace expiry must not be forgotten while
    /// it cannot be written).
    fn later(&self, cmd: Cmd) {
        let tx = self.tx.clone();
        self.rt.spawn(async move {
            tokio::time::sleep(RETRY_EVERY).await;
            let _ = tx.send(cmd);
        });
    }
}
