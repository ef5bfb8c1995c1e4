//! The `uboot` and `rpi-tryboot` backends driven by the real supervisor, with the bootloader
//! emulated by the test: a fake `fw_printenv`/`fw_setenv` pair over a file plus a RAUC-style
//! boot script (`uboot`), and a fake boot partition, device tree and firmware (`rpi-tryboot`).
//! Reboots go to `SUPERVISOR_REBOOT_CMD`, a script that only records them.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn script(path: &std::path::Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn new_boot_id(rig: &Rig, n: usize) {
    std::fs::write(rig.path("proc/boot_id"), format!("boot-{n}\n")).unwrap();
}

fn read_env(rig: &Rig) -> BTreeMap<String, String> {
    std::fs::read_to_string(rig.path("uboot.env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What RAUC's U-Boot script does: first slot in `BOOT_ORDER` with attempts left, decrement, boot.
fn uboot_power_on(rig: &Rig, n: usize) -> String {
    let mut env = read_env(rig);
    let order = env["BOOT_ORDER"].clone();
    let slot = order
        .split_whitespace()
        .find(|s| env[&format!("BOOT_{s}_LEFT")].parse::<u32>().unwrap() > 0)
        .expect("no bootable slot")
        .to_string();
    let left = env[&format!("BOOT_{slot}_LEFT")].parse::<u32>().unwrap() - 1;
    env.insert(format!("BOOT_{slot}_LEFT"), left.to_string());
    let text: String = env
        .iter()
        .flat_map(|(k, v)| [k.as_str(), "=", v.as_str(), "\n"])
        .collect();
    std::fs::write(rig.path("uboot.env"), text).unwrap();
    std::fs::write(
        rig.path("proc/cmdline"),
        format!("root=/dev/x rauc.slot={slot} ro\n"),
    )
    .unwrap();
    new_boot_id(rig, n);
    slot
}

fn run_until(rig: &Rig, cond: impl FnMut() -> bool) -> bool {
    let mut sup = rig.spawn(&["run"], &[]);
    let ok = wait_for(Duration::from_secs(20), cond);
    stop(&mut sup, libc::SIGTERM);
    ok
}

#[test]
#[allow(clippy::too_many_lines)] // one story of boots, read top to bottom
fn uboot_install_trial_commit_then_failed_trial_rolls_back() {
    let mut rig = Rig::new();
    let envf = rig.path("uboot.env");
    std::fs::write(&envf, "BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n").unwrap();
    script(
        &rig.path("fw_printenv"),
        &format!("cat '{}'\n", envf.display()),
    );
    script(
        &rig.path("fw_setenv"),
        &format!(
            "[ \"$1\" = -s ] || exit 2\nS='{}'\nwhile IFS== read -r k v; do grep -v \"^$k=\" \"$S\" > \"$S.n\"; echo \"$k=$v\" >> \"$S.n\"; mv \"$S.n\" \"$S\"; done < \"$2\"\n",
            envf.display()
        ),
    );
    script(
        &rig.path("reboot"),
        &format!(
            "echo \"reboot $*\" >> '{}'\n",
            rig.path("reboots").display()
        ),
    );
    rig.set("SUPERVISOR_SLOT_BACKEND", "uboot");
    rig.set(
        "SUPERVISOR_FW_PRINTENV",
        rig.path("fw_printenv").to_str().unwrap(),
    );
    rig.set(
        "SUPERVISOR_FW_SETENV",
        rig.path("fw_setenv").to_str().unwrap(),
    );
    rig.set(
        "SUPERVISOR_CMDLINE",
        rig.path("proc/cmdline").to_str().unwrap(),
    );
    rig.set(
        "SUPERVISOR_REBOOT_CMD",
        rig.path("reboot").to_str().unwrap(),
    );

    assert_eq!(uboot_power_on(&rig, 1), "A");
    let b = rig.bundle("v2", "2.0.0", "rpi4", &image(b'N', 50_000));
    let out = rig.sup(&["install", b.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(rig.path("reboots")).unwrap(),
        "reboot \n"
    );
    let env = read_env(&rig);
    assert_eq!(
        (env["BOOT_ORDER"].as_str(), env["BOOT_B_LEFT"].as_str()),
        ("B A", "1")
    );

    // Trial boot of B, committed after the health window: B's attempts are re-armed.
    assert_eq!(uboot_power_on(&rig, 2), "B");
    assert_eq!(read_env(&rig)["BOOT_B_LEFT"], "0");
    assert!(
        run_until(&rig, || read_env(&rig)["BOOT_B_LEFT"] == "3"),
        "{}",
        rig.log("run")
    );
    assert_eq!(slot_state(&rig.status(), "B"), "good");

    // Power-cycle storm: the committed slot never loses its attempts.
    for n in 3..7 {
        assert_eq!(uboot_power_on(&rig, n), "B");
        assert!(run_until(&rig, || read_env(&rig)["BOOT_B_LEFT"] == "3"));
    }

    // Next update (into A) fails its trial: A marked bad, B boots again.
    let c = rig.bundle("v3", "3.0.0", "rpi4", &image(b'T', 50_000));
    assert!(rig
        .sup(&["install", c.to_str().unwrap(), "--no-reboot"])
        .status
        .success());
    rig.hub_file("unhealthy", true);
    assert_eq!(uboot_power_on(&rig, 8), "A");
    let mut sup = rig.spawn(&["run"], &[]);
    let exited = wait_exit(&mut sup, Duration::from_secs(30));
    if exited.is_none() {
        let _ = sup.kill();
    }
    assert!(exited.is_some(), "{}", rig.log("run"));
    let env = read_env(&rig);
    assert_eq!(
        (env["BOOT_ORDER"].as_str(), env["BOOT_A_LEFT"].as_str()),
        ("B A", "0")
    );
    assert_eq!(slot_state(&rig.status(), "A"), "bad");
    assert_eq!(uboot_power_on(&rig, 9), "B");
}

/// The Raspberry Pi firmware: boots `[tryboot]` once if the last reboot set the tryboot flag.
fn firmware_power_on(rig: &Rig, n: usize) -> (u32, bool) {
    let log = std::fs::read_to_string(rig.path("reboots")).unwrap_or_default();
    let last = log
        .lines()
        .rev()
        .take_while(|l| !l.starts_with("boot"))
        .collect::<Vec<_>>();
    let tryboot = last
        .iter()
        .any(|l| l.contains("0 tryboot") || l.contains("mailbox"));
    std::fs::write(rig.path("reboots"), format!("{log}boot\n")).unwrap();
    let text = std::fs::read_to_string(rig.path("boot/autoboot.txt"))
        .unwrap_or_else(|_| "boot_partition=2\n".into());
    let mut section = "all";
    let (mut all, mut tb) = (2u32, 2u32);
    for l in text.lines() {
        if l.starts_with('[') {
            section = if l == "[tryboot]" { "tryboot" } else { "all" };
        } else if let Some(v) = l.strip_prefix("boot_partition=") {
            if section == "tryboot" {
                tb = v.parse().unwrap();
            } else {
                all = v.parse().unwrap();
            }
        }
    }
    let part = if tryboot { tb } else { all };
    let dt = rig.path("dt");
    std::fs::create_dir_all(&dt).unwrap();
    std::fs::write(dt.join("partition"), part.to_be_bytes()).unwrap();
    std::fs::write(dt.join("tryboot"), u32::from(tryboot).to_be_bytes()).unwrap();
    new_boot_id(rig, n);
    (part, tryboot)
}

#[test]
fn rpi_tryboot_install_trial_commit() {
    let mut rig = Rig::new();
    let log = rig.path("reboots");
    script(
        &rig.path("reboot"),
        &format!("echo \"reboot $*\" >> '{}'\n", log.display()),
    );
    script(
        &rig.path("mailbox"),
        &format!("echo \"mailbox $*\" >> '{}'\n", log.display()),
    );
    rig.set("SUPERVISOR_SLOT_BACKEND", "rpi-tryboot");
    rig.set(
        "SUPERVISOR_TRYBOOT_DT_DIR",
        rig.path("dt").to_str().unwrap(),
    );
    rig.set(
        "SUPERVISOR_REBOOT_CMD",
        rig.path("reboot").to_str().unwrap(),
    );
    rig.set(
        "SUPERVISOR_TRYBOOT_MAILBOX_CMD",
        &format!("{} 0x00038064 4 0 1", rig.path("mailbox").display()),
    );

    assert_eq!(firmware_power_on(&rig, 1), (2, false));
    let b = rig.bundle("v2", "2.0.0", "rpi4", &image(b'N', 50_000));
    let out = rig.sup(&["install", b.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let autoboot = std::fs::read_to_string(rig.path("boot/autoboot.txt")).unwrap();
    assert!(autoboot.contains("tryboot_a_b=1"), "{autoboot}");
    // No Raspberry Pi firmware driver (configured away), so the mailbox fallback armed tryboot.
    let reboots = std::fs::read_to_string(&log).unwrap();
    assert!(reboots.contains("mailbox 0x00038064 4 0 1"), "{reboots}");

    assert_eq!(firmware_power_on(&rig, 2), (3, true));
    let ok = run_until(&rig, || slot_state(&rig.status(), "B") == "good");
    assert!(ok, "{}", rig.log("run"));
    let autoboot = std::fs::read_to_string(rig.path("boot/autoboot.txt")).unwrap();
    assert!(
        autoboot.contains("[all]\ntryboot_a_b=1\nboot_partition=3"),
        "{autoboot}"
    );
    // A plain power cycle now boots B by default.
    assert_eq!(firmware_power_on(&rig, 3), (3, false));
}
