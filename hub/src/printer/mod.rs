//! What the engine knows of station printers: the ESC/POS bytes of a ticket (`escpos`), written
//! into the print queue in the ticket's own transaction, and the spoolers' state and counters
//! (`PrintStats`, kept in `EngineStats::print`). The spoolers that talk to the printers are in
//! `print`; which printer serves a station is `config::printers`.

pub mod escpos;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::station::Station;

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

    pub(crate) fn last_error(&self) -> Option<String> {
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
