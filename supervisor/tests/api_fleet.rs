//! The update API as a fleet tool meets it (issues 14 and 15): one install at a time whether it
//! came from the CLI or the API, exactly one 202 for simultaneous uploads, an uploader that
//! vanishes mid-body times out and frees the box, refusals known before writing are answered
//! with their reason (never a 202), the booted version is not re-installed over the fallback
//! unless forced, `/update/status` tells the trial's outcome, and the OS version is reported.

mod common;
use common::client::{http, parse_response, Running};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const TOK: Option<&str> = Some("test-token");

fn status(port: u16) -> serde_json::Value {
    http(port, "GET", "/update/status", TOK, b"", None).1
}

fn wait_status(port: u16, secs: u64, f: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    wait_for(Duration::from_secs(secs), || {
        last = status(port);
        f(&last)
    });
    last
}

#[test]
fn a_command_line_install_holds_the_api_off_and_nothing_stays_stuck() {
    let rig = Rig::new();
    rig.power_on();
    let (_sup, port) = rig.run_api(&[]);
    let v2 = rig.bundle("v2", "2.0.0", "rpi4", &image(b'N', 400_000));
    let v3 = std::fs::read(rig.bundle("v3", "3.0.0", "rpi4", &image(b'M', 400_000))).unwrap();

    // `install --no-reboot` on the command line, held half-way through writing.
    let mut cli = rig.spawn(
        &["install", v2.to_str().unwrap(), "--no-reboot"],
        &[("SUPERVISOR_TEST_PAUSE_AT", "write")],
    );
    let paused = wait_for(Duration::from_secs(15), || {
        std::fs::read_to_string(rig.path("data/supervisor/paused-at")).is_ok_and(|p| p == "write")
    });
    assert!(paused, "{}", rig.log("install"));

    let v = status(port);
    assert_eq!(
        (v["state"].as_str(), v["phase"].as_str()),
        (Some("installing"), Some("write")),
        "status during a CLI install: {v}"
    );
    let (code, v) = http(port, "POST", "/update?no_reboot=1", TOK, &v3, None);
    assert_eq!(code, 409, "upload during a CLI install: {v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("another install"),
        "{v}"
    );

    // The CLI install dies (kill -9): the lock goes with it, the status says so, uploads work.
    let _ = cli.0.kill();
    let _ = cli.0.wait();
    let v = status(port);
    assert_eq!(v["state"], "interrupted", "{v}");
    let (code, v) = http(port, "POST", "/update?no_reboot=1", TOK, &v3, None);
    assert_eq!(code, 202, "upload after the CLI install ended: {v}");
    let v = wait_status(port, 20, |v| v["state"] == "installed");
    assert_eq!(
        (v["state"].as_str(), v["version"].as_str()),
        (Some("installed"), Some("3.0.0")),
        "{v}\n{}",
        rig.log("run")
    );
}

