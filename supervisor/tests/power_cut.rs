//! Power cut at every install phase: the installing process is stopped at a named phase
//! (`SUPERVISOR_TEST_PAUSE_AT`), killed with SIGKILL, the device is power-cycled (emulated
//! firmware boot) and the supervisor started again. Whatever the phase, the old slot's image is
//! intact, it stays the bootloader default until a trial is committed, and the system ends up
//! booted into a good, committed slot.

mod common;
use common::*;
use std::time::Duration;

fn power_cut_at(phase: &str) {
    power_cut(phase, false);
}

fn power_cut(phase: &str, boot: bool) {
    power_cut_of(phase, boot, false);
}

/// A delta bundle rebuilt from slot A (format 3); with `boot`, it carries a boot image too,
/// rebuilt from slot A's boot partition (format 4).
fn delta_power_cut(phase: &str, boot: bool) {
    power_cut_of(phase, boot, true);
}

/// With `boot`, the slots have boot devices and the bundle carries a boot image (format 2, or
/// 4 with `delta`: a delta from slot A's image and boot partition).
#[allow(clippy::too_many_lines)] // one scenario, read top to bottom: install, kill, power on, check
fn power_cut_of(phase: &str, boot: bool, delta: bool) {
    let mut rig = Rig::new();
    if boot {
        rig.with_boot_devices();
    }
    assert_eq!(rig.power_on(), "booted slot A");
    let slot_a = std::fs::read(rig.path("slot-a.img")).unwrap();
    let boot_a = std::fs::read(rig.path("boot-a.img")).ok();
    let boot_img = match (&boot_a, delta) {
        // The new kernel of a delta: slot A's boot partition with a change and more data.
        (Some(old), true) => Some([&old[..20_000], &image(b'k', 200_000), &old[20_000..]].concat()),
        _ => boot.then(|| image(b'k', 200_000)),
    };
    let bundle = if delta {
        let mut new = slot_a.clone();
        new[1_000..3_000].copy_from_slice(&image(b'N', 2_000));
        new.extend_from_slice(&image(b'N', 100_000));
        match (&boot_img, &boot_a) {
            (Some(bi), Some(ba)) => {
                let b = rig.delta_bundle_with_boot_base("v2", "2.0.0", (&new, bi), (&slot_a, ba));
                let out = rig.sup(&["bundle", "verify", b.to_str().unwrap()]);
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(
                    text.contains("\"delta_boot_base_size\": 50000"),
                    "{text}{}",
                    stderr(&out)
                );
                b
            }
            _ => rig.delta_bundle("v2", "2.0.0", &new, None, &slot_a),
        }
    } else {
        rig.bundle_with_boot(
            "v2",
            "2.0.0",
            "rpi4",
            &image(b'N', 400_000),
            boot_img.as_deref(),
        )
    };

    // 1. Install, paused at `phase`, then kill -9.
    let mut inst = rig.spawn(
        &["install", bundle.to_str().unwrap(), "--no-reboot"],
        &[("SUPERVISOR_TEST_PAUSE_AT", phase)],
    );
    let marker = rig.path("data/supervisor/paused-at");
    let paused = wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&marker).is_ok_and(|p| p == phase)
    });
    let _ = inst.kill();
    let _ = inst.wait();
    assert!(
        paused,
        "install never reached phase {phase}: {}",
        rig.log("install")
    );

    // 2. Power cut: the old slot is untouched and still the default.
    assert_eq!(
        std::fs::read(rig.path("slot-a.img")).unwrap(),
        slot_a,
        "slot A was written"
    );
    assert_eq!(
        std::fs::read(rig.path("boot-a.img")).ok(),
        boot_a,
        "slot A's boot device was written"
    );
    assert_eq!(
        rig.boot_state()["primary"],
        "A",
        "default changed at {phase}"
    );
    let booted = rig.power_on();
    // Each pause is before its phase's work: only at "reboot" is the trial armed.
    let armed = phase == "reboot";
    let expect = if armed {
        "booted slot B (trial)"
    } else {
        "booted slot A"
    };
    assert_eq!(booted, expect, "after a cut at {phase}");

    // 3. The supervisor starts and ends in a committed slot (a trial armed before the cut
    //    is a legitimate, complete install: it is tried and committed).
    let mut sup = rig.spawn(&["run"], &[]);
    let settled = wait_for(Duration::from_secs(20), || {
        let st = rig.status();
        if st["recovery"].is_null() || rig.hub_pid().is_none() {
            return false;
        }
        let b = st["booted"].as_str().unwrap_or("").to_string();
        slot_state(&st, &b) == "good"
            && st["trial"].is_null()
            && rig.boot_state()["primary"] == b.as_str()
    });
    stop(&mut sup, libc::SIGTERM);
    let st = rig.status();
    assert!(
        settled,
        "not settled after a cut at {phase}: {st}\n{}",
        rig.log("run")
    );
    if armed {
        assert_eq!(st["booted"], "B");
        assert_eq!(st["slots"]["B"]["version"], "2.0.0");
        if let Some(bi) = &boot_img {
            let boot_b = std::fs::read(rig.path("boot-b.img")).unwrap();
            assert!(
                boot_b.starts_with(bi),
                "slot B's boot device does not hold the new boot image"
            );
        }
    } else {
        assert_eq!(st["booted"], "A");
        assert_ne!(slot_state(&st, "B"), "trying", "{st}");
        assert_ne!(slot_state(&st, "B"), "good", "{st}");
        if !matches!(phase, "verify" | "prepare") {
            // Half-written or never tried: marked bad, and the journal says why.
            assert_eq!(slot_state(&st, "B"), "bad", "{st}");
        }
        if phase != "verify" {
            assert_eq!(st["update"]["state"], "interrupted", "{st}");
        }
    }
    assert_eq!(slot_state(&st, "A"), "good", "{st}");

    // 4. And the next power-on boots that committed slot.
    let again = rig.power_on();
    assert_eq!(
        again,
        format!("booted slot {}", st["booted"].as_str().unwrap())
    );
}

