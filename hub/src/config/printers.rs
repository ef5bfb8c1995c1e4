//! Station printers in the configuration (`HUB_PRINTERS`, docs/kitchen.md): which station prints
//! where. Parsed with the rest of `Config`; `print` starts one spooler per entry.

use super::{Config, ConfigError};
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

#[cfg(test)]
mod tests {
    use super::*;

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
