//! Installing a verified bundle into the inactive slot, with progress. The steps are numbered
//! below and in `docs/updates.md`; each names a phase that `SUPERVISOR_TEST_PAUSE_AT` can stop
//! at (tests kill -9 the process there to simulate a power cut). Invariant: the committed,
//! booted slot is never written and stays the bootloader's default until a trial is committed.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::bundle::Manifest;
use crate::config::Config;
use crate::fsutil::{self, now_unix};
use crate::lifecycle::Slots;
use crate::slots::store::SlotState;
use crate::slots::Slot;

mod arm;
mod device;
mod progress;
mod verify;
mod write;
use device::{open_target, same_file};
pub use progress::{Progress, UpdateState, UpdateStatus};
pub use verify::{verify, Verified, VerifyError, VerifyOptions};

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

impl Default for VerifyOptions {
    /// The command line's: no downgrade, the running version may be installed again.
    fn default() -> Self {
        VerifyOptions {
            allow_downgrade: false,
            downgrade_flag: crate::bundle::CLI_DOWNGRADE_FLAG,
            refuse_same_version: false,
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

/// Verifies `bundle_path` and installs it into the inactive slot, armed for a one-shot trial
/// (the command line's install: it takes the install lock itself).
pub fn install(
    cfg: &Config,
    slots: &Slots,
    bundle_path: &Path,
    opts: VerifyOptions,
    progress: &Progress,
) -> Result<InstallOutcome> {
    let _lock = InstallLock::try_take(cfg)?;
    run(cfg, slots, Bundle::Unchecked(bundle_path, opts), progress)
}

/// Installs a bundle that [`verify`] has just accepted, for a caller that already holds the
/// install lock (the update API takes it before receiving the upload, so a command-line install
/// cannot start in between, and verifies before its 202: the bundle is not verified twice).
pub fn install_verified(
    _lock: &InstallLock,
    cfg: &Config,
    slots: &Slots,
    verified: Verified,
    progress: &Progress,
) -> Result<InstallOutcome> {
    run(cfg, slots, Bundle::Checked(Box::new(verified)), progress)
}

/// What an install starts from.
enum Bundle<'a> {
    /// A path, verified at the `verify` phase.
    Unchecked(&'a Path, VerifyOptions),
    /// Already verified, under the same install lock.
    Checked(Box<Verified>),
}

/// The whole install, its status kept in `progress`: `installing`, then `installed` or `failed`.
fn run(
    cfg: &Config,
    slots: &Slots,
    bundle: Bundle<'_>,
    progress: &Progress,
) -> Result<InstallOutcome> {
    progress.set(true, |s| {
        *s = UpdateStatus {
            state: UpdateState::Installing,
            ..Default::default()
        }
    });
    let r = phases(cfg, slots, bundle, progress);
    match &r {
        Ok(o) => progress.set(true, |s| {
            s.state = UpdateState::Installed;
            s.target = Some(o.target);
        }),
        Err(e) => progress.set(true, |s| {
            s.state = UpdateState::Failed;
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
    vb: crate::bundle::VerifiedBundle,
    booted: Slot,
    slot: Slot,
    device: PathBuf,
    /// The root device, open until `sync` closes it.
    dev: Option<File>,
    boot: Option<BootTarget>,
}

impl Target {
    fn image_size(&self) -> u64 {
        self.vb.manifest.image_size
    }
}

/// The target slot's boot partition, for a bundle with a boot image.
struct BootTarget {
    path: PathBuf,
    dev: File,
    size: u64,
    sha: String,
}

/// The phases of `docs/updates.md` §3 and §5, in order, each a function named after it.
fn phases(
    cfg: &Config,
    slots: &Slots,
    bundle: Bundle<'_>,
    progress: &Progress,
) -> Result<InstallOutcome> {
    let t = verify_phase(cfg, slots, bundle, progress)?;
    prepare(cfg, slots, progress, &t)?;
    // From here on the slot holds (or may hold) a partial image: any failure marks it bad with
    // the real reason, never leaving it `installing` for the next start to call "interrupted".
    let slot = t.slot;
    after_prepare(cfg, slots, progress, t).map_err(|e| {
        let why = format!("{e:#}");
        if let Err(me) = mark_failed(slots, slot, &why) {
            tracing::error!("unable to mark slot {slot} bad after a failed install: {me:#}");
        }
        e.context(format!(
            "install into slot {slot} failed; slot {slot} marked bad"
        ))
    })
}

/// Phases 2 (bootloader part) to 8, once the store records the target as `installing`.
fn after_prepare(
    cfg: &Config,
    slots: &Slots,
    progress: &Progress,
    mut t: Target,
) -> Result<InstallOutcome> {
    slots.backend.prepare_install(t.slot, t.booted)?;
    let mut reader = write::write(cfg, progress, &mut t)?;
    write::sync(cfg, progress, &mut t)?;
    write::readback(cfg, progress, &t)?;
    let (slot, image_size) = (t.slot, t.image_size());
    if let Some(b) = t.boot.as_mut() {
        write::boot_write(cfg, progress, &mut reader, b, slot, image_size)?;
        write::boot_sync(cfg, progress, b, slot)?;
        write::boot_readback(cfg, progress, b, slot)?;
    }
    write::payload_end(&mut reader)?;
    arm::mark(cfg, slots, progress, &t)?;
    arm::arm(cfg, slots, progress, &t)?;
    arm::reboot(cfg, progress);
    Ok(InstallOutcome {
        target: t.slot,
        manifest: t.vb.manifest,
    })
}

/// Enters `phase`: recorded in the status, and the test pause point before its work.
fn enter(cfg: &Config, progress: &Progress, phase: &str) {
    progress.phase(phase);
    pause_point(cfg, phase);
}

/// Phase 1, `verify`: the bundle (unless the caller verified it under the same lock), a backup
/// of the hub database, the target devices (opened now, so a device that cannot take the bundle
/// refuses it before anything is written). Nothing is written to the slots.
fn verify_phase(
    cfg: &Config,
    slots: &Slots,
    bundle: Bundle<'_>,
    progress: &Progress,
) -> Result<Target> {
    enter(cfg, progress, "verify");
    let Verified { bundle: vb, booted } = match bundle {
        Bundle::Checked(v) => *v,
        Bundle::Unchecked(path, opts) => verify(cfg, slots, path, opts)?,
    };
    // A backup of the hub database before anything is written (never blocks the update).
    crate::backup::take(cfg, crate::backup::Trigger::PreUpdate);
    let t = open_targets(cfg, vb, booted)?;
    let m = &t.vb.manifest;
    let boot_size = t.boot.as_ref().map_or(0, |b| b.size);
    progress.set(true, |s| {
        s.version = Some(m.version.clone());
        s.target = Some(t.slot);
        s.bytes_total = m.image_size + boot_size;
    });
    Ok(t)
}

/// Opens the other slot's root device and, for a bundle with a boot image, its boot device,
/// refusing a device that is the booted slot's.
fn open_targets(cfg: &Config, vb: crate::bundle::VerifiedBundle, booted: Slot) -> Result<Target> {
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
    let boot = open_boot_target(cfg, m, booted, &device)?;
    Ok(Target {
        vb,
        booted,
        slot: target,
        device,
        dev: Some(dev),
        boot,
    })
}

/// The target's boot device, for a bundle with a boot image; `None` without one (a root-only
/// bundle on a device with boot devices keeps the target's kernel, and says so).
fn open_boot_target(
    cfg: &Config,
    m: &Manifest,
    booted: Slot,
    device: &Path,
) -> Result<Option<BootTarget>> {
    let target = booted.other();
    match (m.boot_image(), cfg.slot_boot_device(target)) {
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
            Ok(None)
        }
        (None, None) => Ok(None),
        (Some((size, sha)), Some(d)) => {
            let booted_boot = cfg.slot_boot_device(booted);
            if booted_boot.is_some_and(|b| same_file(d, b))
                || same_file(d, cfg.slot_device(booted))
                || same_file(d, device)
            {
                bail!(
                    "slot {target} boot device {} is the booted slot's boot or root device, or \
                     slot {target}'s root device",
                    d.display()
                );
            }
            Ok(Some(BootTarget {
                path: d.to_path_buf(),
                dev: open_target(d, size, &format!("slot {target} boot device"))?,
                size,
                sha: sha.to_string(),
            }))
        }
    }
}

/// Phase 2, `prepare` (store part): the store records the target as `installing` (the running
/// slot adopted as good if this is its first update). The bootloader part follows in
/// [`after_prepare`], where a failure marks the slot bad.
fn prepare(cfg: &Config, slots: &Slots, progress: &Progress, t: &Target) -> Result<()> {
    enter(cfg, progress, "prepare");
    let (booted, target, version) = (t.booted, t.slot, t.vb.manifest.version.clone());
    let running_version = slots.current_version(booted)?;
    slots.store.update(|st| {
        if st.slot(booted).state == SlotState::Unknown {
            let info = st.slot_mut(booted);
            info.state = SlotState::Good;
            info.version.clone_from(&running_version);
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
