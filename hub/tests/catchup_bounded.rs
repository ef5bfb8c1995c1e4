//! Catch-up bounded by the state (issue 17, point 1): a terminal that missed many rewrites of a
//! few orders gets `RESYNC_REQUIRED` (`state_smaller_than_replay`) and a `STATE` of those orders
//! instead of every intermediate version, then goes live with no gap; a terminal a little behind
//! still gets the events. A `STATE` carries open orders and those finished within the last day
//! (on the engine's clock), read from the live-order index, which a database from before the
//! index gets on open.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use poshub::clock::ManualClock;
use serde_json::{json, Value};

/// Writes `n` versions of order `p` (leased first), pipelined; returns the last ack.
async fn rewrite(t: &mut Term, p: &str, n: u64) -> Value {
    t.lease(p).await;
    for v in 0..n {
        let mut s = snapshot(p, "draft", Some(1));
        s["note"] = json!(format!("rewrite {v} {}", "x".repeat(200)));
        t.send(
            json!({"type": "ORDER_SNAPSHOT", "posReference": p, "baseVersion": v, "snapshot": s}),
        )
        .await;
    }
    let mut last = Value::Null;
    for _ in 0..n {
        last = t.recv_type("ORDER_ACK").await;
    }
    last
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_far_behind_few_busy_orders_gets_the_state_then_live_with_no_gap() {
    let hub = TestHub::start(&[]).await;
    let mut w = hub.term("till-1").await;
    let mut watcher = hub.term("watcher").await;
    let mut head = 0;
    for p in ["T-1", "T-2", "T-3", "T-4"] {
        head = rewrite(&mut w, p, 200).await["seq"].as_u64().expect("seq");
    }
    // What a replay from the start would have carried: every broadcast the watcher saw.
    let mut replay_bytes = 0;
    let mut seen = 0;
    while seen < 800 {
        let v = watcher.recv_type("ORDER_UPDATED").await;
        replay_bytes += v.to_string().len();
        seen += 1;
    }

    let mut late = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "terminalId": "late", "cursor": 1}),
    )
    .await;
    let rr = late.recv_type_of(&["RESYNC_REQUIRED", "EVENTS_BULK"]).await;
    assert_eq!(
        rr["type"], "RESYNC_REQUIRED",
        "800 rewrites of 4 orders replayed: {rr}"
    );
    assert_eq!(rr["reason"], "state_smaller_than_replay");
    let state = late.recv_type("STATE").await;
    let state_bytes = state.to_string().len();
    let versions: Vec<(String, u64)> = state["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .map(|o| {
            (
                o["posReference"].as_str().unwrap_or("").to_string(),
                o["version"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        versions,
        ["T-1", "T-2", "T-3", "T-4"].map(|p| (p.to_string(), 200)),
        "the state holds each order's latest version"
    );
    assert_eq!(state["seq"].as_u64(), Some(head));
    println!("replay {replay_bytes} bytes, STATE {state_bytes} bytes");
    assert!(
        state_bytes * 20 < replay_bytes,
        "STATE {state_bytes} B is not much smaller than the replay {replay_bytes} B"
    );
    assert_eq!(
        hub.metric("poshub_catchups_total{source=\"state\"}").await,
        1
    );
    // The catch-up's frames count as messages sent, like any other.
    for ty in ["RESYNC_REQUIRED", "STATE"] {
        let name = format!("poshub_messages_out_total{{type=\"{ty}\"}}");
        assert_eq!(hub.metric_at_least(&name, 1).await, 1, "{name}");
    }

    // Live from the state's seq, with no gap.
    let ack = rewrite(&mut w, "T-5", 1).await;
    let live = late.recv_type("ORDER_UPDATED").await;
    assert_eq!(live["seq"].as_u64(), Some(head + 1), "{live}");
    assert_eq!(ack["seq"].as_u64(), Some(head + 1));

    // A terminal a little behind still gets exactly the events it missed.
    let mut near = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "terminalId": "near", "cursor": head - 99}),
    )
    .await;
    let bulk = near.recv_type_of(&["RESYNC_REQUIRED", "EVENTS_BULK"]).await;
    assert_eq!(bulk["type"], "EVENTS_BULK", "{bulk}");
    assert_eq!(bulk["fromSeq"].as_u64(), Some(head - 98));
    let name = "poshub_messages_out_total{type=\"EVENTS_BULK\"}";
    assert!(hub.metric_at_least(name, 1).await >= 1, "{name}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_different_orders_still_replay_as_events() {
    let hub = TestHub::start(&[]).await;
    let mut w = hub.term("till-1").await;
    for i in 0..400 {
        rewrite(&mut w, &format!("D-{i}"), 1).await;
    }
    // 400 events, each a different order: the state is as big as the replay.
    let mut late = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "terminalId": "late", "cursor": 0}),
    )
    .await;
    let first = late.recv_type_of(&["RESYNC_REQUIRED", "EVENTS_BULK"]).await;
    assert_eq!(first["type"], "EVENTS_BULK", "{first}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_orders_leave_the_state_after_a_day_on_the_engine_clock() {
    let clock = Arc::new(ManualClock::new());
    let hub = TestHub::start_with_clock(&[], clock.clone()).await;
    let mut w = hub.term("till-1").await;
    for (p, st) in [
        ("PAID-1", "paid"),
        ("OPEN-1", "draft"),
        ("GONE-1", "cancelled"),
    ] {
        w.lease(p).await;
        assert_eq!(
            w.write(p, 0, snapshot(p, st, None)).await["type"],
            "ORDER_ACK"
        );
    }
    let refs = |state: &Value| -> Vec<String> {
        state["orders"]
            .as_array()
            .expect("orders")
            .iter()
            .map(|o| o["posReference"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let resync = |id: &'static str| {
        let ws = hub.ws;
        async move {
            let mut t = Term::open_with(
                ws,
                json!({"type": "AUTH", "terminalId": id, "cursor": 999_999}),
            )
            .await;
            t.recv_type("RESYNC_REQUIRED").await;
            t.recv_type("STATE").await
        }
    };
    assert_eq!(refs(&resync("t1").await), ["GONE-1", "OPEN-1", "PAID-1"]);
    clock.advance(Duration::from_secs(25 * 3600));
    assert_eq!(refs(&resync("t2").await), ["OPEN-1"]);
    // GET /orders lists the same orders; an older finished one is still one lookup away.
    let (_, list) = http_get(hub.http, "/orders").await;
    assert_eq!(refs(&list), ["OPEN-1"], "{list}");
    assert_eq!(list["more"], false);
    let (_, list) = http_get(hub.http, "/orders?limit=0").await;
    assert!(list.to_string().contains("limit must be"), "{list}");
    assert_eq!(http_get(hub.http, "/orders/PAID-1").await.0, 200);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_the_index_is_indexed_on_open() {
    let hub = TestHub::start(&[]).await;
    let mut w = hub.term("till-1").await;
    for p in ["OLD-1", "OLD-2"] {
        w.lease(p).await;
        w.write(p, 0, snapshot(p, "draft", None)).await;
    }
    drop(w);
    let dir = hub.stop().await;
    // Make it look like a database written before the index existed.
    {
        let db = redb::Database::open(db_path(dir.path())).expect("open");
        let txn = db.begin_write().expect("write");
        txn.delete_table(poshub::store::live::LIVE_ORDERS)
            .expect("drop index");
        txn.open_table(poshub::store::META)
            .expect("meta")
            .remove(poshub::store::live::META_LIVE_INDEXED)
            .expect("unmark");
        txn.commit().expect("commit");
    }
    let hub = TestHub::start_in(dir, &[]).await;
    let mut t = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "terminalId": "t", "cursor": 999_999}),
    )
    .await;
    t.recv_type("RESYNC_REQUIRED").await;
    let state = t.recv_type("STATE").await;
    assert_eq!(state["orders"].as_array().map(Vec::len), Some(2), "{state}");
    hub.stop().await;
}
