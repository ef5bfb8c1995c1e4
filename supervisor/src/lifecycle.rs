//! Slot decisions: what this boot is (normal, trial, failed trial), commit after a healthy
//! trial, marking bad, rollback. The store (data partition) is written before the bootloader in
//! every step, and every bootloader change is one-shot or atomic, so a power cut between the two
//! writes at worst boots the previous, committed slot. See `docs/updates.md`.

use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::fsutil::now_unix;
use crate::slots::store::{SlotState, SlotStatus, Store, Trial};
use crate::slots::{BootBackend, Slot};

/// What this boot is, decided once at supervisor start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootDecision {
    /// A committed slot (or a trial armed in this same boot that has not rebooted yet).
    Normal { slot: Slot },
    /// Trial boot number `attempt` of `slot`: commit it once the hub is healthy long enough.
    /// `elapsed` is how long this boot's trial has been running already (earlier supervisor
    /// runs in the same boot).
    Trial {
        slot: Slot,
        attempt: u32,
        elapsed: std::time::Duration,
    },
    /// The trial used up its boot attempts: it was marked bad, reboot into the previous slot.
    TrialExhausted { slot: Slot, reason: String },
}

/// The slot store, the bootloader backend and this boot's identity.
#[derive(Clone)]
pub struct Slots {
    pub backend: Arc<dyn BootBackend>,
    pub store: Store,
    pub boot_id: String,
    max_boots: u32,
    os_version: Option<String>,
}

impl Slots {
    /// Builds from the configuration.
    pub fn new(cfg: &Config, backend: Arc<dyn BootBackend>) -> Slots {
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        Slots {
            backend,
            store: Store::new(&cfg.state_dir()),
            boot_id: read(&cfg.boot_id_path).unwrap_or_else(|| "unknown".into()),
            max_boots: cfg.trial_max_boots.max(1),
            os_version: read(&cfg.os_version_file),
        }
    }

    /// Version running in `booted`: the store's record, else the OS version file.
    pub fn current_version(&self, booted: Slot) -> Result<Option<String>> {
        let st = self.store.load()?;
        Ok(st
            .slot(booted)
            .version
            .clone()
            .or_else(|| self.os_version.clone()))
    }

    /// The OS (bundle) version running now: the booted slot's record, else the OS version file;
    /// `None` when neither is known (or the bootloader cannot tell which slot booted).
    pub fn os_version(&self) -> Option<String> {
        let booted = self.backend.booted().ok()?.slot;
        self.current_version(booted).ok().flatten()
    }

    /// Decides what this boot is and records it in the journal.
    pub fn on_boot(&self) -> Result<BootDecision> {
        let booted = self
            .backend
            .booted()
            .context("unable to tell which slot booted")?;
        let facts = BootFacts {
            slot: booted.slot,
            boot_id: self.boot_id.clone(),
            max_boots: self.max_boots,
            os_version: self.os_version.clone(),
            uptime: uptime_ms(),
        };
        let (decision, mark_bad) = self.store.update(|st| decide(st, &facts))?;
        if let Some(bad) = mark_bad {
            self.backend
                .mark_bad(bad)
                .context("unable to mark the failed slot bad in the bootloader")?;
        }
        if let BootDecision::Normal { slot } = decision {
            if self.store.load()?.slot(slot).state == SlotState::Good {
                self.backend
                    .confirm_boot(slot)
                    .context("unable to re-arm the boot counter")?;
            }
        }
        Ok(decision)
    }

    /// Commits `slot` (normally the booted trial slot): store first, then the bootloader.
    pub fn commit(&self, slot: Slot, why: &str) -> Result<()> {
        let boot_id = self.boot_id.clone();
        self.store.update(|st| {
            let info = st.slot_mut(slot);
            info.state = SlotState::Good;
            info.reason = None;
            info.committed_at = Some(now_unix());
            if st.trial.as_ref().is_some_and(|t| t.slot == slot) {
                st.trial = None;
            }
            st.log(&boot_id, slot, "commit", why);
        })?;
        self.backend
            .commit(slot)
            .context("unable to make the slot the default in the bootloader")
    }

    /// Ends the running trial as failed (slot marked bad); the caller then reboots.
    pub fn fail_trial(&self, reason: &str) -> Result<Option<Slot>> {
        let boot_id = self.boot_id.clone();
        let failed = self.store.update(|st| {
            let t = st.trial.clone()?;
            fail(st, &boot_id, t.slot, reason);
            Some(t.slot)
        })?;
        if let Some(s) = failed {
            self.backend.mark_bad(s)?;
        }
        Ok(failed)
    }

    /// Marks `slot` bad by hand.
    pub fn mark_bad(&self, slot: Slot, reason: &str) -> Result<()> {
        let boot_id = self.boot_id.clone();
        self.store.update(|st| fail(st, &boot_id, slot, reason))?;
        self.backend.mark_bad(slot)?;
        Ok(())
    }

