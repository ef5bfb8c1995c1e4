//! Retention (issue 17, point 2): the log is bounded by `HUB_EVENT_RETENTION_MS` whether or
//! not an upstream is configured. Events with nowhere to go age out; events waiting for a
//! configured upstream that is down are kept (a terminal can still replay them) and go once
//! forwarded; a dead letter is kept without holding back the compaction of what follows it.
//! Time is an injected `ManualClock` stepped past the retention; the compaction tick itself
//! runs every `HUB_EVENT_RETENTION_MS` of real time (1 s here).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::odoo_double::*;
use common::*;
use poshub::clock::ManualClock;
use serde_json::{json, Value};

const COMPACTED: &str = "poshub_events_compacted_total";

/// Waits (at most 15 s) until compaction has removed at least `n` events in all.
async fn compacted_at_least(hub: &TestHub, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = hub.metric(COMPACTED).await;
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "compaction removed {got} events, expected at least {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a terminal reconnecting with `cursor` is sent first: the seqs of an `EVENTS_BULK`
/// replay, or the reason of a `RESYNC_REQUIRED`.
async fn reconnect(hub: &TestHub, id: &str, cursor: u64) -> Result<Vec<u64>, String> {
    let mut t = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "terminalId": id, "cursor": cursor}),
    )
    .await;
    let v = t.recv_type_of(&["EVENTS_BULK", "RESYNC_REQUIRED"]).await;
    if v["type"] == "RESYNC_REQUIRED" {
        t.recv_type("STATE").await;
        return Err(v["reason"].as_str().unwrap_or("").to_string());
    }
    Ok(v["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .collect())
}

async fn write_order(t: &mut Term, p: &str) -> u64 {
    t.lease(p).await;
    let ack = t.write(p, 0, snapshot(p, "paid", None)).await;
    assert_eq!(ack["type"], "ORDER_ACK", "{ack}");
    ack["seq"].as_u64().expect("seq")
}

async fn health(hub: &TestHub) -> Value {
    http_get(hub.http, "/health").await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_upstream_old_events_age_out() {
    let clock = Arc::new(ManualClock::new());
    let hub = TestHub::start_with_clock(&[("HUB_EVENT_RETENTION_MS", "1000")], clock.clone()).await;
    let mut a = hub.term("till-1").await;
    let first = write_order(&mut a, "O-1").await;
    write_order(&mut a, "O-2").await;
    // Inside the retention the events replay.
    assert_eq!(
        reconnect(&hub, "early", first - 1).await.map(|s| s.len()),
        Ok(2)
    );
    clock.advance(Duration::from_secs(60));
    compacted_at_least(&hub, 2).await;
    assert_eq!(
        reconnect(&hub, "late", first).await,
        Err("cursor_too_old".into()),
        "events past the retention must be gone although no upstream ever took them"
    );
    assert_eq!(health(&hub).await["pendingEvents"], 0);
    // The orders themselves are state, not log: still there.
    let (_, o) = http_get(hub.http, "/orders/O-2").await;
    assert_eq!(o["posReference"], "O-2", "{o}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_waiting_for_a_down_upstream_are_kept_then_go_once_forwarded() {
    let odoo = OdooDouble::start().await;
    odoo.fault("", Fault::Status(503), None);
    let env = odoo_env(&odoo);
    let mut env = refs(&env);
    env.push(("HUB_EVENT_RETENTION_MS", "1000"));
    let clock = Arc::new(ManualClock::new());
    let hub = TestHub::start_with_clock(&env, clock.clone()).await;
    let mut a = hub.term("till-1").await;
    // A table event (never forwarded), then an order (waits for Odoo).
    a.send(json!({"type": "TABLE_UPDATE", "tableId": 4, "status": "dirty"}))
        .await;
    let table_seq = a.recv_type("TABLE_UPDATED").await["seq"]
        .as_u64()
        .expect("seq");
    let order_seq = write_order(&mut a, "W-1").await;
    clock.advance(Duration::from_secs(60));
    compacted_at_least(&hub, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // one more tick: it must keep W-1
    assert_eq!(
        hub.metric(COMPACTED).await,
        1,
        "only the table event may go"
    );
    assert_eq!(
        reconnect(&hub, "r1", table_seq).await,
        Ok(vec![order_seq]),
        "the waiting order event still replays"
    );
    assert_eq!(health(&hub).await["pendingEvents"], 1);

    odoo.clear_faults();
    let (st, _) = admin(hub.http, "POST", "/admin/drain", Some(ADMIN), "").await;
    assert_eq!(st, 200);
    wait_health(hub.http, WAIT, "forwarded", |h| h["pendingEvents"] == 0).await;
    compacted_at_least(&hub, 2).await;
    assert_eq!(
        reconnect(&hub, "r2", table_seq).await,
        Err("cursor_too_old".into())
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_kept_without_holding_back_what_follows() {
    let odoo = OdooDouble::start().await;
    odoo.refuse("BAD-1", 422); // permanent: a dead letter at once
    let env = odoo_env(&odoo);
    let mut env = refs(&env);
    env.push(("HUB_EVENT_RETENTION_MS", "1000"));
    let clock = Arc::new(ManualClock::new());
    let hub = TestHub::start_with_clock(&env, clock.clone()).await;
    let mut a = hub.term("till-1").await;
    let bad = write_order(&mut a, "BAD-1").await;
    let good = write_order(&mut a, "GOOD-1").await;
    wait_health(hub.http, WAIT, "one dead, one forwarded", |h| {
        h["deadLetters"] == 1 && h["pendingEvents"] == 0
    })
    .await;
    clock.advance(Duration::from_secs(60));
    compacted_at_least(&hub, 1).await;
    assert_eq!(
        reconnect(&hub, "r1", bad).await,
        Err("cursor_too_old".into()),
        "GOOD-1's event, after the dead letter, is compacted"
    );
    // The dead letter is still there for the operator, and can be requeued and forwarded.
    let (st, dl) = admin(hub.http, "GET", "/admin/dead-letters", Some(ADMIN), "").await;
    assert_eq!(st, 200);
    assert!(dl.to_string().contains("BAD-1"), "{dl}");
    odoo.unrefuse_all();
    let (st, _) = admin(
        hub.http,
        "POST",
        "/admin/dead-letters/requeue",
        Some(ADMIN),
        "",
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = admin(hub.http, "POST", "/admin/drain", Some(ADMIN), "").await;
    assert_eq!(st, 200);
    wait_health(hub.http, WAIT, "requeued and forwarded", |h| {
        h["deadLetters"] == 0 && h["pendingEvents"] == 0
    })
    .await;
    // Kept below the compacted mark, it goes at the next compaction once forwarded.
    compacted_at_least(&hub, 2).await;
    assert!(good > bad);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_orders_are_deleted_after_the_order_retention_open_ones_stay() {
    let clock = Arc::new(ManualClock::new());
    let hub = TestHub::start_with_clock(
        &[
            ("HUB_EVENT_RETENTION_MS", "1000"),
            ("HUB_ORDER_RETENTION_MS", "86400000"),
        ],
        clock.clone(),
    )
    .await;
    let mut a = hub.term("till-1").await;
    write_order(&mut a, "PAID-OLD").await; // paid
    write_order(&mut a, "PAID-AGAIN").await;
    a.lease("OPEN-OLD").await;
    a.write("OPEN-OLD", 0, snapshot("OPEN-OLD", "draft", None))
        .await;
    clock.advance(Duration::from_secs(2 * 86_400));
    write_order(&mut a, "PAID-NEW").await;
    // Paid again today (a refund and a new payment): its last change is today, so it stays.
    a.lease("PAID-AGAIN").await;
    let again = a
        .write("PAID-AGAIN", 1, snapshot("PAID-AGAIN", "paid", None))
        .await;
    assert_eq!(again["type"], "ORDER_ACK", "{again}");
    // The counter moves once the deletion is committed, so it is what the API shows.
    let deadline = Instant::now() + Duration::from_secs(15);
    while hub.metric("poshub_orders_retired_total").await < 1 {
        assert!(Instant::now() < deadline, "no order was retired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = |p: &'static str| {
        let http = hub.http;
        async move { http_get(http, &format!("/orders/{p}")).await.0 }
    };
    assert_eq!(status("PAID-OLD").await, 404, "paid two days ago: gone");
    assert_eq!(
        status("OPEN-OLD").await,
        200,
        "open orders are never retired"
    );
    assert_eq!(status("PAID-NEW").await, 200, "paid just now: kept");
    assert_eq!(status("PAID-AGAIN").await, 200, "paid again today: kept");
    assert_eq!(hub.metric("poshub_orders_retired_total").await, 1);
    hub.stop().await;
}
