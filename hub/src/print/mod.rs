//! Kitchen and bar printers (docs/kitchen.md): the durable per-station spooler (`spooler`) and the
//! live state other parts read (configuration is `config::printers`, the ESC/POS rendering and
//! the spoolers' counters are `printer`, below the engine that renders and counts): `/health` (`health_json`), `/metrics` (`metrics_text`) and the dashboard.
//!
//! Delivery guarantee (see `docs/kitchen.md`): a ticket's print job is written in the same
//! transaction as the ticket, so no acknowledged ticket is ever lost. A job leaves the queue
//! only after the printer's TCP stack acknowledged every byte of it (and the stream's end), and
//! the removal is committed before the next job is sent. A job is sent again only if that
//! removal was not yet durable: after a hub crash in the few milliseconds between the printer's
//! acknowledgement and the commit, or when the acknowledgement never came (printer lost power
//! mid-ticket). Printing is therefore at-least-once, with a duplicate possible only in those
//! two windows.

pub mod spooler;

pub use crate::config::printers::{parse_printers, printer_for, PrinterConfig};
pub use crate::printer::{escpos, PrintStats, PrinterState, StationStats};

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::config::Config;
#[cfg(test)]
use crate::station::Station;

/// The `printers` field of `/health`: per configured station, its address, state and queue.
pub async fn health_json(hub: &crate::context::Hub) -> Value {
    let store = hub.store.clone();
    let depths = tokio::task::spawn_blocking(move || store.print_depths())
        .await
        .ok()
        .and_then(Result::ok);
    let stats = &hub.engine.stats.print;
    let list: Vec<Value> = hub
        .cfg
        .printers
        .iter()
        .map(|p| {
            let st = stats.station(p.station);
            let depth = depths.map_or_else(
                || st.depth.load(Ordering::Relaxed),
                |d| d[p.station.index()],
            );
            json!({"station": p.station.as_str(), "addr": p.addr, "state": st.state().as_str(),
                "queueDepth": depth, "printed": st.printed.load(Ordering::Relaxed),
                "failures": st.failures.load(Ordering::Relaxed),
                "lastPrintedAt": match st.last_printed_ms.load(Ordering::Relaxed) { 0 => Value::Null, v => v.into() },
                "lastError": st.last_error()})
        })
        .collect();
    Value::Array(list)
}

/// Name, type, help and reading of one exported metric.
type Metric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&StationStats) -> u64,
);

/// `OpenMetrics` lines for the print spoolers, which `/metrics` inserts before `# EOF`.
pub fn metrics_text(cfg: &Config, stats: &PrintStats) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let metrics: [Metric; 4] = [
        (
            "poshub_print_queue_depth",
            "gauge",
            "Print jobs waiting per station.",
            |s| s.depth.load(Ordering::Relaxed),
        ),
        (
            "poshub_print_jobs_printed_total",
            "counter",
            "Print jobs acknowledged by the printer.",
            |s| s.printed.load(Ordering::Relaxed),
        ),
        (
            "poshub_print_failures_total",
            "counter",
            "Failed print attempts.",
            |s| s.failures.load(Ordering::Relaxed),
        ),
        (
            "poshub_printer_online",
            "gauge",
            "1 unless the printer is offline or stalled.",
            |s| {
                u64::from(!matches!(
                    s.state(),
                    PrinterState::Offline | PrinterState::Stalled
                ))
            },
        ),
    ];
    for (name, kind, help, get) in metrics {
        // OpenMetrics (the format `/metrics` serves) names a counter family without `_total`.
        let family = if kind == "counter" {
            name.trim_end_matches("_total")
        } else {
            name
        };
        let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {kind}");
        for p in &cfg.printers {
            let _ = writeln!(
                out,
                "{name}{{station=\"{}\"}} {}",
                p.station,
                get(stats.station(p.station))
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_have_one_series_per_configured_printer() {
        let vars = crate::config::Vars::from_map([("HUB_PRINTERS", "bds=10.0.0.9:9100")]);
        let cfg = Config::from_vars(&vars, false).expect("valid");
        let stats = PrintStats::default();
        stats
            .station(Station::Bds)
            .printed
            .fetch_add(3, Ordering::Relaxed);
        stats.station(Station::Bds).set_state(PrinterState::Offline);
        let text = metrics_text(&cfg, &stats);
        assert!(
            text.contains("poshub_print_jobs_printed_total{station=\"bds\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("poshub_printer_online{station=\"bds\"} 0"),
            "{text}"
        );
        assert!(!text.contains("station=\"kds\""), "{text}");
    }
}
