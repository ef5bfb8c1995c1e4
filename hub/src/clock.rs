//! The time the engine is given. Lease, table-lock and grace expiry are decided against
//! `Clock::now_ms`, so production runs on the system clock and a test can hold time still and
//! step it (`ManualClock`) instead of sleeping until a lease runs out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A source of wall-clock time in ms since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> u64;
}

/// `d` in whole milliseconds, saturating at `u64::MAX` (half a billion years) instead of
/// wrapping into a short duration: timestamps and expiries are u64 ms.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `d` in whole microseconds, saturating like [`millis`] (counters and latencies are u64 µs).
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The system clock: what the hub runs on.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, millis)
    }
}

/// A clock that only moves when told to, for tests of expiry: it starts at the system time
/// (so stored timestamps look real) and then stands still until `advance`.
#[derive(Debug)]
pub struct ManualClock {
    ms: AtomicU64,
}

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock {
            ms: AtomicU64::new(SystemClock.now_ms()),
        }
    }

    /// A clock standing at `ms` (the year benchmark starts a year in the past).
    pub fn at(ms: u64) -> ManualClock {
        ManualClock {
            ms: AtomicU64::new(ms),
        }
    }

    /// Moves the clock to `ms`, if that is later than where it stands (time never goes back).
    pub fn advance_to(&self, ms: u64) {
        self.ms.fetch_max(ms, Ordering::SeqCst);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.ms.fetch_add(millis(by), Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let c = ManualClock::new();
        let t0 = c.now_ms();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.now_ms(), t0);
        c.advance(Duration::from_millis(1500));
        assert_eq!(c.now_ms(), t0 + 1500);
    }

    #[test]
    fn durations_convert_to_whole_units_and_saturate() {
        assert_eq!(millis(Duration::from_micros(2_999)), 2);
        assert_eq!(micros(Duration::from_millis(3)), 3_000);
        // 2^60 s is 1.15e21 ms: `as u64` would wrap it to 2^63 ms; it saturates instead.
        assert_eq!(millis(Duration::from_secs(1 << 60)), u64::MAX);
        assert_eq!(millis(Duration::MAX), u64::MAX);
        assert_eq!(micros(Duration::MAX), u64::MAX);
    }
}
