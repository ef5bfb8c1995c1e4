//! Progress of the current or last update (`GET /update/status`, `status`), persisted in
//! `<state>/update-status.json`; once an installed update's trial has ended, reads report its
//! outcome (committed or rolled back) instead of "installed".

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::fsutil::{self, now_unix};
use crate::slots::store::{SlotState, SlotStatus, Store};
use crate::slots::Slot;

/// Where an update stands (`state` of `GET /update/status`, `docs/updates.md` §6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateState {
    /// Never updated.
    #[default]
    Idle,
    /// The upload's body is arriving.
    Receiving,
    /// An install runs (`phase` says where).
    Installing,
    /// Written, verified and armed for the trial.
    Installed,
    /// Refused or failed (`error` says why).
    Failed,
    /// The process doing the install died (power loss, kill, restart).
    Interrupted,
    /// The trial of the installed update ended with a commit.
    Committed,
    /// The trial of the installed update failed (`error` says why).
    RolledBack,
}

impl UpdateState {
    /// An update in progress (`receiving` or `installing`): never outlives its process.
    pub fn in_progress(self) -> bool {
        matches!(self, UpdateState::Receiving | UpdateState::Installing)
    }
}

/// Progress of the current or last update, as `GET /update/status` and `status` show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// Once the trial of an installed update has ended: committed or rolled-back (see
    /// [`UpdateStatus::settled`]).
    pub state: UpdateState,
    pub phase: Option<String>,
    pub version: Option<String>,
    pub target: Option<Slot>,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub percent: u32,
    pub error: Option<String>,
    pub updated_at: u64,
}

impl UpdateStatus {
    /// This status as seen after the slot store's later decisions: an update still recorded
    /// as `installed` whose target is no longer on trial is `committed` (the target is good)
    /// or `rolled-back` (the target is bad; `error` says why). The record itself is written
    /// only by installs, so `status` would otherwise say "installed" long after the commit.
    pub fn settled(mut self, slots: &SlotStatus) -> UpdateStatus {
        let Some(target) = self.target else {
            return self;
        };
        let on_trial = slots.trial.as_ref().is_some_and(|t| t.slot == target);
        if self.state != UpdateState::Installed || on_trial {
            return self;
        }
        let info = slots.slot(target);
        match info.state {
            SlotState::Good => {
                self.state = UpdateState::Committed;
                self.error = None;
            }
            SlotState::Bad => {
                self.state = UpdateState::RolledBack;
                self.error.clone_from(&info.reason);
            }
            _ => {}
        }
        self
    }
}

/// Shared progress, mirrored to `<state>/update-status.json` at every phase change.
pub struct Progress {
    path: PathBuf,
    store: Store,
    inner: Mutex<UpdateStatus>,
}

impl Progress {
    /// Progress persisted in `state_dir`.
    pub fn new(state_dir: &Path) -> Progress {
        let path = state_dir.join("update-status.json");
        let inner = fsutil::read_json(&path).ok().flatten().unwrap_or_default();
        Progress {
            path,
            store: Store::new(state_dir),
            inner: Mutex::new(inner),
        }
    }

    /// A copy of the current status, with the outcome of the trial that followed it.
    pub fn get(&self) -> UpdateStatus {
        let cur = self.raw();
        match self.store.load() {
            Ok(slots) => cur.settled(&slots),
            Err(_) => cur,
        }
    }

    fn raw(&self) -> UpdateStatus {
        self.inner.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Changes the status; `persist` also writes the file (phase changes, not every chunk).
    pub fn set(&self, persist: bool, f: impl FnOnce(&mut UpdateStatus)) {
        let snapshot = {
            let Ok(mut g) = self.inner.lock() else { return };
            f(&mut g);
            g.percent = g
                .bytes_done
                .saturating_mul(100)
                .checked_div(g.bytes_total)
                .map_or(0, |p| p.min(100) as u32);
            g.updated_at = now_unix();
            g.clone()
        };
        if persist {
            if let Err(e) = fsutil::write_json(&self.path, &snapshot) {
                tracing::warn!("unable to persist update status: {e}");
            }
        }
    }

    /// After a restart: an update that was receiving or installing when the process died is
    /// reported as interrupted (the slot bookkeeping itself is repaired by `Slots::on_boot`).
    pub fn mark_interrupted(&self) {
        let cur = self.raw();
        if cur.state.in_progress() {
            let phase = cur.phase.clone().unwrap_or_else(|| "receive".into());
            self.set(true, |s| {
                s.state = UpdateState::Interrupted;
                s.error = Some(format!(
                    "the supervisor stopped during phase {phase} (power loss, kill or restart)"
                ));
            });
        }
    }

    pub(super) fn phase(&self, phase: &str) {
        tracing::info!(phase, "install phase");
        self.set(true, |s| s.phase = Some(phase.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::UpdateState;

    /// `state` keeps the strings `GET /update/status`, `status --json` and fleet tools read
    /// (`docs/updates.md` §6), and reads back what earlier versions wrote.
    #[test]
    fn update_states_are_the_documented_strings() {
        let all = [
            (UpdateState::Idle, "idle"),
            (UpdateState::Receiving, "receiving"),
            (UpdateState::Installing, "installing"),
            (UpdateState::Installed, "installed"),
            (UpdateState::Failed, "failed"),
            (UpdateState::Interrupted, "interrupted"),
            (UpdateState::Committed, "committed"),
            (UpdateState::RolledBack, "rolled-back"),
        ];
        for (state, text) in all {
            assert_eq!(serde_json::to_value(state).unwrap(), text);
            let back: UpdateState = serde_json::from_value(text.into()).unwrap();
            assert_eq!(back, state);
        }
    }
}
