//! The `rpi-tryboot` backend: Raspberry Pi firmware A/B boot. `autoboot.txt` on the FAT boot
//! partition names the default boot partition (`[all] boot_partition=`) and the one tried once
//! (`[tryboot] boot_partition=`); the firmware uses the `[tryboot]` section only when the
//! one-shot tryboot flag is set, which the kernel's firmware driver does on
//! `reboot(2)` with the argument `0 tryboot` (fallback: the `SET_REBOOT_FLAGS` mailbox tag through
//! `vcmailbox`, then a plain reboot). Which partition booted, and whether as a trial, is read
//! from `/proc/device-tree/chosen/bootloader/{partition,tryboot}` (big-endian u32 cells).
//! `autoboot.txt` is replaced with temp + fsync + rename; slot status never goes to FAT.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{BootBackend, Booted, Rebooter, Slot, SlotError};
use crate::fsutil;

/// See the module doc.
pub struct TrybootBackend {
    autoboot: PathBuf,
    dt_dir: PathBuf,
    parts: [u32; 2],
    mailbox_cmd: String,
    firmware_driver: PathBuf,
    rebooter: Arc<dyn Rebooter>,
}

/// The two partition numbers `autoboot.txt` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Autoboot {
    pub default: u32,
    pub tryboot: u32,
}

impl Autoboot {
    /// Parses the `boot_partition` of the `[all]` and `[tryboot]` sections.
    pub fn parse(text: &str) -> Option<Autoboot> {
        let (mut section, mut default, mut tryboot) = ("all".to_string(), None, None);
        for line in text.lines().map(str::trim) {
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.to_string();
            } else if let Some(v) = line.strip_prefix("boot_partition=") {
                let n = v.trim().parse().ok()?;
                match section.as_str() {
                    "tryboot" => tryboot = Some(n),
                    _ => default = Some(n),
                }
            }
        }
        let default = default?;
        Some(Autoboot {
            default,
            tryboot: tryboot.unwrap_or(default),
        })
    }

    /// The file text.
    pub fn render(&self) -> String {
        format!(
            "# written by poshub-supervisor\n[all]\ntryboot_a_b=1\nboot_partition={}\n[tryboot]\nboot_partition={}\n",
            self.default, self.tryboot
        )
    }
}

impl TrybootBackend {
    /// `parts` are the boot partition numbers of slots A and B.
    pub fn new(
        autoboot: PathBuf,
        dt_dir: PathBuf,
        parts: [u32; 2],
        mailbox_cmd: String,
        rebooter: Arc<dyn Rebooter>,
    ) -> TrybootBackend {
        TrybootBackend {
            autoboot,
            dt_dir,
            parts,
            mailbox_cmd,
            firmware_driver: "/sys/bus/platform/drivers/raspberrypi-firmware".into(),
            rebooter,
        }
    }

    /// Where to look for the kernel's firmware driver (decides reboot argument vs mailbox).
    pub fn with_firmware_driver_dir(mut self, dir: PathBuf) -> TrybootBackend {
        self.firmware_driver = dir;
        self
    }

    fn part(&self, slot: Slot) -> u32 {
        self.parts[match slot {
            Slot::A => 0,
            Slot::B => 1,
        }]
    }

    fn slot_of(&self, part: u32) -> Result<Slot, SlotError> {
        if part == self.parts[0] {
            Ok(Slot::A)
        } else if part == self.parts[1] {
            Ok(Slot::B)
        } else {
            Err(SlotError::Invalid(format!(
                "boot partition {part} is neither slot A ({}) nor B ({})",
                self.parts[0], self.parts[1]
            )))
        }
    }

    fn read_cell(&self, name: &str) -> Result<u32, SlotError> {
        let p = self.dt_dir.join(name);
        let b = std::fs::read(&p).map_err(|e| SlotError::io(&p, e))?;
        let cell: [u8; 4] = b
            .get(..4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| SlotError::Invalid(format!("{} is not a u32 cell", p.display())))?;
        Ok(u32::from_be_bytes(cell))
    }

