//! The forwarder (docs/upstream.md "The forwarder"). Every `HUB_FORWARD_INTERVAL_MS`, or at once on
//! `/admin/drain`, it reads up to `HUB_FORWARD_BATCH_SIZE` due groups of pending events (one group
//! per order, oldest first; an order still backing off blocks its newer events), sends each to the
//! cloud bridge and to Odoo, and records the outcome through the engine before it reads again:
//! success removes the pending rows, a transient failure bumps the retry count and sets a
//! backoff, a permanent one (or the last retry) dead-letters. Pending snapshots of one order
//! are coalesced: Odoo gets the order's newest stored snapshot once, which also makes an
//! inversion of that order's updates impossible. A row is removed only after the upstream
//! accepted it, so a crash mid-drain can resend (the endpoints are idempotent) but never lose.

use futures_util::future::join_all;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::mpsc;

use super::{record, DrainAsk, DrainReport, State, UpstreamError};
use crate::context::Hub;
use crate::engine::{now_ms, UpstreamCmd};
use crate::protocol::outbound;
use crate::store::upstream::DueGroup;

/// Full rounds run back to back before the loop waits for the next tick again.
const MAX_ROUNDS_PER_TICK: usize = 50;
/// Orders sent to Odoo at the same time.
const PARALLEL: usize = 4;

