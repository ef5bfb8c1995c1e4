//! A/B root-filesystem slots: the [`BootBackend`] trait that hides how a bootloader picks a
//! slot, its three implementations, and the slot status kept on the data partition
//! ([`store`]). The supervisor never decides anything from bootloader state alone: the store
//! says what was installed and which trial is in progress, the backend says what booted.

pub mod file;
pub mod store;
pub mod tryboot;
pub mod uboot;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{BackendKind, Config};
pub use crate::types::Slot;

/// What the bootloader says about the running system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Booted {
    pub slot: Slot,
    /// True when the bootloader itself reports a one-shot trial boot (tryboot, file backend).
    pub trial_flag: bool,
}

/// A bootloader backend error: always says which file or command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SlotError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error("command `{cmd}` failed: {detail}")]
    Command { cmd: String, detail: String },
}

impl SlotError {
    pub(crate) fn io(path: impl Into<PathBuf>, err: std::io::Error) -> SlotError {
        SlotError::Io {
            path: path.into(),
            err,
        }
    }
}

/// How a bootloader is told which slot to boot. Implementations are crash-safe: each call either
/// happens entirely or not at all (atomic file replace, one `fw_setenv -s` script).
pub trait BootBackend: Send + Sync {
    /// Backend name as configured (`file`, `uboot`, `rpi-tryboot`).
    fn name(&self) -> &'static str;
    /// The slot that is running now.
    fn booted(&self) -> Result<Booted, SlotError>;
    /// The slot the bootloader boots by default (the committed one), if it can tell.
    fn primary(&self) -> Result<Option<Slot>, SlotError>;
    /// Makes sure `target` cannot be booted while it is being overwritten.
    fn prepare_install(&self, target: Slot, booted: Slot) -> Result<(), SlotError>;
    /// Arranges for the next boot, and only the next one, to try `target`.
    fn arm_trial(&self, target: Slot, booted: Slot) -> Result<(), SlotError>;
    /// Makes `slot` the default boot slot.
    fn commit(&self, slot: Slot) -> Result<(), SlotError>;
    /// Makes sure `slot` is not booted again; the other slot becomes the default.
    fn mark_bad(&self, slot: Slot) -> Result<(), SlotError>;
    /// Called on every normal boot of a committed slot (re-arms U-Boot's attempt counter, so
    /// power-cycle storms never flip a good system).
    fn confirm_boot(&self, _slot: Slot) -> Result<(), SlotError> {
        Ok(())
    }
    /// Reboots; `trial` asks for the one-shot trial boot where the bootloader needs that at
    /// reboot time (tryboot). Returns only for emulated backends or on failure.
    fn reboot(&self, trial: bool) -> Result<(), SlotError>;
}

/// Performs the actual machine reboot; swapped out in tests.
pub trait Rebooter: Send + Sync {
    /// Reboots with an optional `reboot(2)` argument (`LINUX_REBOOT_CMD_RESTART2`).
    fn reboot(&self, arg: Option<&str>) -> Result<(), SlotError>;
    /// Runs a shell command line (the tryboot mailbox fallback).
    fn run(&self, cmdline: &str) -> Result<(), SlotError> {
        run_cmdline(cmdline)
    }
}

/// The real thing: `sync()` then `reboot(2)`.
pub struct SystemRebooter;

impl Rebooter for SystemRebooter {
    fn reboot(&self, arg: Option<&str>) -> Result<(), SlotError> {
        nix::unistd::sync();
        let rc = match arg {
            Some(a) => {
                let c = std::ffi::CString::new(a)
                    .map_err(|_| SlotError::Invalid("reboot argument has a NUL byte".into()))?;
                // SAFETY: plain syscall with a valid NUL-terminated string; nix's `reboot` has
                // no RESTART2 variant, which is what carries "0 tryboot" to the firmware driver.
                unsafe {
                    libc::syscall(
                        libc::SYS_reboot,
                        libc::LINUX_REBOOT_MAGIC1,
                        libc::LINUX_REBOOT_MAGIC2,
                        libc::LINUX_REBOOT_CMD_RESTART2,
                        c.as_ptr(),
                    )
                }
            }
            None => {
                return nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT)
                    .map(|_| ())
                    .map_err(|e| SlotError::Command {
                        cmd: "reboot(2)".into(),
                        detail: e.to_string(),
                    })
            }
        };
        Err(SlotError::Command {
            cmd: "reboot(2) RESTART2".into(),
            detail: format!("returned {rc}: {}", std::io::Error::last_os_error()),
        })
    }
}

/// Reboots by running a configured command (`SUPERVISOR_REBOOT_CMD`, e.g. `systemctl reboot`
/// for an orderly shutdown), with the reboot argument appended when there is one.
pub struct CommandRebooter {
    pub cmdline: String,
}

impl Rebooter for CommandRebooter {
    fn reboot(&self, arg: Option<&str>) -> Result<(), SlotError> {
        nix::unistd::sync();
        match arg {
            Some(a) => run_cmdline(&format!("{} {a}", self.cmdline)),
            None => run_cmdline(&self.cmdline),
        }
    }
}

/// Runs `cmdline` split on whitespace (no shell), failing on a non-zero exit.
pub fn run_cmdline(cmdline: &str) -> Result<(), SlotError> {
    let mut parts = cmdline.split_whitespace();
    let prog = parts
        .next()
        .ok_or_else(|| SlotError::Invalid("empty command".into()))?;
    let out = std::process::Command::new(prog)
        .args(parts)
        .output()
        .map_err(|e| SlotError::Command {
            cmd: cmdline.into(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(SlotError::Command {
            cmd: cmdline.into(),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// Builds the configured backend.
pub fn backend_from_config(cfg: &Config) -> Arc<dyn BootBackend> {
    let rebooter: Arc<dyn Rebooter> = match &cfg.reboot_cmd {
        Some(c) => Arc::new(CommandRebooter { cmdline: c.clone() }),
        None => Arc::new(SystemRebooter),
    };
    match cfg.slot_backend {
        BackendKind::File => Arc::new(file::FileBackend::new(cfg.boot_dir.join("boot-state.json"))),
        BackendKind::Uboot => Arc::new(uboot::UbootBackend::new(
            cfg.fw_printenv.clone(),
            cfg.fw_setenv.clone(),
            cfg.cmdline_path.clone(),
            cfg.uboot_attempts,
            rebooter,
        )),
        BackendKind::RpiTryboot => Arc::new(
            tryboot::TrybootBackend::new(
                cfg.boot_dir.join("autoboot.txt"),
                cfg.tryboot_dt_dir.clone(),
                [cfg.tryboot_part_a, cfg.tryboot_part_b],
                cfg.tryboot_mailbox_cmd.clone(),
                rebooter,
            )
            .with_firmware_driver_dir(cfg.tryboot_firmware_driver.clone()),
        ),
    }
}
