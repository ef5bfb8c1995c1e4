//! Slot status on the data partition (`<data>/supervisor/slots.json`), never on FAT: per slot
//! the state (good/bad/trying/...), version, checksum, install time and count; the trial in
//! progress; and a bounded journal of boot attempts and slot decisions that explains every
//! rollback. Read-modify-write cycles hold an exclusive `flock`, so the CLI and the running
//! supervisor never lose each other's changes; writes are atomic replaces.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Slot;
use crate::fsutil;

/// How many journal entries are kept (oldest dropped first).
pub const JOURNAL_MAX: usize = 200;

/// What the supervisor knows about one slot's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SlotState {
    /// Never seen by this supervisor.
    #[default]
    Unknown,
    /// An image is being written (a power cut here leaves the slot unusable, never booted).
    Installing,
    /// Written and verified, not yet armed.
    Installed,
    /// Armed for, or running, its trial boot.
    Trying,
    /// Committed: booted and healthy for the health window (or the factory slot).
    Good,
    /// Must not be booted; `reason` says why.
    Bad,
}

/// Status of one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SlotInfo {
    pub state: SlotState,
    pub version: Option<String>,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub installed_at: Option<u64>,
    pub install_count: u64,
    pub committed_at: Option<u64>,
    pub reason: Option<String>,
}

/// A trial in progress: armed by an install, counted per boot, ended by commit or failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    pub slot: Slot,
    pub previous: Slot,
    pub version: Option<String>,
    pub armed_at: u64,
    /// Boot id of the boot that armed it: while that boot lasts, the trial is only pending.
    pub armed_boot_id: String,
    /// Boots of `slot` seen during this trial (counted once per boot id).
    pub attempts: u32,
    pub boot_ids: Vec<String>,
    /// System uptime (ms) when the supervisor first saw this trial in the current boot: the
    /// trial timeout runs from there, so supervisor restarts (systemd watchdog, start timeout)
    /// within one boot do not restart the clock.
    #[serde(default)]
    pub boot_started_uptime_ms: Option<u64>,
}

/// One line of the per-boot-attempt journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub at: u64,
    pub boot_id: String,
    pub slot: Slot,
    pub event: String,
    pub detail: String,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SlotStatus {
    #[serde(rename = "A")]
    pub a: SlotInfo,
    #[serde(rename = "B")]
    pub b: SlotInfo,
    pub trial: Option<Trial>,
    pub last_boot_id: Option<String>,
    pub journal: Vec<JournalEntry>,
}

impl SlotStatus {
    /// Status of `slot`.
    pub fn slot(&self, slot: Slot) -> &SlotInfo {
        match slot {
            Slot::A => &self.a,
            Slot::B => &self.b,
        }
    }
    /// Mutable status of `slot`.
    pub fn slot_mut(&mut self, slot: Slot) -> &mut SlotInfo {
        match slot {
            Slot::A => &mut self.a,
            Slot::B => &mut self.b,
        }
    }
    /// Appends to the journal, dropping the oldest entries past [`JOURNAL_MAX`].
    pub fn log(&mut self, boot_id: &str, slot: Slot, event: &str, detail: impl Into<String>) {
        let detail = detail.into();
        tracing::info!(slot = %slot, event, "{detail}");
        self.journal.push(JournalEntry {
            at: fsutil::now_unix(),
            boot_id: boot_id.to_string(),
            slot,
            event: event.to_string(),
            detail,
        });
        if self.journal.len() > JOURNAL_MAX {
            let extra = self.journal.len() - JOURNAL_MAX;
            self.journal.drain(..extra);
        }
    }
}

/// Error reading or writing the status file.
#[derive(Debug, thiserror::Error)]
#[error("slot status {path}: {err}")]
pub struct StoreError {
    pub path: PathBuf,
    pub err: std::io::Error,
}

/// Handle on the status file.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// The store in the supervisor's state directory.
    pub fn new(state_dir: &Path) -> Store {
        Store {
            path: state_dir.join("slots.json"),
        }
    }

    /// Reads the status (default when the file does not exist yet).
    pub fn load(&self) -> Result<SlotStatus, StoreError> {
        fsutil::read_json(&self.path)
            .map(Option::unwrap_or_default)
            .map_err(|err| self.err(err))
    }

    /// Read-modify-write under an exclusive lock; `f`'s result is returned.
    pub fn update<R>(&self, f: impl FnOnce(&mut SlotStatus) -> R) -> Result<R, StoreError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.err(e))?;
        let lock_path = dir.join("slots.lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| self.err(e))?;
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| self.err(e.into()))?;
        let mut st = self.load()?;
        let r = f(&mut st);
        fsutil::write_json(&self.path, &st).map_err(|e| self.err(e))?;
        Ok(r)
    }

    fn err(&self, err: std::io::Error) -> StoreError {
        StoreError {
            path: self.path.clone(),
            err,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_is_bounded_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store
            .update(|s| {
                for i in 0..(JOURNAL_MAX + 5) {
                    s.log("boot", Slot::A, "boot", format!("n{i}"));
                }
                s.b.state = SlotState::Bad;
            })
            .unwrap();
        let st = store.load().unwrap();
        assert_eq!(st.journal.len(), JOURNAL_MAX);
        assert_eq!(st.journal[0].detail, "n5");
        assert_eq!(st.b.state, SlotState::Bad);
    }
}
