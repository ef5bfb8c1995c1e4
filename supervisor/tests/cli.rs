//! The manual commands: `status` (text), `mark-bad`, `mark-good`, `rollback`, and `install URL`
//! from a loopback HTTP server; plus clear errors for bad input.

mod common;
use common::*;
use std::io::{Read, Write};

/// Serves `body` once per connection on a loopback port, `n` times.
fn serve_file(body: Vec<u8>, n: usize) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let req = String::from_utf8_lossy(&buf);
            let (code, b): (&str, &[u8]) = if req.starts_with("GET /b.poshub") {
                ("200 OK", &body)
            } else {
                ("404 Not Found", b"")
            };
            let _ = write!(
                s,
                "HTTP/1.1 {code}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                b.len()
            );
            let _ = s.write_all(b);
        }
    });
    port
}

#[test]
fn install_from_url_then_manual_commit_mark_bad_and_rollback() {
    let rig = Rig::new();
    rig.power_on();
    let bundle = std::fs::read(rig.bundle("v2", "2.0.0", "rpi4", &image(b'U', 100_000))).unwrap();
    let port = serve_file(bundle, 2);

    let out = rig.sup(&[
        "install",
        &format!("http://127.0.0.1:{port}/missing"),
        "--no-reboot",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("404"), "{}", stderr(&out));

    let out = rig.sup(&[
        "install",
        &format!("http://127.0.0.1:{port}/b.poshub"),
        "--no-reboot",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rig.power_on(), "booted slot B (trial)");

    // Commit by hand instead of waiting for the health window.
    let out = rig.sup(&["mark-good"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rig.boot_state()["primary"], "B");
    let text = String::from_utf8_lossy(&rig.sup(&["status"]).stdout).to_string();
    assert!(text.contains("booted: B"), "{text}");
    assert!(text.contains("slot B: good"), "{text}");
    assert!(text.contains("marked good by hand"), "{text}");

    // Roll back to A (known good), without rebooting, then power on: A boots.
    let out = rig.sup(&["rollback", "--no-reboot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rig.power_on(), "booted slot A");

    // Mark B bad: rolling back to it is refused unless forced.
    let out = rig.sup(&["mark-bad", "B"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = rig.sup(&["rollback", "--no-reboot"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("refusing"), "{}", stderr(&out));
    let out = rig.sup(&["rollback", "--no-reboot", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rig.power_on(), "booted slot B");
}

#[test]
fn rollback_during_a_trial_fails_the_trial() {
    let rig = Rig::new();
    rig.power_on();
    let b = rig.bundle("v2", "2.0.0", "rpi4", &image(b'U', 10_000));
    assert!(rig
        .sup(&["install", b.to_str().unwrap(), "--no-reboot"])
        .status
        .success());
    assert_eq!(rig.power_on(), "booted slot B (trial)");
    // A second install while the booted slot is on trial is refused.
    let out = rig.sup(&["install", b.to_str().unwrap(), "--no-reboot"]);
    assert!(
        stderr(&out).contains("trial of slot B is in progress"),
        "{}",
        stderr(&out)
    );
    let out = rig.sup(&["rollback"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(rig.boot_state()["reboot_requests"], 1);
    let st = rig.status();
    assert_eq!(slot_state(&st, "B"), "bad");
    assert_eq!(rig.power_on(), "booted slot A");
}

#[test]
fn bad_input_gets_one_clear_line() {
    let mut rig = Rig::new();
    let out = rig.sup(&["mark-bad", "C"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a slot"), "{}", stderr(&out));
    let out = rig.sup(&["install", "/nonexistent.poshub", "--no-reboot"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent.poshub"),
        "{}",
        stderr(&out)
    );
    rig.set("SUPERVISOR_HEALTH_WINDOW_S", "soon");
    let out = rig.sup(&["status"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("SUPERVISOR_HEALTH_WINDOW_S") && !err.contains("panicked"),
        "{err}"
    );
    rig.set("SUPERVISOR_HEALTH_WINDOW_S", "1");
    rig.set("SUPERVISOR_SLOT_BACKEND", "grub");
    let err = stderr(&rig.sup(&["status"]));
    assert!(err.contains("not one of file, uboot, rpi-tryboot"), "{err}");
}

/// Issue 14.7: keygen refusals say what is wrong, not "os error 2/17", and write nothing.
#[test]
fn keygen_refusals_are_in_words_and_never_overwrite() {
    let rig = Rig::new();
    let missing = rig.path("no-such-dir/release");
    let out = rig.sup(&["keygen", "--out", missing.to_str().unwrap()]);
    let err = stderr(&out);
    println!("keygen into a missing directory: {}", err.trim());
    assert!(!out.status.success());
    assert!(
        err.contains("does not exist") && !err.contains("os error"),
        "{err}"
    );

    let existing = rig.path("keys/release");
    let key_before = std::fs::read(rig.path("keys/release.key")).unwrap();
    let out = rig.sup(&["keygen", "--out", existing.to_str().unwrap()]);
    let err = stderr(&out);
    println!("keygen over an existing key: {}", err.trim());
    assert!(!out.status.success());
    assert!(
        err.contains("already exists") && !err.contains("os error"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(rig.path("keys/release.key")).unwrap(),
        key_before
    );

    // Only the .pub exists: still refused, and no .key is left behind.
    std::fs::write(rig.path("keys/half.pub"), "x").unwrap();
    let out = rig.sup(&["keygen", "--out", rig.path("keys/half").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(!rig.path("keys/half.key").exists());
}

/// `keygen --out NAME` with no directory part writes the pair into the current directory and
/// succeeds (it used to write both files, then fail with "NAME.pub: No such file or directory"
/// when it fsynced the empty parent path).
#[test]
fn keygen_with_a_bare_name_writes_into_the_current_directory() {
    let rig = Rig::new();
    let out = rig
        .command(&["keygen", "--out", "bare"])
        .current_dir(rig.path("keys"))
        .output()
        .unwrap();
    println!("keygen --out bare: {}", stderr(&out).trim());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(rig.path("keys/bare.key").is_file() && rig.path("keys/bare.pub").is_file());
}

/// Issue 14.7: `status` reports the outcome of the trial that followed an install, not
/// "installed ... 100%" forever.
#[test]
fn status_reports_the_trial_outcome_after_an_install() {
    let rig = Rig::new();
    rig.power_on();
    let b = rig.bundle("v2", "2.0.0", "rpi4", &image(b'S', 10_000));
    assert!(rig
        .sup(&["install", b.to_str().unwrap(), "--no-reboot"])
        .status
        .success());
    let text = String::from_utf8_lossy(&rig.sup(&["status"]).stdout).to_string();
    assert!(text.contains("update: installed"), "{text}");
    assert_eq!(rig.power_on(), "booted slot B (trial)");
    assert!(rig.sup(&["mark-good"]).status.success());
    let text = String::from_utf8_lossy(&rig.sup(&["status"]).stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.starts_with("update:"))
        .unwrap_or("");
    println!("after the commit: {line}");
    assert!(line.starts_with("update: committed"), "{text}");
    assert!(!line.contains("100%"), "{line}");
    assert_eq!(rig.status()["update"]["state"], "committed");

    // A second update whose trial is rolled back says so, with the reason.
    let b3 = rig.bundle("v3", "3.0.0", "rpi4", &image(b'T', 10_000));
    assert!(rig
        .sup(&["install", b3.to_str().unwrap(), "--no-reboot"])
        .status
        .success());
    assert_eq!(rig.power_on(), "booted slot A (trial)");
    assert!(rig.sup(&["rollback", "--no-reboot"]).status.success());
    let text = String::from_utf8_lossy(&rig.sup(&["status"]).stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.starts_with("update:"))
        .unwrap_or("");
    println!("after the rollback: {line}");
    assert!(line.starts_with("update: rolled-back"), "{text}");
    assert!(
        line.contains("rolled back by hand during the trial"),
        "{line}"
    );
}
