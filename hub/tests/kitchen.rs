//! Kitchen and bar tickets over real `WebSockets` (docs/kitchen.md): stored, acknowledged, broadcast
//! to the station's displays only, idempotent on ticketId, part of catch-up with the same station
//! filter, visible in `GET /kitchen-tickets`, and still there after a restart.

mod common;

use common::*;
use serde_json::{json, Value};

fn ticket(id: &str, station: &str, p: &str) -> Value {
    json!({"type": "KITCHEN_TICKET", "ticketId": id, "station": station, "posReference": p,
        "tableId": 5, "requestId": format!("r-{id}"),
        "lines": [{"name": "Burger", "quantity": 2, "note": "no onions"}, {"name": "Fries", "quantity": 1}]})
}

async fn display(hub: &TestHub, id: &str, stations: &[&str], cursor: Option<u64>) -> Term {
    let mut auth = json!({"type": "AUTH", "terminalId": id, "name": id, "stations": stations});
    if let Some(c) = cursor {
        auth["cursor"] = json!(c);
    }
    Term::open_with(hub.ws, auth).await
}

/// Every event of the catch-up that follows AUTH with a cursor.
async fn bulk(t: &mut Term) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let b = t.recv_type("EVENTS_BULK").await;
        out.extend(b["events"].as_array().cloned().unwrap_or_default());
        if b["done"] == true {
            return out;
        }
    }
}

#[tokio::test]
async fn ticket_reaches_its_station_only_and_a_resend_changes_nothing() {
    let hub = TestHub::start(&[]).await;
    let mut pos = hub.term("pos-1").await;
    let mut kitchen = display(&hub, "kds-1", &["kds"], None).await;
    let mut bar = display(&hub, "bds-1", &["bds"], None).await;

    pos.send(ticket("k-1", "kds", "A-1")).await;
    let ack = pos.recv_type("KITCHEN_TICKET_ACK").await;
    assert_eq!(ack["requestId"], "r-k-1");
    assert_eq!(ack["status"], "new");
    let seq = ack["seq"].as_u64().expect("seq");
    let created = kitchen.recv_type("KITCHEN_TICKET_CREATED").await;
    assert_eq!(created["ticketId"], "k-1");
    assert_eq!(created["seq"], seq);
    assert_eq!(created["tableId"], 5);
    assert_eq!(created["lines"][0]["note"], "no onions");
    bar.quiet_for(300).await;

    // The POS resends (its outbox did not see the ack): same answer, no new event.
    pos.send(ticket("k-1", "kds", "A-1")).await;
    let again = pos.recv_type("KITCHEN_TICKET_ACK").await;
    assert_eq!(
        (again["seq"].as_u64(), again["duplicate"].as_bool()),
        (Some(seq), Some(true))
    );
    kitchen.quiet_for(300).await;

    let (status, body) = http_get(hub.http, "/kitchen-tickets").await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 1, "{body}");
    assert_eq!(body["tickets"][0]["posReference"], "A-1");
    let (_, bars) = http_get(hub.http, "/kitchen-tickets?station=bds").await;
    assert_eq!(bars["count"], 0);
    let (bad, _) = http_get(hub.http, "/kitchen-tickets?station=grill").await;
    assert_eq!(bad, 400);
    hub.stop().await;
}

#[tokio::test]
async fn status_changes_are_broadcast_and_filterable() {
    let hub = TestHub::start(&[]).await;
    let mut pos = hub.term("pos-1").await;
    let mut kitchen = display(&hub, "kds-1", &["kds"], None).await;
    pos.send(ticket("k-7", "kds", "A-7")).await;
    pos.recv_type("KITCHEN_TICKET_ACK").await;
    kitchen.recv_type("KITCHEN_TICKET_CREATED").await;

    kitchen
        .send(json!({"type": "KITCHEN_TICKET_STATUS", "ticketId": "k-7", "status": "done", "requestId": 9}))
        .await;
    let ack = kitchen.recv_type("KITCHEN_TICKET_ACK").await;
    assert_eq!(
        (ack["status"].as_str(), ack["requestId"].as_i64()),
        (Some("done"), Some(9))
    );
    let upd = pos.recv_type("KITCHEN_TICKET_UPDATED").await;
    assert_eq!(
        (upd["ticketId"].as_str(), upd["status"].as_str()),
        (Some("k-7"), Some("done"))
    );
    assert_eq!(upd["seq"], ack["seq"]);

    kitchen
        .send(json!({"type": "KITCHEN_TICKET_STATUS", "ticketId": "nope", "status": "acked"}))
        .await;
    let err = kitchen.recv_type("ERROR").await;
    assert_eq!(err["code"], "not_found");
    kitchen
        .send(json!({"type": "KITCHEN_TICKET_STATUS", "ticketId": "k-7", "status": "eaten"}))
        .await;
    assert_eq!(kitchen.recv_type("ERROR").await["code"], "invalid_message");

    let (_, done) = http_get(hub.http, "/kitchen-tickets?status=done").await;
    assert_eq!(done["count"], 1);
    let (_, new) = http_get(hub.http, "/kitchen-tickets?status=new").await;
    assert_eq!(new["count"], 0);
    hub.stop().await;
}

