//! sd-notify against a fake `NOTIFY_SOCKET` bound by the test: READY once the hub is healthy,
//! WATCHDOG pings while it answers its health check, none while it is hung (SIGSTOP), pings
//! again once it resumes; the hub does not inherit `NOTIFY_SOCKET`; STOPPING on SIGTERM.

mod common;
use common::*;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

fn collect(sock: &UnixDatagram, for_: Duration) -> Vec<String> {
    let end = Instant::now() + for_;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            out.extend(String::from_utf8_lossy(&buf[..n]).lines().map(String::from));
        }
    }
    out
}

fn count(msgs: &[String], what: &str) -> usize {
    msgs.iter().filter(|m| m.as_str() == what).count()
}

/// Powers the rig on and starts `run` with a `NOTIFY_SOCKET` bound by the test (and a 600 ms
/// watchdog); returns the supervisor and the socket its notifications arrive on.
fn run_with_notify_socket(rig: &Rig) -> (Proc, UnixDatagram) {
    rig.power_on();
    let sock_path = rig.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let sup = rig.spawn(
        &["run"],
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "600000"),
        ],
    );
    (sup, sock)
}

#[test]
fn watchdog_pings_follow_hub_health() {
    let rig = Rig::new();
    let (mut sup, sock) = run_with_notify_socket(&rig);

    // Healthy: READY=1, then a steady stream of WATCHDOG=1.
    let mut msgs = Vec::new();
    let ok = wait_for(Duration::from_secs(15), || {
        msgs.extend(collect(&sock, Duration::from_millis(100)));
        count(&msgs, "READY=1") == 1 && count(&msgs, "WATCHDOG=1") >= 5
    });
    assert!(ok, "no READY/WATCHDOG: {msgs:?}\n{}", rig.log("run"));
    let ready_at = msgs.iter().position(|m| m == "READY=1").unwrap();
    assert!(
        !msgs[..ready_at].iter().any(|m| m == "WATCHDOG=1"),
        "WATCHDOG before the hub was healthy: {msgs:?}"
    );
    assert!(
        !rig.path("hub/notify-socket").exists(),
        "the hub inherited NOTIFY_SOCKET"
    );

    // Hung hub: pings stop.
    let pid = rig.hub_pid().unwrap();
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    collect(&sock, Duration::from_millis(600)); // a probe may have been in flight
    let hung = collect(&sock, Duration::from_secs(2));
    let pings_while_hung = count(&hung, "WATCHDOG=1");
    let unhealthy_status = hung.iter().any(|m| m.starts_with("STATUS=hub unhealthy"));

    // Resumed: pings come back.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let resumed = collect(&sock, Duration::from_secs(2));

    let status = stop(&mut sup, libc::SIGTERM).unwrap();
    let last = collect(&sock, Duration::from_millis(300));
    assert_eq!(
        pings_while_hung, 0,
        "WATCHDOG=1 sent for a hung hub: {hung:?}"
    );
    assert!(unhealthy_status, "no STATUS= about the hung hub: {hung:?}");
    assert!(
        count(&resumed, "WATCHDOG=1") >= 3,
        "pings did not resume: {resumed:?}"
    );
    assert!(status.success());
    assert!(last.iter().any(|m| m == "STOPPING=1"), "{last:?}");
}

#[test]
fn a_hub_busy_with_a_backup_keeps_the_watchdog_fed_and_a_hung_one_does_not() {
    let rig = Rig::new();
    let (mut sup, sock) = run_with_notify_socket(&rig);
    let mut msgs = Vec::new();
    let ok = wait_for(Duration::from_secs(15), || {
        msgs.extend(collect(&sock, Duration::from_millis(100)));
        count(&msgs, "WATCHDOG=1") >= 3
    });
    assert!(ok, "no WATCHDOG: {msgs:?}\n{}", rig.log("run"));

    // A backup runs (its lock is held, here by the test): the hub's writes, and so its health
    // answers, wait for the copy (a stopped hub here). Not hung: pings go on.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(rig.path("data/supervisor/backup.lock"))
        .unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    let pid = rig.hub_pid().unwrap();
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let busy = collect(&sock, Duration::from_secs(2));
    // The backup is over and the hub still does not answer: hung, pings stop.
    drop(held);
    collect(&sock, Duration::from_millis(600));
    let hung = collect(&sock, Duration::from_secs(2));
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let status = stop(&mut sup, libc::SIGTERM).unwrap();
    assert!(status.success());
    assert!(
        count(&busy, "WATCHDOG=1") >= 3,
        "no pings during the backup: {busy:?}"
    );
    assert!(
        !busy.iter().any(|m| m.starts_with("STATUS=hub unhealthy")),
        "{busy:?}"
    );
    assert_eq!(count(&hung, "WATCHDOG=1"), 0, "{hung:?}");
}
