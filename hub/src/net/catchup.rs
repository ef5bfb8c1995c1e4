//! Catch-up (docs/protocol.md "Sync and catch-up"): replays the event log to one terminal in
//! `EVENTS_BULK` chunks, or, when its cursor lies outside what the hub retains, sends
//! `RESYNC_REQUIRED` and a full `STATE`. Recent events come from the engine's in-memory window
//! (`engine::window`); older ones are read on the blocking pool against a redb read snapshot;
//! neither blocks the engine.
//!
//! What a catch-up costs follows the state, not the history: when the replay would take more
//! than twice the bytes of a `STATE` (a tablet that was off for a weekend in a busy store), the
//! terminal gets `RESYNC_REQUIRED` (`state_smaller_than_replay`) and the `STATE` instead.

use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::io::AsyncWrite;

use super::tally::Tally;
use super::ws_write::FrameWriter;

use crate::context::Hub;
use crate::protocol::outbound;
use crate::store::{EventChunk, Store, StoreError};

/// Bytes of events per `EVENTS_BULK` frame: small enough that many terminals catching up at
/// once stay inside a Pi's memory, large enough that a frame carries dozens of events.
const CHUNK_BYTES: usize = 32 * 1024;

/// A replay of at most this many events is always sent as events: below it a `STATE` cannot
/// save much, and the hub does not spend a read on the estimate.
const REPLAY_ALWAYS: u64 = 256;

/// Events sampled to estimate the bytes of one replayed event.
const SAMPLE_EVENTS: usize = 64;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> std::io::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(std::io::Error::other),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

/// Sends every broadcastable event with `after < seq <= to`, then returns; live events with a
/// higher seq follow in the outbox.
/// Events scoped to a kitchen station outside `stations` (the terminal's subscription mask)
/// are left out. Each chunk comes from the engine's in-memory event window when it still holds
/// the cursor, otherwise from the database (a cursor older than the window reads the database
/// until it reaches the window, then memory).
pub async fn replay<W: AsyncWrite + Unpin>(
    hub: &Hub,
    sink: &mut FrameWriter<W>,
    tally: &mut Tally<'_>,
    after: u64,
    to: u64,
    stations: u8,
) -> std::io::Result<()> {
    let window = &hub.engine.window;
    // The window forgets compacted events and is cleared by a reset, so a range it holds is
    // never one that must resync: only a miss needs the retained-log check.
    let mut from_db = !window.holds(after, to);
    if from_db {
        let store = hub.store.clone();
        let compacted = blocking(move || store.compacted_through()).await?;
        if after < compacted || after > to {
            return resync(hub, sink, tally, after, compacted, to, stations).await;
        }
    }
    if to - after > REPLAY_ALWAYS && state_is_smaller(hub, after, to).await? {
        hub.metrics.catchups_state.inc();
        // `compacted` 0: the cursor is inside the retained log, the state is just smaller.
        return resync(hub, sink, tally, after, 0, to, stations).await;
    }
    let mut cur = after;
    loop {
        let (text, through) = if let Some(chunk) = window.read(cur, to, CHUNK_BYTES, stations) {
            (
                outbound::events_bulk(&chunk.events, cur + 1, chunk.through, chunk.through >= to),
                chunk.through,
            )
        } else {
            from_db = true;
            let chunk = read_db(hub, cur, to, stations).await?;
            (
                outbound::events_bulk(&chunk.events, cur + 1, chunk.through, chunk.through >= to),
                chunk.through,
            )
        };
        tally.frame(&text);
        sink.text(text.into()).await?;
        cur = through;
        if cur >= to {
            break;
        }
        sink.flush().await?;
    }
    if from_db {
        hub.metrics.catchups_database.inc();
    } else {
        hub.metrics.catchups_memory.inc();
    }
    Ok(())
}

