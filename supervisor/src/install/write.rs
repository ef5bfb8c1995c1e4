//! Install steps 2 (bootloader part) to 7, run once the slot store records the target as
//! `installing`: make the slot unbootable, stream the images, sync, read back, mark, arm. Any
//! error returned from here makes the caller mark the slot bad with that error as the reason.

use std::fs::File;
use std::io::{Read, Write};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::device::{foreign_slot_label, read_back, EXT4_LABEL_END};
use super::{pause_point, BootTarget, InstallOutcome, Progress, Target};
use crate::bundle;
use crate::config::Config;
use crate::fsutil::{self, now_unix};
use crate::lifecycle::Slots;
use crate::slots::store::{SlotState, Trial};

/// Steps 2 (bootloader) to 7 for an opened target.
pub(super) fn write_and_arm(
    cfg: &Config,
    slots: &Slots,
    progress: &Progress,
    t: Target,
) -> Result<InstallOutcome> {
    let Target {
        vb,
        booted,
        slot: target,
        device,
        mut dev,
        mut boot,
    } = t;
    let m = vb.manifest.clone();
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
        bail!(
            "decompressed root image does not match the manifest ({} bytes, sha256 {}; the \
             manifest says {} bytes, sha256 {})",
            written.0,
            written.1,
            m.image_size,
            m.image_sha256
        );
    }

    // 4. sync: the image is on the medium before anything points at it.
    progress.phase("sync");
    pause_point(cfg, "sync");
    dev.sync_all()
        .with_context(|| format!("unable to fsync slot {target} ({})", device.display()))?;
    drop(dev);

    // 5. readback: read what the medium holds and compare with the signed checksum.
    progress.phase("readback");
    pause_point(cfg, "readback");
    if read_back(&device, m.image_size)? != m.image_sha256 {
        bail!("slot {target} read-back checksum mismatch: the medium may be failing");
    }

    // 5a-c. boot-write, boot-sync, boot-readback: the same for the slot's boot partition. The
    // slot is still `installing` (unbootable) until both images are verified.
    if let Some(b) = boot.as_mut() {
        write_boot(cfg, progress, &mut reader, b, target, m.image_size)?;
    }
    drop(boot);
    // Nothing may follow the images in the payload.
    let mut extra = [0u8; 1];
    if reader.read(&mut extra).map_err(bundle::payload_error)? != 0 {
        bail!("bundle payload holds more than the manifest's images");
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
                "version {} written and verified{}; armed for one trial boot",
                m.version,
                if m.delta_base().is_some() {
                    format!(" (rebuilt from a delta against slot {booted})")
                } else {
                    String::new()
                }
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

/// Steps 5a-c: the boot image, after refusing one built for the other slot.
fn write_boot(
    cfg: &Config,
    progress: &Progress,
    reader: &mut impl Read,
    b: &mut BootTarget,
    target: crate::slots::Slot,
    offset: u64,
) -> Result<()> {
    progress.phase("boot-write");
    // The image's first bytes (ext4 superblock) say whose boot partition it was built as.
    let mut head = Vec::new();
    (&mut *reader)
        .take(b.size.min(EXT4_LABEL_END))
        .read_to_end(&mut head)
        .map_err(bundle::payload_error)?;
    if let Some(other) = foreign_slot_label(&head, target) {
        bail!(
            "boot image is an ext4 file system labelled boot{other}, built for slot {other} \
             (its cmdline.env names root{other}): refusing to write it to slot {target}"
        );
    }
    let written = stream_image(
        cfg,
        progress,
        &mut std::io::Cursor::new(head).chain(reader),
        &mut b.dev,
        (b.size, offset),
        "boot-write",
    )?;
    if written != (b.size, b.sha.clone()) {
        bail!("decompressed boot image does not match the manifest");
    }
    progress.phase("boot-sync");
    pause_point(cfg, "boot-sync");
    b.dev.sync_all().with_context(|| {
        format!(
            "unable to fsync slot {target}'s boot device ({})",
            b.path.display()
        )
    })?;
    progress.phase("boot-readback");
    pause_point(cfg, "boot-readback");
    if read_back(&b.path, b.size)? != b.sha {
        bail!(
            "slot {target} boot partition read-back checksum mismatch: the medium may be failing"
        );
    }
    Ok(())
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
        let n = src.read(&mut buf).map_err(bundle::payload_error)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        dev.write_all(&buf[..n]).with_context(|| {
            format!(
                "unable to write the {} image at byte {}",
                if phase == "write" { "root" } else { "boot" },
                done
            )
        })?;
        done += n as u64;
        progress.set(false, |s| s.bytes_done = offset + done);
        if !paused_mid_write && done * 2 >= len {
            paused_mid_write = true;
            pause_point(cfg, phase);
        }
    }
    Ok((done, fsutil::hex(&hasher.finalize())))
}
