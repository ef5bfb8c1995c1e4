//! Slot devices (root and boot partitions, plain files in tests): opening with a size check,
//! reading back, and recognising a boot image built for the other slot.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::fsutil;
use crate::slots::Slot;

/// End of the ext4 volume label (superblock at 1024: magic at +56, `s_volume_name[16]` at +120).
pub(super) const EXT4_LABEL_END: u64 = 1024 + 120 + 16;

/// If `head` starts an ext4 file system labelled `bootA`/`bootB` for the *other* slot, that
/// slot. The image's partitions are built per slot (`image/assemble`: label `boot<s>`,
/// `cmdline.env` with `root=PARTLABEL=root<s>`), so such an image would boot the wrong root.
pub(super) fn foreign_slot_label(head: &[u8], target: Slot) -> Option<Slot> {
    let magic = head.get(1024 + 56..1024 + 58)?;
    if magic != [0x53, 0xef] {
        return None;
    }
    let label = head.get(1024 + 120..1024 + 136)?;
    let label = label.split(|b| *b == 0).next().unwrap_or_default();
    let slot = match label {
        b"bootA" => Slot::A,
        b"bootB" => Slot::B,
        _ => return None,
    };
    (slot != target).then_some(slot)
}

/// Opens a slot's (root or boot) device for writing; a block device must hold `len` bytes.
pub(super) fn open_target(path: &Path, len: u64, what: &str) -> Result<File> {
    let mut f = OpenOptions::new()
        .write(true)
        .read(true)
        .open(path)
        .with_context(|| format!("unable to open {what} {}", path.display()))?;
    if is_block_device(&f) {
        let size = f.seek(SeekFrom::End(0))?;
        if size < len {
            bail!("image ({len} bytes) does not fit {what} ({size} bytes)");
        }
        f.seek(SeekFrom::Start(0))?;
    }
    Ok(f)
}

pub(super) fn read_back(device: &Path, len: u64) -> Result<String> {
    let f = File::open(device).with_context(|| format!("unable to reopen {}", device.display()))?;
    let mut hasher = Sha256::new();
    let n = std::io::copy(&mut f.take(len), &mut hasher).context("unable to read the slot back")?;
    if n != len {
        bail!("slot holds only {n} of {len} bytes after writing");
    }
    Ok(fsutil::hex(&hasher.finalize()))
}

pub(super) fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn is_block_device(f: &File) -> bool {
    use std::os::unix::fs::FileTypeExt;
    f.metadata().is_ok_and(|m| m.file_type().is_block_device())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext4_head(label: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; usize::try_from(EXT4_LABEL_END).unwrap()];
        h[1024 + 56..1024 + 58].copy_from_slice(&[0x53, 0xef]);
        h[1024 + 120..1024 + 120 + label.len()].copy_from_slice(label);
        h
    }

    #[test]
    fn boot_images_labelled_for_the_other_slot_are_recognised() {
        assert_eq!(
            foreign_slot_label(&ext4_head(b"bootA"), Slot::B),
            Some(Slot::A)
        );
        assert_eq!(
            foreign_slot_label(&ext4_head(b"bootB"), Slot::A),
            Some(Slot::B)
        );
        assert_eq!(foreign_slot_label(&ext4_head(b"bootB"), Slot::B), None);
        assert_eq!(foreign_slot_label(&ext4_head(b"boot"), Slot::B), None);
        assert_eq!(foreign_slot_label(&ext4_head(b"bootAB"), Slot::B), None);
        let mut not_ext4 = ext4_head(b"bootA");
        not_ext4[1024 + 56] = 0;
        assert_eq!(foreign_slot_label(&not_ext4, Slot::B), None);
        assert_eq!(foreign_slot_label(b"short", Slot::B), None);
    }
}
