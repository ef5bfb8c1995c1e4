//! The hub process's memory and file descriptors, sampled from /proc while the soak runs, and
//! the "flat after warm-up" rule they must meet.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counters the terminals bump, read by the sampler for the table.
#[derive(Default)]
pub struct Counters {
    /// `ORDER_ACK`s received (resends included).
    pub acked_writes: AtomicU64,
    /// Sockets the terminals dropped on purpose and opened again.
    pub reconnects: AtomicU64,
    /// Sockets the hub closed on a terminal (each followed by a reconnect).
    pub hub_closed: AtomicU64,
    /// Kitchen tickets acknowledged.
    pub tickets: AtomicU64,
    /// Set when the load is over.
    pub stop: AtomicBool,
}

impl Counters {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub secs: f64,
    pub rss_kb: u64,
    pub fds: u64,
    pub acked: u64,
    pub reconnects: u64,
}

/// `VmRSS` of `pid` in kB.
pub fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Open file descriptors of `pid`.
pub fn fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// What the descriptors of `pid` point to, for the report and a failure message: TCP sockets
/// as `local port->remote port` (from `/proc/PID/net/tcp`), anything else as its link target.
pub fn fd_targets(pid: u32) -> String {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return String::new();
    };
    let tcp = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let mut out: Vec<String> = dir
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| {
            let t = t.display().to_string();
            let inode = t.strip_prefix("socket:[").and_then(|i| i.strip_suffix(']'));
            inode.and_then(|i| tcp_ports(&tcp, i)).unwrap_or(t)
        })
        .collect();
    out.sort();
    out.join(" ")
}

/// Open descriptors of `pid`: (all but TCP connections to `port`, TCP connections to `port`).
pub fn fds_except_to(pid: u32, port: u16) -> (u64, u64) {
    let targets = fd_targets(pid);
    let to = format!("->{port}");
    let (to_port, rest): (Vec<&str>, Vec<&str>) = targets
        .split(' ')
        .filter(|t| !t.is_empty())
        .partition(|t| t.ends_with(&to));
    (rest.len() as u64, to_port.len() as u64)
}

/// `local->remote` ports of the TCP socket with `inode` (`*` for a listener).
fn tcp_ports(table: &str, inode: &str) -> Option<String> {
    let f: Vec<&str> = table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(9) == Some(&inode))?;
    let port = |a: &str| {
        let hex = a.rsplit(':').next().unwrap_or("0");
        u16::from_str_radix(hex, 16).unwrap_or(0)
    };
    let remote = match port(f[2]) {
        0 => "*".to_string(),
        p => p.to_string(),
    };
    Some(format!("tcp:{}->{remote}", port(f[1])))
}

/// Samples `pid` every `every` until the counters say stop (and once more then).
pub async fn sample(pid: u32, every: Duration, c: Arc<Counters>) -> Vec<Sample> {
    let start = Instant::now();
    let mut out = Vec::new();
    loop {
        let stopped = c.stopped();
        out.push(Sample {
            secs: start.elapsed().as_secs_f64(),
            rss_kb: rss_kb(pid),
            fds: fds(pid),
            acked: c.acked_writes.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
        });
        if stopped {
            return out;
        }
        let next = start + every * u32::try_from(out.len()).unwrap_or(u32::MAX);
        while Instant::now() < next && !c.stopped() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The table printed at the end of the run.
pub fn table(samples: &[Sample]) -> String {
    use std::fmt::Write;
    let mut s = String::from("    t (s)   RSS (MiB)   fds   acked writes   reconnects\n");
    for x in samples {
        let _ = writeln!(
            s,
            "  {:7.1}   {:9.1}   {:3}   {:12}   {:10}",
            x.secs,
            mib(x.rss_kb),
            x.fds,
            x.acked,
            x.reconnects
        );
    }
    s
}

/// The verdict on one resource: maxima of the two halves after the warm-up.
#[derive(Debug)]
pub struct Flatness {
    pub first_max: u64,
    pub second_max: u64,
    pub samples: usize,
}

impl Flatness {
    pub fn growth(&self) -> i128 {
        i128::from(self.second_max) - i128::from(self.first_max)
    }
}

/// kB as MiB, for printing.
pub fn mib(kb: u64) -> f64 {
    f64::from(u32::try_from(kb).unwrap_or(u32::MAX)) / 1024.0
}

/// "Flat after warm-up": drop the samples of the first `warmup` fraction of the run, split the
/// rest in two halves by time; the maximum of the second half may exceed the maximum of the
/// first by at most the slack the caller asserts. A leak of a little per request or per
/// reconnect grows with time and shows as a higher second half; a working set that settled
/// after the warm-up does not.
pub fn flatness(samples: &[Sample], warmup: f64, value: impl Fn(&Sample) -> u64) -> Flatness {
    let end = samples.last().map_or(0.0, |s| s.secs);
    let from = end * warmup;
    let mid = from + (end - from) / 2.0;
    let rest: Vec<&Sample> = samples.iter().filter(|s| s.secs >= from).collect();
    let max_of = |keep: &dyn Fn(f64) -> bool| {
        rest.iter()
            .filter(|s| keep(s.secs))
            .map(|s| value(s))
            .max()
            .unwrap_or(0)
    };
    Flatness {
        first_max: max_of(&|t| t < mid),
        second_max: max_of(&|t| t >= mid),
        samples: rest.len(),
    }
}
