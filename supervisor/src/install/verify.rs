//! The one check of a bundle against this device, shared by the command line (`install`), the
//! update API (`POST /update`, before its 202) and the install itself: the public key, the trial
//! state, every bundle check of `docs/updates.md` §2 (signature, board, version, payload) and,
//! for a delta, the booted slot's content (and, format 4, its boot partition) as its base (§2.1). The API passes the result into the
//! install, so an upload is verified once.
//!
//! [`VerifyError`] tells the bundle's faults (the sender can fix them: HTTP 400 or 409) from the
//! faults of this box (no key configured, a key file that cannot be read, a disk or bootloader
//! error: HTTP 500, logged), which another bundle would not fix.

use std::path::Path;

use crate::bundle::{self, BundleError, Expect, VerifiedBundle};
use crate::config::Config;
use crate::lifecycle::Slots;
use crate::types::Slot;

/// How the caller wants the bundle checked.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions {
    pub allow_downgrade: bool,
    /// How the operator allows a downgrade where this install came from, for the refusal's
    /// hint: [`bundle::CLI_DOWNGRADE_FLAG`] or [`bundle::API_DOWNGRADE_FLAG`].
    pub downgrade_flag: &'static str,
    /// Refuse the running version ([`VerifyError::SameVersion`]): installing it again would
    /// overwrite the fallback slot with a copy of the running system (the API, without `force`).
    pub refuse_same_version: bool,
}

/// A bundle checked for this device: signature, board, version, payload and, for a delta, its
/// base (the booted slot's content, remembered for the rebuild).
#[derive(Debug)]
pub struct Verified {
    pub bundle: VerifiedBundle,
    /// The slot that runs now (the install writes the other one).
    pub booted: Slot,
}

/// Why a bundle is not installed. [`VerifyError::is_box_fault`] says whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The bundle itself is refused: not a bundle, truncated, bad manifest, bad signature,
    /// another board, a downgrade, a payload that does not match its checksum.
    #[error("{0}")]
    Bundle(BundleError),
    /// A delta bundle whose base is not what the booted slot holds: the full bundle would do.
    #[error("{0}")]
    WrongBase(BundleError),
    /// The booted slot is itself on trial: wait for its commit or rollback.
    #[error("a trial of slot {0} is in progress: wait for its commit or roll back first")]
    TrialInProgress(Slot),
    /// The bundle's version is the running one (refused only when asked, see [`VerifyOptions`]).
    #[error(
        "version {version} is already running in slot {booted}: installing it again would \
         overwrite the fallback slot {other}; add ?force=1 to do it anyway",
        other = booted.other()
    )]
    SameVersion { version: String, booted: Slot },
    /// This box has no public key: it cannot verify any bundle.
    #[error(
        "SUPERVISOR_PUBLIC_KEY is not set: this device cannot verify bundles (see \
         docs/configuration.md)"
    )]
    NoKey,
    /// The configured public key cannot be read or is not a key.
    #[error("the public key (SUPERVISOR_PUBLIC_KEY) cannot be used: {0}")]
    Key(BundleError),
    /// A fault of this box while checking: reading the bundle or the booted slot failed, or the
    /// slot store or bootloader could not be read.
    #[error("this device failed while checking the bundle: {0:#}")]
    Device(anyhow::Error),
}

impl VerifyError {
    /// True for a fault of this box (no key, unreadable key, I/O, slot store, bootloader), false
    /// for a refusal of the bundle or of the moment (a trial, the same version).
    pub fn is_box_fault(&self) -> bool {
        matches!(self, Self::NoKey | Self::Key(_) | Self::Device(_))
    }

    /// A bundle error: an I/O error reading the bundle or the base is the box's, the rest the
    /// bundle's.
    fn of_bundle(e: BundleError, wrong: fn(BundleError) -> VerifyError) -> VerifyError {
        match e {
            BundleError::Io { .. } => VerifyError::Device(e.into()),
            other => wrong(other),
        }
    }
}

fn device(e: impl Into<anyhow::Error>) -> VerifyError {
    VerifyError::Device(e.into())
}

/// Every check of `bundle_path` for an install on this device; nothing is written.
pub fn verify(
    cfg: &Config,
    slots: &Slots,
    bundle_path: &Path,
    opts: VerifyOptions,
) -> Result<Verified, VerifyError> {
    let key_path = cfg.public_key.as_deref().ok_or(VerifyError::NoKey)?;
    let key = bundle::load_verifying_key(key_path).map_err(VerifyError::Key)?;
    let booted = slots.backend.booted().map_err(device)?.slot;
    let status = slots.store.load().map_err(device)?;
    if let Some(t) = status.trial.as_ref().filter(|t| t.slot == booted) {
        return Err(VerifyError::TrialInProgress(t.slot));
    }
    let current = slots.current_version(booted).map_err(device)?;
    let mut vb = bundle::verify(
        bundle_path,
        &Expect {
            key: &key,
            board: &cfg.board,
            board_from: bundle::BOARD_OF_DEVICE,
            current_version: current.as_deref(),
            allow_downgrade: opts.allow_downgrade,
            downgrade_flag: opts.downgrade_flag,
        },
    )
    .map_err(|e| VerifyError::of_bundle(e, VerifyError::Bundle))?;
    if opts.refuse_same_version && current.as_deref() == Some(vb.manifest.version.as_str()) {
        return Err(VerifyError::SameVersion {
            version: vb.manifest.version,
            booted,
        });
    }
    // A delta is rebuilt from the booted slot: its content must be the named base, and its
    // boot partition the named boot base (format 4).
    vb.check_base(cfg.slot_device(booted), &format!("booted slot {booted}"))
        .map_err(|e| VerifyError::of_bundle(e, VerifyError::WrongBase))?;
    vb.check_boot_base(
        cfg.slot_boot_device(booted),
        &format!("booted slot {booted}'s boot partition"),
    )
    .map_err(|e| VerifyError::of_bundle(e, VerifyError::WrongBase))?;
    Ok(Verified { bundle: vb, booted })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whose fault: reading the bundle or the booted slot failing is the box's (500), every
    /// other bundle error the bundle's (400, or 409 for a delta's base).
    #[test]
    fn io_errors_are_the_box_s_fault_and_bundle_errors_are_not() {
        let io = || BundleError::Io {
            path: "/data/poshub/supervisor/incoming/upload-1.poshub".into(),
            err: std::io::Error::from_raw_os_error(libc::EIO),
        };
        let e = VerifyError::of_bundle(io(), VerifyError::Bundle);
        assert!(e.is_box_fault(), "{e}");
        assert!(e.to_string().contains("upload-1.poshub"), "{e}");
        assert!(VerifyError::of_bundle(io(), VerifyError::WrongBase).is_box_fault());
        for bad in [
            BundleError::BadSignature,
            BundleError::NotABundle,
            BundleError::PayloadMismatch,
            BundleError::Truncated("no header".into()),
        ] {
            let e = VerifyError::of_bundle(bad, VerifyError::Bundle);
            assert!(!e.is_box_fault(), "{e}");
        }
        assert!(VerifyError::NoKey.is_box_fault());
        assert!(!VerifyError::TrialInProgress(Slot::B).is_box_fault());
    }
}
