//! One spooler task per configured printer. It takes the oldest job of its station's durable
//! queue, sends it over a fresh TCP connection, and waits until the printer's TCP stack has
//! acknowledged every byte and the end of the stream. Only then does it ask the engine to drop
//! the job (`Cmd::Printed`) and, once that is committed, moves to the next job: one job at a
//! time, in queue (= ticket) order. A printer that refuses, is unreachable or stops
//! acknowledging is retried with exponential backoff up to `HUB_PRINT_RETRY_MAX_MS`; the job
//! stays first in the queue meanwhile, across hub restarts included.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::{PrinterConfig, PrinterState};
use crate::context::Hub;
use crate::engine::{now_ms, Cmd};
use crate::station::Station;

/// First wait after a failed attempt.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// How often an idle spooler looks at its queue even without a wake-up.
const IDLE_POLL: Duration = Duration::from_secs(2);
/// How long an in-flight ticket may still take once the hub is shutting down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// How often the acknowledgement of the sent bytes is checked.
const ACK_POLL: Duration = Duration::from_millis(5);

/// Why a print attempt failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrintError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("sending to the printer failed: {0}")]
    Send(std::io::Error),
    #[error("the printer did not accept the ticket within {0:?}")]
    Timeout(Duration),
}

/// Starts a spooler for every configured printer.
pub fn spawn_all(hub: &Arc<Hub>) {
    for p in hub.cfg.printers.clone() {
        tokio::spawn(run(hub.clone(), p));
    }
    // Jobs queued while a station had a printer stay queued until it has one again: say so.
    let unconfigured: Vec<Station> = Station::ALL
        .into_iter()
        .filter(|s| super::printer_for(&hub.cfg, *s).is_none())
        .collect();
    let store = hub.store.clone();
    tokio::task::spawn_blocking(move || {
        let Ok(depths) = store.print_depths() else {
            return;
        };
        for s in unconfigured {
            let queued = depths[s.index()];
            if queued > 0 {
                tracing::warn!(station = %s, queued, "print jobs wait for a station that has no printer in HUB_PRINTERS");
            }
        }
    });
}

