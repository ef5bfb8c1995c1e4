//! The bases of a delta bundle (`docs/updates.md` §2.1): before a delta is rebuilt, the first
//! bytes of the booted slot's root device (and, for format 4, of its boot partition) must hash
//! to what the signed manifest names. A mismatch is refused with both hashes, before anything
//! is written.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{io_err, BundleError, Manifest, VerifiedBundle};
use crate::fsutil;

/// A delta bundle's base is not what the device (or `--base`/`--boot-base`) holds.
#[derive(Debug)]
pub struct BaseMismatch {
    pub version: String,
    /// Which base: "base image" (the root) or "boot base image".
    pub kind: &'static str,
    /// What was hashed, in words ("booted slot A (/dev/mmcblk0p2)").
    pub what: String,
    pub size: u64,
    pub expected: String,
    /// "sha256 <hex>", or "only N bytes" when it is shorter than the base.
    pub got: String,
    /// ", version V" when the manifest names the base's version.
    pub base_version: String,
}

impl std::fmt::Display for BaseMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "delta bundle {} applies only to {} sha256 {} ({} bytes{}), but {} holds {}: \
             nothing was written; install the full bundle of {} instead",
            self.version,
            self.kind,
            self.expected,
            self.size,
            self.base_version,
            self.what,
            self.got,
            self.version
        )
    }
}

/// Hashes the first `size` bytes of `path`; a mismatch with `sha` (or a shorter file) is a
/// [`BundleError::BaseMismatch`] naming both.
fn check_prefix(
    m: &Manifest,
    kind: &'static str,
    (size, sha): (u64, &str),
    path: &Path,
    what: &str,
) -> Result<(), BundleError> {
    let f = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let n = io::copy(&mut BufReader::new(f).take(size), &mut hasher).map_err(io_err(path))?;
    let got = fsutil::hex(&hasher.finalize());
    if n == size && got == sha {
        return Ok(());
    }
    Err(BundleError::BaseMismatch(Box::new(BaseMismatch {
        version: m.version.clone(),
        kind,
        what: format!("{what} ({})", path.display()),
        size,
        expected: sha.to_string(),
        got: if n == size {
            format!("sha256 {got}")
        } else {
            format!("only {n} bytes")
        },
        base_version: m
            .delta_base_version
            .as_deref()
            .map(|v| format!(", version {v}"))
            .unwrap_or_default(),
    })))
}

impl VerifiedBundle {
    /// For a delta: checks that the first bytes of `base` (the booted slot's device on a
    /// device) are the base image the manifest names, and remembers `base` for
    /// [`VerifiedBundle::image_reader`]. `what` names `base` in the refusal. A full bundle
    /// needs no base: Ok without reading anything.
    pub fn check_base(&mut self, base: &Path, what: &str) -> Result<(), BundleError> {
        let Some(named) = self.manifest.delta_base() else {
            return Ok(());
        };
        check_prefix(&self.manifest, "base image", named, base, what)?;
        self.base = Some(base.to_path_buf());
        Ok(())
    }

    /// For a format 4 delta: the same check of the boot base against `boot_base` (the booted
    /// slot's boot partition on a device); `None` (no boot devices configured) is refused with
    /// [`BundleError::NoBootBase`]. Any other bundle: Ok without reading anything.
    pub fn check_boot_base(
        &mut self,
        boot_base: Option<&Path>,
        what: &str,
    ) -> Result<(), BundleError> {
        let Some(named) = self.manifest.delta_boot_base() else {
            return Ok(());
        };
        let path =
            boot_base.ok_or_else(|| BundleError::NoBootBase(self.manifest.version.clone()))?;
        check_prefix(&self.manifest, "boot base image", named, path, what)?;
        self.boot_base = Some(path.to_path_buf());
        Ok(())
    }
}