#[test]
fn simultaneous_uploads_get_exactly_one_202() {
    let rig = Rig::new();
    rig.power_on();
    let (_sup, port) = rig.run_api(&[("SUPERVISOR_TEST_PAUSE_AT", "write")]);
    let bundle = std::fs::read(rig.bundle("v2", "2.0.0", "rpi4", &image(b'N', 400_000))).unwrap();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
    let codes: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let (b, bundle) = (barrier.clone(), &bundle);
                s.spawn(move || {
                    b.wait();
                    http(port, "POST", "/update?no_reboot=1", TOK, bundle, None).0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted = codes.iter().filter(|c| **c == 202).count();
    let conflicts = codes.iter().filter(|c| **c == 409).count();
    assert_eq!((accepted, conflicts), (1, 5), "codes {codes:?}");
    let v = wait_status(port, 15, |v| v["phase"] == "write");
    assert_eq!(v["state"], "installing", "{v}");
}

#[test]
fn an_uploader_that_vanishes_mid_body_times_out_and_frees_the_box() {
    let mut rig = Rig::new();
    rig.set("SUPERVISOR_API_BODY_TIMEOUT_S", "2");
    rig.power_on();
    let (_sup, port) = rig.run_api(&[]);
    let bundle = std::fs::read(rig.bundle("v2", "2.0.0", "rpi4", &image(b'N', 400_000))).unwrap();

    // Headers and half the body, then silence with the socket kept open (no FIN, no RST).
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST /update?no_reboot=1 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer test-token\r\n\
         content-length: {}\r\n\r\n",
        bundle.len()
    );
    stalled.write_all(head.as_bytes()).unwrap();
    stalled.write_all(&bundle[..bundle.len() / 2]).unwrap();
    let started = Instant::now();
    let v = wait_status(port, 5, |v| v["state"] == "receiving");
    assert_eq!(v["state"], "receiving", "{v}");
    assert_eq!(
        http(port, "POST", "/update?no_reboot=1", TOK, &bundle, None).0,
        409
    );

    // The body read times out: the stalled uploader is told, the status says why.
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut resp = Vec::new();
    let _ = stalled.read_to_end(&mut resp);
    let (code, body) = parse_response(&resp);
    let waited = started.elapsed();
    assert_eq!(
        code, 408,
        "answer to the stalled upload after {waited:?}: {body}"
    );
    let v = status(port);
    assert_eq!(v["state"], "failed", "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("stalled"), "{v}");
    assert!(
        std::fs::read_dir(rig.path("data/supervisor/incoming"))
            .unwrap()
            .next()
            .is_none(),
        "the partial upload is removed"
    );

    // The box is ready again.
    let (code, v) = http(port, "POST", "/update?no_reboot=1", TOK, &bundle, None);
    assert_eq!(code, 202, "{v}");
    let v = wait_status(port, 20, |v| v["state"] == "installed");
    assert_eq!(v["state"], "installed", "{v}");
}

#[test]
fn the_booted_version_again_is_refused_unless_forced_and_the_fallback_is_kept() {
    let rig = Rig::new();
    rig.power_on();
    let (_sup, port) = rig.run_api(&[]);
    // 1.0.0 runs in slot A (the OS version file); B is the fallback slot to protect.
    let same = std::fs::read(rig.bundle("same", "1.0.0", "rpi4", &image(b'S', 300_000))).unwrap();
    let slot_b = std::fs::read(rig.path("slot-b.img")).unwrap();
    let (code, v) = http(port, "POST", "/update?no_reboot=1", TOK, &same, None);
    assert_eq!(code, 409, "{v}");
    let err = v["error"].as_str().unwrap_or("");
    assert!(
        err.contains("1.0.0 is already running") && err.contains("force"),
        "{v}"
    );
    assert_eq!(std::fs::read(rig.path("slot-b.img")).unwrap(), slot_b);
    let (_, slots) = http(port, "GET", "/slots", TOK, b"", None);
    assert!(slots["trial"].is_null(), "{slots}");
    assert_eq!(status(port)["state"], "failed");

    let (code, v) = http(
        port,
        "POST",
        "/update?no_reboot=1&force=1",
        TOK,
        &same,
        None,
    );
    assert_eq!(code, 202, "{v}");
    let v = wait_status(port, 20, |v| v["state"] == "installed");
    assert_eq!(v["state"], "installed", "{v}");
}

/// Installs `version` through the API with a reboot, then powers the emulated device on again.
fn push_and_reboot(rig: &Rig, port: u16, sup: &mut Running, name: &str, version: &str) {
    let b = std::fs::read(rig.bundle(name, version, "rpi4", &image(b'V', 300_000))).unwrap();
    let (code, v) = http(port, "POST", "/update", TOK, &b, None);
    assert_eq!(code, 202, "{v}");
    let exited = wait_exit(&mut sup.0, Duration::from_secs(30));
    assert!(exited.is_some(), "{}", rig.log("run"));
    rig.power_on();
}

#[test]
fn an_upload_during_a_trial_is_refused_before_any_byte_is_read() {
    let mut rig = Rig::new();
    rig.power_on();
    let (mut sup, port) = rig.run_api(&[]);
    push_and_reboot(&rig, port, &mut sup, "v2", "2.0.0");
    // The trial of slot B runs and will not be committed during this test.
    rig.set("SUPERVISOR_HEALTH_WINDOW_S", "60");
    rig.set("SUPERVISOR_TRIAL_TIMEOUT_S", "120");
    let (_sup, port) = rig.run_api(&[]);
    let v3 = std::fs::read(rig.bundle("v3", "3.0.0", "rpi4", &image(b'M', 300_000))).unwrap();
    let slot_a = std::fs::read(rig.path("slot-a.img")).unwrap();
    let (code, v) = http(port, "POST", "/update?no_reboot=1", TOK, &v3, None);
    assert_eq!(code, 409, "upload during a trial: {v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("trial of slot B (version 2.0.0) is in progress"),
        "{v}"
    );
    assert_eq!(std::fs::read(rig.path("slot-a.img")).unwrap(), slot_a);
    assert_eq!(status(port)["outcome"]["state"], "trying");
}

#[test]
fn update_status_tells_the_trial_outcome_and_the_os_version_is_reported() {
    let rig = Rig::new();
    rig.power_on();
    let (mut sup, port) = rig.run_api(&[]);
    let (_, slots) = http(port, "GET", "/slots", TOK, b"", None);
    assert_eq!(slots["osVersion"], "1.0.0", "{slots}");
    assert_eq!(
        std::fs::read_to_string(rig.path("hub/os-version")).unwrap(),
        "1.0.0"
    );

    // 2.0.0 passes its trial: committed.
    push_and_reboot(&rig, port, &mut sup, "v2", "2.0.0");
    let (mut sup, port) = rig.run_api(&[]);
    let v = wait_status(port, 20, |v| v["outcome"]["state"] == "committed");
    assert_eq!(v["state"], "committed", "{v}");
    assert_eq!(
        (
            v["outcome"]["state"].as_str(),
            v["outcome"]["slot"].as_str(),
            v["outcome"]["version"].as_str()
        ),
        (Some("committed"), Some("B"), Some("2.0.0")),
        "{v}\n{}",
        rig.log("run")
    );
    let (_, slots) = http(port, "GET", "/slots", TOK, b"", None);
    assert_eq!(slots["osVersion"], "2.0.0", "{slots}");
    assert_eq!(
        std::fs::read_to_string(rig.path("hub/os-version")).unwrap(),
        "2.0.0"
    );

    // 3.0.0's hub never gets healthy: rolled back, with the reason, read from the same place.
    push_and_reboot(&rig, port, &mut sup, "v3", "3.0.0");
    rig.hub_file("unhealthy", true);
    let mut trial = rig.spawn(&["run"], &[]);
    let rebooted = wait_exit(&mut trial.0, Duration::from_secs(30));
    assert!(rebooted.is_some(), "{}", rig.log("run"));
    rig.power_on();
    rig.hub_file("unhealthy", false);
    let (_sup, port) = rig.run_api(&[]);
    let v = status(port);
    assert_eq!(
        (
            v["state"].as_str(),
            v["outcome"]["state"].as_str(),
            v["outcome"]["slot"].as_str(),
            v["outcome"]["version"].as_str()
        ),
        (
            Some("rolled-back"),
            Some("rolled-back"),
            Some("A"),
            Some("3.0.0")
        ),
        "{v}"
    );
    assert_eq!(v["error"], v["outcome"]["reason"], "{v}");
    assert!(
        v["outcome"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("health timeout"),
        "{v}"
    );
    let (_, slots) = http(port, "GET", "/slots", TOK, b"", None);
    assert_eq!(slots["osVersion"], "2.0.0", "{slots}");
}

#[test]
fn a_delta_for_another_base_is_refused_before_the_202_and_its_own_base_is_accepted() {
    let rig = Rig::new();
    rig.power_on();
    let (_sup, port) = rig.run_api(&[]);
    let slot_a = std::fs::read(rig.path("slot-a.img")).unwrap();
    let slot_b = std::fs::read(rig.path("slot-b.img")).unwrap();
    let other = image(b'Q', slot_a.len());
    let mut target = other.clone();
    target[100..200].fill(b'Z');
    let wrong = std::fs::read(rig.delta_bundle("d1", "2.0.0", &target, None, &other)).unwrap();
    let (code, v) = http(port, "POST", "/update?no_reboot=1", TOK, &wrong, None);
    println!("delta for another base: {code} {v}");
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("applies only to base image"),
        "{v}"
    );
    assert_eq!(std::fs::read(rig.path("slot-b.img")).unwrap(), slot_b);
    // The same release made against the booted slot goes through.
    let mut target = slot_a.clone();
    target[100..200].fill(b'Z');
    let right = std::fs::read(rig.delta_bundle("d2", "2.0.0", &target, None, &slot_a)).unwrap();
    let (code, v) = http(port, "POST", "/update?no_reboot=1", TOK, &right, None);
    assert_eq!(code, 202, "{v}");
    let v = wait_status(port, 30, |v| v["state"] == "installed");
    assert_eq!(v["state"], "installed", "{v}");
    let b = std::fs::read(rig.path("slot-b.img")).unwrap();
    assert_eq!(&b[..target.len()], &target[..]);
}

/// A format 4 delta whose boot base is not the booted slot's boot partition gets the same 409
/// before the 202 (fleet/update.yml then sends the full bundle), nothing written.
#[test]
fn a_delta_for_another_boot_base_is_refused_before_the_202() {
    let mut rig = Rig::new();
    rig.with_boot_devices();
    rig.power_on();
    let (_sup, port) = rig.run_api(&[]);
    let slot_a = std::fs::read(rig.path("slot-a.img")).unwrap();
    let boot_a = std::fs::read(rig.path("boot-a.img")).unwrap();
    let before: Vec<_> = ["slot-b.img", "boot-b.img"]
        .map(|f| std::fs::read(rig.path(f)).unwrap())
        .into();
    let other_boot = image(b'O', boot_a.len());
    let mut target = slot_a.clone();
    target[100..200].fill(b'Z');
    let d =
        rig.delta_bundle_with_boot_base("d", "2.0.0", (&target, &boot_a), (&slot_a, &other_boot));
    let (code, v) = http(
        port,
        "POST",
        "/update?no_reboot=1",
        TOK,
        &std::fs::read(d).unwrap(),
        None,
    );
    println!("delta for another boot base: {code} {v}");
    assert_eq!(code, 409, "{v}");
    let err = v["error"].as_str().unwrap_or("");
    assert!(
        err.contains("applies only to boot base image") && err.contains("install the full bundle"),
        "{v}"
    );
    let after: Vec<_> = ["slot-b.img", "boot-b.img"]
        .map(|f| std::fs::read(rig.path(f)).unwrap())
        .into();
    assert_eq!(before, after, "slot B or its boot device was written");
}