pub(super) async fn run(hub: Arc<Hub>, mut asks: mpsc::Receiver<DrainAsk>) {
    let mut shutdown = hub.shutdown.clone();
    let mut tick = tokio::time::interval(hub.cfg.forward_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let ask = tokio::select! {
            _ = tick.tick() => None,
            a = asks.recv() => match a { Some(a) => Some(a), None => return },
            _ = shutdown.changed() => return,
        };
        // Shutdown interrupts a round: whatever was sent but not yet recorded stays pending
        // and is sent again after the restart (the endpoints are idempotent).
        tokio::select! {
            () = tick_work(&hub, ask) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One tick: drain rounds, the bridge pull, the register push; answers a drain request.
async fn tick_work(hub: &Arc<Hub>, ask: Option<DrainAsk>) {
    let force = ask.is_some();
    let mut total = DrainReport::default();
    // Keep going while rounds come back full, so a backlog drains faster than one batch per
    // interval.
    for _ in 0..MAX_ROUNDS_PER_TICK {
        let (r, full) = drain_round(hub, force).await;
        total.forwarded += r.forwarded;
        total.failed += r.failed;
        total.dead_lettered += r.dead_lettered;
        if r.error.is_some() {
            total.error = r.error;
        }
        if !full || total.error.is_some() {
            break;
        }
    }
    super::bridge::pull(hub).await;
    super::registers::push_due(hub, force).await;
    if let Some(a) = ask {
        let _ = a.send(total);
    }
}

/// One batch. Answers what happened and whether the batch was full (more may be due).
async fn drain_round(hub: &Arc<Hub>, force: bool) -> (DrainReport, bool) {
    let mut report = DrainReport::default();
    let up = &hub.upstream;
    let store = hub.store.clone();
    let batch = hub.cfg.forward_batch_size;
    let now = if force { u64::MAX } else { now_ms() };
    let groups = match tokio::task::spawn_blocking(move || store.due_groups(now, batch)).await {
        Ok(Ok(g)) => g,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read pending events");
            return (report, false);
        }
        Err(_) => return (report, false),
    };
    if groups.is_empty() {
        return (report, false);
    }
    let full = groups.len() >= batch;
    // 1. The cloud bridge takes the whole batch in one idempotent call.
    if !to_bridge(hub, &groups, &mut report).await {
        return (report, false);
    }
    // 2. Odoo, a few orders at a time (each order is one group, so an order's updates stay
    // in sequence); a transient failure ends the round (Odoo is down or struggling: the other
    // orders wait for the next round without spending a retry).
    for chunk in groups.chunks(PARALLEL) {
        let results = join_all(chunk.iter().map(|g| send_to_odoo(up, g))).await;
        let mut ok_seqs = Vec::new();
        let mut auth_error = None;
        let mut stop = false;
        for (g, result) in chunk.iter().zip(results) {
            match result {
                Ok(()) => ok_seqs.extend(seqs_of(g)),
                Err(UpstreamError::Auth(msg)) => {
                    // Credentials or session trouble is not the events' fault: no retry spent.
                    auth_error = Some(format!("odoo authentication failed: {msg}"));
                    stop = true;
                }
                Err(e) => {
                    stop |= !e.is_permanent();
                    fail(hub, &mut report, seqs_of(g), &e).await;
                }
            }
        }
        if !ok_seqs.is_empty() {
            let n = ok_seqs.len();
            let seqs = ok_seqs;
            if record(hub, |d| UpstreamCmd::Forwarded {
                seqs,
                done: Some(d),
            })
            .await
            {
                report.forwarded += n;
                up.set_state(&hub.engine, State::Ok, Some(now_ms()), None);
            }
        }
        if let Some(e) = auth_error {
            tracing::warn!("{e}");
            up.set_state(&hub.engine, State::Failing, None, Some(e.clone()));
            report.error = Some(e);
        }
        if stop {
            if report.error.is_some() {
                let e = report.error.clone();
                up.set_state(&hub.engine, State::Failing, None, e);
            }
            return (report, false);
        }
    }
    (report, full)
}

/// Sends the batch to the cloud bridge, if there is one; false when it failed (the round ends).
async fn to_bridge(hub: &Arc<Hub>, groups: &[DueGroup], report: &mut DrainReport) -> bool {
    let Some(bridge) = &hub.upstream.bridge else {
        return true;
    };
    let events: Vec<Value> = groups
        .iter()
        .flat_map(|g| g.events.iter())
        .map(|e| bridge_event(hub, e.seq, &e.event))
        .collect();
    match bridge.ingest(&events).await {
        Ok(()) => {}
        Err(UpstreamError::Auth(msg)) => {
            // A wrong CLOUD_BRIDGE_TOKEN is not the events' fault: no retry spent.
            let e = format!("cloud bridge refused the token: {msg}");
            tracing::warn!("{e}");
            hub.upstream
                .set_state(&hub.engine, State::Failing, None, Some(e.clone()));
            report.error = Some(e);
            return false;
        }
        Err(e) => {
            let seqs: Vec<u64> = groups.iter().flat_map(seqs_of).collect();
            fail(hub, report, seqs, &e).await;
            return false;
        }
    }
    true
}

/// Sends one group to Odoo (when there is an Odoo and the group is an order).
async fn send_to_odoo(up: &super::Shared, g: &DueGroup) -> Result<(), UpstreamError> {
    match (&up.odoo, order_snapshot(g)) {
        (Some(odoo), Some(snap)) => odoo.push_order(&snap).await,
        _ => Ok(()), // no Odoo, or not an order event: nothing to send
    }
}

async fn fail(hub: &Arc<Hub>, report: &mut DrainReport, seqs: Vec<u64>, e: &UpstreamError) {
    let permanent = e.is_permanent();
    let n = seqs.len();
    tracing::warn!(events = n, permanent, error = %e, "forwarding failed");
    let msg = e.to_string();
    record(hub, |d| UpstreamCmd::Failed {
        seqs,
        error: msg.clone(),
        permanent,
        done: Some(d),
    })
    .await;
    if permanent {
        report.dead_lettered += n;
    } else {
        report.failed += n;
        report.error = Some(msg.clone());
        hub.upstream
            .set_state(&hub.engine, State::Failing, None, Some(msg));
    }
}

fn seqs_of(g: &DueGroup) -> Vec<u64> {
    g.events.iter().map(|e| e.seq).collect()
}

/// The snapshot to send for an order group: the order's newest stored state, or (if the order
/// is gone) the snapshot of its newest pending event. None for a group that is not an order.
fn order_snapshot(g: &DueGroup) -> Option<Value> {
    let newest = g
        .events
        .iter()
        .rev()
        .find(|e| e.event.kind == "order_snapshot")?;
    if let Some(s) = &g.latest_snapshot {
        return Some(outbound::raw(s));
    }
    Some(
        outbound::raw(&newest.event.message)
            .get("snapshot")?
            .clone(),
    )
}

/// An event as the cloud bridge receives it; `eventId` is stable across resends.
fn bridge_event(hub: &Hub, seq: u64, e: &crate::store::records::EventRec) -> Value {
    json!({
        "eventId": format!("{}/{}/{}", hub.cfg.tenant_id, hub.cfg.store_id, seq),
        "seq": seq,
        "kind": e.kind,
        "posReference": e.pos_reference,
        "terminalId": e.terminal_id,
        "ts": e.ts_ms,
        "tenantId": hub.cfg.tenant_id,
        "storeId": hub.cfg.store_id,
        "message": outbound::raw(&e.message),
    })
}
