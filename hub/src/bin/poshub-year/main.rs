//! `poshub-year`: a year of a busy store as a benchmark (docs/benchmarks.md, "A year of a busy
//! store"). Writes the year into a real hub on a simulated clock (`generate`), then measures
//! the database from outside with the real `poshub` binary (`measure`) and prints the figures
//! against the goals: ready < 200 ms with a cold page cache, resident < 24 MB, database < 1 GB,
//! catch-up of a day < 1 s and < 2 MB.

mod generate;
mod measure;
mod orders;
mod report;

use std::path::PathBuf;

use clap::Parser;

/// A year of a busy store, written through the hub, then measured.
#[derive(Parser, Debug, Clone)]
#[command(name = "poshub-year", version)]
pub struct Plan {
    /// Days of trading to simulate (each 12 h of trading in a 24 h block).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3660))]
    pub days: u32,
    /// Orders taken per day.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub orders_per_day: u32,
    /// Snapshots written per order (the last one pays it).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(4..=200))]
    pub writes_per_order: u32,
    /// Orders still open when the year ends.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub open_at_end: u32,
    /// Terminals taking orders.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub terminals: u32,
    /// Directory for the database (must not hold one already); kept afterwards.
    #[arg(long)]
    pub dir: PathBuf,
    /// Keep the page cache (by default it is dropped before the hub starts, which needs root).
    #[arg(long)]
    pub warm: bool,
    /// poshub binary to measure with (default: next to this one).
    #[arg(long)]
    pub hub_bin: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let plan = Plan::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("poshub-year: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match rt.block_on(report::run(&plan)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("poshub-year: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
