//! The `uboot` backend: RAUC-compatible variables in the U-Boot environment, read with
//! `fw_printenv` and written with one `fw_setenv -s SCRIPT` call (libubootenv writes the
//! redundant environment copy atomically). `BOOT_ORDER` lists slots in order of preference,
//! `BOOT_x_LEFT` is how many more times the boot script may try slot x (it decrements before
//! booting, skips slots at 0). The booted slot comes from `rauc.slot=` on the kernel command line.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use super::{BootBackend, Booted, Rebooter, Slot, SlotError};

/// See the module doc.
pub struct UbootBackend {
    printenv: String,
    setenv: String,
    cmdline: PathBuf,
    attempts: u32,
    rebooter: Arc<dyn Rebooter>,
}

impl UbootBackend {
    /// `attempts` is what `BOOT_x_LEFT` is reset to for a committed slot.
    pub fn new(
        printenv: String,
        setenv: String,
        cmdline: PathBuf,
        attempts: u32,
        rebooter: Arc<dyn Rebooter>,
    ) -> UbootBackend {
        UbootBackend {
            printenv,
            setenv,
            cmdline,
            attempts: attempts.max(1),
            rebooter,
        }
    }

    /// All variables of the environment.
    pub fn read_env(&self) -> Result<HashMap<String, String>, SlotError> {
        let out = Command::new(&self.printenv)
            .output()
            .map_err(|e| SlotError::Command {
                cmd: self.printenv.clone(),
                detail: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(SlotError::Command {
                cmd: self.printenv.clone(),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect())
    }

    /// Sets all `vars` in one `fw_setenv -s` call, as `NAME=value` lines: the script format
    /// Debian's libubootenv applies (it silently skips `NAME value` lines).
    fn set(&self, vars: &[(String, String)]) -> Result<(), SlotError> {
        let mut script = tempfile_in_tmp()?;
        for (k, v) in vars {
            writeln!(script.1, "{k}={v}").map_err(|e| SlotError::io(&script.0, e))?;
        }
        script
            .1
            .sync_all()
            .map_err(|e| SlotError::io(&script.0, e))?;
        let out = Command::new(&self.setenv).arg("-s").arg(&script.0).output();
        let _ = std::fs::remove_file(&script.0);
        let out = out.map_err(|e| SlotError::Command {
            cmd: self.setenv.clone(),
            detail: e.to_string(),
        })?;
        if !out.status.success() {
            return Err(SlotError::Command {
                cmd: format!("{} -s", self.setenv),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    fn left(env: &HashMap<String, String>, slot: Slot) -> u32 {
        env.get(&format!("BOOT_{slot}_LEFT"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn order(first: Slot) -> (String, String) {
        ("BOOT_ORDER".into(), format!("{first} {}", first.other()))
    }

    fn left_var(slot: Slot, n: u32) -> (String, String) {
        (format!("BOOT_{slot}_LEFT"), n.to_string())
    }
}

fn tempfile_in_tmp() -> Result<(PathBuf, std::fs::File), SlotError> {
    let name = format!(
        "poshub-fw-setenv-{}-{}",
        std::process::id(),
        crate::fsutil::random_hex(4).unwrap_or_default()
    );
    let path = std::env::temp_dir().join(name);
    let f = std::fs::File::create(&path).map_err(|e| SlotError::io(&path, e))?;
    Ok((path, f))
}

impl BootBackend for UbootBackend {
    fn name(&self) -> &'static str {
        "uboot"
    }
    fn booted(&self) -> Result<Booted, SlotError> {
        let text =
            std::fs::read_to_string(&self.cmdline).map_err(|e| SlotError::io(&self.cmdline, e))?;
        let slot = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("rauc.slot="))
            .ok_or_else(|| {
                SlotError::Invalid(format!("no rauc.slot= in {}", self.cmdline.display()))
            })?;
        Ok(Booted {
            slot: slot.parse().map_err(SlotError::Invalid)?,
            trial_flag: false,
        })
    }
    fn primary(&self) -> Result<Option<Slot>, SlotError> {
        let env = self.read_env()?;
        let order = env.get("BOOT_ORDER").cloned().unwrap_or_default();
        Ok(order
            .split_whitespace()
            .filter_map(|s| s.parse::<Slot>().ok())
            .find(|s| Self::left(&env, *s) > 0))
    }
    fn prepare_install(&self, target: Slot, booted: Slot) -> Result<(), SlotError> {
        self.set(&[Self::order(booted), Self::left_var(target, 0)])
    }
    fn arm_trial(&self, target: Slot, _booted: Slot) -> Result<(), SlotError> {
        // One try: the boot script decrements to 0 before booting it, so any reset during the
        // trial falls back to the other slot.
        self.set(&[Self::order(target), Self::left_var(target, 1)])
    }
    fn commit(&self, slot: Slot) -> Result<(), SlotError> {
        self.set(&[Self::order(slot), Self::left_var(slot, self.attempts)])
    }
    fn mark_bad(&self, slot: Slot) -> Result<(), SlotError> {
        self.set(&[Self::order(slot.other()), Self::left_var(slot, 0)])
    }
    fn confirm_boot(&self, slot: Slot) -> Result<(), SlotError> {
        let env = self.read_env()?;
        if Self::left(&env, slot) != self.attempts {
            self.set(&[Self::left_var(slot, self.attempts)])?;
        }
        Ok(())
    }
    fn reboot(&self, _trial: bool) -> Result<(), SlotError> {
        self.rebooter.reboot(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Option<String>>>);
    impl Rebooter for Recorder {
        fn reboot(&self, arg: Option<&str>) -> Result<(), SlotError> {
            self.0.lock().unwrap().push(arg.map(String::from));
            Ok(())
        }
    }

    /// A fake `fw_printenv/fw_setenv` pair storing `NAME=value` lines in a file.
    fn fake_tools(dir: &std::path::Path) -> (String, String, PathBuf) {
        let store = dir.join("uboot.env");
        std::fs::write(&store, "BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n").unwrap();
        let printenv = dir.join("fw_printenv");
        let setenv = dir.join("fw_setenv");
        std::fs::write(&printenv, format!("#!/bin/sh\ncat '{}'\n", store.display())).unwrap();
        std::fs::write(
            &setenv,
            format!(
                "#!/bin/sh\n[ \"$1\" = -s ] || exit 2\nS='{s}'\nwhile IFS== read -r k v; do\n  \
                 grep -v \"^$k=\" \"$S\" > \"$S.new\"; echo \"$k=$v\" >> \"$S.new\"; mv \"$S.new\" \"$S\"\n\
                 done < \"$2\"\n",
                s = store.display()
            ),
        )
        .unwrap();
        for p in [&printenv, &setenv] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        (
            printenv.display().to_string(),
            setenv.display().to_string(),
            store,
        )
    }

    #[test]
    fn rauc_variables_follow_install_trial_commit_and_bad() {
        let dir = tempfile::tempdir().unwrap();
        let (pe, se, _store) = fake_tools(dir.path());
        let cmdline = dir.path().join("cmdline");
        std::fs::write(
            &cmdline,
            "console=ttyAMA0 root=/dev/mmcblk0p2 rauc.slot=A ro\n",
        )
        .unwrap();
        let rec = Arc::new(Recorder::default());
        let b = UbootBackend::new(pe, se, cmdline.clone(), 3, rec.clone());
        assert_eq!(b.booted().unwrap().slot, Slot::A);
        assert_eq!(b.primary().unwrap(), Some(Slot::A));

        b.prepare_install(Slot::B, Slot::A).unwrap();
        let env = b.read_env().unwrap();
        assert_eq!(env["BOOT_ORDER"], "A B");
        assert_eq!(env["BOOT_B_LEFT"], "0");

        b.arm_trial(Slot::B, Slot::A).unwrap();
        let env = b.read_env().unwrap();
        assert_eq!(env["BOOT_ORDER"], "B A");
        assert_eq!(env["BOOT_B_LEFT"], "1");
        assert_eq!(env["BOOT_A_LEFT"], "3");

        b.commit(Slot::B).unwrap();
        assert_eq!(b.read_env().unwrap()["BOOT_B_LEFT"], "3");
        assert_eq!(b.primary().unwrap(), Some(Slot::B));

        b.mark_bad(Slot::B).unwrap();
        let env = b.read_env().unwrap();
        assert_eq!(env["BOOT_ORDER"], "A B");
        assert_eq!(env["BOOT_B_LEFT"], "0");
        assert_eq!(b.primary().unwrap(), Some(Slot::A));

        // A committed slot whose counter the boot script decremented gets it back.
        std::fs::write(&cmdline, "rauc.slot=A\n").unwrap();
        b.set(&[("BOOT_A_LEFT".into(), "1".into())]).unwrap();
        b.confirm_boot(Slot::A).unwrap();
        assert_eq!(b.read_env().unwrap()["BOOT_A_LEFT"], "3");

        b.reboot(true).unwrap();
        assert_eq!(*rec.0.lock().unwrap(), vec![None]);
    }

    /// The real tools: Debian's libubootenv `fw_printenv`/`fw_setenv` on a file-backed
    /// environment made by `mkenvimage`, as on the appliance. Catches script-format mismatches a
    /// fake cannot (libubootenv silently skips `NAME value` lines).
    #[test]
    fn rauc_variables_round_trip_through_real_libubootenv() {
        let tools = [
            "/usr/bin/fw_printenv",
            "/usr/bin/fw_setenv",
            "/usr/bin/mkenvimage",
        ];
        if let Some(missing) = tools.iter().find(|t| !std::path::Path::new(t).exists()) {
            println!("SKIPPED: {missing} not installed (Debian libubootenv-tool, u-boot-tools)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (defaults, env, cfg) = (
            dir.path().join("defaults.txt"),
            dir.path().join("uboot.env"),
            dir.path().join("fw_env.config"),
        );
        std::fs::write(
            &defaults,
            "bootdelay=2\nBOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n",
        )
        .unwrap();
        let made = Command::new("/usr/bin/mkenvimage")
            .args(["-s", "0x4000", "-o"])
            .arg(&env)
            .arg(&defaults)
            .status()
            .unwrap();
        assert!(made.success());
        std::fs::write(&cfg, format!("{} 0x0 0x4000\n", env.display())).unwrap();
        let wrap = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(
                &p,
                format!(
                    "#!/bin/sh\nexec /usr/bin/{name} -c '{}' \"$@\"\n",
                    cfg.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p.display().to_string()
        };
        let cmdline = dir.path().join("cmdline");
        std::fs::write(&cmdline, "rauc.slot=A\n").unwrap();
        let b = UbootBackend::new(
            wrap("fw_printenv"),
            wrap("fw_setenv"),
            cmdline,
            3,
            Arc::new(Recorder::default()),
        );
        b.arm_trial(Slot::B, Slot::A).unwrap();
        let env = b.read_env().unwrap();
        assert_eq!(
            (env["BOOT_ORDER"].as_str(), env["BOOT_B_LEFT"].as_str()),
            ("B A", "1")
        );
        assert_eq!(env["bootdelay"], "2", "other variables survive");
        b.mark_bad(Slot::B).unwrap();
        assert_eq!(b.primary().unwrap(), Some(Slot::A));
        assert_eq!(b.read_env().unwrap()["BOOT_B_LEFT"], "0");
    }

    #[test]
    fn missing_slot_on_cmdline_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let cmdline = dir.path().join("cmdline");
        std::fs::write(&cmdline, "root=/dev/sda2\n").unwrap();
        let b = UbootBackend::new(
            "false".into(),
            "false".into(),
            cmdline,
            3,
            Arc::new(Recorder::default()),
        );
        assert!(b.booted().unwrap_err().to_string().contains("rauc.slot"));
        assert!(b.primary().is_err());
    }
}
