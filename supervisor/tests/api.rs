//! The update API over real loopback HTTP: bearer token, `GET /slots`, refused uploads (bad
//! bundle 400, too large 413), a streamed upload installed with progress in
//! `GET /update/status`, and an upload that reboots into the trial.

mod common;
use common::client::http;
use common::*;
use std::time::Duration;

#[test]
fn update_api_end_to_end() {
    let mut rig = Rig::new();
    rig.set("SUPERVISOR_MAX_BUNDLE_MB", "1");
    rig.power_on();
    let mut sup = rig.spawn(&["run"], &[]);
    let port_file = rig.path("data/supervisor/api-port");
    assert!(wait_for(Duration::from_secs(15), || port_file.exists()
        && rig.hub_pid().is_some()));
    let port: u16 = std::fs::read_to_string(&port_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let tok = Some("test-token");

    // Auth.
    assert_eq!(http(port, "GET", "/slots", None, b"", None).0, 401);
    assert_eq!(
        http(port, "GET", "/slots", Some("wrong-token"), b"", None).0,
        401
    );

    // Slots.
    let (code, v) = http(port, "GET", "/slots", tok, b"", None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["booted"], "A");
    assert_eq!(v["slots"]["A"]["state"], "good");

    // Refused uploads leave slot B untouched.
    let slot_b = std::fs::read(rig.path("slot-b.img")).unwrap();
    let (code, v) = http(
        port,
        "POST",
        "/update",
        tok,
        b"definitely not a bundle",
        None,
    );
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("not a poshub bundle"),
        "{v}"
    );
    let (code, v) = http(port, "POST", "/update", tok, b"", Some(2 * 1024 * 1024));
    assert_eq!(code, 413, "{v}");
    assert_eq!(std::fs::read(rig.path("slot-b.img")).unwrap(), slot_b);

    // A good bundle, streamed, installed without reboot; progress reaches 100 %.
    let bundle = std::fs::read(rig.bundle("v2", "2.0.0", "rpi4", &image(b'N', 3_000_000))).unwrap();
    assert!(bundle.len() < 1024 * 1024);
    let (code, v) = http(port, "POST", "/update?no_reboot=1", tok, &bundle, None);
    assert_eq!(code, 202, "{v}");
    let mut last = serde_json::Value::Null;
    let done = wait_for(Duration::from_secs(20), || {
        last = http(port, "GET", "/update/status", tok, b"", None).1;
        last["state"] == "installed"
    });
    assert!(done, "{last}\n{}", rig.log("run"));
    assert_eq!(last["percent"], 100);
    assert_eq!(last["bytes_done"], 3_000_000);
    assert_eq!(last["version"], "2.0.0");
    let (_, v) = http(port, "GET", "/slots", tok, b"", None);
    assert_eq!(v["slots"]["B"]["state"], "trying", "{v}");
    // The journal explains remotely what happened to the slots.
    let events: Vec<&str> = v["journal"]
        .as_array()
        .expect("journal in /slots")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(events.contains(&"install"), "{v}");

    // Without no_reboot the supervisor stops the hub and reboots into the trial.
    let (code, v) = http(port, "POST", "/update", tok, &bundle, None);
    assert_eq!(code, 202, "{v}");
    let exited = wait_exit(&mut sup, Duration::from_secs(30));
    if exited.is_none() {
        let _ = sup.kill();
    }
    assert!(exited.is_some_and(|s| s.success()), "{}", rig.log("run"));
    assert!(rig.path("hub/got-sigterm").exists());
    assert_eq!(rig.boot_state()["last_reboot_trial"], true);
    assert_eq!(rig.power_on(), "booted slot B (trial)");
    // The spooled uploads are gone.
    let left = std::fs::read_dir(rig.path("data/supervisor/incoming"))
        .unwrap()
        .count();
    assert_eq!(left, 0);
}

#[test]
fn second_update_while_one_is_installing_is_409_and_stop_is_not_blocked() {
    let rig = Rig::new();
    rig.power_on();
    // The first install stops half-way through writing (test hook) and stays there.
    let mut sup = rig.spawn(&["run"], &[("SUPERVISOR_TEST_PAUSE_AT", "write")]);
    let port_file = rig.path("data/supervisor/api-port");
    assert!(wait_for(Duration::from_secs(15), || port_file.exists()));
    let port: u16 = std::fs::read_to_string(&port_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let tok = Some("test-token");
    let bundle = std::fs::read(rig.bundle("v2", "2.0.0", "rpi4", &image(b'N', 500_000))).unwrap();
    assert_eq!(
        http(port, "POST", "/update?no_reboot=1", tok, &bundle, None).0,
        202
    );
    let paused = wait_for(Duration::from_secs(15), || {
        std::fs::read_to_string(rig.path("data/supervisor/paused-at")).is_ok_and(|p| p == "write")
    });
    assert!(paused, "{}", rig.log("run"));
    let (code, v) = http(port, "GET", "/update/status", tok, b"", None);
    assert_eq!(
        (code, v["state"].as_str(), v["phase"].as_str()),
        (200, Some("installing"), Some("write"))
    );
    let (code, v) = http(port, "POST", "/update", tok, &bundle, None);
    assert_eq!(code, 409, "{v}");

    // SIGTERM while the install is stuck: the supervisor still stops promptly.
    let t = std::time::Instant::now();
    let status = stop(&mut sup, libc::SIGTERM).unwrap();
    assert!(status.success(), "{}", rig.log("run"));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        t.elapsed()
    );

    // The next start reports the interrupted update and marks the half-written slot bad.
    let mut sup = rig.spawn(&["run"], &[]);
    let settled = wait_for(Duration::from_secs(15), || {
        let st = rig.status();
        st["update"]["state"] == "interrupted" && slot_state(&st, "B") == "bad"
    });
    stop(&mut sup, libc::SIGTERM);
    assert!(settled, "{}", rig.status());
    assert_eq!(rig.boot_state()["primary"], "A");
}

/// Issue 14.7: a downgrade refused over the API names the API's switch, not the CLI flag.
#[test]
fn downgrade_refused_over_the_api_names_the_query_parameter() {
    let rig = Rig::new();
    rig.power_on();
    let mut sup = rig.spawn(&["run"], &[]);
    let port_file = rig.path("data/supervisor/api-port");
    let up = wait_for(Duration::from_secs(15), || {
        port_file.exists() && rig.hub_pid().is_some()
    });
    let port: u16 = std::fs::read_to_string(&port_file)
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0);
    let old = std::fs::read(rig.bundle("old", "0.9.0", "rpi4", &image(b'O', 1000))).unwrap();
    let (code, v) = http(port, "POST", "/update", Some("test-token"), &old, None);
    stop(&mut sup, libc::SIGTERM);
    assert!(up, "{}", rig.log("run"));
    println!("downgrade over the API: {code} {v}");
    assert_eq!(code, 400, "{v}");
    let err = v["error"].as_str().unwrap_or_default();
    assert!(err.contains("older than the running 1.0.0"), "{err}");
    assert!(err.contains("allow_downgrade=1"), "{err}");
    assert!(!err.contains("--allow-downgrade"), "{err}");
}
