//! Kitchen stations (docs/kitchen.md): `kds` (kitchen display) and `bds` (bar display). A station
//! scopes kitchen-ticket events, selects a network printer and names a print queue. Terminals
//! subscribe to stations with a bit mask kept on their outbox, so the live fan-out (engine
//! thread) and the catch-up replay (connection task) filter with the same rule.

use std::fmt;

/// One kitchen station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Station {
    /// Kitchen display (and its printer).
    Kds,
    /// Bar display (and its printer).
    Bds,
}

/// Subscription mask of a terminal that takes every station's traffic (the default).
pub const ALL_STATIONS: u8 = 0xff;

impl Station {
    /// Every station, in a fixed order (used for per-station arrays and queues).
    pub const ALL: [Station; 2] = [Station::Kds, Station::Bds];

    /// Parses the wire name (`kds`, `bds`).
    pub fn parse(s: &str) -> Option<Station> {
        match s {
            "kds" => Some(Station::Kds),
            "bds" => Some(Station::Bds),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Station::Kds => "kds",
            Station::Bds => "bds",
        }
    }

    /// Position in [`Station::ALL`].
    pub fn index(self) -> usize {
        match self {
            Station::Kds => 0,
            Station::Bds => 1,
        }
    }

    /// This station's bit in a subscription mask.
    pub fn bit(self) -> u8 {
        1 << self.index()
    }

    /// Title printed on top of a ticket.
    pub fn title(self) -> &'static str {
        match self {
            Station::Kds => "KITCHEN",
            Station::Bds => "BAR",
        }
    }
}

impl fmt::Display for Station {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a terminal with subscription `mask` receives an event scoped to `scope` (a station
/// bit, or 0 for events that concern every terminal).
pub fn wants(mask: u8, scope: u8) -> bool {
    scope == 0 || mask & scope != 0
}

/// The station bit of a stored event's scope (`None` or an unknown name: every terminal).
pub fn scope_bit(scope: Option<&str>) -> u8 {
    scope.and_then(Station::parse).map_or(0, Station::bit)
}

/// Builds a subscription mask from station names; an unknown name is an error naming it.
pub fn mask_of<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<u8, String> {
    let mut mask = 0;
    for n in names {
        match Station::parse(n) {
            Some(s) => mask |= s.bit(),
            None => return Err(format!("unknown station {n:?} (expected kds or bds)")),
        }
    }
    Ok(mask)
}

/// The station names of a mask, for replies.
pub fn names_of(mask: u8) -> Vec<&'static str> {
    Station::ALL
        .iter()
        .filter(|s| mask & s.bit() != 0)
        .map(|s| s.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_filter_scoped_events_only() {
        let bar = mask_of(["bds"]).expect("valid");
        assert!(wants(bar, Station::Bds.bit()));
        assert!(!wants(bar, Station::Kds.bit()));
        assert!(wants(bar, 0), "unscoped events reach everyone");
        assert!(wants(ALL_STATIONS, Station::Kds.bit()));
        assert!(!wants(0, Station::Kds.bit()));
        assert!(mask_of(["grill"]).is_err());
        assert_eq!(names_of(bar), vec!["bds"]);
    }
}