#[tokio::test]
async fn catch_up_applies_the_same_station_filter() {
    let hub = TestHub::start(&[]).await;
    let mut pos = hub.term("pos-1").await;
    pos.send(ticket("k-1", "kds", "A-1")).await;
    pos.recv_type("KITCHEN_TICKET_ACK").await;
    pos.send(ticket("b-1", "bds", "A-1")).await;
    pos.recv_type("KITCHEN_TICKET_ACK").await;
    pos.send(json!({"type": "TABLE_UPDATE", "tableId": 5, "status": "occupied"}))
        .await;
    pos.recv_type("TABLE_UPDATED").await;

    let kinds = |evs: &[Value]| -> Vec<String> {
        evs.iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e["type"].as_str().unwrap_or(""),
                    e["ticketId"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    let mut bar = display(&hub, "bds-1", &["bds"], Some(0)).await;
    assert_eq!(
        kinds(&bulk(&mut bar).await),
        ["KITCHEN_TICKET_CREATED:b-1", "TABLE_UPDATED:"]
    );
    let mut kitchen = display(&hub, "kds-1", &["kds"], Some(0)).await;
    assert_eq!(
        kinds(&bulk(&mut kitchen).await),
        ["KITCHEN_TICKET_CREATED:k-1", "TABLE_UPDATED:"]
    );
    let mut all = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "terminalId": "pos-2", "cursor": 0}),
    )
    .await;
    assert_eq!(
        bulk(&mut all).await.len(),
        3,
        "no subscription = every station"
    );

    // SUBSCRIBE switches the live filter: the bar display now takes the kitchen's traffic too.
    bar.send(json!({"type": "SUBSCRIBE", "stations": ["bds", "kds"], "requestId": "s"}))
        .await;
    let sub = bar.recv_type("SUBSCRIBED").await;
    assert_eq!(sub["stations"], json!(["kds", "bds"]));
    pos.send(ticket("k-2", "kds", "A-2")).await;
    pos.recv_type("KITCHEN_TICKET_ACK").await;
    assert_eq!(
        bar.recv_type("KITCHEN_TICKET_CREATED").await["ticketId"],
        "k-2"
    );
    bar.send(json!({"type": "SUBSCRIBE", "stations": ["grill"]}))
        .await;
    assert_eq!(bar.recv_type("ERROR").await["code"], "invalid_message");

    // An unknown station in AUTH is refused with a reason.
    let mut t = Term::connect(hub.ws).await;
    t.send(json!({"type": "AUTH", "terminalId": "x", "stations": ["grill"]}))
        .await;
    let fail = t.recv_type("AUTH_FAIL").await;
    assert!(
        fail["message"].as_str().unwrap_or("").contains("grill"),
        "{fail}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn tickets_survive_a_restart_and_stay_idempotent() {
    let hub = TestHub::start(&[]).await;
    let mut pos = hub.term("pos-1").await;
    pos.send(ticket("k-9", "bds", "A-9")).await;
    let seq = pos.recv_type("KITCHEN_TICKET_ACK").await["seq"].clone();
    drop(pos);
    let dir = hub.stop().await;
    // `RunningHub::shutdown` returns before the upgraded WebSocket tasks (which hold the
    // database) have finished their close handshake; give them a moment to let go of it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let hub = TestHub::start_in(dir, &[]).await;
    let (_, body) = http_get(hub.http, "/kitchen-tickets?station=bds").await;
    assert_eq!(body["count"], 1);
    assert_eq!(body["tickets"][0]["ticketId"], "k-9");
    let mut pos = hub.term("pos-1").await;
    pos.send(ticket("k-9", "bds", "A-9")).await;
    let again = pos.recv_type("KITCHEN_TICKET_ACK").await;
    assert_eq!(
        (&again["seq"], again["duplicate"].as_bool()),
        (&seq, Some(true))
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_full_state_carries_the_stations_open_tickets_and_inventory() {
    let hub = TestHub::start(&[]).await;
    let mut pos = hub.term("pos-1").await;
    for (id, st) in [("k-1", "kds"), ("b-1", "bds"), ("b-2", "bds")] {
        pos.send(ticket(id, st, "A-1")).await;
        pos.recv_type("KITCHEN_TICKET_ACK").await;
    }
    pos.send(json!({"type": "INVENTORY_ADJUST", "productId": 3, "delta": 5, "eventId": "e1"}))
        .await;
    pos.recv_type("INVENTORY_ACK").await;
    // A display whose cursor the hub cannot serve (ahead of it, e.g. after a reset) gets STATE.
    let mut bar = display(&hub, "bds-1", &["bds"], Some(1_000_000)).await;
    bar.recv_type("RESYNC_REQUIRED").await;
    let state = bar.recv_type("STATE").await;
    let ids: Vec<&str> = state["kitchenTickets"]
        .as_array()
        .expect("kitchenTickets")
        .iter()
        .filter_map(|t| t["ticketId"].as_str())
        .collect();
    assert_eq!(ids, ["b-1", "b-2"]);
    assert_eq!(state["inventory"][0]["level"], 5);
    hub.stop().await;
}

#[tokio::test]
async fn old_tickets_are_compacted_unless_still_waiting_for_their_printer() {
    let env = format!("kds=127.0.0.1:{}", free_port()); // a printer that stays off
    let hub = TestHub::start(&[("HUB_EVENT_RETENTION_MS", "1000"), ("HUB_PRINTERS", &env)]).await;
    let mut pos = hub.term("pos-1").await;
    for (id, st) in [("k-old", "kds"), ("b-old", "bds")] {
        pos.send(ticket(id, st, "A-1")).await;
        pos.recv_type("KITCHEN_TICKET_ACK").await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = http_get(hub.http, "/kitchen-tickets").await;
        let ids: Vec<&str> = body["tickets"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t["ticketId"].as_str()).collect())
            .unwrap_or_default();
        if ids == ["k-old"] {
            break; // the bar ticket went; the unprinted kitchen ticket stays
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not compacted: {ids:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    hub.stop().await;
}

/// Seqs of every event a terminal receives (live or in `EVENTS_BULK`) until it has seen `last`.
async fn seqs_until(t: &mut Term, last: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.last() != Some(&last) {
        let v = t
            .next(std::time::Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("stream ended after {:?}", seqs.last()));
        let events = match v["type"].as_str() {
            Some("EVENTS_BULK") => v["events"].as_array().cloned().unwrap_or_default(),
            _ if v["seq"].is_u64() && v["type"] != "SUBSCRIBED" => vec![v],
            _ => continue,
        };
        seqs.extend(events.iter().filter_map(|e| e["seq"].as_u64()));
    }
    seqs
}

/// Writes orders `big-{from..=to}` of 16 KiB each and waits for their acks.
async fn write_big_orders(w: &mut Term, from: u64, to: u64) {
    for i in from..=to {
        let p = format!("big-{i}");
        let s = json!({"posReference": p, "state": "draft", "lines": [], "note": "y".repeat(16 * 1024)});
        w.send(json!({"type": "LEASE_ACQUIRE", "posReference": p}))
            .await;
        w.send(
            json!({"type": "ORDER_SNAPSHOT", "posReference": p, "baseVersion": 0, "snapshot": s}),
        )
        .await;
    }
    for _ in from..=to {
        w.recv_type("ORDER_ACK").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_bar_display_misses_nothing_when_kitchen_traffic_passes_it_by() {
    let hub = TestHub::start(&[("HUB_MAX_QUEUED_BROADCASTS", "16")]).await;
    let mut slow = display(&hub, "bds-slow", &["bds"], None).await;
    let mut w = hub.term("writer").await;
    let n = 600u64;
    // 1. ~10 MB of orders the bar display does not read: it falls behind.
    write_big_orders(&mut w, 1, n).await;
    // 2. A kitchen ticket it is not subscribed to, then more orders.
    w.send(ticket("k-1", "kds", "A-1")).await;
    w.recv_type("KITCHEN_TICKET_ACK").await;
    write_big_orders(&mut w, n + 1, n + 10).await;
    // 3. It reads again: every order event, none of the kitchen's, no gap.
    let seqs = seqs_until(&mut slow, n + 11).await;
    let want: Vec<u64> = (1..=n + 11).filter(|s| *s != n + 1).collect();
    assert_eq!(seqs.len(), want.len(), "missing or repeated events");
    assert_eq!(seqs, want);
    let stats = &hub.running.as_ref().expect("running").hub.engine.stats;
    assert!(
        stats.lag_resyncs.load(std::sync::atomic::Ordering::Relaxed) >= 1,
        "the display never fell behind; the test proves nothing"
    );
    hub.stop().await;
}

/// Guards the fan-out rule `fan_out_scoped` shares with every event: a lagging terminal that
/// writes (and so is excluded from its own event) must not skip what it has not been given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_terminal_that_writes_misses_nothing() {
    let hub = TestHub::start(&[("HUB_MAX_QUEUED_BROADCASTS", "16")]).await;
    let mut slow = hub.term("slow").await;
    assert_eq!(slow.lease("S-1").await["type"], "LEASE_GRANTED");
    let mut w = hub.term("writer").await;
    let n = 600u64;
    write_big_orders(&mut w, 1, n).await;
    // The slow terminal writes without reading anything.
    slow.send(json!({"type": "ORDER_SNAPSHOT", "posReference": "S-1", "baseVersion": 0, "snapshot": snapshot("S-1", "draft", None)}))
        .await;
    w.recv_type("ORDER_UPDATED").await;
    write_big_orders(&mut w, n + 1, n + 10).await;
    let seqs = seqs_until(&mut slow, n + 11).await;
    let others: Vec<u64> = seqs.into_iter().filter(|s| *s != n + 1).collect();
    let want: Vec<u64> = (1..=n + 11).filter(|s| *s != n + 1).collect();
    assert_eq!(others.len(), want.len(), "missing or repeated events");
    assert_eq!(others, want);
    hub.stop().await;
}
