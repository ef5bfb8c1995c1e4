//! The outside world misbehaving on a schedule: Odoo answering 503, dropping connections,
//! answering slowly or too late, and losing the hub's session; the kitchen printer switched off
//! and on again on the same port, and stalling (not reading) for a while.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::fake_printer::{tickets_in, FakePrinter};
use crate::common::odoo_double::{Fault, OdooDouble};
use crate::sample::Counters;

/// One Odoo cycle, in seconds from its start: 503s, then dropped connections, then slow
/// answers (within the hub's 400 ms timeout), then answers after the timeout, then healthy
/// (the session expires once in the healthy part).
pub const ODOO_CYCLE: u64 = 30;

/// What Odoo does at second `t` of its cycle.
fn odoo_phase(t: u64) -> Option<Fault> {
    match t % ODOO_CYCLE {
        0..=4 => Some(Fault::Status(503)),
        5..=8 => Some(Fault::Drop),
        9..=13 => Some(Fault::Delay(Duration::from_millis(250))),
        14..=16 => Some(Fault::Delay(Duration::from_millis(900))),
        _ => None,
    }
}

/// Flaps Odoo until the load stops, then leaves it healthy. Returns the number of fault
/// periods it went through.
pub async fn flap_odoo(odoo: Arc<OdooDouble>, c: Arc<Counters>) -> u64 {
    let start = Instant::now();
    let mut periods = 0;
    let mut last: Option<String> = None;
    while !c.stopped() {
        let t = start.elapsed().as_secs();
        let phase = odoo_phase(t);
        let name = phase.as_ref().map(|f| format!("{f:?}"));
        if name != last {
            odoo.clear_faults();
            if let Some(f) = phase {
                odoo.fault("/", f, None);
                periods += 1;
            } else {
                odoo.expire_session();
            }
            last = name;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    odoo.clear_faults();
    periods
}

/// One printer cycle, in seconds: off from 10 to 17, stalled from 28 to 32.
pub const PRINTER_CYCLE: u64 = 40;

/// What the printer went through, and every byte it received (one tape per time it was on).
pub struct PrinterLog {
    pub offs: u64,
    pub stalls: u64,
    pub tapes: Vec<Arc<Mutex<Vec<u8>>>>,
    /// The printer as the load left it: on and reading.
    pub printer: FakePrinter,
}

impl PrinterLog {
    /// Every complete ticket every incarnation of the printer received.
    pub fn tickets(&self) -> Vec<String> {
        self.tapes
            .iter()
            .flat_map(|t| tickets_in(&t.lock().expect("tape")))
            .collect()
    }
}

/// Switches the printer off (its port refuses connections) and on again on the same port, and
/// stalls it, until the load stops; leaves it on and reading.
pub async fn flap_printer(printer: FakePrinter, c: Arc<Counters>) -> PrinterLog {
    let port = printer.addr.port();
    let mut tapes = vec![printer.tape()];
    let (mut offs, mut stalls) = (0, 0);
    let mut current = Some(printer);
    let mut stalled = false;
    let start = Instant::now();
    while !c.stopped() {
        let t = start.elapsed().as_secs() % PRINTER_CYCLE;
        let want_on = !(10..18).contains(&t);
        let want_stall = want_on && (28..33).contains(&t);
        match (current.take(), want_on) {
            (Some(p), false) => {
                p.stop();
                offs += 1;
            }
            (None, true) => current = Some(switch_on(port, &mut tapes).await),
            (p, _) => current = p,
        }
        if let Some(p) = current.as_ref().filter(|_| want_stall != stalled) {
            p.stall(want_stall);
            stalls += u64::from(want_stall);
            stalled = want_stall;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let printer = match current {
        Some(p) => p,
        None => switch_on(port, &mut tapes).await,
    };
    printer.stall(false);
    PrinterLog {
        offs,
        stalls,
        tapes,
        printer,
    }
}

/// A new printer on the port of the one switched off (the aborted listener of the old one may
/// take a moment to go away).
async fn switch_on(port: u16, tapes: &mut Vec<Arc<Mutex<Vec<u8>>>>) -> FakePrinter {
    tokio::time::sleep(Duration::from_millis(100)).await;
    let p = FakePrinter::start_on(port).await;
    tapes.push(p.tape());
    p
}
