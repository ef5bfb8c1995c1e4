//! Where the update API listens: `SUPERVISOR_API_BIND` lists addresses and interface names
//! (`127.0.0.1,tailscale0`). An address is bound once; an interface is followed: its addresses
//! are read again every [`RESCAN`], a listener is opened on each new address (the interface came
//! up, or was given another address) and closed on each address it lost. Nothing else is
//! bound, so the store's LAN never reaches the port. IPv6 link-local addresses (`fe80::/10`)
//! are skipped: they need a scope id and no client on the tailnet uses them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{serve, ApiCtx};
use crate::config::{BindEntry, Config};
use crate::fsutil;

/// How often the listed interfaces' addresses are read again.
pub const RESCAN: Duration = Duration::from_secs(1);

/// The addresses `entries` stand for now: the literal addresses, plus the current addresses of
/// the listed interfaces (none for an interface that does not exist or is down).
pub fn resolve(entries: &[BindEntry]) -> BTreeSet<IpAddr> {
    let mut out = BTreeSet::new();
    let names: Vec<&str> = entries
        .iter()
        .filter_map(|e| match e {
            BindEntry::Addr(a) => {
                out.insert(*a);
                None
            }
            BindEntry::Interface(n) => Some(n.as_str()),
        })
        .collect();
    if names.is_empty() {
        return out;
    }
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return out;
    };
    for ifa in addrs {
        if !names.contains(&ifa.interface_name.as_str())
            || !ifa.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP)
        {
            continue;
        }
        let Some(a) = ifa.address else { continue };
        if let Some(v4) = a.as_sockaddr_in() {
            out.insert(IpAddr::V4(v4.ip()));
        } else if let Some(v6) = a.as_sockaddr_in6() {
            let ip = v6.ip();
            if ip.segments()[0] & 0xffc0 != 0xfe80 {
                out.insert(IpAddr::V6(ip));
            }
        }
    }
    out
}

/// Keeps one listener per address `SUPERVISOR_API_BIND` stands for, for as long as the
/// supervisor runs. With `SUPERVISOR_API_PORT=0` the first bound port is used for the others;
/// the port is written to `<state>/api-port` once known.
pub async fn serve_all(ctx: Arc<ApiCtx>) {
    let cfg = ctx.cfg.clone();
    let mut port = cfg.api_port;
    if port != 0 {
        write_port(&cfg, port);
    }
    let mut open: BTreeMap<IpAddr, JoinHandle<()>> = BTreeMap::new();
    let mut failed: BTreeSet<IpAddr> = BTreeSet::new();
    loop {
        let want = resolve(&cfg.api_bind);
        open.retain(|ip, task| {
            let keep = want.contains(ip);
            if !keep {
                tracing::info!("update API: {ip} is gone; listener closed");
                task.abort();
            }
            keep
        });
        failed.retain(|ip| want.contains(ip));
        for ip in want {
            if open.contains_key(&ip) {
                continue;
            }
            match TcpListener::bind(SocketAddr::new(ip, port)).await {
                Ok(l) => {
                    if port == 0 {
                        port = l.local_addr().map_or(0, |a| a.port());
                        write_port(&cfg, port);
                    }
                    tracing::info!("update API on {ip}:{port}");
                    failed.remove(&ip);
                    open.insert(ip, tokio::spawn(serve(l, ctx.clone())));
                }
                // Logged once per address; tried again at every rescan (an address just added
                // may not be bindable yet).
                Err(e) => {
                    if failed.insert(ip) {
                        tracing::warn!("update API: unable to bind {ip}:{port}: {e}");
                    }
                }
            }
        }
        tokio::time::sleep(RESCAN).await;
    }
}

fn write_port(cfg: &Config, port: u16) {
    let path = cfg.state_dir().join("api-port");
    if let Err(e) = fsutil::atomic_write(&path, port.to_string().as_bytes()) {
        tracing::warn!("unable to write {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_interface_resolves_to_its_addresses_and_unknown_ones_to_nothing() {
        let got = resolve(&[
            BindEntry::Interface("lo".into()),
            BindEntry::Interface("no-such-if0".into()),
            BindEntry::Addr("10.9.8.7".parse().unwrap()),
        ]);
        assert!(
            got.contains(&"127.0.0.1".parse::<IpAddr>().unwrap()),
            "{got:?}"
        );
        assert!(
            got.contains(&"10.9.8.7".parse::<IpAddr>().unwrap()),
            "{got:?}"
        );
        assert!(got
            .iter()
            .all(|ip| ip.is_loopback() || ip.to_string() == "10.9.8.7"));
    }
}
