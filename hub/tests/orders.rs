//! Leases, orders, tables, floor plans and ticket numbers as terminals see them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use poshub::clock::ManualClock;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_writer_versioning_and_broadcast() {
    let hub = TestHub::start(&[]).await;
    let mut a = hub.term("A").await;
    let mut b = hub.term("B").await;

    // Writing without the lease is refused.
    let r = a.write("P-1", 0, snapshot("P-1", "draft", None)).await;
    assert_eq!(
        (r["type"].as_str(), r["code"].as_str()),
        (Some("ERROR"), Some("lease_required")),
        "{r}"
    );

    assert_eq!(a.lease("P-1").await["type"], "LEASE_GRANTED");
    let denied = b.lease("P-1").await;
    assert_eq!(denied["type"], "LEASE_DENIED");
    assert_eq!(denied["holder"]["terminalId"], "A");

    // First write: version 1, acknowledged with its seq, broadcast to B only.
    let mut snap = snapshot("P-1", "draft", None);
    snap["customField"] = json!({"kept": [1, 2, 3]});
    let ack = a.write("P-1", 0, snap).await;
    assert_eq!(ack["type"], "ORDER_ACK");
    assert_eq!(ack["version"], 1);
    let upd = b.recv_type("ORDER_UPDATED").await;
    assert_eq!(
        (upd["posReference"].as_str(), upd["version"].as_u64()),
        (Some("P-1"), Some(1))
    );
    assert_eq!(upd["seq"], ack["seq"]);
    assert_eq!(upd["terminalId"], "A");
    assert_eq!(
        upd["snapshot"]["customField"]["kept"],
        json!([1, 2, 3]),
        "unknown fields survive"
    );

    // A stale baseVersion gets CONFLICT with the stored snapshot.
    assert_eq!(
        a.write("P-1", 1, snapshot("P-1", "sent", None)).await["version"],
        2
    );
    let c = a.write("P-1", 1, snapshot("P-1", "draft", None)).await;
    assert_eq!(c["type"], "CONFLICT");
    assert_eq!(c["currentVersion"], 2);
    assert_eq!(c["snapshot"]["state"], "sent");

    // The sender never gets its own ORDER_UPDATED.
    a.quiet_for(200).await;

    // The stored order is visible over HTTP.
    let (st, body) = http_get(hub.http, "/orders/P-1").await;
    assert_eq!(st, 200);
    assert_eq!(body["version"], 2);
    assert_eq!(body["snapshot"]["state"], "sent");
    assert_eq!(http_get(hub.http, "/orders/NOPE").await.0, 404);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_id_makes_writes_idempotent() {
    let hub = TestHub::start(&[]).await;
    let mut a = hub.term("A").await;
    let mut b = hub.term("B").await;
    a.lease("P-2").await;
    let msg = json!({"type": "ORDER_SNAPSHOT", "posReference": "P-2", "baseVersion": 0,
        "snapshot": snapshot("P-2", "draft", None), "eventId": "0b8f6c9e-1111-4a2b-9c3d-123456789abc", "requestId": 7});
    a.send(msg.clone()).await;
    let first = a.recv_type("ORDER_ACK").await;
    assert_eq!(first["requestId"], 7);
    a.send(msg).await;
    let again = a.recv_type("ORDER_ACK").await;
    assert_eq!(
        (again["version"].clone(), again["seq"].clone()),
        (first["version"].clone(), first["seq"].clone())
    );
    b.recv_type("ORDER_UPDATED").await;
    b.quiet_for(300).await; // the resend changed nothing and broadcast nothing
    let (_, o) = http_get(hub.http, "/orders/P-2").await;
    assert_eq!(o["version"], 1);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_follow_orders_and_updates() {
    let hub = TestHub::start(&[]).await;
    let mut a = hub.term("A").await;
    let mut b = hub.term("B").await;
    a.lease("T-1").await;
    a.write("T-1", 0, snapshot("T-1", "draft", Some(4))).await;
    let occ = b.recv_type("TABLE_UPDATED").await;
    assert_eq!(
        (
            occ["tableId"].clone(),
            occ["status"].as_str(),
            occ["posReference"].as_str()
        ),
        (json!(4), Some("occupied"), Some("T-1"))
    );
    let mine = a.recv_type("TABLE_UPDATED").await; // sender included
    assert_eq!(mine["status"], "occupied");

    a.write("T-1", 1, snapshot("T-1", "paid", Some(4))).await;
    let free = b.recv_type("TABLE_UPDATED").await;
    assert_eq!(free["status"], "available");
    assert!(free["seq"].as_u64() > occ["seq"].as_u64());
    assert_eq!(a.recv_type("TABLE_UPDATED").await["status"], "available");

    // Explicit TABLE_UPDATE goes to everyone, sender included.
    b.send(json!({"type": "TABLE_UPDATE", "tableId": "patio-2", "status": "reserved"}))
        .await;
    assert_eq!(a.recv_type("TABLE_UPDATED").await["tableId"], "patio-2");
    assert_eq!(b.recv_type("TABLE_UPDATED").await["status"], "reserved");

    // Floor plans: stored, acknowledged, broadcast to the others.
    a.send(json!({"type": "FLOOR_PLAN_UPDATE", "floorId": 1, "tables": [{"id": 4, "x": 10}], "layoutMode": "free"})).await;
    assert_eq!(a.recv_type("FLOOR_PLAN_SAVED").await["floorId"], 1);
    let fp = b.recv_type("FLOOR_PLAN_CHANGED").await;
    assert_eq!(fp["tables"][0]["x"], 10);
    assert_eq!(fp["layoutMode"], "free");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_numbers_count_per_type() {
    let hub = TestHub::start(&[]).await;
    let mut a = hub.term("A").await;
    let mut b = hub.term("B").await;
    let mut seen = Vec::new();
    for i in 0..6 {
        let t = if i % 2 == 0 { &mut a } else { &mut b };
        t.send(json!({"type": "TICKET_NUMBER_REQUEST", "orderType": "takeout"}))
            .await;
        let n = t.recv_type("TICKET_NUMBER").await;
        assert!(n["businessDate"].as_str().is_some_and(|d| d.len() == 10));
        seen.push(n["number"].as_u64().expect("number"));
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5, 6]);
    a.send(json!({"type": "TICKET_NUMBER_REQUEST", "orderType": "delivery"}))
        .await;
    assert_eq!(a.recv_type("TICKET_NUMBER").await["number"], 1);
    a.send(json!({"type": "TICKET_NUMBER_REQUEST", "orderType": "spaceship"}))
        .await;
    assert_eq!(a.recv_type("ERROR").await["code"], "invalid_message");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_renew_release_expire_and_survive_a_short_disconnect() {
    // The engine runs on a stepped clock: leases and grace periods end when the test says so.
    let clock = Arc::new(ManualClock::new());
    let hub = TestHub::start_with_clock(
        &[
            ("HUB_LEASE_TTL_MS", "600"),
            ("HUB_HEARTBEAT_MS", "100"),
            ("HUB_GRACE_MS", "400"),
        ],
        clock.clone(),
    )
    .await;
    let mut a = hub.term("A").await;
    let mut b = hub.term("B").await;
    a.lease("L-1").await;
    a.send(json!({"type": "LEASE_HEARTBEAT", "posReference": "L-1"}))
        .await;
    assert_eq!(a.recv_type("LEASE_RENEWED").await["posReference"], "L-1");
    b.send(json!({"type": "LEASE_HEARTBEAT", "posReference": "L-1"}))
        .await;
    assert_eq!(b.recv_type("LEASE_REVOKED").await["reason"], "not_holder");
    a.send(json!({"type": "LEASE_RELEASE", "posReference": "L-1"}))
        .await;
    a.recv_type("LEASE_RELEASED").await;
    assert_eq!(b.lease("L-1").await["type"], "LEASE_GRANTED");

    // Without heartbeats the lease expires and the holder is told.
    clock.advance(Duration::from_millis(600));
    let revoked = b.recv_type("LEASE_REVOKED").await;
    assert_eq!(revoked["reason"], "expired");
    assert_eq!(a.lease("L-1").await["type"], "LEASE_GRANTED");

    // A disconnected holder keeps its lease during the grace period and gets it back.
    a.lease("L-2").await;
    drop(a);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(b.lease("L-2").await["type"], "LEASE_DENIED");
    let mut a = hub.term("A").await;
    a.send(json!({"type": "LEASE_HEARTBEAT", "posReference": "L-2"}))
        .await;
    assert_eq!(a.recv_type("LEASE_RENEWED").await["posReference"], "L-2");

    // After the grace period a gone terminal's leases are released (the grace, 400 ms, ends
    // before the lease would expire, 600 ms).
    a.lease("L-3").await;
    drop(a);
    let deadline = tokio::time::Instant::now() + WAIT;
    while http_get(hub.http, "/health").await.1["terminals"] != 1 {
        assert!(tokio::time::Instant::now() < deadline, "A never went");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.lease("L-3").await["type"], "LEASE_DENIED");
    clock.advance(Duration::from_millis(450));
    while b.lease("L-3").await["type"] != "LEASE_GRANTED" {
        assert!(tokio::time::Instant::now() < deadline, "L-3 never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hub.stop().await;
}

/// A lease that has run out is gone for the next message, not only after the next expiry tick
/// (here an hour away): the write is refused and the heartbeat says the lease is not held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_ran_out_refuses_writes_before_any_tick() {
    let clock = Arc::new(ManualClock::new());
    let hub = TestHub::start_with_clock(
        &[
            ("HUB_HEARTBEAT_MS", "3600000"),
            ("HUB_TABLE_LOCK_TICK_MS", "3600000"),
            ("HUB_LEASE_TTL_MS", "60000"),
        ],
        clock.clone(),
    )
    .await;
    let mut a = hub.term("till-1").await;
    a.lease("EXP-1").await;
    assert_eq!(
        a.write("EXP-1", 0, snapshot("EXP-1", "draft", None)).await["type"],
        "ORDER_ACK"
    );
    clock.advance(Duration::from_millis(60_001));
    a.send(
        json!({"type": "ORDER_SNAPSHOT", "posReference": "EXP-1", "baseVersion": 1,
                  "snapshot": snapshot("EXP-1", "draft", None), "requestId": 7}),
    )
    .await;
    let reply = a.recv_type_of(&["ORDER_ACK", "ERROR"]).await;
    assert_eq!(reply["type"], "ERROR", "{reply}");
    assert_eq!(reply["code"], "lease_required", "{reply}");
    a.send(json!({"type": "LEASE_HEARTBEAT", "posReference": "EXP-1"}))
        .await;
    let hb = a.recv_type_of(&["LEASE_RENEWED", "LEASE_REVOKED"]).await;
    assert_eq!(hb["type"], "LEASE_REVOKED", "{hb}");
    hub.stop().await;
}

/// Each terminal's events of one group commit go out as one batch; a terminal that also wrote
/// in that commit must still see its acks and the other terminal's events in seq order (an ack
/// ahead of an older event would make a client that keeps its cursor from both skip it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_sharing_commits_each_see_acks_and_events_in_seq_order() {
    const N: u64 = 150;
    let hub = TestHub::start(&[]).await;
    let mut a = hub.term("till-a").await;
    let mut b = hub.term("till-b").await;
    a.lease("A-1").await;
    b.lease("B-1").await;
    // Pipelined from both, so most commits hold writes of both terminals.
    for v in 0..N {
        for (t, p) in [(&mut a, "A-1"), (&mut b, "B-1")] {
            t.send(
                json!({"type": "ORDER_SNAPSHOT", "posReference": p, "baseVersion": v,
                "snapshot": snapshot(p, "draft", None)}),
            )
            .await;
        }
    }
    for t in [&mut a, &mut b] {
        let (mut acks, mut events, mut last) = (0, 0, 0);
        while acks < N || events < N {
            let v = t.recv_type_of(&["ORDER_ACK", "ORDER_UPDATED"]).await;
            let seq = v["seq"].as_u64().expect("seq");
            assert!(seq > last, "{}: seq {seq} after {last}: {v}", t.id);
            last = seq;
            if v["type"] == "ORDER_ACK" {
                acks += 1;
            } else {
                events += 1;
            }
        }
        assert_eq!((acks, events), (N, N));
    }
    let commits = hub.metric("poshub_commit_batch_size_count").await;
    println!("{} writes in {commits} commits", 2 * N);
    assert!(
        commits < N,
        "{commits} commits for {} writes: few were shared",
        2 * N
    );
    hub.stop().await;
}
