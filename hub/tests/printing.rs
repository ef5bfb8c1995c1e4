//! ESC/POS printing against a fake network printer on loopback (docs/kitchen.md): every ticket is
//! printed, in order, with its header, lines, notes and cut; a printer that is off gets the
//! queue when it comes back; a stalled printer gets one copy, not one per retry, and does not
//! hold up the hub; after `kill -9` of the real binary nothing is lost and nothing the printer
//! acknowledged is printed again.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::fake_printer::{ticket_id, tickets_in, FakePrinter};
use common::*;
use serde_json::{json, Value};

fn ticket(id: &str, station: &str) -> Value {
    json!({"type": "KITCHEN_TICKET", "ticketId": id, "station": station, "posReference": format!("Order {id}"),
        "tableId": 5, "lines": [{"name": "Burger", "quantity": 2, "note": "no onions"}, {"name": "Fries", "quantity": 1}]})
}

async fn send_tickets(t: &mut Term, ids: &[&str], station: &str) {
    for id in ids {
        t.send(ticket(id, station)).await;
        let ack = t.recv_type("KITCHEN_TICKET_ACK").await;
        assert_eq!(ack["ticketId"], *id);
    }
}

/// The `/health` entry of a station's printer.
async fn printer_health(http: SocketAddr, station: &str) -> Value {
    let (_, h) = http_get(http, "/health").await;
    h["printers"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["station"] == station).cloned())
        .unwrap_or(Value::Null)
}

