//! The hub as a child: restarts with exponential backoff while it crashes, recovers when it
//! stops crashing, and SIGINT to the supervisor is forwarded as SIGINT.

mod common;
use common::*;
use std::time::Duration;

fn start_times(rig: &Rig) -> Vec<u64> {
    std::fs::read_to_string(rig.path("hub/starts"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("start ")?.parse().ok())
        .collect()
}

#[test]
fn crashing_hub_is_restarted_with_growing_backoff_then_recovers() {
    let mut rig = Rig::new();
    rig.set("SUPERVISOR_RESTART_BACKOFF_MIN_MS", "100");
    rig.set("SUPERVISOR_RESTART_BACKOFF_MAX_MS", "800");
    rig.power_on();
    rig.hub_file("crash", true);
    let mut sup = rig.spawn(&["run"], &[]);
    let enough = wait_for(Duration::from_secs(20), || start_times(&rig).len() >= 6);
    let starts = start_times(&rig);
    rig.hub_file("crash", false);
    assert!(enough, "hub not restarted: {starts:?}\n{}", rig.log("run"));
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    // 100, 200, 400, 800, 800 ms (plus start-up time): growing, capped.
    assert!(gaps[0] < 600, "{gaps:?}");
    assert!(gaps[3] >= 700 && gaps[3] < 2500, "{gaps:?}");
    assert!(gaps[2] > gaps[0], "{gaps:?}");

    // No longer crashing: the next start stays up and becomes healthy.
    let healthy = wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", rig.hub_port)).is_ok()
    });
    assert!(healthy, "{}", rig.log("run"));
    // The hub was told to open the database the supervisor checks (data dir/hub.redb), not a
    // path relative to wherever it was started (on the device, `/`, which is read-only).
    assert_eq!(
        std::fs::read_to_string(rig.path("hub/db-path")).unwrap(),
        rig.path("data").join("hub.redb").display().to_string()
    );
    // A second supervisor on the same data dir refuses to start.
    let second = rig.sup(&["run"]);
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("already running"),
        "{}",
        stderr(&second)
    );

    let status = stop(&mut sup, libc::SIGINT).unwrap();
    assert!(status.success());
    assert!(rig.path("hub/got-sigint").exists(), "SIGINT not forwarded");
}

#[test]
fn unusable_data_dir_is_reported_and_the_hub_still_runs() {
    let mut rig = Rig::new();
    rig.power_on();
    let not_a_dir = rig.path("data-is-a-file");
    std::fs::write(&not_a_dir, "x").unwrap();
    rig.set("SUPERVISOR_DATA_DIR", not_a_dir.to_str().unwrap());
    let mut sup = rig.spawn(&["run"], &[]);
    let started = wait_for(Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", rig.hub_port)).is_ok()
    });
    let status = stop(&mut sup, libc::SIGTERM).unwrap();
    let log = rig.log("run");
    assert!(started, "hub not started: {log}");
    assert!(status.success(), "{log}");
    assert!(
        log.contains("recovery check failed") && log.contains("check=\"data-dir\""),
        "{log}"
    );
}
