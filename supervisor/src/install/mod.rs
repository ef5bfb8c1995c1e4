//! Installing a verified bundle into the inactive slot, with progress. The steps are numbered
//! below and in `docs/updates.md`; each names a phase that `SUPERVISOR_TEST_PAUSE_AT` can stop
//! at (tests kill -9 the process there to simulate a power cut). Invariant: the committed,
//! booted slot is never written and stays the bootloader's default until a trial is committed.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bundle::{self, Expect, Manifest};
use crate::config::Config;
use crate::fsutil::{self, now_unix};
use crate::lifecycle::Slots;
use crate::slots::store::{SlotState, Trial};
use crate::slots::Slot;

mod device;
use device::{foreign_slot_label, open_target, read_back, same_file, EXT4_LABEL_END};

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

/// Progress of the current or last update, as `GET /update/status` and `status` show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// idle, receiving, installing, installed, failed.
    pub state: String,
    pub phase: Option<String>,
    pub version: Option<String>,
    pub target: Option<Slot>,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub percent: u32,
    pub error: Option<String>,
    pub updated_at: u64,
}

/// Shared progress, mirrored to `<state>/update-status.json` at every phase change.
pub struct Progress {
    path: PathBuf,
    inner: Mutex<UpdateStatus>,
}

impl Progress {
    /// Progress persisted in `state_dir`.
    pub fn new(state_dir: &Path) -> Progress {
        let path = state_dir.join("update-status.json");
        let inner = fsutil::read_json(&path)
            .ok()
            .flatten()
            .unwrap_or(UpdateStatus {
                state: "idle".into(),
                ..Default::default()
            });
        Progress {
            path,
            inner: Mutex::new(inner),
        }
    }

    /// A copy of the current status.
    pub fn get(&self) -> UpdateStatus {
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
        let cur = self.get();
        if matches!(cur.state.as_str(), "receiving" | "installing") {
            let phase = cur.phase.clone().unwrap_or_else(|| "receive".into());
            self.set(true, |s| {
                s.state = "interrupted".into();
                s.error = Some(format!(
                    "the supervisor stopped during phase {phase} (power loss, kill or restart)"
                ));
            });
        }
    }

    fn phase(&self, phase: &str) {
        tracing::info!(phase, "install phase");
        self.set(true, |s| s.phase = Some(phase.to_string()));
    }
}