async fn run(hub: Arc<Hub>, p: PrinterConfig) {
    let st = hub.engine.stats.print.station(p.station);
    st.set_state(PrinterState::Idle);
    let mut shutdown = hub.shutdown.clone();
    let mut backoff = MIN_BACKOFF;
    tracing::info!(station = %p.station, addr = %p.addr, "print spooler started");
    loop {
        if *shutdown.borrow() {
            return;
        }
        // 1. The oldest job of the queue (a read snapshot; the engine is the only writer).
        let store = hub.store.clone();
        let station = p.station;
        let next = tokio::task::spawn_blocking(move || store.next_print_job(station)).await;
        let (job, depth) = match next {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::error!(station = %p.station, error = %e, "cannot read the print queue");
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
            Err(_) => return,
        };
        st.depth.store(depth, Ordering::Relaxed);
        let Some((key, job)) = job else {
            if st.state() != PrinterState::Offline {
                st.set_state(PrinterState::Idle);
            }
            tokio::select! {
                () = st.wake.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        };
        // 2. Send it and wait for the printer's acknowledgement.
        if st.state() != PrinterState::Offline {
            st.set_state(PrinterState::Printing);
        }
        let on_slow = || {
            tracing::warn!(station = %p.station, ticket = %job.ticket_id,
                "printer is not taking the ticket (paper out? cover open?); waiting on the same connection");
            st.set_state(PrinterState::Stalled);
        };
        let (slow, give_up) = (hub.cfg.print_timeout, hub.cfg.print_stall_max);
        let sending = send(&p.addr, &job.bytes, slow, give_up, on_slow);
        tokio::pin!(sending);
        let result = tokio::select! {
            r = &mut sending => r,
            // Shutting down: a ticket about to be acknowledged may finish, a stalled one waits
            // for the next start (and is then sent again from its beginning).
            _ = shutdown.changed() => match tokio::time::timeout(SHUTDOWN_GRACE, &mut sending).await {
                Ok(r) => r,
                Err(_) => return,
            },
        };
        match result {
            Ok(()) => {
                // 3. Record it durably before anything else is sent.
                if !confirm_printed(&hub, &p, key, &job.ticket_id, &mut backoff).await {
                    return; // the engine stopped
                }
            }
            Err(e) => {
                st.failures.fetch_add(1, Ordering::Relaxed);
                if st.state() != PrinterState::Offline {
                    tracing::warn!(station = %p.station, addr = %p.addr, error = %e,
                        queued = depth, "printer unavailable; tickets stay queued and are retried");
                }
                st.set_state(PrinterState::Offline);
                st.set_error(Some(e.to_string()));
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(hub.cfg.print_retry_max);
            }
        }
    }
}

/// Records a printed job durably (its removal from the queue) and counts it. A failed commit
/// is retried as a commit: sending the ticket again would print it twice. False when the
/// engine has stopped.
async fn confirm_printed(
    hub: &Hub,
    p: &PrinterConfig,
    key: u64,
    ticket_id: &str,
    backoff: &mut Duration,
) -> bool {
    let st = hub.engine.stats.print.station(p.station);
    let mut recorded = record_printed(hub, p.station, key).await;
    while let Some(Err(e)) = &recorded {
        tracing::error!(station = %p.station, error = %e, "cannot record a printed ticket; retrying");
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(hub.cfg.print_retry_max);
        recorded = record_printed(hub, p.station, key).await;
    }
    if !matches!(recorded, Some(Ok(()))) {
        return false;
    }
    if matches!(st.state(), PrinterState::Offline | PrinterState::Stalled) {
        tracing::info!(station = %p.station, addr = %p.addr, "printer is back");
    }
    st.set_state(PrinterState::Printing);
    st.printed.fetch_add(1, Ordering::Relaxed);
    st.last_printed_ms.store(now_ms(), Ordering::Relaxed);
    st.set_error(None);
    *backoff = MIN_BACKOFF;
    tracing::debug!(station = %p.station, ticket = %ticket_id, "ticket printed");
    true
}

/// Asks the engine to drop a printed job; None when the engine is gone.
async fn record_printed(hub: &Hub, station: Station, key: u64) -> Option<Result<(), String>> {
    let (tx, rx) = oneshot::channel();
    if !hub.engine.send(Cmd::Printed {
        station,
        key,
        done: tx,
    }) {
        return None;
    }
    rx.await.ok().map(|r| r.map(|_| ()))
}

/// Sends one job on a fresh connection; Ok only once the printer's TCP stack acknowledged all
/// of it including the end of stream (or the printer closed the connection after reading it).
/// Past `slow_after` the printer counts as stalled (`on_slow`), and the hub keeps waiting on the
/// same connection, so a printer out of paper gets one copy, not one per retry. Past
/// `give_up_after` the connection is reset (unsent bytes discarded) and the job fails.
pub async fn send(
    addr: &str,
    bytes: &[u8],
    slow_after: Duration,
    give_up_after: Duration,
    on_slow: impl FnOnce(),
) -> Result<(), PrintError> {
    let s = tokio::time::timeout(slow_after, TcpStream::connect(addr))
        .await
        .map_err(|_| PrintError::Timeout(slow_after))?
        .map_err(|source| PrintError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let _ = s.set_nodelay(true);
    let mut conn = Unacknowledged(Some(s));
    let Some(s) = conn.0.as_mut() else {
        return Err(PrintError::Timeout(slow_after));
    };
    let outcome = {
        let t = transfer(s, bytes);
        tokio::pin!(t);
        if let Ok(r) = tokio::time::timeout(slow_after, &mut t).await {
            Some(r)
        } else {
            on_slow();
            let rest = give_up_after.saturating_sub(slow_after);
            tokio::time::timeout(rest, &mut t).await.ok()
        }
    };
    match outcome {
        Some(Ok(())) => {
            conn.acknowledged();
            Ok(())
        }
        Some(Err(e)) => Err(e),
        None => Err(PrintError::Timeout(give_up_after)),
    }
}

/// A printer connection whose ticket is not acknowledged yet. Dropped like that (stall limit,
/// error, hub shutting down), it is reset (RST) instead of closed: a normal close would let the
/// kernel keep feeding this copy to the printer while the next attempt sends another whole one.
struct Unacknowledged(Option<TcpStream>);

impl Unacknowledged {
    /// The printer has it all: close normally (a reset could make it drop unread bytes).
    fn acknowledged(&mut self) {
        self.0.take();
    }
}

impl Drop for Unacknowledged {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            #[allow(deprecated)] // linger 0 never blocks; it is exactly the reset wanted here
            let _ = s.set_linger(Some(Duration::ZERO));
        }
    }
}

/// Writes the job, ends the stream and waits for the printer's acknowledgement of both.
async fn transfer(s: &mut TcpStream, bytes: &[u8]) -> Result<(), PrintError> {
    s.write_all(bytes).await.map_err(PrintError::Send)?;
    s.flush().await.map_err(PrintError::Send)?;
    // FIN after the data: the stream's end is part of what must be acknowledged.
    s.shutdown().await.map_err(PrintError::Send)?;
    let mut buf = [0u8; 64];
    loop {
        if unacknowledged(s) == Some(0) {
            return Ok(());
        }
        tokio::select! {
            r = s.read(&mut buf) => match r {
                // The printer read everything and closed its side: nothing is in flight.
                Ok(0) => return Ok(()),
                Ok(_) => {} // status bytes some printers send; not needed here
                Err(e) => return Err(PrintError::Send(e)),
            },
            () = tokio::time::sleep(ACK_POLL) => {}
        }
    }
}

/// Bytes (and FIN) sent but not yet acknowledged by the peer's TCP stack (`SIOCOUTQ`).
#[cfg(target_os = "linux")]
fn unacknowledged(s: &TcpStream) -> Option<usize> {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: the descriptor belongs to `s`, which stays open for the whole call, and
    // TIOCOUTQ (= SIOCOUTQ on sockets) writes exactly one c_int to the pointer given.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    (r == 0).then(|| usize::try_from(n).unwrap_or(0))
}

/// Elsewhere only the printer closing the connection counts as its acknowledgement.
#[cfg(not(target_os = "linux"))]
fn unacknowledged(_: &TcpStream) -> Option<usize> {
    None
}
