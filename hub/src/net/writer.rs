//! One terminal's writer: drains its outbox to the socket in batches (events of a commit, the
//! replies, pings and tungstenite's own frames), replays a catch-up when the outbox asks for one,
//! and asks the engine to resume a terminal that fell behind once its queue has drained.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWrite;

use super::catchup;
use super::tally::Tally;
use super::ws_write::{FrameWriter, MAX_FRAMES};
use crate::context::Hub;
use crate::engine::outbox::{Broadcast, Frame, Outbox, OutboxRx};
use crate::engine::Cmd;

/// What the writer took off its queue in one batch.
#[derive(Default)]
struct Taken {
    frames: usize,
    events: usize,
    others: usize,
    /// Window end of the last event taken.
    end: Option<u64>,
}

impl Taken {
    fn add(&mut self, f: &Frame) {
        self.frames += 1;
        match f {
            Frame::Event(e) => {
                self.events += 1;
                self.end = Some(e.end);
            }
            Frame::Events(batch) => {
                self.frames += batch.len().saturating_sub(1);
                self.events += batch.len();
                self.end = batch.last().map(|e| e.end).or(self.end);
            }
            _ => self.others += 1,
        }
    }

    /// Hands what was taken so far to the queue's counters, once per batch (or before a
    /// replay, which can take a while): the engine adds to them from another thread for
    /// every event, so a per-frame update would bounce their cache line per frame.
    fn settle(&mut self, ob: &Outbox) {
        ob.took(self.events, self.end.take(), self.others);
        self.events = 0;
        self.others = 0;
    }
}

/// Writes broadcast events in seq order, leaving out those the terminal already has (a
/// catch-up can cover events that are still queued).
async fn write_events<W: AsyncWrite + Unpin>(
    w: &mut FrameWriter<W>,
    tally: &mut Tally<'_>,
    delivered: &mut u64,
    events: impl IntoIterator<Item = Arc<Broadcast>>,
) -> std::io::Result<()> {
    for e in events {
        if e.seq > *delivered {
            *delivered = e.seq;
            tally.event(e.kind, e.at);
            w.event(e).await?;
        }
    }
    Ok(())
}

pub(super) async fn write_loop<W: AsyncWrite + Unpin>(
    hub: &Arc<Hub>,
    conn_id: u64,
    mut w: FrameWriter<W>,
    ob: &Arc<Outbox>,
    mut rx: OutboxRx,
) {
    let mut delivered = 0u64;
    let mut resume_asked = false;
    let mut tally = Tally::new(&hub.metrics);
    while let Some(first) = rx.recv().await {
        let mut frame = Some(first);
        let mut taken = Taken::default();
        while let Some(f) = frame.take() {
            taken.add(&f);
            let r = match f {
                Frame::Text(t) => {
                    tally.frame(t.as_str());
                    w.shared(t).await
                }
                Frame::Event(e) => write_events(&mut w, &mut tally, &mut delivered, [e]).await,
                Frame::Events(batch) => {
                    write_events(&mut w, &mut tally, &mut delivered, batch).await
                }
                Frame::CatchUp { after, to } => {
                    taken.settle(ob);
                    resume_asked = false;
                    let stations = ob.stations.load(Ordering::Relaxed);
                    let r = catchup::replay(hub, &mut w, &mut tally, after, to, stations).await;
                    if r.is_ok() {
                        delivered = delivered.max(to);
                    }
                    r
                }
                Frame::Ping => w.ping().await,
                Frame::Raw(bytes) => w.raw(bytes).await,
                Frame::Close { code, reason } => return send_close(&mut w, code, reason).await,
            };
            if let Err(e) = r {
                tracing::debug!(conn_id, error = %e, "websocket write failed");
                return;
            }
            if taken.frames < MAX_FRAMES {
                frame = rx.try_recv().ok();
            }
        }
        taken.settle(ob);
        if let Err(e) = w.flush().await {
            tracing::debug!(conn_id, error = %e, "websocket flush failed");
            return;
        }
        tally.written();
        ob.drained.notify_waiters();
        if !resume_asked
            && ob.lagging.load(Ordering::Acquire)
            && ob.queued_events.load(Ordering::Relaxed) == 0
        {
            resume_asked = true;
            tracing::info!(conn_id, "terminal fell behind; replaying from its cursor");
            hub.engine.send(Cmd::Resume { conn_id });
        }
    }
}

/// Sends a close frame, gives the peer a moment to answer it, then lets the socket go.
async fn send_close<W: AsyncWrite + Unpin>(w: &mut FrameWriter<W>, code: u16, reason: &str) {
    let _ = w.close(code, reason).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
}
