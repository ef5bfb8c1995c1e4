//! Installing a verified bundle into the inactive slot, with progress. The steps are numbered
//! below and in `docs/updates.md`; each names a phase that `SUPERVISOR_TEST_PAUSE_AT` can stop
//! at (tests kill -9 the process there to simulate a power cut). Invariant: the committed,
//! booted slot is never written and stays the bootloader's default until a trial is committed.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::bundle::{self, Expect, Manifest, VerifiedBundle};
use crate::config::Config;
use crate::fsutil::{self, now_unix};
use crate::lifecycle::Slots;
use crate::slots::store::SlotState;
use crate::slots::Slot;

mod device;
mod progress;
mod write;
use device::{open_target, same_file};
pub use progress::{Progress, UpdateStatus};

/// Install phases, in order (the names `SUPERVISOR_TEST_PAUSE_AT` accepts).
/// The `boot-*` phases only run for a bundle that carries a boot image (format 2).
pub const PHASES: &[&str] = &[
    "verify",
    "prepare",
    "write",
    "sync",
    "readback",
    "boot-write",
    "boot-sync",
    "boot-readback",
    "mark",
    "arm",
    "reboot",
];

/// Options of [`install`].
#[derive(Debug, Clone, Copy)]
pub struct InstallOptions {
    pub allow_downgrade: bool,
    /// How the operator allows a downgrade where this install came from, for the refusal's
    /// hint: [`bundle::CLI_DOWNGRADE_FLAG`] (the default) or the API's query parameter.
    pub downgrade_flag: &'static str,
    /// The caller has just hashed the booted slot against this bundle's delta base (the update
    /// API does, to refuse a wrong base before its 202). The root slots are read-only, so the
    /// install does not read the whole base a second time before rebuilding from it.
    pub base_checked: bool,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            allow_downgrade: false,
            downgrade_flag: bundle::CLI_DOWNGRADE_FLAG,
            base_checked: false,
        }
    }
}

/// What an install did; the caller reboots (trial) unless told not to.
#[derive(Debug, Clone)]
pub struct InstallOutcome {
    pub target: Slot,
    pub manifest: Manifest,
}