    /// Makes the other slot the default (or fails the running trial). Returns the slot the next
    /// boot will use. Refuses a slot that is not known good unless `force`.
    pub fn rollback(&self, force: bool) -> Result<Slot> {
        let booted = self.backend.booted()?.slot;
        let st = self.store.load()?;
        if st.trial.as_ref().is_some_and(|t| t.slot == booted) {
            self.fail_trial("rolled back by hand during the trial")?;
            return Ok(booted.other());
        }
        let target = booted.other();
        let state = st.slot(target).state;
        if state != SlotState::Good && !force {
            bail!(
                "slot {target} is {state:?}, not good: refusing to roll back to it (use --force)"
            );
        }
        if st.trial.as_ref().is_some_and(|t| t.slot == target) {
            self.store.update(|s| s.trial = None)?;
        }
        self.commit(target, &format!("rollback by hand from slot {booted}"))?;
        Ok(target)
    }
}

fn fail(st: &mut SlotStatus, boot_id: &str, slot: Slot, reason: &str) {
    let info = st.slot_mut(slot);
    info.state = SlotState::Bad;
    info.reason = Some(reason.to_string());
    if st.trial.as_ref().is_some_and(|t| t.slot == slot) {
        st.trial = None;
    }
    st.log(boot_id, slot, "mark-bad", reason);
}

/// What [`Slots::on_boot`] decides from, besides the store.
struct BootFacts {
    slot: Slot,
    boot_id: String,
    max_boots: u32,
    os_version: Option<String>,
    /// Milliseconds since the kernel started, if known.
    uptime: Option<u64>,
}

// /proc/uptime is a small positive number of seconds (`as` saturates anyway).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn uptime_ms() -> Option<u64> {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(|secs| (secs * 1000.0) as u64)
}

/// The store's side of [`Slots::on_boot`]: the decision, and the slot the bootloader must then
/// mark bad, if any.
fn decide(st: &mut SlotStatus, f: &BootFacts) -> (BootDecision, Option<Slot>) {
    let (slot, boot_id) = (f.slot, f.boot_id.as_str());
    // 1. Adopt the factory slot the first time the supervisor sees it.
    if st.slot(slot).state == SlotState::Unknown {
        let info = st.slot_mut(slot);
        info.state = SlotState::Good;
        info.version.clone_from(&f.os_version);
        info.committed_at = Some(now_unix());
        st.log(
            boot_id,
            slot,
            "adopt",
            "first boot under the supervisor: slot adopted as good",
        );
    }
    let new_boot = st.last_boot_id.as_deref() != Some(boot_id);
    st.last_boot_id = Some(boot_id.to_string());
    // 2. A slot left half-written by a power cut is never bootable.
    for s in [Slot::A, Slot::B] {
        if st.slot(s).state == SlotState::Installing {
            let info = st.slot_mut(s);
            info.state = SlotState::Bad;
            info.reason = Some("install interrupted while writing".into());
            st.log(
                boot_id,
                s,
                "install-interrupted",
                "image write did not finish; slot marked bad",
            );
        }
    }
    // 3. The trial, if any.
    let Some(trial) = st.trial.clone() else {
        if new_boot {
            st.log(boot_id, slot, "boot", format!("normal boot of slot {slot}"));
        }
        return (BootDecision::Normal { slot }, None);
    };
    if trial.slot == slot {
        return trial_boot(st, f, trial, new_boot);
    }
    if trial.armed_boot_id == boot_id {
        // Armed in this boot (install --no-reboot, or a supervisor restart): pending.
        return (BootDecision::Normal { slot }, None);
    }
    let reason = if trial.attempts == 0 {
        format!("trial of slot {} never started: slot {slot} booted instead (interrupted before the reboot, or the bootloader refused the slot)", trial.slot)
    } else {
        format!("trial of slot {} did not finish: slot {slot} booted again after {} attempt(s) (watchdog reset, crash or power loss during the trial)", trial.slot, trial.attempts)
    };
    fail(st, boot_id, trial.slot, &reason);
    (BootDecision::Normal { slot }, Some(trial.slot))
}

/// The booted slot is the trial's: count this boot's attempt; fail the trial past its attempts.
fn trial_boot(
    st: &mut SlotStatus,
    f: &BootFacts,
    mut trial: Trial,
    new_boot: bool,
) -> (BootDecision, Option<Slot>) {
    let (slot, boot_id, max_boots, uptime) = (f.slot, f.boot_id.as_str(), f.max_boots, f.uptime);
    if new_boot && !trial.boot_ids.iter().any(|b| b == boot_id) {
        trial.attempts += 1;
        trial.boot_ids.push(boot_id.to_string());
        trial.boot_started_uptime_ms = uptime;
        st.log(
            boot_id,
            slot,
            "trial-boot",
            format!("trial boot attempt {} of {max_boots}", trial.attempts),
        );
    }
    if trial.attempts > max_boots {
        let reason = format!(
            "trial boot attempts exhausted ({} boots without reaching the health window)",
            trial.attempts
        );
        fail(st, boot_id, slot, &reason);
        return (BootDecision::TrialExhausted { slot, reason }, Some(slot));
    }
    let attempt = trial.attempts.max(1);
    let started = *trial
        .boot_started_uptime_ms
        .get_or_insert(uptime.unwrap_or(0));
    let elapsed =
        std::time::Duration::from_millis(uptime.unwrap_or(started).saturating_sub(started));
    st.trial = Some(trial);
    (
        BootDecision::Trial {
            slot,
            attempt,
            elapsed,
        },
        None,
    )
}
