//! Engine side of the admin and inspection API: a consistent view of terminals and leases,
//! resetting leases or all data, and consistent backups taken between two commits.

use std::path::PathBuf;

use redb::ReadableTableMetadata;
use tokio::sync::oneshot;

use super::{Engine, Out, Tx};
use crate::engine::outbox::Frame;
use crate::protocol::outbound;
use crate::store::records::LeaseRec;
use crate::store::{StoreError, META_COMPACTED_THROUGH, META_HEAD_SEQ};

/// A connected terminal as `/status` shows it.
#[derive(Debug, Clone)]
pub struct TerminalView {
    pub terminal_id: String,
    pub name: String,
    pub role: &'static str,
    pub device_id: Option<String>,
    pub connected_ms: u64,
}

/// What `/status` needs from the engine's memory, taken between two batches.
#[derive(Debug, Clone, Default)]
pub struct EngineView {
    pub terminals: Vec<TerminalView>,
    pub leases: Vec<(String, LeaseRec)>,
    pub upstream_state: &'static str,
    pub seq: u64,
}

/// Admin work for the engine.
pub enum AdminCmd {
    View(oneshot::Sender<EngineView>),
    /// Drop every lease (holders are told); answers how many.
    ResetLeases(oneshot::Sender<usize>),
    /// Delete all orders, events, tables, locks, floors, tickets; sequence numbers keep growing so
    /// every terminal's cursor is treated as too old and it resyncs.
    ResetData(oneshot::Sender<u64>),
    /// A read transaction on the state right after a commit, for a live backup to copy
    /// ([`crate::store::copy::copy_snapshot`]) while writes go on.
    Backup {
        reply: oneshot::Sender<Result<redb::ReadTransaction, String>>,
    },
}

impl Engine {
    /// `/status`: what the engine holds in memory (needs no write, so it works when storage
    /// is full).
    pub(super) fn view(&mut self, reply: oneshot::Sender<EngineView>) {
        let mut terminals: Vec<TerminalView> = self
            .reg
            .sessions()
            .map(|s| TerminalView {
                terminal_id: s.terminal_id.clone(),
                name: s.name.clone(),
                role: s.role.as_str(),
                device_id: s.device_id.clone(),
                connected_ms: s.connected_ms,
            })
            .collect();
        terminals.sort_by(|a, b| a.terminal_id.cmp(&b.terminal_id));
        let mut leases: Vec<(String, LeaseRec)> = self
            .leases
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        leases.sort_by(|a, b| a.0.cmp(&b.0));
        let _ = reply.send(EngineView {
            terminals,
            leases,
            upstream_state: self.upstream_state,
            seq: self.seq,
        });
    }

    pub(super) fn admin(&mut self, tx: &mut Tx, cmd: AdminCmd) -> Result<(), StoreError> {
        match cmd {
            AdminCmd::View(reply) => self.view(reply),
            AdminCmd::ResetLeases(reply) => {
                let n = self.leases.len();
                for (p, l) in std::mem::take(&mut self.leases) {
                    tx.leases.remove(p.as_str())?;
                    if let Some(holder) = self.reg.by_terminal(&l.terminal_id) {
                        let msg = outbound::lease_revoked(&p, "reset");
                        self.out
                            .push(Out::To(holder.outbox.clone(), Frame::text(msg.to_string())));
                    }
                }
                self.dirty = true;
                tracing::warn!(leases = n, "all leases reset by an administrator");
                self.after_commit.push(Box::new(move || {
                    let _ = reply.send(n);
                }));
            }
            AdminCmd::ResetData(reply) => {
                macro_rules! clear {
                    ($t:expr) => {
                        $t.retain(|_, _| false)?;
                    };
                }
                clear!(tx.orders);
                clear!(tx.live);
                clear!(tx.finished);
                clear!(tx.leases);
                clear!(tx.events);
                clear!(tx.pending);
                clear!(tx.dead);
                clear!(tx.tables);
                clear!(tx.locks);
                clear!(tx.floors);
                clear!(tx.tickets);
                clear!(tx.event_ids);
                debug_assert!(tx.orders.is_empty().unwrap_or(true));
                // Burn one sequence number: every cursor, even one at the old head, is now older
                // than what the hub retains, so every terminal resyncs to the empty state.
                self.seq += 1;
                tx.meta.insert(META_HEAD_SEQ, self.seq)?;
                tx.meta.insert(META_COMPACTED_THROUGH, self.seq)?;
                self.window.reset(self.seq);
                for s in self.reg.sessions() {
                    self.out.push(Out::To(
                        s.outbox.clone(),
                        Frame::CatchUp {
                            after: 0,
                            to: self.seq,
                        },
                    ));
                }
                self.reg.cover(self.seq);
                self.leases.clear();
                self.locks.clear();
                self.dirty = true;
                let seq = self.seq;
                tracing::warn!(seq, "all data reset by an administrator");
                self.after_commit.push(Box::new(move || {
                    let _ = reply.send(seq);
                }));
            }
            AdminCmd::Backup { reply } => self.backups.push(reply),
        }
        Ok(())
    }

    /// Runs after the batch's commit: each backup asked for in the batch gets a read
    /// transaction on exactly what was committed, and copies it off the engine's thread.
    pub(super) fn run_backups(&mut self) {
        for reply in self.backups.drain(..) {
            let _ = reply.send(self.store.snapshot().map_err(|e| e.to_string()));
        }
    }
}

/// Where a backup is written until it passed its check.
pub fn partial_path(dst: &std::path::Path) -> PathBuf {
    dst.with_extension("partial")
}

/// Copies `snapshot` to `dst`'s `.partial` file (off the engine's thread: writes go on),
/// then checks it and gives it its name ([`finish_backup`]). Answers the backup's size.
pub fn write_backup(
    snapshot: &redb::ReadTransaction,
    dst: &std::path::Path,
) -> Result<u64, String> {
    let tmp = partial_path(dst);
    if let Some(dir) = tmp.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    // A `.partial` left by a copy that was cut short is not a database to add to.
    let _ = std::fs::remove_file(&tmp);
    if let Err(e) = crate::store::copy::copy_snapshot(snapshot, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("copy to {}: {e}", tmp.display()));
    }
    finish_backup(dst)
}

/// Checks the copy of `dst` and gives it its name. Open it once and run redb's integrity
/// check: a broken copy is caught here rather than at restore time. A copy that fails is
/// removed.
pub fn finish_backup(dst: &std::path::Path) -> Result<u64, String> {
    let tmp = partial_path(dst);
    let r = check_and_rename(&tmp, dst);
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

fn check_and_rename(tmp: &std::path::Path, dst: &std::path::Path) -> Result<u64, String> {
    {
        let mut db =
            redb::Database::create(tmp).map_err(|e| format!("backup does not open: {e}"))?;
        db.check_integrity()
            .map_err(|e| format!("backup fails its integrity check: {e}"))?;
    }
    let f = std::fs::File::open(tmp).map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())?;
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    std::fs::rename(tmp, dst).map_err(|e| format!("rename to {}: {e}", dst.display()))?;
    if let Some(dir) = dst.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(size)
}

/// A backup asked for in this batch: who gets the read transaction after the commit.
pub type PendingBackup = oneshot::Sender<Result<redb::ReadTransaction, String>>;

/// A reply to send once the batch is durable.
pub type AfterCommit = Box<dyn FnOnce() + Send>;
