//! `poshub-bench`: a load benchmark for the hub. Starts a hub (or targets a running one),
//! connects N terminals over WebSocket, drives W of them as writers at a given rate or flat
//! out for a bounded time, and prints acknowledged writes/s, fan-out latency at the other
//! terminals, commit batch sizes, and the hub's peak RSS and CPU.

mod drive;
mod host;
mod hubproc;
mod report;

use std::time::Duration;

use clap::Parser;

/// Load benchmark for poshub (every write is fsynced before it is acknowledged).
#[derive(Parser, Debug, Clone)]
#[command(name = "poshub-bench", version)]
pub struct Args {
    /// Terminals connected (writers included).
    #[arg(long, short = 'n', default_value_t = 50)]
    pub terminals: usize,
    /// Terminals that write orders.
    #[arg(long, short = 'w', default_value_t = 10)]
    pub writers: usize,
    /// Total writes per second across all writers; 0 = flat out.
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    /// Seconds of load (after a 1 s warm-up that is not measured).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Writes each writer may have in flight when flat out.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Target a running hub (ws://host:port/) instead of starting one; it must run in open auth mode.
    #[arg(long)]
    pub target: Option<String>,
    /// HTTP base of the target hub (for metrics), e.g. <http://127.0.0.1:8766>.
    #[arg(long)]
    pub target_http: Option<String>,
    /// poshub binary to start (default: next to this binary).
    #[arg(long)]
    pub hub_bin: Option<std::path::PathBuf>,
    /// Pin the spawned hub to this CPU (e.g. 0) and the benchmark to all the others, so the
    /// hub's CPU per frame is measured with the hub alone on one core.
    #[arg(long)]
    pub hub_cpu: Option<usize>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.writers == 0
        || args.writers > args.terminals
        || args.duration == 0
        || args.duration > 600
    {
        eprintln!("poshub-bench: need 1 <= --writers <= --terminals and 1 <= --duration <= 600");
        return std::process::ExitCode::from(2);
    }
    if args.hub_cpu.is_some() && args.target.is_some() {
        eprintln!("poshub-bench: --hub-cpu pins a hub this run starts; not with --target");
        return std::process::ExitCode::from(2);
    }
    if let Some(cpu) = args.hub_cpu {
        if let Err(e) = hubproc::pin_self_away_from(cpu) {
            eprintln!("poshub-bench: --hub-cpu {cpu}: {e}");
            return std::process::ExitCode::from(2);
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("poshub-bench: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("poshub-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let hub = match &args.target {
        Some(ws) => hubproc::Hub::existing(ws.clone(), args.target_http.clone()),
        None => hubproc::Hub::spawn(args.hub_bin.clone(), args.hub_cpu).await?,
    };
    if let Some(cpu) = args.hub_cpu {
        println!("hub pinned to CPU {cpu}, the benchmark to the other CPUs");
    }
    if let Some(ms) = hub.ready_ms {
        println!("hub ready (health answers) {ms:.1} ms after spawn, on an empty database");
    }
    let before = hub.metrics().await.unwrap_or_default();
    let cpu_before = hub.cpu_ticks();
    let host_before = host::sample();
    let started = std::time::Instant::now();
    let result = drive::drive(&args, &hub.ws_url, Duration::from_secs(args.duration)).await?;
    let host_after = host::sample();
    let seconds = started.elapsed().as_secs_f64();
    let after = hub.metrics().await.unwrap_or_default();
    let cpu = hub
        .cpu_ticks()
        .zip(cpu_before)
        .map(|(a, b)| a.saturating_sub(b));
    let machine = host_before
        .zip(host_after)
        .map(|(a, b)| host::usage(&a, &b, cpu.unwrap_or(0), seconds));
    let hub_pct = cpu.map(|t| host::core_pct(t, seconds));
    report::print(&args, &result, &before, &after, hub_pct, hub.peak_rss_kb());
    if let Some(ticks) = cpu {
        report::print_cpu_per_frame(&result, ticks);
    }
    if let Some(m) = machine {
        // A hub this run did not start has no CPU figure of its own: it is among the others.
        let others = if cpu.is_some() {
            "other processes"
        } else {
            "other processes (the hub included)"
        };
        println!(
            "machine, whole run: benchmark {:.0}%, {others} {:.0}%, stolen by the host {:.1}% (of one core; {} cores)",
            m.bench,
            m.others,
            m.steal,
            host::cores()
        );
    }
    hub.stop();
    Ok(())
}
