//! The hub under test: spawned from the poshub binary with a fresh database, or one already
//! running. Reads its metrics over HTTP and its memory and CPU from /proc.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Hub {
    pub ws_url: String,
    http: Option<String>,
    child: Option<Child>,
    dir: Option<PathBuf>,
    pub ready_ms: Option<f64>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Counters and histogram sums scraped from `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct Scrape {
    pub batch_sum: f64,
    pub batch_count: f64,
    pub commit_sum: f64,
    pub lag_resyncs: f64,
    /// Catch-ups served from the hub's in-memory event window, and from its database.
    pub catchups_memory: f64,
    pub catchups_database: f64,
    pub catchups_state: f64,
    /// Cumulative `poshub_broadcast_latency_seconds` buckets: (upper bound in s, count).
    pub broadcast_buckets: Vec<(f64, f64)>,
}

impl Scrape {
    /// Upper bound (ms) of the bucket holding quantile `q` of broadcasts between two scrapes.
    // Bucket bounds are parsed from the same `le` labels each scrape: compared exactly.
    #[allow(clippy::float_cmp)]
    pub fn broadcast_quantile(&self, before: &Scrape, q: f64) -> f64 {
        let delta: Vec<(f64, f64)> = self
            .broadcast_buckets
            .iter()
            .map(|(le, n)| {
                (
                    *le,
                    n - before
                        .broadcast_buckets
                        .iter()
                        .find(|(b, _)| b == le)
                        .map_or(0.0, |(_, m)| *m),
                )
            })
            .collect();
        let total = delta.last().map_or(0.0, |(_, n)| *n);
        if total == 0.0 {
            return f64::NAN;
        }
        delta
            .iter()
            .find(|(_, n)| *n >= q * total)
            .map_or(f64::INFINITY, |(le, _)| le * 1000.0)
    }
}

impl Hub {
    pub fn existing(ws_url: String, http: Option<String>) -> Hub {
        Hub {
            ws_url,
            http,
            child: None,
            dir: None,
            ready_ms: None,
        }
    }

    pub async fn spawn(bin: Option<PathBuf>, cpu: Option<usize>) -> anyhow::Result<Hub> {
        let bin = match bin {
            Some(b) => b,
            None => std::env::current_exe()?.with_file_name("poshub"),
        };
        let dir = std::env::temp_dir().join(format!(
            "poshub-bench-{}-{}",
            std::process::id(),
            free_port()?
        ));
        std::fs::create_dir_all(&dir)?;
        let (wp, hp) = (free_port()?, free_port()?);
        let start = Instant::now();
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .env("HUB_BIND", "127.0.0.1")
            .env("HUB_PORT", wp.to_string())
            .env("HUB_HTTP_PORT", hp.to_string())
            .env("HUB_DB_PATH", dir.join("hub.redb"))
            .env("HUB_AUTH_MODE", "open")
            .env("HUB_MDNS_ENABLED", "false")
            .env("HUB_LOG_LEVEL", "warn")
            .env("HUB_RATE_LIMIT_PER_SEC", "100000")
            .stdout(Stdio::null());
        child_setup(&mut cmd, cpu)?;
        let child = cmd
            .spawn()
            .with_context(|| format!("unable to start {}", bin.display()))?;
        let http = format!("127.0.0.1:{hp}");
        // Owned from here: an early return kills and reaps it (see `Drop`).
        let mut hub = Hub {
            ws_url: format!("ws://127.0.0.1:{wp}/"),
            http: Some(format!("http://{http}")),
            child: Some(child),
            dir: Some(dir),
            ready_ms: None,
        };
        let deadline = start + Duration::from_secs(10);
        loop {
            if get(&http, "/health")
                .await
                .is_ok_and(|b| b.contains("\"status\":\"ok\""))
            {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "hub did not become healthy in 10 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        hub.ready_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
        Ok(hub)
    }

    pub async fn metrics(&self) -> Option<Scrape> {
        let base = self
            .http
            .as_deref()?
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let text = get(&base, "/metrics").await.ok()?;
        let val = |name: &str| -> f64 {
            text.lines()
                .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        Some(Scrape {
            batch_sum: val("poshub_commit_batch_size_sum"),
            batch_count: val("poshub_commit_batch_size_count"),
            commit_sum: val("poshub_commit_duration_seconds_sum"),
            lag_resyncs: val("poshub_lag_resyncs_total"),
            catchups_memory: val("poshub_catchups_total{source=\"memory\"}"),
            catchups_database: val("poshub_catchups_total{source=\"database\"}"),
            catchups_state: val("poshub_catchups_total{source=\"state\"}"),
            broadcast_buckets: text
                .lines()
                .filter_map(|l| l.strip_prefix("poshub_broadcast_latency_seconds_bucket{le=\""))
                .filter_map(|rest| {
                    let (le, n) = rest.split_once("\"} ")?;
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().ok()?
                    };
                    Some((le, n.trim().parse().ok()?))
                })
                .collect(),
        })
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Peak resident set size of the spawned hub (`VmHWM`), in KiB.
    pub fn peak_rss_kb(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        s.lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// User + system CPU time of the spawned hub, in clock ticks.
    pub fn cpu_ticks(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?)).ok()?;
        let after = s.rsplit_once(')')?.1;
        let f: Vec<&str> = after.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    }

    /// Kills the spawned hub and removes its database (as dropping it does).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Hub {
    /// Whatever ends the run (an error included), the spawned hub does not outlive it.
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(d) = self.dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The spawned hub gets SIGKILL if the bench dies first (killed, crashed), and runs on `cpu`
/// alone when one is given.
fn child_setup(cmd: &mut Command, cpu: Option<usize>) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let set = match cpu {
        Some(c) => {
            let mut set = CpuSet::new();
            set.set(c).with_context(|| format!("CPU {c}"))?;
            Some(set)
        }
        None => None,
    };
    // SAFETY: prctl and sched_setaffinity are plain system calls on the new process (both
    // async-signal-safe); the set was built before the fork.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if let Some(set) = &set {
                sched_setaffinity(Pid::from_raw(0), set)?;
            }
            Ok(())
        });
    }
    Ok(())
}

/// Moves the benchmark off `hub_cpu` (before its runtime starts, so it sizes itself to what is
/// left). Fails when that CPU is not online or the benchmark would have no CPU left.
pub fn pin_self_away_from(hub_cpu: usize) -> anyhow::Result<()> {
    let cpus = crate::host::cores();
    anyhow::ensure!(
        hub_cpu < cpus,
        "this machine has {cpus} CPU(s): the hub's must be one of 0..{cpus}"
    );
    let mut set = sched_getaffinity(Pid::from_raw(0)).context("sched_getaffinity")?;
    set.unset(hub_cpu).context("CPU set")?;
    anyhow::ensure!(
        (0..CpuSet::count()).any(|c| set.is_set(c).unwrap_or(false)),
        "no CPU other than {hub_cpu} is left for the benchmark"
    );
    sched_setaffinity(Pid::from_raw(0), &set).context("sched_setaffinity")?;
    Ok(())
}

async fn get(host: &str, path: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(host).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    Ok(buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}