/// Whether a `STATE` is smaller than half the replay of `(after, to]`: the replay's bytes are
/// estimated from the newest events' average size, the state's from the live-order index.
async fn state_is_smaller(hub: &Hub, after: u64, to: u64) -> std::io::Result<bool> {
    let store = hub.store.clone();
    let now = hub.clock.now_ms();
    let (avg, state) = blocking(move || {
        Ok((
            store.avg_event_bytes(to, SAMPLE_EVENTS)?,
            store.state_bytes(now)?,
        ))
    })
    .await?;
    let replay = avg.unwrap_or(0).saturating_mul(to - after);
    Ok(prefer_state(replay, state))
}

/// The rule, apart so it can be tested: a `STATE` when the replay is more than twice its size.
/// (Twice, not once: a replay keeps the terminal's own view and costs the hub less to build, so
/// it wins while the two are close, e.g. when every event changed a different order.)
fn prefer_state(replay_bytes: u64, state_bytes: u64) -> bool {
    replay_bytes > state_bytes.saturating_mul(2)
}

/// One chunk of the log from the database.
async fn read_db(hub: &Hub, cur: u64, to: u64, stations: u8) -> std::io::Result<EventChunk> {
    let store = hub.store.clone();
    // At most a few replays read the log at once, so the memory catch-up needs is bounded
    // whatever the number of terminals reconnecting (e.g. after a Wi-Fi outage).
    let _slot = hub
        .catchup_slots
        .acquire()
        .await
        .map_err(std::io::Error::other)?;
    blocking(move || store.events_range_scoped(cur, to, CHUNK_BYTES, stations)).await
}

/// `RESYNC_REQUIRED`, then a full `STATE`: the cursor lies outside the retained log (before
/// `compacted`, or ahead of the hub), or the state is smaller than the replay.
async fn resync<W: AsyncWrite + Unpin>(
    hub: &Hub,
    sink: &mut FrameWriter<W>,
    tally: &mut Tally<'_>,
    after: u64,
    compacted: u64,
    to: u64,
    stations: u8,
) -> std::io::Result<()> {
    let reason = if after > to {
        "cursor_ahead_of_hub"
    } else if after >= compacted {
        "state_smaller_than_replay"
    } else {
        "cursor_too_old"
    };
    tracing::info!(after, compacted, head = to, reason, "sending full state");
    let notice = outbound::resync_required(reason, after, to);
    tally.frame(&notice);
    sink.text(notice.into()).await?;
    let store = hub.store.clone();
    let now = hub.clock.now_ms();
    let state = blocking(move || state_message(&store, to, stations, now)).await?;
    tally.frame(&state);
    sink.text(state.into()).await
}

/// `STATE`: open orders (and those finished in the last day), tables, locks and floor plans.
fn state_message(store: &Store, seq: u64, stations: u8, now: u64) -> Result<String, StoreError> {
    let dump = store.state_dump(now)?;
    let day_ago = now.saturating_sub(crate::store::live::FINISHED_KEPT_MS);
    let orders: Vec<Box<RawValue>> = dump
        .orders
        .iter()
        .filter_map(|(p, o)| outbound::state_order(p, o.version, o.seq, &o.snapshot_json))
        .collect();
    let tables: Vec<Value> = dump
        .tables
        .iter()
        .map(|t| json!({"tableId": outbound::raw(&t.table_id_json), "status": t.status, "posReference": t.pos_reference, "terminalId": t.terminal_id}))
        .collect();
    let locks: Vec<Value> = dump
        .locks
        .iter()
        .map(|l| json!({"tableId": outbound::raw(&l.table_id_json), "terminalId": l.terminal_id, "uid": outbound::raw(&l.uid_json), "userName": l.user_name, "expiresAt": l.expires_ms}))
        .collect();
    let floors: Vec<Value> = dump
        .floors
        .iter()
        .map(|f| {
            let mut v = json!({"floorId": outbound::raw(&f.floor_id_json), "tables": outbound::raw(&f.tables_json)});
            if let Some(l) = &f.layout_mode_json {
                v["layoutMode"] = outbound::raw(l);
            }
            v
        })
        .collect();
    let (kitchen, inventory) = super::kitchen::state_fields(store, stations, day_ago)?;
    Ok(outbound::state(&outbound::State {
        orders,
        tables,
        table_locks: locks,
        floor_plans: floors,
        kitchen_tickets: kitchen,
        inventory,
        seq,
    }))
}