/// Stops here forever when `SUPERVISOR_TEST_PAUSE_AT` names `phase` (power-cut tests).
pub fn pause_point(cfg: &Config, phase: &str) {
    if cfg.test_pause_at.as_deref() == Some(phase) {
        let marker = cfg.state_dir().join("paused-at");
        let _ = fsutil::atomic_write(&marker, phase.as_bytes());
        tracing::warn!(phase, "paused for a test (SUPERVISOR_TEST_PAUSE_AT)");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// Verifies `bundle_path` and installs it into the inactive slot, armed for a one-shot trial.
pub fn install(
    cfg: &Config,
    slots: &Slots,
    bundle_path: &Path,
    opts: InstallOptions,
    progress: &Progress,
) -> Result<InstallOutcome> {
    let lock = InstallLock::try_take(cfg)?;
    install_holding(&lock, cfg, slots, bundle_path, opts, progress)
}

/// [`install`] for a caller that already holds the install lock (the update API takes it before
/// receiving the upload, so a command-line install cannot start in between).
pub fn install_holding(
    _lock: &InstallLock,
    cfg: &Config,
    slots: &Slots,
    bundle_path: &Path,
    opts: InstallOptions,
    progress: &Progress,
) -> Result<InstallOutcome> {
    progress.set(true, |s| {
        *s = UpdateStatus {
            state: "installing".into(),
            ..Default::default()
        }
    });
    let r = install_locked(cfg, slots, bundle_path, opts, progress);
    match &r {
        Ok(o) => progress.set(true, |s| {
            s.state = "installed".into();
            s.target = Some(o.target);
        }),
        Err(e) => progress.set(true, |s| {
            s.state = "failed".into();
            s.error = Some(format!("{e:#}"));
        }),
    }
    r
}

/// The exclusive install lock (`flock` on `<state>/install.lock`): one install at a time,
/// whether it came from the API or the command line; released when dropped (or the process dies).
pub struct InstallLock(#[allow(dead_code)] nix::fcntl::Flock<File>);

/// Why the install lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another install is already running")]
    Busy,
    #[error("unable to open the install lock {path}: {err}")]
    Open { path: PathBuf, err: std::io::Error },
}

impl InstallLock {
    /// Takes the lock without waiting.
    pub fn try_take(cfg: &Config) -> Result<InstallLock, LockError> {
        let dir = cfg.state_dir();
        let path = dir.join("install.lock");
        let open = |err| LockError::Open {
            path: path.clone(),
            err,
        };
        std::fs::create_dir_all(&dir).map_err(open)?;
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(open)?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map(InstallLock)
            .map_err(|_| LockError::Busy)
    }
}

/// The checked bundle and the opened devices of the slot it goes to.
struct Target {
    vb: VerifiedBundle,
    booted: Slot,
    slot: Slot,
    device: PathBuf,
    dev: File,
    boot: Option<BootTarget>,
}

/// The target slot's boot partition, for a bundle with a boot image.
struct BootTarget {
    path: PathBuf,
    dev: File,
    size: u64,
    sha: String,
}

fn install_locked(
    cfg: &Config,
    slots: &Slots,
    bundle_path: &Path,
    opts: InstallOptions,
    progress: &Progress,
) -> Result<InstallOutcome> {
    // 1. verify: signature, board, version, payload checksum. Nothing is written before this.
    progress.phase("verify");
    pause_point(cfg, "verify");
    let t = check_and_open(cfg, slots, bundle_path, opts)?;
    let m = &t.vb.manifest;
    let boot_size = t.boot.as_ref().map_or(0, |b| b.size);
    progress.set(true, |s| {
        s.version = Some(m.version.clone());
        s.target = Some(t.slot);
        s.bytes_total = m.image_size + boot_size;
    });

    // 2. prepare: record the slot as being written, make sure the bootloader cannot pick it.
    progress.phase("prepare");
    pause_point(cfg, "prepare");
    open_slot(slots, &t)?;
    // From here on the slot holds (or may hold) a partial image: any failure marks it bad with
    // the real reason, never leaving it `installing` for the next start to call "interrupted".
    let slot = t.slot;
    write::write_and_arm(cfg, slots, progress, t).map_err(|e| {
        let why = format!("{e:#}");
        if let Err(me) = mark_failed(slots, slot, &why) {
            tracing::error!("unable to mark slot {slot} bad after a failed install: {me:#}");
        }
        e.context(format!(
            "install into slot {slot} failed; slot {slot} marked bad"
        ))
    })
}

/// Step 1: every check of the bundle, the trial, and the target devices (opened now, so a
/// device that cannot take the bundle refuses it before anything is written).
fn check_and_open(
    cfg: &Config,
    slots: &Slots,
    bundle_path: &Path,
    opts: InstallOptions,
) -> Result<Target> {
    let key_path = cfg
        .public_key
        .as_deref()
        .context("SUPERVISOR_PUBLIC_KEY is not set: cannot verify bundles")?;
    let key = bundle::load_verifying_key(key_path)?;
    let booted = slots.backend.booted()?.slot;
    let status = slots.store.load()?;
    if let Some(t) = status.trial.as_ref().filter(|t| t.slot == booted) {
        bail!(
            "a trial of slot {} is in progress: wait for its commit or roll back first",
            t.slot
        );
    }
    let mut vb = bundle::verify(
        bundle_path,
        &Expect {
            key: &key,
            board: &cfg.board,
            board_from: bundle::BOARD_OF_DEVICE,
            current_version: slots.current_version(booted)?.as_deref(),
            allow_downgrade: opts.allow_downgrade,
            downgrade_flag: opts.downgrade_flag,
        },
    )?;
    // A delta is rebuilt from the booted slot: its content must be the named base.
    let base = cfg.slot_device(booted);
    if opts.base_checked {
        vb.use_checked_base(base);
    } else {
        vb.check_base(base, &format!("booted slot {booted}"))?;
    }
    // A backup of the hub database before anything is written (never blocks the update).
    crate::backup::take(cfg, crate::backup::Trigger::PreUpdate);
    let m = &vb.manifest;
    let target = booted.other();
    let device = cfg.slot_device(target).to_path_buf();
    if same_file(&device, cfg.slot_device(booted)) {
        bail!(
            "slot {target} device {} is the booted slot's device",
            device.display()
        );
    }
    let dev = open_target(&device, m.image_size, &format!("slot {target}"))?;
    let boot = match (m.boot_image(), cfg.slot_boot_device(target)) {
        (Some(_), None) => bail!(
            "bundle {} carries a boot partition image (kernel) but this device has no slot boot \
             devices configured (SUPERVISOR_SLOT_A_BOOT_DEVICE, SUPERVISOR_SLOT_B_BOOT_DEVICE): \
             refusing to install a root filesystem without its kernel",
            m.version
        ),
        (None, Some(d)) => {
            tracing::warn!(
                boot_device = %d.display(),
                "bundle {} carries no boot image (format {}): slot {target} keeps its current boot partition and kernel",
                m.version,
                m.format
            );
            None
        }
        (None, None) => None,
        (Some((size, sha)), Some(d)) => {
            let booted_boot = cfg.slot_boot_device(booted);
            if booted_boot.is_some_and(|b| same_file(d, b))
                || same_file(d, cfg.slot_device(booted))
                || same_file(d, &device)
            {
                bail!(
                    "slot {target} boot device {} is the booted slot's boot or root device, or \
                     slot {target}'s root device",
                    d.display()
                );
            }
            Some(BootTarget {
                path: d.to_path_buf(),
                dev: open_target(d, size, &format!("slot {target} boot device"))?,
                size,
                sha: sha.to_string(),
            })
        }
    };
    Ok(Target {
        vb,
        booted,
        slot: target,
        device,
        dev,
        boot,
    })
}

/// Step 2: the store records the target as `installing` (the running slot adopted as good
/// if this is its first update).
fn open_slot(slots: &Slots, t: &Target) -> Result<()> {
    let (booted, target, version) = (t.booted, t.slot, t.vb.manifest.version.clone());
    let running_version = slots.current_version(booted)?;
    slots.store.update(|st| {
        if st.slot(booted).state == SlotState::Unknown {
            let info = st.slot_mut(booted);
            info.state = SlotState::Good;
            info.version = running_version.clone();
            info.committed_at = Some(now_unix());
            st.log(
                &slots.boot_id,
                booted,
                "adopt",
                "running slot adopted as good before its first update",
            );
        }
        if st.trial.as_ref().is_some_and(|t| t.slot == target) {
            st.trial = None;
        }
        let info = st.slot_mut(target);
        info.state = SlotState::Installing;
        info.version = Some(version.clone());
        info.sha256 = None;
        info.reason = None;
        st.log(
            &slots.boot_id,
            target,
            "install-start",
            format!("writing version {version}"),
        );
    })?;
    Ok(())
}

/// Marks `slot` bad with `why`, in the store (dropping a trial recorded for it) and then in
/// the bootloader (best effort: the failure may be the bootloader's own).
fn mark_failed(slots: &Slots, slot: Slot, why: &str) -> Result<()> {
    slots.store.update(|st| {
        let info = st.slot_mut(slot);
        info.state = SlotState::Bad;
        info.reason = Some(why.to_string());
        if st.trial.as_ref().is_some_and(|t| t.slot == slot) {
            st.trial = None;
        }
        st.log(&slots.boot_id, slot, "install-failed", why);
    })?;
    if let Err(e) = slots.backend.mark_bad(slot) {
        tracing::warn!("unable to mark slot {slot} bad in the bootloader: {e}");
    }
    Ok(())
}
