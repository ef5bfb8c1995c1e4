//! The `file` backend: a JSON file that plays the bootloader. It keeps the default slot, a
//! one-shot "try next" slot and what is booted now; [`emulate_boot`] does what firmware does at
//! power-on (consume the one-shot try, else boot the default). Used by tests and emulated boots;
//! the supervisor's logic above the trait is the same for every backend.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{BootBackend, Booted, Slot, SlotError};
use crate::fsutil;

/// The emulated bootloader's whole state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileBootState {
    pub primary: Slot,
    pub booted: Slot,
    pub tryboot: bool,
    pub try_next: Option<Slot>,
    /// How many reboots were requested (an emulated reboot only counts).
    pub reboot_requests: u64,
    /// The last reboot asked for a trial boot.
    pub last_reboot_trial: bool,
}

impl Default for FileBootState {
    fn default() -> Self {
        FileBootState {
            primary: Slot::A,
            booted: Slot::A,
            tryboot: false,
            try_next: None,
            reboot_requests: 0,
            last_reboot_trial: false,
        }
    }
}

/// See the module doc.
pub struct FileBackend {
    path: PathBuf,
}

impl FileBackend {
    /// A backend keeping its state in `path` (normally `<boot dir>/boot-state.json`).
    pub fn new(path: PathBuf) -> FileBackend {
        FileBackend { path }
    }

    /// Reads the state (the default one when the file does not exist yet).
    pub fn load(&self) -> Result<FileBootState, SlotError> {
        load(&self.path)
    }

    fn update(&self, f: impl FnOnce(&mut FileBootState)) -> Result<(), SlotError> {
        let mut st = self.load()?;
        f(&mut st);
        fsutil::write_json(&self.path, &st).map_err(|e| SlotError::io(&self.path, e))
    }
}

fn load(path: &Path) -> Result<FileBootState, SlotError> {
    Ok(fsutil::read_json(path)
        .map_err(|e| SlotError::io(path, e))?
        .unwrap_or_default())
}

/// Emulates a power-on: the one-shot trial slot is consumed if armed, else the default boots.
pub fn emulate_boot(path: &Path) -> Result<FileBootState, SlotError> {
    let mut st = load(path)?;
    if let Some(s) = st.try_next.take() {
        st.booted = s;
        st.tryboot = true;
    } else {
        st.booted = st.primary;
        st.tryboot = false;
    }
    fsutil::write_json(path, &st).map_err(|e| SlotError::io(path, e))?;
    Ok(st)
}

impl BootBackend for FileBackend {
    fn name(&self) -> &'static str {
        "file"
    }
    fn booted(&self) -> Result<Booted, SlotError> {
        let st = self.load()?;
        Ok(Booted {
            slot: st.booted,
            trial_flag: st.tryboot,
        })
    }
    fn primary(&self) -> Result<Option<Slot>, SlotError> {
        Ok(Some(self.load()?.primary))
    }
    fn prepare_install(&self, target: Slot, booted: Slot) -> Result<(), SlotError> {
        self.update(|st| {
            if st.try_next == Some(target) {
                st.try_next = None;
            }
            if st.primary == target {
                st.primary = booted;
            }
        })
    }
    fn arm_trial(&self, target: Slot, _booted: Slot) -> Result<(), SlotError> {
        self.update(|st| st.try_next = Some(target))
    }
    fn commit(&self, slot: Slot) -> Result<(), SlotError> {
        self.update(|st| {
            st.primary = slot;
            if st.try_next == Some(slot) {
                st.try_next = None;
            }
        })
    }
    fn mark_bad(&self, slot: Slot) -> Result<(), SlotError> {
        self.update(|st| {
            if st.primary == slot {
                st.primary = slot.other();
            }
            if st.try_next == Some(slot) {
                st.try_next = None;
            }
        })
    }
    fn reboot(&self, trial: bool) -> Result<(), SlotError> {
        self.update(|st| {
            st.reboot_requests += 1;
            st.last_reboot_trial = trial;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_is_one_shot_and_commit_sticks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("boot-state.json");
        let b = FileBackend::new(p.clone());
        assert_eq!(b.booted().unwrap().slot, Slot::A);
        b.prepare_install(Slot::B, Slot::A).unwrap();
        b.arm_trial(Slot::B, Slot::A).unwrap();
        let st = emulate_boot(&p).unwrap();
        assert_eq!((st.booted, st.tryboot), (Slot::B, true));
        // Power cut during the trial: the next boot is the old default again.
        let st = emulate_boot(&p).unwrap();
        assert_eq!((st.booted, st.tryboot), (Slot::A, false));
        b.arm_trial(Slot::B, Slot::A).unwrap();
        emulate_boot(&p).unwrap();
        b.commit(Slot::B).unwrap();
        let st = emulate_boot(&p).unwrap();
        assert_eq!((st.booted, st.tryboot), (Slot::B, false));
        b.mark_bad(Slot::B).unwrap();
        assert_eq!(emulate_boot(&p).unwrap().booted, Slot::A);
    }
}
