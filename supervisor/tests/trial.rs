//! The update path end to end with the `file` backend, slot images as plain files and the fake
//! hub: install → trial boot → health-gated commit; and the ways a trial fails (unhealthy hub,
//! crash loop, reset during the trial), each rolling back to the committed slot.

mod common;
use common::*;
use std::time::Duration;

fn install_v2(rig: &Rig) -> Vec<u8> {
    let img = image(b'N', 250_000);
    let b = rig.bundle("v2", "2.0.0", "rpi4", &img);
    let out = rig.sup(&["install", b.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("installed into slot B"), "{text}");
    // The file backend records the reboot it was asked for: a trial reboot.
    let bs = rig.boot_state();
    assert_eq!(bs["last_reboot_trial"], true);
    assert_eq!(bs["primary"], "A");
    img
}

fn journal_has(status: &serde_json::Value, needle: &str) -> bool {
    status["journal"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e.to_string().contains(needle))
}

#[test]
fn install_trial_boot_and_commit_after_the_health_window() {
    let rig = Rig::new();
    assert_eq!(rig.power_on(), "booted slot A");
    let img = install_v2(&rig);
    let st = rig.status();
    assert_eq!(slot_state(&st, "B"), "trying");
    assert_eq!(st["trial"]["version"], "2.0.0");
    assert_eq!(
        std::fs::read(rig.path("slot-b.img")).unwrap()[..img.len()],
        img[..]
    );

    assert_eq!(rig.power_on(), "booted slot B (trial)");
    let mut sup = rig.spawn(&["run"], &[]);
    // Committed in the store first, then in the bootloader.
    let committed = wait_for(Duration::from_secs(20), || {
        slot_state(&rig.status(), "B") == "good" && rig.boot_state()["primary"] == "B"
    });
    assert!(committed, "trial not committed; log:\n{}", rig.log("run"));
    let st = rig.status();
    assert!(st["trial"].is_null());
    assert!(journal_has(&st, "\"commit\""), "{st}");
    assert_eq!(st["slots"]["B"]["install_count"], 1);

    // SIGTERM is forwarded to the hub, and the stop is clean.
    let status = stop(&mut sup, libc::SIGTERM).unwrap();
    assert!(
        status.success(),
        "exit {status:?}; log:\n{}",
        rig.log("run")
    );
    assert!(
        rig.path("hub/got-sigterm").exists(),
        "hub did not get SIGTERM"
    );
    assert!(!rig.path("data/supervisor/running").exists());

    // Power-cycle storm on the committed slot: it never flips.
    for _ in 0..3 {
        assert_eq!(rig.power_on(), "booted slot B");
        let mut sup = rig.spawn(&["run"], &[]);
        assert!(wait_for(Duration::from_secs(10), || rig
            .path("data/supervisor/recovery.json")
            .exists()));
        std::thread::sleep(Duration::from_millis(300));
        let _ = sup.kill();
        let _ = sup.wait();
    }
    assert_eq!(rig.power_on(), "booted slot B");
    let st = rig.status();
    assert_eq!(slot_state(&st, "B"), "good");
    assert_eq!(slot_state(&st, "A"), "good");
}

fn run_until_rollback(rig: &Rig) -> serde_json::Value {
    assert_eq!(rig.power_on(), "booted slot B (trial)");
    let mut sup = rig.spawn(&["run"], &[]);
    let exited = wait_exit(&mut sup, Duration::from_secs(30));
    if exited.is_none() {
        let _ = sup.kill();
    }
    assert!(
        exited.is_some_and(|s| s.success()),
        "supervisor did not roll back; log:\n{}",
        rig.log("run")
    );
    let st = rig.status();
    assert_eq!(slot_state(&st, "B"), "bad", "{st}");
    assert_eq!(rig.boot_state()["primary"], "A");
    assert_eq!(rig.boot_state()["last_reboot_trial"], false);
    // The next power-on is the committed old slot.
    assert_eq!(rig.power_on(), "booted slot A");
    st
}

#[test]
fn unhealthy_trial_is_marked_bad_and_rolled_back() {
    let rig = Rig::new();
    rig.power_on();
    install_v2(&rig);
    rig.hub_file("unhealthy", true);
    let st = run_until_rollback(&rig);
    let reason = st["slots"]["B"]["reason"].as_str().unwrap();
    assert!(reason.contains("health timeout"), "{reason}");
}

#[test]
fn crash_looping_trial_is_marked_bad_and_rolled_back() {
    let rig = Rig::new();
    rig.power_on();
    install_v2(&rig);
    rig.hub_file("crash", true);
    let st = run_until_rollback(&rig);
    let reason = st["slots"]["B"]["reason"].as_str().unwrap();
    assert!(reason.contains("crash loop"), "{reason}");
    let starts = std::fs::read_to_string(rig.path("hub/starts")).unwrap();
    assert!(
        starts.lines().count() >= 3,
        "hub was not restarted: {starts}"
    );
}

#[test]
fn reset_during_the_trial_falls_back_and_marks_the_slot_bad() {
    let mut rig = Rig::new();
    rig.set("SUPERVISOR_HEALTH_WINDOW_S", "60");
    rig.set("SUPERVISOR_TRIAL_TIMEOUT_S", "120");
    rig.power_on();
    install_v2(&rig);
    assert_eq!(rig.power_on(), "booted slot B (trial)");
    let mut sup = rig.spawn(&["run"], &[]);
    assert!(wait_for(Duration::from_secs(10), || rig
        .hub_pid()
        .is_some()));
    // Watchdog reset / power cut in the middle of the trial.
    let _ = sup.kill();
    let _ = sup.wait();
    if let Some(pid) = rig.hub_pid() {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert_eq!(
        rig.power_on(),
        "booted slot A",
        "one-shot trial was not consumed"
    );
    let mut sup = rig.spawn(&["run"], &[]);
    let marked = wait_for(Duration::from_secs(10), || {
        slot_state(&rig.status(), "B") == "bad"
    });
    stop(&mut sup, libc::SIGTERM);
    assert!(marked, "log:\n{}", rig.log("run"));
    let st = rig.status();
    let reason = st["slots"]["B"]["reason"].as_str().unwrap();
    assert!(reason.contains("did not finish"), "{reason}");
    assert_eq!(slot_state(&st, "A"), "good");
    // The unclean stop was detected and counted.
    let unclean = st["recovery"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "unclean-shutdown")
        .unwrap()
        .clone();
    assert_eq!(unclean["result"], "repaired", "{unclean}");
}

#[test]
fn trial_timeout_is_not_reset_by_a_supervisor_restart_in_the_same_boot() {
    let mut rig = Rig::new();
    rig.set("SUPERVISOR_TRIAL_TIMEOUT_S", "8");
    rig.power_on();
    install_v2(&rig);
    rig.hub_file("unhealthy", true);
    assert_eq!(rig.power_on(), "booted slot B (trial)");
    let mut sup = rig.spawn(&["run"], &[]);
    std::thread::sleep(Duration::from_secs(6));
    // systemd restarts the supervisor (watchdog or start timeout) within the same boot.
    let _ = sup.kill();
    let _ = sup.wait();
    if let Some(pid) = rig.hub_pid() {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let t = std::time::Instant::now();
    let mut sup = rig.spawn(&["run"], &[]);
    let exited = wait_exit(&mut sup, Duration::from_secs(20));
    if exited.is_none() {
        let _ = sup.kill();
    }
    assert!(exited.is_some(), "{}", rig.log("run"));
    // Without the persisted start the second run would wait the full 8 s again.
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "took {:?}",
        t.elapsed()
    );
    let st = rig.status();
    assert_eq!(slot_state(&st, "B"), "bad");
    assert!(st["slots"]["B"]["reason"]
        .as_str()
        .unwrap()
        .contains("health timeout"));
}