/// Polls `/health` until the station's printer entry satisfies `ok`.
async fn wait_printer(http: SocketAddr, station: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let p = printer_health(http, station).await;
        if ok(&p) {
            return p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "printer state never matched: {p}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The ticket ids in print order; a ticket whose start was printed twice (a partial copy
/// followed by a whole one) shows two `ESC @` before its cut and fails here.
fn ids(tickets: &[String]) -> Vec<String> {
    for t in tickets {
        assert_eq!(t.matches("\u{1b}@").count(), 1, "one ticket per cut: {t:?}");
    }
    tickets.iter().map(|t| ticket_id(t)).collect()
}

#[tokio::test]
async fn each_ticket_prints_in_order_with_header_lines_notes_and_cut() {
    let printer = FakePrinter::start().await;
    let hub = TestHub::start(&[("HUB_PRINTERS", &printer.env("kds"))]).await;
    let mut pos = hub.term("pos-1").await;
    send_tickets(&mut pos, &["k-1", "k-2", "k-3"], "kds").await;
    send_tickets(&mut pos, &["b-1"], "bds").await; // the bar has no printer
    let on_paper = printer.wait_tickets(3, WAIT).await;
    assert_eq!(ids(&on_paper), ["k-1", "k-2", "k-3"]);
    for t in &on_paper {
        assert!(t.starts_with("\u{1b}@"), "starts with ESC @: {t:?}");
        for want in [
            "KITCHEN",
            "Table 5",
            "Time: ",
            "2 x Burger",
            "  > no onions",
            "1 x Fries",
        ] {
            assert!(t.contains(want), "missing {want:?} in {t:?}");
        }
    }
    assert!(on_paper[0].contains("Order: Order k-1"));
    let p = wait_printer(hub.http, "kds", |p| p["printed"] == 3).await;
    assert_eq!(
        (p["state"].as_str(), p["queueDepth"].as_u64()),
        (Some("idle"), Some(0)),
        "{p}"
    );
    assert_eq!(printer_health(hub.http, "bds").await, Value::Null);
    let (_, list) = http_get(hub.http, "/kitchen-tickets?station=kds").await;
    assert!(list["tickets"][0]["printedAt"].is_u64(), "{list}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(printer.tickets().len(), 3, "nothing printed twice");
    hub.stop().await;
}

#[tokio::test]
async fn an_offline_printer_gets_the_queue_in_order_when_it_comes_back() {
    let port = free_port(); // nothing listens there yet: connections are refused
    let env = format!("bds=127.0.0.1:{port}");
    let hub = TestHub::start(&[("HUB_PRINTERS", &env), ("HUB_PRINT_RETRY_MAX_MS", "200")]).await;
    let mut pos = hub.term("pos-1").await;
    send_tickets(&mut pos, &["b-1", "b-2", "b-3"], "bds").await;
    let p = wait_printer(hub.http, "bds", |p| {
        p["state"] == "offline" && p["queueDepth"] == 3
    })
    .await;
    assert!(p["failures"].as_u64() >= Some(1), "{p}");
    assert!(
        p["lastError"].as_str().unwrap_or("").contains("connect"),
        "{p}"
    );
    send_tickets(&mut pos, &["b-4"], "bds").await;

    let printer = FakePrinter::start_on(port).await;
    let on_paper = printer.wait_tickets(4, WAIT).await;
    assert_eq!(ids(&on_paper), ["b-1", "b-2", "b-3", "b-4"]);
    let p = wait_printer(hub.http, "bds", |p| {
        p["queueDepth"] == 0 && p["state"] == "idle"
    })
    .await;
    assert_eq!(p["printed"], 4);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(printer.tickets().len(), 4);
    hub.stop().await;
}

#[tokio::test]
async fn a_stalled_printer_gets_one_copy_and_does_not_hold_up_the_hub() {
    let printer = FakePrinter::start().await;
    printer.stall(true);
    let hub = TestHub::start(&[
        ("HUB_PRINTERS", &printer.env("kds")),
        ("HUB_PRINT_TIMEOUT_MS", "300"),
    ])
    .await;
    let mut pos = hub.term("pos-1").await;
    // A long ticket (a big table's order) overflows the stalled printer's buffers.
    let lines: Vec<Value> = (0..400)
        .map(|i| json!({"name": format!("Dish number {i}"), "quantity": 1, "note": "well done, sauce on the side, no salt"}))
        .collect();
    pos.send(json!({"type": "KITCHEN_TICKET", "ticketId": "big", "station": "kds", "posReference": "B-1", "lines": lines}))
        .await;
    pos.recv_type("KITCHEN_TICKET_ACK").await;
    let p = wait_printer(hub.http, "kds", |p| p["state"] == "stalled").await;
    assert_eq!(p["queueDepth"], 1);
    // The hub keeps working: tickets are accepted and queued behind the stalled one.
    let started = std::time::Instant::now();
    send_tickets(&mut pos, &["k-2", "k-3"], "kds").await;
    assert!(started.elapsed() < Duration::from_secs(1));
    wait_printer(hub.http, "kds", |p| p["queueDepth"] == 3).await;
    tokio::time::sleep(Duration::from_millis(700)).await;

    printer.stall(false);
    let on_paper = printer.wait_tickets(3, WAIT).await;
    assert_eq!(ids(&on_paper), ["big", "k-2", "k-3"]);
    assert!(on_paper[0].contains("Dish number 399"));
    wait_printer(hub.http, "kds", |p| {
        p["queueDepth"] == 0 && p["state"] == "idle"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(printer.tickets().len(), 3, "one copy each");
    hub.stop().await;
}

#[tokio::test]
async fn after_kill9_nothing_is_lost_and_nothing_acknowledged_prints_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let printer = FakePrinter::start().await;
    let port = printer.addr.port();
    let env = printer.env("kds");
    let opts = [
        ("HUB_PRINTERS", env.as_str()),
        ("HUB_PRINT_RETRY_MAX_MS", "200"),
    ];
    let mut hub = HubProcess::spawn(dir.path(), &opts).await;
    let mut pos = Term::open(hub.ws, "pos-1").await;
    send_tickets(&mut pos, &["k-1", "k-2", "k-3"], "kds").await;
    printer.wait_tickets(3, WAIT).await;
    wait_printer(hub.http, "kds", |p| p["queueDepth"] == 0).await;
    // The printer goes off; two more tickets wait in the queue; the hub is killed.
    let first = printer.stop();
    send_tickets(&mut pos, &["k-4", "k-5"], "kds").await;
    wait_printer(hub.http, "kds", |p| p["queueDepth"] == 2).await;
    drop(pos);
    hub.kill9();

    let printer = FakePrinter::start_on(port).await;
    let hub = HubProcess::spawn(dir.path(), &opts).await;
    let second = printer.wait_tickets(2, WAIT).await;
    wait_printer(hub.http, "kds", |p| p["queueDepth"] == 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ids(&tickets_in(&first)), ["k-1", "k-2", "k-3"]);
    assert_eq!(ids(&printer.tickets()), ["k-4", "k-5"], "{second:?}");
}

#[tokio::test]
async fn kill9_in_the_middle_of_printing_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let printer = FakePrinter::start().await;
    let env = printer.env("kds");
    let opts = [
        ("HUB_PRINTERS", env.as_str()),
        ("HUB_PRINT_RETRY_MAX_MS", "200"),
    ];
    let mut hub = HubProcess::spawn(dir.path(), &opts).await;
    let mut pos = Term::open(hub.ws, "pos-1").await;
    let all: Vec<String> = (1..=30).map(|i| format!("k-{i:02}")).collect();
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    send_tickets(&mut pos, &refs, "kds").await;
    printer.wait_tickets(5, WAIT).await; // the spooler is busy; kill it mid-queue
    drop(pos);
    hub.kill9();

    let hub = HubProcess::spawn(dir.path(), &opts).await;
    wait_printer(hub.http, "kds", |p| p["queueDepth"] == 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let on_paper = ids(&printer.tickets());
    // Every ticket at least once, in order; a duplicate is possible only for the one ticket
    // whose acknowledgement raced the kill (see docs/kitchen.md), and it is adjacent.
    let mut dedup = on_paper.clone();
    dedup.dedup();
    assert_eq!(dedup, all, "{on_paper:?}");
    assert!(on_paper.len() <= all.len() + 1, "{on_paper:?}");
}

#[tokio::test]
async fn sigterm_with_a_stalled_printer_exits_in_time_and_the_ticket_prints_once_later() {
    let dir = tempfile::tempdir().expect("tempdir");
    let printer = FakePrinter::start().await;
    printer.stall(true);
    let env = printer.env("kds");
    let opts = [
        ("HUB_PRINTERS", env.as_str()),
        ("HUB_PRINT_TIMEOUT_MS", "300"),
    ];
    let mut hub = HubProcess::spawn(dir.path(), &opts).await;
    let mut pos = Term::open(hub.ws, "pos-1").await;
    let lines: Vec<Value> = (0..400)
        .map(|i| json!({"name": format!("Dish number {i}"), "quantity": 1, "note": "well done, sauce on the side, no salt"}))
        .collect();
    pos.send(json!({"type": "KITCHEN_TICKET", "ticketId": "big", "station": "kds", "posReference": "B-1", "lines": lines}))
        .await;
    pos.recv_type("KITCHEN_TICKET_ACK").await;
    wait_printer(hub.http, "kds", |p| p["state"] == "stalled").await;

    let started = std::time::Instant::now();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &hub.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let status = loop {
        if let Some(s) = hub.child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "did not exit within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}; log: {}", log(dir.path()));

    // The abandoned connection was reset, not closed: its copy does not reach the printer in
    // full once it reads again; the restarted hub sends the one complete copy.
    printer.stall(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let hub = HubProcess::spawn(dir.path(), &opts).await;
    printer.wait_tickets(1, WAIT).await;
    wait_printer(hub.http, "kds", |p| p["queueDepth"] == 0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bytes = printer.bytes();
    let cuts = bytes
        .windows(4)
        .filter(|w| *w == common::fake_printer::CUT)
        .count();
    assert_eq!(cuts, 1, "exactly one complete copy");
    assert!(printer.tickets()[0].contains("Dish number 399"));
}

#[test]
fn a_bad_printer_setting_stops_the_hub_with_one_line() {
    for val in ["kds=10.0.0.5:x", "grill=10.0.0.5:9100", "kds=10.0.0.5:0"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_poshub"))
            .arg("serve")
            .env("HUB_PRINTERS", val)
            .env("HUB_DB_PATH", "/nonexistent/should-not-be-created/hub.redb")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{val}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("poshub: HUB_PRINTERS: "), "{err}");
    }
}

/// Figures, not a check: `cargo test -p poshub --release --test printing -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement; run by hand"]
async fn print_throughput() {
    let printer = FakePrinter::start().await;
    let hub = TestHub::start(&[("HUB_PRINTERS", &printer.env("kds"))]).await;
    let mut pos = hub.term("pos-1").await;
    let n = 200;
    let all: Vec<String> = (0..n).map(|i| format!("k-{i:03}")).collect();
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    send_tickets(&mut pos, &refs, "kds").await;
    let acked = started.elapsed();
    printer.wait_tickets(n, Duration::from_secs(120)).await;
    let all_printed_in = started.elapsed();
    // A few hundred tickets: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    let per_ticket_ms = all_printed_in.as_secs_f64() * 1000.0 / n as f64;
    eprintln!(
        "{n} tickets: acked in {acked:?}, all printed in {all_printed_in:?} ({per_ticket_ms:.1} ms per ticket, each with its own TCP connection and durable 'printed' commit)",
    );
    hub.stop().await;
}
