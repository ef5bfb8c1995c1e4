//! Turns raw timings into the figures the benchmark prints.

// Counts and µs become f64 for rates and ms; they stay far below 2^52, where the cast is exact.
#![allow(clippy::cast_precision_loss)]

use std::collections::HashMap;

use crate::drive::RunResult;
use crate::hubproc::Scrape;
use crate::Args;

/// Value at quantile `p` (0..=1) of `sorted`, in ms.
// The index is rounded from `(len - 1) * p` with `p` in 0..=1: in range and not negative.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn line(name: &str, mut v: Vec<u64>) -> String {
    v.sort_unstable();
    format!(
        "{name:<44} p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   (n={})",
        pct(&v, 0.5),
        pct(&v, 0.99),
        pct(&v, 1.0),
        v.len()
    )
}

pub fn print(
    args: &Args,
    r: &RunResult,
    before: &Scrape,
    after: &Scrape,
    hub_cpu_pct: Option<f64>,
    rss_kb: Option<u64>,
) {
    let window_s = (r.measure_to_us - r.measure_from_us) as f64 / 1e6;
    // Writes sent inside the measured window.
    let measured: HashMap<u64, (u64, u64)> = r
        .writes
        .iter()
        .filter(|w| w.sent_us >= r.measure_from_us && w.sent_us < r.measure_to_us)
        .map(|w| (w.seq, (w.sent_us, w.acked_us)))
        .collect();
    let acked = measured.len() as u64;
    let mode = if args.rate == 0 {
        "flat out".to_string()
    } else {
        format!("{} writes/s", args.rate)
    };
    println!(
        "terminals {}, writers {}, {mode}, {window_s:.1} s measured, fsync before every ack",
        args.terminals, args.writers
    );
    println!(
        "acknowledged writes/s                        {:.0}",
        acked as f64 / window_s
    );
    let ack_lat: Vec<u64> = measured.values().map(|(s, a)| a - s).collect();
    println!("{}", line("write -> ORDER_ACK (includes fsync)", ack_lat));

    print_fanout(args, r, &measured, acked);
    print_hub_side(before, after, window_s, hub_cpu_pct, rss_kb);
    if r.errors > 0 {
        println!("errors/conflicts                             {}", r.errors);
    }
}

/// Fan-out and end-to-end latency of the measured writes, and how many broadcasts arrived.
fn print_fanout(args: &Args, r: &RunResult, measured: &HashMap<u64, (u64, u64)>, acked: u64) {
    // The first moment any terminal saw an event (its writer's ack or the earliest broadcast)
    // stands for its append; fan-out is how long the others took after that.
    let mut first: HashMap<u64, u64> = measured
        .iter()
        .map(|(seq, (_, acked))| (*seq, *acked))
        .collect();
    for got in &r.received {
        for (seq, at) in got {
            if let Some(f) = first.get_mut(seq) {
                *f = (*f).min(*at);
            }
        }
    }
    let mut fanout = Vec::new();
    let mut e2e = Vec::new();
    let mut last: HashMap<u64, u64> = HashMap::new();
    let mut delivered = 0u64;
    let mut duplicates = 0u64;
    let mut covered = 0u64;
    for (t, got) in r.received.iter().enumerate() {
        let mut seen = std::collections::HashSet::new();
        for (seq, at) in got {
            if !seen.insert(*seq) {
                duplicates += 1;
                continue;
            }
            if let (Some((sent, _)), Some(f)) = (measured.get(seq), first.get(seq)) {
                delivered += 1;
                fanout.push(at - f);
                e2e.push(at.saturating_sub(*sent));
                let l = last.entry(*seq).or_insert(0);
                *l = (*l).max(at - f);
            }
        }
        // Measured events this terminal did not get because a `STATE` covered them.
        let state = r.state_seqs.get(t).copied().unwrap_or(0);
        if state > 0 {
            let own: std::collections::HashSet<u64> = r.own_writes[t].iter().copied().collect();
            covered += measured
                .keys()
                .filter(|q| **q <= state && !own.contains(q) && !seen.contains(q))
                .count() as u64;
        }
    }
    let expected = acked * (args.terminals as u64 - 1);
    println!(
        "{}",
        line("fan-out: first delivery -> each other terminal", fanout)
    );
    println!(
        "{}",
        line(
            "fan-out: first delivery -> last terminal",
            last.into_values().collect()
        )
    );
    println!("{}", line("end to end: write sent -> other terminal", e2e));
    println!(
        "broadcasts delivered                         {delivered} of {expected} ({:.3}%), {duplicates} duplicates, {covered} covered by a STATE instead",
        if expected == 0 {
            100.0
        } else {
            delivered as f64 * 100.0 / expected as f64
        }
    );
}

/// What the hub's own metrics say: broadcast latency, commits, catch-ups, memory and CPU.
fn print_hub_side(
    before: &Scrape,
    after: &Scrape,
    window_s: f64,
    hub_cpu_pct: Option<f64>,
    rss_kb: Option<u64>,
) {
    let (b50, b99) = (
        after.broadcast_quantile(before, 0.5),
        after.broadcast_quantile(before, 0.99),
    );
    println!("hub side: durable commit -> written to socket  p50 <= {b50:.2} ms   p99 <= {b99:.2} ms   (histogram bucket bounds)");
    let batches = after.batch_count - before.batch_count;
    if batches > 0.0 {
        println!(
            "commit batch size (mean)                     {:.1} commands per fsync, {:.0} commits/s, {:.2} ms per commit",
            (after.batch_sum - before.batch_sum) / batches,
            batches / window_s,
            (after.commit_sum - before.commit_sum) * 1000.0 / batches
        );
    }
    println!(
        "terminals caught up after falling behind     {}",
        after.lag_resyncs - before.lag_resyncs
    );
    println!(
        "catch-ups served from memory / database / by a STATE  {} / {} / {}",
        after.catchups_memory - before.catchups_memory,
        after.catchups_database - before.catchups_database,
        after.catchups_state - before.catchups_state
    );
    if let Some(kb) = rss_kb {
        println!(
            "hub peak RSS                                 {:.1} MiB ({:.1} MB)",
            kb as f64 / 1024.0,
            kb as f64 * 1024.0 / 1e6
        );
    }
    if let Some(pct) = hub_cpu_pct {
        println!("hub CPU                                      {pct:.0}% of one core (whole run)");
    }
}

/// The hub's CPU time (user + system, from `/proc/PID/stat`, the hub process alone, whole run
/// including the warm-up) per acknowledged write and per frame it delivered to a terminal
/// (`ORDER_UPDATED` live or in `EVENTS_BULK`): what issue 17 compares with a Node.js hub.
pub fn print_cpu_per_frame(r: &RunResult, hub_ticks: u64) {
    let us = hub_ticks as f64 * 1e6 / 100.0;
    let events = r.writes.len();
    let frames: usize = r.received.iter().map(Vec::len).sum();
    if events == 0 || frames == 0 {
        return;
    }
    println!(
        "hub CPU per write / per frame delivered      {:.1} us / {:.2} us   ({events} writes, {frames} frames, {:.2} s of hub CPU)",
        us / events as f64,
        us / frames as f64,
        us / 1e6
    );
}