#[test]
fn power_cut_at_verify() {
    power_cut_at("verify");
}
#[test]
fn power_cut_at_prepare() {
    power_cut_at("prepare");
}
#[test]
fn power_cut_at_write() {
    power_cut_at("write");
}
#[test]
fn power_cut_at_sync() {
    power_cut_at("sync");
}
#[test]
fn power_cut_at_readback() {
    power_cut_at("readback");
}
#[test]
fn power_cut_at_mark() {
    power_cut_at("mark");
}
#[test]
fn power_cut_at_arm() {
    power_cut_at("arm");
}
#[test]
fn power_cut_at_reboot() {
    power_cut_at("reboot");
}

// The slot boot partition phases (format 2 bundle): the target is still `installing`, so a cut
// anywhere before both images are verified leaves it unbootable and the old slot boots.
#[test]
fn power_cut_at_boot_write() {
    power_cut("boot-write", true);
}
#[test]
fn power_cut_at_boot_sync() {
    power_cut("boot-sync", true);
}
#[test]
fn power_cut_at_boot_readback() {
    power_cut("boot-readback", true);
}
#[test]
fn power_cut_at_mark_with_boot_image() {
    power_cut("mark", true);
}
#[test]
fn power_cut_at_reboot_with_boot_image() {
    power_cut("reboot", true);
}

// The same cuts during the install of a delta bundle: it writes through the same phases, so
// each holds the same way (the base is only read, from the booted slot).
#[test]
fn delta_power_cut_at_verify() {
    delta_power_cut("verify", false);
}
#[test]
fn delta_power_cut_at_prepare() {
    delta_power_cut("prepare", false);
}
#[test]
fn delta_power_cut_at_write() {
    delta_power_cut("write", false);
}
#[test]
fn delta_power_cut_at_sync() {
    delta_power_cut("sync", false);
}
#[test]
fn delta_power_cut_at_readback() {
    delta_power_cut("readback", false);
}
#[test]
fn delta_power_cut_at_mark() {
    delta_power_cut("mark", false);
}
#[test]
fn delta_power_cut_at_arm() {
    delta_power_cut("arm", false);
}
#[test]
fn delta_power_cut_at_reboot() {
    delta_power_cut("reboot", false);
}
#[test]
fn delta_power_cut_at_boot_write() {
    delta_power_cut("boot-write", true);
}
#[test]
fn delta_power_cut_at_boot_readback() {
    delta_power_cut("boot-readback", true);
}
#[test]
fn delta_power_cut_at_reboot_with_boot_image() {
    delta_power_cut("reboot", true);
}

// A delta with a boot base (format 4) through every other phase: slot A's boot partition is
// only read (hashed at `verify`, copied from at `boot-write`), never written.
#[test]
fn delta_power_cut_at_verify_with_boot_base() {
    delta_power_cut("verify", true);
}
#[test]
fn delta_power_cut_at_prepare_with_boot_base() {
    delta_power_cut("prepare", true);
}
#[test]
fn delta_power_cut_at_write_with_boot_base() {
    delta_power_cut("write", true);
}
#[test]
fn delta_power_cut_at_sync_with_boot_base() {
    delta_power_cut("sync", true);
}
#[test]
fn delta_power_cut_at_readback_with_boot_base() {
    delta_power_cut("readback", true);
}
#[test]
fn delta_power_cut_at_boot_sync_with_boot_base() {
    delta_power_cut("boot-sync", true);
}
#[test]
fn delta_power_cut_at_mark_with_boot_base() {
    delta_power_cut("mark", true);
}
#[test]
fn delta_power_cut_at_arm_with_boot_base() {
    delta_power_cut("arm", true);
}
