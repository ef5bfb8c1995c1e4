//! mDNS advertisement (SPEC §5), resolved by a real DNS-SD client. Multicast never leaves this
//! machine: the hub and the resolver run in two network namespaces the test creates, joined by
//! a veth pair of their own. Where namespaces cannot be made (not root, no `ip`), the test
//! says why and skips.

use std::process::{Command, Stdio};
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
        let id = std::process::id();
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
            Ok(_) => continue,
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
    let mut hub = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lan.hub,
            env!("CARGO_BIN_EXE_poshub"),
            "serve",
        ])
        .env("HUB_DB_PATH", dir.path().join("hub.redb"))
        .env("HUB_PORT", "18765")
        .env("HUB_HTTP_PORT", "18766")
        .env("HUB_MDNS_ENABLED", "true")
        .env("TENANT_ID", "acme")
        .env("STORE_ID", "shop-7")
        .stderr(Stdio::null())
        .spawn()
        .expect("start hub in the namespace");
    let started = Instant::now();
    let ns_path = format!("/var/run/netns/{}", lan.client);
    let resolved = std::thread::spawn(move || {
        resolve_in(&ns_path, "_poshub._tcp.local.", Duration::from_secs(15))
    })
    .join()
    .expect("resolver thread");
    let _ = hub.kill();
    let _ = hub.wait();
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
}
