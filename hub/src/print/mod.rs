//! Kitchen and bar printers (SPEC §2.5): configuration (`HUB_PRINTERS`), ESC/POS rendering
//! (`escpos`), the durable per-station spooler (`spooler`), and the live state other parts
//! read: `/health` (`health_json`), `/metrics` (`metrics_text`) and the dashboard.
//!
//! Delivery guarantee (see `docs/kitchen.md`): a ticket's print job is written in the same
//! transaction as the ticket, so no acknowledged ticket is ever lost. A job leaves the queue
//! only after the printer's TCP stack acknowledged every byte of it (and the stream's end), and
//! the removal is committed before the next job is sent. A job is sent again only if that
//! removal was not yet durable: after a hub crash in the few milliseconds between the printer's
//! acknowledgement and the commit, or when the acknowledgement never came (printer lost power
//! mid-ticket). Printing is therefore at-least-once, with a duplicate possible only in those
//! two windows.

pub mod escpos;
pub mod spooler;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::config::Config;
use crate::config::ConfigError;
use crate::station::Station;

/// The printer of one station.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterConfig {
    pub station: Station,
    /// `host:port` as configured (resolved at each connection attempt).
    pub addr: String,
}

/// Parses `HUB_PRINTERS` (`kds=192.0.2.10:9100,bds=bar-printer:9100`); a missing port means 9100.
pub fn parse_printers(var: &str, value: Option<&str>) -> Result<Vec<PrinterConfig>, ConfigError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(Vec::new());
    };
    let err = |m: String| ConfigError {
        var: var.to_string(),
        message: m,
    };
    let mut out: Vec<PrinterConfig> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((name, addr)) = item.split_once('=') else {
            return Err(err(format!(
                "{item:?} is not STATION=HOST:PORT (e.g. kds=192.0.2.10:9100)"
            )));
        };
        let station = Station::parse(name.trim()).ok_or_else(|| {
            err(format!(
                "unknown station {:?} (expected kds or bds)",
                name.trim()
            ))
        })?;
        if out.iter().any(|p| p.station == station) {
            return Err(err(format!("station {station} is listed twice")));
        }
        let addr = addr.trim();
        let (host, port) = match addr.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') => (h, p),
            _ => (addr, "9100"),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c));
        if !port_ok || !host_ok {
            return Err(err(format!(
                "{addr:?} for {station} is not HOST:PORT (e.g. 192.0.2.10:9100)"
            )));
        }
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        out.push(PrinterConfig { station, addr });
    }
    Ok(out)
}

/// The configured printer of a station, if any.
pub fn printer_for(cfg: &Config, s: Station) -> Option<&PrinterConfig> {
    cfg.printers.iter().find(|p| p.station == s)
}

/// What a spooler last saw of its printer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PrinterState {
    /// No printer configured for the station.
    None = 0,
    /// Queue empty, last print (if any) succeeded.
    Idle = 1,
    /// Sending a job.
    Printing = 2,
    /// Connection refused, unreachable, or the printer stopped acknowledging: retrying.
    Offline = 3,
    /// Connected, but the printer has not taken the whole ticket yet (paper out, cover open):
    /// the hub keeps waiting on the same connection rather than sending another copy.
    Stalled = 4,
}

impl PrinterState {
    fn from_u8(v: u8) -> PrinterState {
        match v {
            1 => PrinterState::Idle,
            2 => PrinterState::Printing,
            3 => PrinterState::Offline,
            4 => PrinterState::Stalled,
            _ => PrinterState::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PrinterState::None => "none",
            PrinterState::Idle => "idle",
            PrinterState::Printing => "printing",
            PrinterState::Offline => "offline",
            PrinterState::Stalled => "stalled",
        }
    }
}

/// Live counters of one station's spooler (read by health, metrics, the dashboard).
#[derive(Debug, Default)]
pub struct StationStats {
    /// Woken by the engine when a job was committed to this station's queue.
    pub wake: Notify,
    /// Jobs waiting, as of the spooler's last look at the queue.
    pub depth: AtomicU64,
    state: AtomicU8,
    /// Jobs the printer acknowledged (and the hub recorded durably), since start.
    pub printed: AtomicU64,
    /// Failed attempts (connect, write or acknowledgement), since start.
    pub failures: AtomicU64,
    /// Time of the last acknowledged job (ms since the epoch; 0 = none since start).
    pub last_printed_ms: AtomicU64,
    /// Why the last attempt failed.
    pub last_error: Mutex<Option<String>>,
}

impl StationStats {
    pub fn state(&self) -> PrinterState {
        PrinterState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn set_state(&self, s: PrinterState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|g| g.clone())
    }

    pub(crate) fn set_error(&self, e: Option<String>) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = e;
        }
    }
}

/// Every station's spooler counters; lives in `EngineStats::print`.
#[derive(Debug, Default)]
pub struct PrintStats {
    stations: [StationStats; 2],
}

impl PrintStats {
    pub fn station(&self, s: Station) -> &StationStats {
        &self.stations[s.index()]
    }
}

/// The `printers` field of `/health`: per configured station, its address, state and queue.
pub async fn health_json(hub: &crate::server::Hub) -> Value {
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

/// OpenMetrics lines for the print spoolers, which `/metrics` inserts before `# EOF`.
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

    #[test]
    fn printers_parse_and_bad_values_name_the_variable() {
        let p = parse_printers("HUB_PRINTERS", Some("kds=192.0.2.10:9100, bds=bar-printer"))
            .expect("valid");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].addr, "192.0.2.10:9100");
        assert_eq!(
            (p[1].station, p[1].addr.as_str()),
            (Station::Bds, "bar-printer:9100")
        );
        assert!(parse_printers("HUB_PRINTERS", None)
            .expect("empty")
            .is_empty());
        for bad in [
            "grill=1.2.3.4:9100",
            "kds=1.2.3.4:99999",
            "kds",
            "kds=:9100",
            "kds=a:1,kds=b:2",
        ] {
            let e = parse_printers("HUB_PRINTERS", Some(bad)).unwrap_err();
            assert!(e.to_string().starts_with("HUB_PRINTERS: "), "{bad}: {e}");
        }
    }
}
