//! `SUPERVISOR_API_BIND=127.0.0.1,tailscale0` in a network namespace the test creates: the API
//! answers on loopback, never on the "LAN" interface (a veth), and follows a `tailscale0` (a tun
//! device, as tailscaled creates it) that comes up after the supervisor started and later changes its address.
//! Skipped, with the reason printed, where the namespace or its interfaces cannot be made (not
//! root, no `ip`, no tun or veth support).

mod common;
use common::client::{http_to, Running};
use common::*;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A network namespace, deleted when dropped.
struct Netns(String);

impl Netns {
    fn create() -> Result<Netns, String> {
        let name = format!("poshub-api-{}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .map_err(|e| format!("cannot run ip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip netns add failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let ns = Netns(name);
        // The store's LAN (a veth, up before the supervisor starts) and the tailnet interface
        // (a tun device, as tailscaled makes it), which exists but is down and has no address
        // yet (tailscaled not enrolled).
        for args in [
            &["link", "set", "lo", "up"][..],
            &[
                "link",
                "add",
                "lan0",
                "type",
                "veth",
                "peer",
                "name",
                "lan0-peer",
            ],
            &["addr", "add", "192.168.77.2/24", "dev", "lan0"],
            &["link", "set", "lan0", "up"],
            &["tuntap", "add", "dev", "tailscale0", "mode", "tun"],
        ] {
            ns.try_ip(args)?;
        }
        Ok(ns)
    }

    fn try_ip(&self, args: &[&str]) -> Result<(), String> {
        let out = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run ip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// `ip -n NS ARGS`, which must succeed.
    fn ip(&self, args: &[&str]) {
        if let Err(e) = self.try_ip(args) {
            panic!("{e}");
        }
    }

    /// Runs `f` on a thread that entered the namespace (setns affects that thread only).
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).unwrap();
            // SAFETY: setns on a valid namespace fd; it changes only this thread's namespace.
            let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }

    /// `GET /slots` on `ip:port` from inside the namespace: the status code, or the error.
    fn get_slots(&self, ip: &str, port: u16) -> Result<u16, String> {
        let addr = SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port);
        self.run(move || {
            http_to(addr, "GET", "/slots", Some("test-token"), b"", None)
                .map(|(code, _)| code)
                .map_err(|e| e.to_string())
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

#[test]
fn the_api_listens_on_loopback_and_a_followed_tailscale0_never_on_the_lan() {
    let ns = match Netns::create() {
        Ok(ns) => ns,
        Err(why) => {
            println!("SKIPPED: network namespaces or interfaces cannot be made here ({why})");
            return;
        }
    };
    let mut rig = Rig::new();
    rig.set("SUPERVISOR_API_BIND", "127.0.0.1,tailscale0");
    rig.set("SUPERVISOR_API_PORT", "8767");
    rig.power_on();
    let log = std::fs::File::create(rig.path("log-run")).unwrap();
    let _sup = Running(
        Command::new("ip")
            .args(["netns", "exec", &ns.0, SUP, "--config"])
            .arg(rig.path("supervisor.env"))
            .arg("run")
            .env("FAKE_HUB_DIR", rig.path("hub"))
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let up = wait_for(Duration::from_secs(20), || {
        ns.get_slots("127.0.0.1", 8767) == Ok(200)
    });
    assert!(up, "no API on loopback:\n{}", rig.log("run"));
    let lan = ns.get_slots("192.168.77.2", 8767);
    assert!(lan.is_err(), "the LAN address answered: {lan:?}");

    // tailscale0 comes up with its tailnet addresses: followed without a restart.
    ns.ip(&["addr", "add", "100.64.0.7/32", "dev", "tailscale0"]);
    ns.ip(&[
        "addr",
        "add",
        "fd7a:115c:a1e0::7/128",
        "dev",
        "tailscale0",
        "nodad",
    ]);
    ns.ip(&["link", "set", "tailscale0", "up"]);
    let followed = wait_for(Duration::from_secs(10), || {
        ns.get_slots("100.64.0.7", 8767) == Ok(200)
            && ns.get_slots("fd7a:115c:a1e0::7", 8767) == Ok(200)
    });
    assert!(
        followed,
        "tailscale0 not followed: v4 {:?}, v6 {:?}\n{}",
        ns.get_slots("100.64.0.7", 8767),
        ns.get_slots("fd7a:115c:a1e0::7", 8767),
        rig.log("run")
    );

    // It is given another address: the new one answers, the old one is closed.
    ns.ip(&["addr", "add", "100.64.0.9/32", "dev", "tailscale0"]);
    ns.ip(&["addr", "del", "100.64.0.7/32", "dev", "tailscale0"]);
    let moved = wait_for(Duration::from_secs(10), || {
        ns.get_slots("100.64.0.9", 8767) == Ok(200)
    });
    assert!(
        moved,
        "new tailscale0 address not followed:\n{}",
        rig.log("run")
    );
    // The old address, put on the LAN interface, must not reach a leftover listener.
    ns.ip(&["addr", "add", "100.64.0.7/32", "dev", "lan0"]);
    let old = ns.get_slots("100.64.0.7", 8767);
    assert!(
        old.is_err(),
        "the old tailscale0 address still answers: {old:?}"
    );
    assert_eq!(ns.get_slots("192.168.77.2", 8767).ok(), None);
    assert_eq!(ns.get_slots("127.0.0.1", 8767), Ok(200));
}