    /// The current `autoboot.txt`.
    pub fn read_autoboot(&self) -> Result<Option<Autoboot>, SlotError> {
        match std::fs::read_to_string(&self.autoboot) {
            Ok(t) => Autoboot::parse(&t).map(Some).ok_or_else(|| {
                SlotError::Invalid(format!("{} has no boot_partition", self.autoboot.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(SlotError::io(&self.autoboot, e)),
        }
    }

    fn write_autoboot(&self, a: Autoboot) -> Result<(), SlotError> {
        fsutil::atomic_write(&self.autoboot, a.render().as_bytes())
            .map_err(|e| SlotError::io(&self.autoboot, e))
    }

    fn write(&self, default: Slot, tryboot: Slot) -> Result<(), SlotError> {
        self.write_autoboot(Autoboot {
            default: self.part(default),
            tryboot: self.part(tryboot),
        })
    }

    fn default_slot(&self, booted: Slot) -> Result<Slot, SlotError> {
        match self.read_autoboot()? {
            Some(a) => self.slot_of(a.default),
            None => Ok(booted),
        }
    }
}

impl BootBackend for TrybootBackend {
    fn name(&self) -> &'static str {
        "rpi-tryboot"
    }
    fn booted(&self) -> Result<Booted, SlotError> {
        let part = self.read_cell("partition")?;
        let tryboot = match self.read_cell("tryboot") {
            Ok(v) => v != 0,
            Err(SlotError::Io { err, .. }) if err.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        Ok(Booted {
            slot: self.slot_of(part)?,
            trial_flag: tryboot,
        })
    }
    fn primary(&self) -> Result<Option<Slot>, SlotError> {
        self.read_autoboot()?
            .map(|a| self.slot_of(a.default))
            .transpose()
    }
    fn prepare_install(&self, _target: Slot, booted: Slot) -> Result<(), SlotError> {
        // The default must be the running (committed) slot and an accidental tryboot must not
        // reach the slot being overwritten.
        self.write(booted, booted)
    }
    fn arm_trial(&self, target: Slot, booted: Slot) -> Result<(), SlotError> {
        let default = self.default_slot(booted)?;
        self.write(default, target)
    }
    fn commit(&self, slot: Slot) -> Result<(), SlotError> {
        self.write(slot, slot)
    }
    fn mark_bad(&self, slot: Slot) -> Result<(), SlotError> {
        self.write(slot.other(), slot.other())
    }
    fn reboot(&self, trial: bool) -> Result<(), SlotError> {
        if !trial {
            return self.rebooter.reboot(None);
        }
        if self.firmware_driver.exists() {
            self.rebooter.reboot(Some("0 tryboot"))
        } else {
            tracing::warn!(
                "no Raspberry Pi firmware driver; setting the tryboot flag through the mailbox"
            );
            self.rebooter.run(&self.mailbox_cmd)?;
            self.rebooter.reboot(None)
        }
    }
}

/// Writes a device-tree cell the way firmware does (tests, emulation).
pub fn write_dt_cell(dir: &Path, name: &str, v: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), v.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);
    impl Rebooter for Recorder {
        fn reboot(&self, arg: Option<&str>) -> Result<(), SlotError> {
            self.0
                .lock()
                .unwrap()
                .push(format!("reboot {}", arg.unwrap_or("-")));
            Ok(())
        }
        fn run(&self, cmdline: &str) -> Result<(), SlotError> {
            self.0.lock().unwrap().push(format!("run {cmdline}"));
            Ok(())
        }
    }

    fn setup(dir: &Path) -> (TrybootBackend, Arc<Recorder>) {
        let rec = Arc::new(Recorder::default());
        let driver = dir.join("driver");
        std::fs::create_dir_all(&driver).unwrap();
        let b = TrybootBackend::new(
            dir.join("boot/autoboot.txt"),
            dir.join("dt"),
            [2, 3],
            "vcmailbox 0x00038064 4 0 1".into(),
            rec.clone(),
        )
        .with_firmware_driver_dir(driver);
        (b, rec)
    }

    #[test]
    fn reads_booted_partition_and_tryboot_flag() {
        let dir = tempfile::tempdir().unwrap();
        let (b, _) = setup(dir.path());
        write_dt_cell(&dir.path().join("dt"), "partition", 3).unwrap();
        write_dt_cell(&dir.path().join("dt"), "tryboot", 1).unwrap();
        assert_eq!(
            b.booted().unwrap(),
            Booted {
                slot: Slot::B,
                trial_flag: true
            }
        );
        write_dt_cell(&dir.path().join("dt"), "partition", 7).unwrap();
        assert!(b.booted().unwrap_err().to_string().contains("partition 7"));
    }

    #[test]
    fn autoboot_follows_install_trial_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (b, rec) = setup(dir.path());
        b.prepare_install(Slot::B, Slot::A).unwrap();
        b.arm_trial(Slot::B, Slot::A).unwrap();
        let text = std::fs::read_to_string(dir.path().join("boot/autoboot.txt")).unwrap();
        assert!(text.contains("tryboot_a_b=1"), "{text}");
        assert_eq!(
            b.read_autoboot().unwrap().unwrap(),
            Autoboot {
                default: 2,
                tryboot: 3
            }
        );
        assert_eq!(b.primary().unwrap(), Some(Slot::A));
        b.reboot(true).unwrap();
        b.commit(Slot::B).unwrap();
        assert_eq!(b.primary().unwrap(), Some(Slot::B));
        b.mark_bad(Slot::B).unwrap();
        assert_eq!(
            b.read_autoboot().unwrap().unwrap(),
            Autoboot {
                default: 2,
                tryboot: 2
            }
        );
        assert_eq!(*rec.0.lock().unwrap(), vec!["reboot 0 tryboot"]);
        assert!(!dir.path().join("boot/.autoboot.txt.poshub-tmp").exists());
    }

    #[test]
    fn mailbox_fallback_without_firmware_driver() {
        let dir = tempfile::tempdir().unwrap();
        let (b, rec) = setup(dir.path());
        let b = b.with_firmware_driver_dir(dir.path().join("absent"));
        b.reboot(true).unwrap();
        assert_eq!(
            *rec.0.lock().unwrap(),
            vec!["run vcmailbox 0x00038064 4 0 1", "reboot -"]
        );
    }
}
