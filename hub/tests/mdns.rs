//! mDNS advertisement (docs/configuration.md "`HUB_MDNS_ENABLED`"), resolved by a real DNS-SD client.
//! Multicast never leaves this machine: the hub and the resolver run in two network namespaces the
//! test creates, joined by a veth pair of their own. Where namespaces cannot be made (not root, no
//! `ip`), the test says why and skips.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;

/// Two private network namespaces joined by a veth pair: a "hub box" and a "tablet".
struct TestLan {
    hub: String,
    client: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("`ip` not usable: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl TestLan {
    fn create() -> Result<TestLan, String> {
        // Unique per test (the tests of this file run at once in one process).
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = std::process::id() % 10_000 * 10 + n;
        let lan = TestLan {
            hub: format!("poshub-hub-{id}"),
            client: format!("poshub-tab-{id}"),
        };
        ip(&["netns", "add", &lan.hub])?;
        ip(&["netns", "add", &lan.client])?;
        let (a, b) = (format!("ph{}", id % 100_000), format!("pt{}", id % 100_000));
        ip(&[
            "link",
            "add",
            &a,
            "netns",
            &lan.hub,
            "type",
            "veth",
            "peer",
            "name",
            &b,
            "netns",
            &lan.client,
        ])?;
        for (ns, dev, addr) in [
            (&lan.hub, &a, "10.77.0.1/24"),
            (&lan.client, &b, "10.77.0.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up", "multicast", "on"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", dev])?;
        }
        Ok(lan)
    }
}

impl Drop for TestLan {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.hub])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.client])
            .status();
    }
}

/// Browses from inside the namespace: a thread that joined it creates the DNS-SD client, whose
/// own threads inherit the namespace.
fn resolve_in(ns_path: &str, ty: &str, within: Duration) -> Result<serde_json::Value, String> {
    let f = std::fs::File::open(ns_path).map_err(|e| format!("{ns_path}: {e}"))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("setns: {e}"))?;
    let daemon = mdns_sd::ServiceDaemon::new().map_err(|e| e.to_string())?;
    let rx = daemon.browse(ty).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(mdns_sd::ServiceEvent::ServiceResolved(info)) => {
                let txt: serde_json::Map<String, serde_json::Value> = info
                    .get_properties()
                    .iter()
                    .map(|p| (p.key().to_string(), serde_json::Value::from(p.val_str())))
                    .collect();
                let _ = daemon.shutdown();
                return Ok(
                    serde_json::json!({"name": info.get_fullname(), "port": info.get_port(), "txt": txt}),
                );
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = daemon.shutdown();
    Err(format!("nothing resolved within {within:?}"))
}

#[test]
fn the_hub_is_found_by_a_dns_sd_client() {
    let lan = match TestLan::create() {
        Ok(lan) => lan,
        Err(why) => {
            println!("SKIPPED: cannot create a private network namespace for multicast ({why})");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("hub.log");
    let mut hub = start_hub(&lan, dir.path(), &log_path);
    let started = Instant::now();
    let ns_path = format!("/var/run/netns/{}", lan.client);
    let resolved = std::thread::spawn(move || {
        resolve_in(&ns_path, "_poshub._tcp.local.", Duration::from_secs(15))
    })
    .join()
    .expect("resolver thread");
    // A stop with mDNS on (the default) is a clean stop: exit 0, no panic.
    let stop = sigterm_and_wait(&mut hub.0, Duration::from_secs(5));
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    println!("stop with mDNS on: {stop:?}");
    let v = resolved.unwrap_or_else(|e| panic!("not resolved after {:?}: {e}", started.elapsed()));
    let name = v["name"].as_str().unwrap_or_default();
    assert!(
        name.starts_with("POS Hub - ") && name.contains("(shop-7/acme)"),
        "{v}"
    );
    assert_eq!(v["port"], 18765);
    assert_eq!(v["txt"]["tenantId"], "acme");
    assert_eq!(v["txt"]["storeId"], "shop-7");
    assert_eq!(v["txt"]["httpPort"], "18766");
    assert_eq!(v["txt"]["version"], poshub::VERSION);
    assert!(started.elapsed() < Duration::from_secs(15));
    let status = stop.unwrap_or_else(|e| panic!("{e}; log: {log}"));
    assert_eq!(status.code(), Some(0), "{status}; log: {log}");
    assert!(!log.contains("panicked"), "a panic while stopping: {log}");
}

/// The hub in the "hub box" namespace with mDNS on, its stderr in `log_path`.
fn start_hub(lan: &TestLan, dir: &std::path::Path, log_path: &std::path::Path) -> common::Reaped {
    let log = std::fs::File::create(log_path).expect("log file");
    common::Reaped::spawn(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &lan.hub,
                env!("CARGO_BIN_EXE_poshub"),
                "serve",
            ])
            .env("HUB_DB_PATH", dir.join("hub.redb"))
            .env("HUB_PORT", "18765")
            .env("HUB_HTTP_PORT", "18766")
            .env("HUB_MDNS_ENABLED", "true")
            .env("TENANT_ID", "acme")
            .env("STORE_ID", "shop-7")
            .stderr(log),
    )
    .expect("start hub in the namespace")
}

/// libmdns's responder and service raced each other at exit (a panic, then an abort) about one
/// stop in three: every stop of several advertising hubs must be clean.
#[test]
fn every_stop_with_mdns_on_exits_0_without_a_panic() {
    let lan = match TestLan::create() {
        Ok(lan) => lan,
        Err(why) => {
            println!("SKIPPED: cannot create a private network namespace for multicast ({why})");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut outcomes = Vec::new();
    for round in 0..8 {
        let log_path = dir.path().join(format!("hub-{round}.log"));
        let mut hub = start_hub(&lan, dir.path(), &log_path);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("over mDNS")
        {
            assert!(
                Instant::now() < deadline,
                "not advertising: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let stop = sigterm_and_wait(&mut hub.0, Duration::from_secs(5));
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let clean = matches!(&stop, Ok(s) if s.code() == Some(0)) && !log.contains("panicked");
        outcomes.push((round, stop, clean, log));
    }
    let bad: Vec<_> = outcomes.iter().filter(|o| !o.2).collect();
    println!(
        "{} of {} stops with mDNS on were clean",
        outcomes.len() - bad.len(),
        outcomes.len()
    );
    if let Some((round, stop, _, log)) = bad.first() {
        panic!("stop {round}: {stop:?}; log: {log}");
    }
}

/// SIGTERM, then the exit status within `within`.
fn sigterm_and_wait(
    child: &mut std::process::Child,
    within: Duration,
) -> Result<std::process::ExitStatus, String> {
    let start = Instant::now();
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) on our own child (`ip netns exec` execs the hub in place), not yet reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                println!("exited in {:?}: {status}", start.elapsed());
                return Ok(status);
            }
            Ok(None) if start.elapsed() < within => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => return Err(format!("still running {within:?} after SIGTERM")),
            Err(e) => return Err(format!("wait: {e}")),
        }
    }
}
