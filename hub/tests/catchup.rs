//! Catch-up after reconnect: every broadcastable event after the cursor, exactly once, in order,
//! across the switch from bulk replay to live, even while others keep writing; resync when the
//! cursor is outside the retained log; lagging terminals are caught up instead of skipped.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Collects event seqs from `EVENTS_BULK` and live broadcasts until `want` is reached. A stall is
/// 30 s without any frame (not a total time: how fast 2000 fsynced writes go depends on the
/// machine, and speed belongs in benchmarks).
async fn collect_until(t: &mut Term, want: u64, seqs: &mut Vec<u64>) {
    while seqs.last().copied().unwrap_or(0) < want {
        let v = t
            .next(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("stalled at {:?} waiting for {want}", seqs.last()));
        match v["type"].as_str() {
            Some("EVENTS_BULK") => {
                for e in v["events"].as_array().expect("events") {
                    seqs.push(e["seq"].as_u64().expect("seq"));
                }
            }
            Some(
                "ORDER_UPDATED" | "TABLE_UPDATED" | "TABLE_LOCKS_STATE" | "FLOOR_PLAN_CHANGED",
            ) => {
                seqs.push(v["seq"].as_u64().expect("seq"));
            }
            _ => {}
        }
    }
}

fn assert_exact(seqs: &[u64], from: u64, to: u64) {
    let expected: Vec<u64> = (from..=to).collect();
    let dups = seqs.len() - seqs.iter().collect::<BTreeSet<_>>().len();
    assert_eq!(dups, 0, "duplicates delivered");
    assert_eq!(seqs, expected.as_slice(), "gap or disorder");
}

/// Writes `n` orders from one terminal, pipelined, and returns the last ack's seq.
async fn write_orders(t: &mut Term, prefix: &str, n: usize) -> u64 {
    for i in 0..n {
        let p = format!("{prefix}-{i}");
        t.send(json!({"type": "LEASE_ACQUIRE", "posReference": p}))
            .await;
        t.send(json!({"type": "ORDER_SNAPSHOT", "posReference": p, "baseVersion": 0, "snapshot": snapshot(&p, "draft", None)})).await;
    }
    let mut last = 0;
    for _ in 0..n {
        let ack = t.recv_type("ORDER_ACK").await;
        last = last.max(ack["seq"].as_u64().expect("seq"));
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_catch_up_while_others_write() {
    let hub = TestHub::start(&[]).await;
    let mut w1 = hub.term("w1").await;
    let first = write_orders(&mut w1, "pre", 50).await;
    assert_eq!(first, 50);

    // Two writers keep going while the reader joins with cursor 10.
    let ws = hub.ws;
    let writers: Vec<_> = ["w2", "w3"]
        .into_iter()
        .map(|id| {
            tokio::spawn(async move {
                let mut t = Term::open(ws, id).await;
                write_orders(&mut t, id, 150).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut r = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "terminalId": "reader", "cursor": 10}),
    )
    .await;
    let mut last = 0;
    for w in writers {
        last = last.max(w.await.expect("writer"));
    }
    assert_eq!(last, 350);
    let mut seqs = Vec::new();
    collect_until(&mut r, 350, &mut seqs).await;
    assert_exact(&seqs, 11, 350);
    r.quiet_for(200).await;

    // Reconnect with the last cursor: exactly what was missed.
    drop(r);
    write_orders(&mut w1, "gap", 20).await;
    let mut r = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "terminalId": "reader", "cursor": 350}),
    )
    .await;
    let mut seqs = Vec::new();
    collect_until(&mut r, 370, &mut seqs).await;
    assert_exact(&seqs, 351, 370);

    // SYNC_REQUEST replays on demand.
    r.send(json!({"type": "SYNC_REQUEST", "cursor": 365})).await;
    let bulk = r.recv_type("EVENTS_BULK").await;
    let got: Vec<u64> = bulk["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(got, vec![366, 367, 368, 369, 370]);
    assert_eq!(
        (
            bulk["fromSeq"].as_u64(),
            bulk["toSeq"].as_u64(),
            bulk["done"].as_bool()
        ),
        (Some(366), Some(370), Some(true))
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_outside_retention_gets_resync_and_state() {
    let hub = TestHub::start(&[("HUB_EVENT_RETENTION_MS", "1000")]).await;
    let mut a = hub.term("A").await;
    for i in 0..5 {
        a.send(json!({"type": "TABLE_UPDATE", "tableId": i, "status": "dirty"}))
            .await;
        a.recv_type("TABLE_UPDATED").await;
    }
    a.lease("OPEN-1").await;
    a.write("OPEN-1", 0, snapshot("OPEN-1", "draft", None))
        .await;
    // Table events are not forwarded upstream, so they are compacted once past the retention.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let mut late = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "terminalId": "late", "cursor": 0}),
    )
    .await;
    let rr = late.recv_type("RESYNC_REQUIRED").await;
    assert_eq!(rr["reason"], "cursor_too_old");
    let state = late.recv_type("STATE").await;
    assert_eq!(state["tables"].as_array().map(Vec::len), Some(5));
    assert_eq!(state["orders"][0]["posReference"], "OPEN-1");
    assert_eq!(state["seq"], 6);
    // A cursor from the future (another hub's database) also resyncs.
    let mut odd = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "terminalId": "odd", "cursor": 999}),
    )
    .await;
    assert_eq!(
        odd.recv_type("RESYNC_REQUIRED").await["reason"],
        "cursor_ahead_of_hub"
    );
    odd.recv_type("STATE").await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_terminal_does_not_hold_up_others_and_is_caught_up() {
    let hub = TestHub::start(&[("HUB_MAX_QUEUED_BROADCASTS", "16")]).await;
    let mut slow = hub.term("slow").await;
    let mut fast = hub.term("fast").await;
    let mut w = hub.term("writer").await;
    let big: Value =
        json!({"posReference": "x", "state": "draft", "lines": [], "note": "y".repeat(16 * 1024)});
    let n = 2000u64;
    let fast_task = tokio::spawn(async move {
        let mut seqs = Vec::new();
        collect_until(&mut fast, n, &mut seqs).await;
        assert_exact(&seqs, 1, n);
        fast
    });
    for chunk in 0..(n / 200) {
        for i in 0..200 {
            let p = format!("big-{chunk}-{i}");
            let mut s = big.clone();
            s["posReference"] = json!(p);
            w.send(json!({"type": "LEASE_ACQUIRE", "posReference": p}))
                .await;
            w.send(json!({"type": "ORDER_SNAPSHOT", "posReference": p, "baseVersion": 0, "snapshot": s})).await;
        }
        for _ in 0..200 {
            w.recv_type("ORDER_ACK").await;
        }
    }
    // The fast terminal got all 2000 (32 MB) while the slow one read nothing.
    let _fast = tokio::time::timeout(Duration::from_secs(60), fast_task)
        .await
        .expect("fast terminal kept up")
        .expect("task");
    let mut seqs = Vec::new();
    collect_until(&mut slow, n, &mut seqs).await;
    assert_exact(&seqs, 1, n);
    let stats = &hub.running.as_ref().expect("running").hub.engine.stats;
    assert!(
        stats.lag_resyncs.load(std::sync::atomic::Ordering::Relaxed) >= 1,
        "the slow terminal was never marked lagging"
    );
    hub.stop().await;
}
