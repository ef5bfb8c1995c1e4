//! What else the machine did during a run: CPU time the benchmark itself used, time other
//! processes took, and time the hypervisor stole, read from `/proc`. On a shared 2-core machine
//! a latency outlier means little unless the run says whose the cores were.

/// Cumulative CPU counters at one moment, in clock ticks.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Ticks the machine's CPUs were busy (user, nice, system, irq, softirq), all cores.
    busy: u64,
    /// Ticks stolen by the hypervisor, all cores.
    steal: u64,
    /// Ticks this benchmark process used.
    own: u64,
}

/// Reads the counters now; `None` where `/proc` is not there to read.
pub fn sample() -> Option<Sample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = cpu
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    Some(Sample {
        busy: at(0) + at(1) + at(2) + at(5) + at(6),
        steal: at(7),
        own: own_ticks()?,
    })
}

fn own_ticks() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// CPU use between two samples, as percent of one core over `seconds`.
#[derive(Debug)]
pub struct Usage {
    pub bench: f64,
    /// Busy time that was neither the hub's nor the benchmark's.
    pub others: f64,
    pub steal: f64,
}

/// Clock ticks (`USER_HZ`, 100 on Linux) over `seconds`, as percent of one core.
// Tick counts stay far below 2^52, where u64 -> f64 is exact.
#[allow(clippy::cast_precision_loss)]
pub fn core_pct(ticks: u64, seconds: f64) -> f64 {
    ticks as f64 / 100.0 / seconds * 100.0
}

/// `hub_ticks` is the hub's own CPU time over the same interval (0 for a remote hub).
pub fn usage(a: &Sample, b: &Sample, hub_ticks: u64, seconds: f64) -> Usage {
    let pct = |ticks: u64| core_pct(ticks, seconds);
    let own = b.own.saturating_sub(a.own);
    Usage {
        bench: pct(own),
        others: pct(b
            .busy
            .saturating_sub(a.busy)
            .saturating_sub(own + hub_ticks)),
        steal: pct(b.steal.saturating_sub(a.steal)),
    }
}

/// CPUs online on the machine (not only those this process may use: with `--hub-cpu` the
/// benchmark runs on fewer).
pub fn cores() -> usize {
    std::fs::read_to_string("/proc/stat").map_or(0, |s| {
        s.lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .count()
    })
}
