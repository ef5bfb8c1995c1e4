//! Runs the year and prints what a store owner's box would live with, each figure beside its
//! goal.

// Counts, bytes and ms become f64 for rates and MB; they stay far below 2^52, where the cast is
// exact.
#![allow(clippy::cast_precision_loss)]

use std::time::Duration;

use anyhow::{bail, Context};

use crate::generate::{self, Year};
use crate::measure::{self, RealHub};
use crate::Plan;

const HOUR_MS: u64 = 3_600_000;

pub async fn run(plan: &Plan) -> anyhow::Result<()> {
    if plan.dir.join("hub.redb").exists() {
        bail!(
            "{} already holds a hub.redb: give an empty directory",
            plan.dir.display()
        );
    }
    std::fs::create_dir_all(&plan.dir)?;
    let bin = match &plan.hub_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("poshub"),
    };
    let year = generate::generate(&plan.dir, plan).await?;
    print_year(plan, &year);
    let cold = !plan.warm && measure::drop_caches();
    let hub = RealHub::start(&bin, &plan.dir).await?;
    let (rss, _) = hub.rss_kb();
    let cache = if cold {
        "cold page cache"
    } else {
        "WARM page cache (--warm, or not root)"
    };
    let ready = hub.ready.as_secs_f64() * 1e3;
    println!(
        "ready: {ready:.0} ms after spawn ({cache}), goal < 200 ms: {}",
        verdict(ready < 200.0)
    );
    println!(
        "resident after ready: {:.1} MB, goal < 24 MB: {}",
        rss as f64 / 1024.0,
        verdict(rss < 24 * 1024)
    );
    catch_ups(&hub, &year).await?;
    // What the dashboard polls: it must cost the open and today's orders, not the year's.
    let (t, bytes) = hub.http_get("/orders").await?;
    println!(
        "GET /orders (the dashboard's poll): {:.2} MB in {:.0} ms",
        bytes as f64 / 1e6,
        t.as_secs_f64() * 1e3
    );
    let (rss, peak) = hub.rss_kb();
    println!(
        "resident after the catch-ups and GET /orders: {:.1} MB (peak {:.1} MB), goal < 24 MB: {}",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0,
        verdict(peak < 24 * 1024)
    );
    backup_and_check(&hub, plan)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT MET"
    }
}

/// The head seq at simulated time `ms` (the last step that ended by then).
fn seq_at(year: &Year, ms: u64) -> u64 {
    year.marks
        .iter()
        .take_while(|(t, _)| *t <= ms)
        .last()
        .map_or(0, |m| m.1)
}

fn print_year(plan: &Plan, y: &Year) {
    let (days, bytes, seq, secs) = y.samples.last().copied().unwrap_or_default();
    println!(
        "year: {days} days x {} orders x {} snapshots, {} terminals: {} messages, head seq {seq}, written in {secs:.0} s",
        plan.orders_per_day, plan.writes_per_order, plan.terminals, y.messages
    );
    println!(
        "database: {:.1} MB, goal < 1 GB: {}",
        bytes as f64 / 1e6,
        verdict(bytes < 1_000_000_000)
    );
    let sizes: Vec<String> = y
        .samples
        .iter()
        .map(|(d, b, _, _)| format!("day {d}: {:.1} MB", *b as f64 / 1e6))
        .collect();
    println!("database size over the year: {}", sizes.join(", "));
    let mut c: Vec<Duration> = y.compactions.clone();
    c.sort();
    let total: Duration = c.iter().sum();
    println!(
        "hourly compaction: {} runs, median {:.1} ms, max {:.1} ms, total {:.1} s",
        c.len(),
        c.get(c.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e3),
        c.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        total.as_secs_f64()
    );
    if !y.refusals.is_empty() {
        println!("replies other than success: {:?}", y.refusals);
    }
}

/// Terminals reconnecting with cursors an hour, a day and a week old.
async fn catch_ups(hub: &RealHub, year: &Year) -> anyhow::Result<()> {
    for (label, age) in [
        ("1 hour", HOUR_MS),
        ("1 day", 24 * HOUR_MS),
        ("1 week", 168 * HOUR_MS),
    ] {
        let cursor = seq_at(year, year.end_ms.saturating_sub(age));
        let c = measure::catch_up(hub.ws, cursor).await?;
        let goal = if label == "1 day" {
            format!(
                ", goal < 1 s and < 2 MB: {}",
                verdict(c.time < Duration::from_secs(1) && c.bytes < 2_000_000)
            )
        } else {
            String::new()
        };
        println!(
            "catch-up, cursor {label} old (seq {cursor} of {}): {} in {:.0} ms, {:.2} MB in {} frames{goal}",
            year.marks.last().map_or(0, |m| m.1), c.how, c.time.as_secs_f64() * 1e3, c.bytes as f64 / 1e6, c.frames
        );
    }
    Ok(())
}

/// `poshub backup` of the live hub, then `poshub check` of the copy.
fn backup_and_check(hub: &RealHub, plan: &Plan) -> anyhow::Result<()> {
    let copy = plan.dir.join("year-backup.redb");
    let _ = std::fs::remove_file(&copy);
    let copy_s = copy.display().to_string();
    let (t, _) = hub
        .cli(&["backup", "--out", &copy_s])
        .context("poshub backup")?;
    let size = std::fs::metadata(&copy).map_or(0, |m| m.len());
    println!(
        "poshub backup of the live hub: {:.2} s, {:.1} MB",
        t.as_secs_f64(),
        size as f64 / 1e6
    );
    let (t, out) = hub
        .cli(&["check", "--db", &copy_s])
        .context("poshub check")?;
    println!(
        "poshub check of the copy: {:.2} s: {}",
        t.as_secs_f64(),
        out.trim()
    );
    Ok(())
}
