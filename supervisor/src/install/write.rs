//! Install phases 3 to 5c (`docs/updates.md` §3): `write`, `sync` and `readback` of the root
//! image, then `boot-write`, `boot-sync` and `boot-readback` of the boot image. Any error
//! returned from here makes the caller mark the slot bad with that error as the reason.

use std::fs::File;
use std::io::{Read, Write};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::device::{foreign_slot_label, read_back, EXT4_LABEL_END};
use super::{enter, pause_point, BootTarget, Progress, Target};
use crate::bundle;
use crate::config::Config;
use crate::fsutil;
use crate::slots::Slot;

/// The decompressed images (root, then boot), read once from the payload.
pub(super) type Images = Box<dyn Read + Send>;

/// Phase 3, `write`: stream the decompressed root image (a delta: rebuilt from the booted
/// slot) into the target, hashing what goes out. Returns the images' reader, at the boot image.
pub(super) fn write(cfg: &Config, progress: &Progress, t: &mut Target) -> Result<Images> {
    progress.phase("write");
    let m = &t.vb.manifest;
    let mut reader = t.vb.image_reader()?;
    let dev = t.dev.as_mut().context("slot device already closed")?;
    let written = stream_image(cfg, progress, &mut reader, dev, (m.image_size, 0), "write")?;
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
    Ok(reader)
}

/// Phase 4, `sync`: the image is on the medium before anything points at it.
pub(super) fn sync(cfg: &Config, progress: &Progress, t: &mut Target) -> Result<()> {
    enter(cfg, progress, "sync");
    if let Some(dev) = t.dev.take() {
        dev.sync_all()
            .with_context(|| format!("unable to fsync slot {} ({})", t.slot, t.device.display()))?;
    }
    Ok(())
}

/// Phase 5, `readback`: read what the medium holds and compare with the signed checksum.
pub(super) fn readback(cfg: &Config, progress: &Progress, t: &Target) -> Result<()> {
    enter(cfg, progress, "readback");
    let m = &t.vb.manifest;
    if read_back(&t.device, m.image_size)? != m.image_sha256 {
        bail!(
            "slot {} read-back checksum mismatch: the medium may be failing",
            t.slot
        );
    }
    Ok(())
}

/// Phase 5a, `boot-write`: the boot image, after refusing one built for the other slot. The
/// slot is still `installing` (unbootable) until both images are verified.
pub(super) fn boot_write(
    cfg: &Config,
    progress: &Progress,
    reader: &mut Images,
    b: &mut BootTarget,
    target: Slot,
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
    Ok(())
}

/// Phase 5b, `boot-sync`: fsync the boot device.
pub(super) fn boot_sync(
    cfg: &Config,
    progress: &Progress,
    b: &BootTarget,
    target: Slot,
) -> Result<()> {
    enter(cfg, progress, "boot-sync");
    b.dev.sync_all().with_context(|| {
        format!(
            "unable to fsync slot {target}'s boot device ({})",
            b.path.display()
        )
    })
}

/// Phase 5c, `boot-readback`: re-read the boot device and compare with the signed checksum.
pub(super) fn boot_readback(
    cfg: &Config,
    progress: &Progress,
    b: &BootTarget,
    target: Slot,
) -> Result<()> {
    enter(cfg, progress, "boot-readback");
    if read_back(&b.path, b.size)? != b.sha {
        bail!(
            "slot {target} boot partition read-back checksum mismatch: the medium may be failing"
        );
    }
    Ok(())
}

/// After the images: nothing may follow them in the payload.
pub(super) fn payload_end(reader: &mut Images) -> Result<()> {
    let mut extra = [0u8; 1];
    if reader.read(&mut extra).map_err(bundle::payload_error)? != 0 {
        bail!("bundle payload holds more than the manifest's images");
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
