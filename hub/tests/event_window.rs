//! The in-memory event window (`HUB_EVENT_WINDOW_BYTES`): a terminal that stalls and resumes is
//! caught up from memory while its cursor is still inside the window, and from the database
//! once it has fallen out of it. Either way it sees every event exactly once, in seq order;
//! `/metrics` tells which source served the catch-up.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Events of ~16 KiB, so a terminal that reads nothing fills its socket buffers quickly.
fn big_order(p: &str) -> Value {
    json!({"posReference": p, "state": "draft", "lines": [], "note": "y".repeat(16 * 1024)})
}

/// Writes orders `from..=to` (one event each), pipelined in rounds of 100.
async fn write_big(w: &mut Term, from: u64, to: u64) {
    let mut next = from;
    while next <= to {
        let end = (next + 99).min(to);
        for i in next..=end {
            let p = format!("big-{i}");
            w.send(json!({"type": "LEASE_ACQUIRE", "posReference": p}))
                .await;
            w.send(json!({"type": "ORDER_SNAPSHOT", "posReference": p, "baseVersion": 0, "snapshot": big_order(&p)}))
                .await;
        }
        for _ in next..=end {
            w.recv_type("ORDER_ACK").await;
        }
        next = end + 1;
    }
}

/// Every event seq the terminal receives (live or in `EVENTS_BULK`) until it has `want`.
async fn seqs_until(t: &mut Term, want: u64) -> Vec<u64> {
    let mut seqs: Vec<u64> = Vec::new();
    while seqs.last().copied().unwrap_or(0) < want {
        let v = t
            .next(Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("stalled at {:?} waiting for {want}", seqs.last()));
        match v["type"].as_str() {
            Some("EVENTS_BULK") => {
                for e in v["events"].as_array().expect("events") {
                    seqs.push(e["seq"].as_u64().expect("seq"));
                }
            }
            Some("ORDER_UPDATED") => seqs.push(v["seq"].as_u64().expect("seq")),
            _ => {}
        }
    }
    seqs
}

fn assert_exact(seqs: &[u64], from: u64, to: u64) {
    let expected: Vec<u64> = (from..=to).collect();
    let unique = seqs.iter().collect::<BTreeSet<_>>().len();
    assert_eq!(seqs.len() - unique, 0, "duplicates delivered");
    assert_eq!(seqs, expected.as_slice(), "gap or disorder");
}

/// The stalled terminal gets seqs 1..=n exactly once, fell behind on the way (the hub counted
/// it), and is back on its live stream afterwards.
async fn caught_up_then_live(hub: &TestHub, slow: &mut Term, w: &mut Term, n: u64) {
    assert_exact(&seqs_until(slow, n).await, 1, n);
    write_big(w, n + 1, n + 3).await;
    assert_exact(&seqs_until(slow, n + 3).await, n + 1, n + 3);
    assert!(
        hub.metric(LAGS).await >= 1,
        "the terminal never fell behind"
    );
}

const MEMORY: &str = "poshub_catchups_total{source=\"memory\"}";
const DATABASE: &str = "poshub_catchups_total{source=\"database\"}";
const LAGS: &str = "poshub_lag_resyncs_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_terminal_is_caught_up_from_the_window() {
    // A 16-event queue makes the stalled terminal lag; the window holds the whole run.
    let hub = TestHub::start(&[
        ("HUB_MAX_QUEUED_BROADCASTS", "16"),
        ("HUB_EVENT_WINDOW_BYTES", &(64usize << 20).to_string()),
    ])
    .await;
    let mut slow = hub.term("slow").await;
    let mut w = hub.term("writer").await;
    let n = 1500;
    // ~24 MB the slow terminal does not read: more than its socket buffers and queue hold.
    write_big(&mut w, 1, n).await;
    caught_up_then_live(&hub, &mut slow, &mut w, n).await;
    assert!(
        hub.metric(MEMORY).await >= 1,
        "no catch-up was served from memory"
    );
    assert_eq!(hub.metric(DATABASE).await, 0, "the database was read");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_that_falls_out_of_the_window_is_caught_up_from_the_database() {
    // A window of four events: the stalled terminal's cursor leaves it long before it reads
    // again. The default queue length applies; the byte bound of frames no longer shared
    // with the window is what switches it to catch-up.
    let hub = TestHub::start(&[("HUB_EVENT_WINDOW_BYTES", "65536")]).await;
    let mut slow = hub.term("slow").await;
    let mut fast = hub.term("fast").await;
    let mut w = hub.term("writer").await;
    let n = 1500;
    let fast_task = tokio::spawn(async move {
        let seqs = seqs_until(&mut fast, n).await;
        assert_exact(&seqs, 1, n);
        fast
    });
    write_big(&mut w, 1, n).await;
    let _fast = fast_task
        .await
        .expect("the reading terminal got everything live");
    caught_up_then_live(&hub, &mut slow, &mut w, n).await;
    assert!(
        hub.metric(DATABASE).await >= 1,
        "the database was never read"
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_a_recent_cursor_is_served_from_memory_and_an_old_one_from_disk() {
    let hub = TestHub::start(&[("HUB_EVENT_WINDOW_BYTES", "65536")]).await;
    let mut w = hub.term("writer").await;
    write_big(&mut w, 1, 20).await;
    // Seq 18..20 are in the window (4 events of ~16 KiB): served from memory.
    let mut recent = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "terminalId": "recent", "cursor": 17}),
    )
    .await;
    assert_exact(&seqs_until(&mut recent, 20).await, 18, 20);
    assert_eq!(hub.metric(MEMORY).await, 1);
    assert_eq!(hub.metric(DATABASE).await, 0);
    // From seq 3 on, most of the range has left the window: the database serves it.
    let mut old = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "terminalId": "old", "cursor": 2}),
    )
    .await;
    assert_exact(&seqs_until(&mut old, 20).await, 3, 20);
    assert_eq!(hub.metric(DATABASE).await, 1);
    // Both are live afterwards.
    write_big(&mut w, 21, 21).await;
    assert_exact(&seqs_until(&mut recent, 21).await, 21, 21);
    assert_exact(&seqs_until(&mut old, 21).await, 21, 21);
    hub.stop().await;
}