/// Options of [`install`].
#[derive(Debug, Clone, Copy, Default)]
pub struct InstallOptions {
    pub allow_downgrade: bool,
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
    let _lock = take_install_lock(cfg)?;
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

fn take_install_lock(cfg: &Config) -> Result<nix::fcntl::Flock<File>> {
    let dir = cfg.state_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("unable to create {}", dir.display()))?;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("install.lock"))
        .context("unable to open the install lock")?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| anyhow::anyhow!("another install is already running"))
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
    let vb = bundle::verify(
        bundle_path,
        &Expect {
            key: &key,
            board: &cfg.board,
            current_version: slots.current_version(booted)?.as_deref(),
            allow_downgrade: opts.allow_downgrade,
        },
    )?;
    // A backup of the hub database before anything is written (never blocks the update).
    crate::backup::take(cfg, crate::backup::Trigger::PreUpdate);
    let m = vb.manifest.clone();
    let target = booted.other();
    let device = cfg.slot_device(target).to_path_buf();
    if same_file(&device, cfg.slot_device(booted)) {
        bail!(
            "slot {target} device {} is the booted slot's device",
            device.display()
        );
    }
    let mut dev = open_target(&device, m.image_size, &format!("slot {target}"))?;
    // The slot's boot partition, when the bundle carries a boot image: checked and opened now,
    // so a device that cannot take it refuses the bundle before anything is written.
    let mut boot = match (m.boot_image(), cfg.slot_boot_device(target)) {
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
            let f = open_target(d, size, &format!("slot {target} boot device"))?;
            Some((d.to_path_buf(), f, size, sha.to_string()))
        }
    };
    let boot_size = boot.as_ref().map_or(0, |b| b.2);
    progress.set(true, |s| {
        s.version = Some(m.version.clone());
        s.target = Some(target);
        s.bytes_total = m.image_size + boot_size;
    });

    // 2. prepare: record the slot as being written, make sure the bootloader cannot pick it.
    progress.phase("prepare");
    pause_point(cfg, "prepare");
    let running_version = slots.current_version(booted)?;
    slots.store.update(|st| {
        // The running slot is the fallback: record it as good if this is its first update.
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
        info.version = Some(m.version.clone());
        info.sha256 = None;
        info.reason = None;
        st.log(
            &slots.boot_id,
            target,
            "install-start",
            format!("writing version {}", m.version),
        );
    })?;
    slots.backend.prepare_install(target, booted)?;

    // 3. write: stream the decompressed root image into the slot, hashing what goes out.
    progress.phase("write");
    let mut reader = vb.image_reader()?;
    let written = stream_image(
        cfg,
        progress,
        &mut reader,
        &mut dev,
        (m.image_size, 0),
        "write",
    )?;
    if written != (m.image_size, m.image_sha256.clone()) {
        mark_failed(
            slots,
            target,
            "decompressed image does not match the manifest",
        )?;
        bail!("decompressed image does not match the manifest: slot {target} left unbootable");
    }

    // 4. sync: the image is on the medium before anything points at it.
    progress.phase("sync");
    pause_point(cfg, "sync");
    dev.sync_all().context("unable to fsync the slot")?;
    drop(dev);

    // 5. readback: read what the medium holds and compare with the signed checksum.
    progress.phase("readback");
    pause_point(cfg, "readback");
    let back = read_back(&device, m.image_size)?;
    if back != m.image_sha256 {
        mark_failed(slots, target, "read-back checksum mismatch")?;
        bail!("slot {target} read-back checksum mismatch: the medium may be failing");
    }

    // 5a-c. boot-write, boot-sync, boot-readback: the same for the slot's boot partition. The
    // slot is still `installing` (unbootable) until both images are verified.
    if let Some((boot_path, boot_dev, size, sha)) = boot.as_mut() {
        progress.phase("boot-write");
        // The image's first bytes (ext4 superblock) say whose boot partition it was built as.
        let mut head = Vec::new();
        (&mut reader)
            .take((*size).min(EXT4_LABEL_END))
            .read_to_end(&mut head)
            .context("unable to decompress the boot image")?;
        if let Some(other) = foreign_slot_label(&head, target) {
            let why = format!(
                "boot image is an ext4 file system labelled boot{other}, built for slot {other} \
                 (its cmdline.env names root{other}): refusing to write it to slot {target}"
            );
            mark_failed(slots, target, &why)?;
            bail!("{why}; slot {target} left unbootable");
        }
        let written = stream_image(
            cfg,
            progress,
            &mut std::io::Cursor::new(head).chain(&mut reader),
            boot_dev,
            (*size, m.image_size),
            "boot-write",
        )?;
        if written != (*size, sha.clone()) {
            mark_failed(
                slots,
                target,
                "decompressed boot image does not match the manifest",
            )?;
            bail!("decompressed boot image does not match the manifest: slot {target} left unbootable");
        }
        progress.phase("boot-sync");
        pause_point(cfg, "boot-sync");
        boot_dev
            .sync_all()
            .context("unable to fsync the slot boot device")?;
        progress.phase("boot-readback");
        pause_point(cfg, "boot-readback");
        if read_back(boot_path, *size)? != *sha {
            mark_failed(slots, target, "boot partition read-back checksum mismatch")?;
            bail!("slot {target} boot partition read-back checksum mismatch: the medium may be failing");
        }
    }
    drop(boot);
    // Nothing may follow the images in the payload.
    let mut extra = [0u8; 1];
    if reader
        .read(&mut extra)
        .context("unable to decompress the payload")?
        != 0
    {
        mark_failed(
            slots,
            target,
            "payload holds more than the manifest's images",
        )?;
        bail!("payload holds more than the manifest's images: slot {target} left unbootable");
    }

    // 6. mark: the store records the new content and the armed trial (before the bootloader).
    progress.phase("mark");
    pause_point(cfg, "mark");
    slots.store.update(|st| {
        let info = st.slot_mut(target);
        info.state = SlotState::Trying;
        info.sha256 = Some(m.image_sha256.clone());
        info.size = Some(m.image_size);
        info.installed_at = Some(now_unix());
        info.install_count += 1;
        if let Some((size, sha)) = m.boot_image() {
            st.log(
                &slots.boot_id,
                target,
                "install-boot",
                format!("boot partition written and verified ({size} bytes, sha256 {sha})"),
            );
        }
        st.trial = Some(Trial {
            slot: target,
            previous: booted,
            version: Some(m.version.clone()),
            armed_at: now_unix(),
            armed_boot_id: slots.boot_id.clone(),
            attempts: 0,
            boot_ids: Vec::new(),
            boot_started_uptime_ms: None,
        });
        st.log(
            &slots.boot_id,
            target,
            "install",
            format!(
                "version {} written and verified; armed for one trial boot",
                m.version
            ),
        );
    })?;

    // 7. arm: the bootloader tries the slot once at the next boot.
    progress.phase("arm");
    pause_point(cfg, "arm");
    slots.backend.arm_trial(target, booted)?;

    // 8. reboot (done by the caller, after stopping the hub).
    progress.phase("reboot");
    pause_point(cfg, "reboot");
    Ok(InstallOutcome {
        target,
        manifest: m,
    })
}

/// Streams the next `len` decompressed bytes into `dev`, hashing them; pauses at `phase` half
/// way (power-cut tests). `offset` is the progress already counted. Returns what was written
/// (fewer bytes than `len` when the payload ends early).
fn stream_image(
    cfg: &Config,
    progress: &Progress,
    reader: &mut impl Read,
    dev: &mut File,
    (len, offset): (u64, u64),
    phase: &str,
) -> Result<(u64, String)> {
    let mut src = reader.take(len);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    let mut paused_mid_write = false;
    loop {
        let n = src
            .read(&mut buf)
            .context("unable to decompress the image")?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        dev.write_all(&buf[..n])
            .with_context(|| format!("unable to write during {phase}"))?;
        done += n as u64;
        progress.set(false, |s| s.bytes_done = offset + done);
        if !paused_mid_write && done * 2 >= len {
            paused_mid_write = true;
            pause_point(cfg, phase);
        }
    }
    Ok((done, fsutil::hex(&hasher.finalize())))
}

fn mark_failed(slots: &Slots, slot: Slot, why: &str) -> Result<()> {
    slots.store.update(|st| {
        let info = st.slot_mut(slot);
        info.state = SlotState::Bad;
        info.reason = Some(why.to_string());
        st.log(&slots.boot_id, slot, "install-failed", why);
    })?;
    Ok(())
}
