//! Upstream forwarding against the Odoo test double (a real HTTP server on loopback): the seed
//! 000 mapping and create/update choice, every acknowledged order arriving while Odoo flaps
//! (5xx, dropped connections, timeouts, expired sessions) with no inversion of an order's
//! updates, dead letters and their requeue (HTTP and CLI), and terminals at full speed while
//! Odoo hangs.

mod common;

use std::time::{Duration, Instant};

use common::odoo_double::*;
use common::*;
use serde_json::{json, Value};

fn order(p: &str, rev: u64, odoo_id: Option<i64>) -> Value {
    let mut s = snapshot(p, "draft", Some(3));
    s["rev"] = json!(rev);
    s["partnerId"] = json!("77");
    s["lines"][1]["isVoided"] = json!(true);
    if let Some(id) = odoo_id {
        s["odooId"] = json!(id);
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_reach_odoo_mapped_as_seed_000_says() {
    let odoo = OdooDouble::start().await;
    let env = odoo_env(&odoo);
    let mut env = refs(&env);
    env.push(("HUB_STATUS_INTERVAL_MS", "200"));
    let hub = TestHub::start(&env).await;
    let mut a = hub.term("till-1").await;
    a.lease("A-1").await;
    assert_eq!(
        a.write("A-1", 0, order("A-1", 1, None)).await["type"],
        "ORDER_ACK"
    );
    wait_health(hub.http, WAIT, "first forward", |h| {
        h["forwardedEvents"] == 1
    })
    .await;
    // The terminal learns Odoo's id and sends it: now it is an update.
    assert_eq!(
        a.write("A-1", 1, order("A-1", 2, Some(555))).await["type"],
        "ORDER_ACK"
    );
    let h = wait_health(hub.http, WAIT, "second forward", |h| {
        h["forwardedEvents"] == 2
    })
    .await;
    assert_eq!(
        (h["pendingEvents"].as_u64(), h["deadLetters"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(h["upstream"]["state"], "ok", "{h}");
    assert!(h["upstream"]["lastSuccessAt"].as_u64().is_some(), "{h}");

    let got = odoo.orders();
    let sent = &got["A-1"];
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(
        (sent[0].0.as_str(), sent[1].0.as_str()),
        ("create", "update")
    );
    let p = &sent[1].1;
    assert_eq!(p["pos_reference"], "A-1");
    assert_eq!(
        (
            p["amount_total"].as_f64(),
            p["amount_tax"].as_f64(),
            p["amount_untaxed"].as_f64()
        ),
        (Some(49.5), Some(4.5), Some(45.0))
    );
    assert_eq!(p["table_id"], 3);
    assert_eq!(p["partner"], json!({"partner_id": 77}));
    assert_eq!(p["statement_ids"], json!([]));
    assert_eq!(p["odooId"], 555);
    let lines = p["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 3, "the voided line is dropped: {p}");
    assert_eq!(
        lines[0],
        json!({"product_id": 100, "qty": 1, "price_unit": 4.5, "tax_ids": [1], "client_line_id": "l0", "note": "no onions please"})
    );
    assert_eq!(lines[1]["client_line_id"], "l2");
    // One login, the cookie reused for both calls.
    assert_eq!(odoo.logins(), 1);
    let calls: Vec<_> = odoo
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/pos-react/api/orders"))
        .collect();
    assert!(
        calls
            .iter()
            .all(|r| r.cookie.as_deref() == Some("session_id=hubsess-1")),
        "{calls:?}"
    );
    // /status and /metrics show it too.
    let (_, st) = http_get(hub.http, "/status").await;
    assert_eq!(st["upstream"]["state"], "ok", "{st}");
    let (_, m) = http(hub.http, "GET", "/metrics", "").await;
    assert!(m.contains("poshub_upstream_state 2"), "{m}");
    assert!(m.contains("poshub_events_forwarded 2"), "{m}");
    // Terminals see the upstream state in SYNC_STATUS (one queued before the second forward
    // was recorded may still say 1 pending: the next ones say 0).
    let mut st = a.recv_type("SYNC_STATUS").await;
    for _ in 0..20 {
        if st["pendingEvents"] == 0 {
            break;
        }
        st = a.recv_type("SYNC_STATUS").await;
    }
    assert_eq!(
        (
            st["upstream"]["state"].as_str(),
            st["pendingEvents"].as_u64()
        ),
        (Some("ok"), Some(0)),
        "{st}"
    );
    assert!(st["upstream"]["lastSuccessAt"].as_u64().is_some(), "{st}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_order_arrives_while_odoo_flaps() {
    let odoo = OdooDouble::start().await;
    let env = odoo_env(&odoo);
    let mut env = refs(&env);
    env.push(("HUB_FORWARD_MAX_RETRIES", "1000"));
    env.push(("HUB_FORWARD_BATCH_SIZE", "7"));
    let hub = TestHub::start(&env).await;
    let mut a = hub.term("till-1").await;
    // Odoo flaps: every kind of fault in turn, while the terminal keeps writing.
    let flapping = {
        let faults = [
            Fault::Status(502),
            Fault::Drop,
            Fault::Delay(Duration::from_millis(700)), // beyond the hub's 400 ms timeout
            Fault::Status(503),
        ];
        let o = &odoo;
        async move {
            for round in 0..12 {
                o.fault("/", faults[round % faults.len()].clone(), None);
                tokio::time::sleep(Duration::from_millis(120)).await;
                o.clear_faults();
                if round % 3 == 0 {
                    o.expire_session();
                }
                tokio::time::sleep(Duration::from_millis(80)).await;
            }
        }
    };
    let writing = async {
        let mut versions = std::collections::BTreeMap::new();
        for round in 1..=4u64 {
            for i in 0..30 {
                let p = format!("F-{i}");
                if round == 1 {
                    a.lease(&p).await;
                }
                let v = a.write(&p, round - 1, order(&p, round, None)).await;
                assert_eq!(v["type"], "ORDER_ACK", "{v}");
                versions.insert(p, round);
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        versions
    };
    let ((), versions) = tokio::join!(flapping, writing);
    odoo.clear_faults();
    // Some orders may be in a long backoff after many failures: drain now, ignoring it.
    let (st, d) = admin(hub.http, "POST", "/admin/drain", Some(ADMIN), "").await;
    assert_eq!(st, 200, "{d}");
    let h = wait_health(hub.http, Duration::from_secs(30), "queue drained", |h| {
        h["pendingEvents"] == 0
    })
    .await;
    assert_eq!(h["deadLetters"], 0, "{h}");
    let got = odoo.orders();
    for (p, last) in &versions {
        let sent = got
            .get(p)
            .unwrap_or_else(|| panic!("{p} never reached Odoo"));
        let revs: Vec<u64> = sent
            .iter()
            .map(|(_, b)| b["rev"].as_u64().unwrap_or(0))
            .collect();
        assert_eq!(
            revs.last(),
            Some(last),
            "{p}: Odoo ends with the newest snapshot: {revs:?}"
        );
        assert!(
            revs.windows(2).all(|w| w[0] <= w[1]),
            "{p}: updates inverted: {revs:?}"
        );
        assert_eq!(
            sent.last().map(|s| s.1["lines"].as_array().map(Vec::len)),
            Some(Some(3))
        );
    }
    assert!(odoo.logins() >= 2, "the expired session was renewed");
    let reqs = odoo.requests();
    let faulted = reqs.iter().filter(|r| !r.served).count();
    println!(
        "flapping: {} requests to the double, {faulted} failed by injection, {} logins",
        reqs.len(),
        odoo.logins()
    );
    assert!(faulted > 0, "the faults were hit");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_appear_and_requeue_works() {
    let odoo = OdooDouble::start().await;
    let env = odoo_env(&odoo);
    let mut env = refs(&env);
    env.push(("HUB_FORWARD_MAX_RETRIES", "3"));
    let hub = TestHub::start(&env).await;
    odoo.refuse("BAD-1", 422); // permanent: dead at once
    odoo.refuse("FLAKY-1", 500); // transient: dead after 3 tries
    let mut a = hub.term("till-1").await;
    for p in ["BAD-1", "FLAKY-1", "GOOD-1"] {
        a.lease(p).await;
        assert_eq!(a.write(p, 0, order(p, 1, None)).await["type"], "ORDER_ACK");
    }
    let h = wait_health(hub.http, Duration::from_secs(20), "two dead letters", |h| {
        h["deadLetters"] == 2
    })
    .await;
    assert_eq!(
        (h["pendingEvents"].as_u64(), h["forwardedEvents"].as_u64()),
        (Some(0), Some(1)),
        "{h}"
    );
    let tries = |p: &str| {
        odoo.requests()
            .iter()
            .filter(|r| r.body["pos_reference"] == p)
            .count()
    };
    assert_eq!((tries("BAD-1"), tries("FLAKY-1")), (1, 3));

    assert_dead_letters_listed(&hub).await;

    // The CLI sees the same through the running hub.
    let port = hub.http.port().to_string();
    let db = db_path(hub.dir.path()).display().to_string();
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_poshub"))
            .args(args)
            .env_clear()
            .env("HUB_HTTP_PORT", &port)
            .env("HUB_ADMIN_TOKEN", ADMIN)
            .env("HUB_DB_PATH", &db)
            .output()
            .expect("run poshub")
    };
    let out = cli(&["dead-letters"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("BAD-1") && text.contains("FLAKY-1"),
        "{text}"
    );

    // Odoo is fixed; requeue through the CLI, then drain through the API.
    odoo.unrefuse_all();
    let out = cli(&["dead-letters", "--requeue"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("requeued 2"),
        "{out:?}"
    );
    let (st, d) = admin(hub.http, "POST", "/admin/drain", Some(ADMIN), "").await;
    assert_eq!(st, 200, "{d}");
    let h = wait_health(hub.http, WAIT, "requeued events forwarded", |h| {
        h["forwardedEvents"] == 3
    })
    .await;
    assert_eq!(
        (h["pendingEvents"].as_u64(), h["deadLetters"].as_u64()),
        (Some(0), Some(0)),
        "{h}"
    );
    assert!(odoo.orders().contains_key("BAD-1") && odoo.orders().contains_key("FLAKY-1"));
    let out = cli(&["dead-letters"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no dead letters"));
    hub.stop().await;

    // With no hub running, the CLI says so.
    let out = cli(&["drain"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no hub answers at"),
        "{err}"
    );
}

/// BAD-1 (refused with 422) and FLAKY-1 (500, three tries) are dead letters: `/events` shows
/// their upstream state, and the admin API lists them (with the token only) with attempts and
/// the last error.
async fn assert_dead_letters_listed(hub: &TestHub) {
    // /events tells which events are dead, pending or forwarded.
    let (_, ev) = http_get(hub.http, "/events").await;
    let state_of = |p: &str| {
        ev["events"]
            .as_array()
            .and_then(|l| {
                l.iter()
                    .find(|e| e["posReference"] == p && e["kind"] == "order_snapshot")
            })
            .map(|e| e["upstream"].clone())
    };
    assert_eq!(state_of("BAD-1"), Some(json!("dead")), "{ev}");
    assert_eq!(state_of("GOOD-1"), Some(json!("forwarded")), "{ev}");
    // Admin API: the token is required.
    assert_eq!(
        admin(hub.http, "GET", "/admin/dead-letters", None, "")
            .await
            .0,
        401
    );
    assert_eq!(
        admin(
            hub.http,
            "POST",
            "/admin/dead-letters/requeue",
            Some("wrong"),
            ""
        )
        .await
        .0,
        401
    );
    let (st, dl) = admin(hub.http, "GET", "/admin/dead-letters", Some(ADMIN), "").await;
    assert_eq!(st, 200);
    let list = dl["deadLetters"].as_array().expect("list");
    let bad = list
        .iter()
        .find(|d| d["posReference"] == "BAD-1")
        .expect("BAD-1");
    assert_eq!(bad["attempts"], 1);
    assert!(
        bad["lastError"].as_str().unwrap_or("").contains("422"),
        "{bad}"
    );
    let flaky = list
        .iter()
        .find(|d| d["posReference"] == "FLAKY-1")
        .expect("FLAKY-1");
    assert_eq!(flaky["attempts"], 3);
    assert!(
        flaky["lastError"].as_str().unwrap_or("").contains("500"),
        "{flaky}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminals_keep_full_speed_while_odoo_hangs() {
    let odoo = OdooDouble::start().await;
    // Odoo accepts connections but never answers in time.
    odoo.fault("/", Fault::Delay(Duration::from_secs(5)), None);
    let env = odoo_env(&odoo);
    let mut env = refs(&env);
    // A terminal path that waited for Odoo would show acks of 2 s or more.
    env.push(("HUB_UPSTREAM_TIMEOUT_MS", "2000"));
    let hub = TestHub::start(&env).await;
    let mut a = hub.term("till-1").await;
    let mut b = hub.term("till-2").await;
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    let mut n = 0u64;
    // A 3-second window of steady writing while the forwarder keeps timing out.
    while started.elapsed() < Duration::from_secs(3) {
        let pos = format!("S-{n}");
        a.lease(&pos).await;
        let sent_at = Instant::now();
        let ack = a.write(&pos, 0, order(&pos, 1, None)).await;
        worst = worst.max(sent_at.elapsed());
        assert_eq!(ack["type"], "ORDER_ACK", "{ack}");
        let upd = b.recv_type("ORDER_UPDATED").await;
        assert_eq!(upd["posReference"], pos.as_str());
        n += 1;
    }
    let (_, h) = http_get(hub.http, "/health").await;
    println!("while odoo hangs: {n} orders acknowledged and broadcast in 3 s, slowest ack {worst:?}; {h}");
    assert!(n >= 30, "only {n} orders in 3 s");
    assert!(worst < Duration::from_secs(1), "slowest ack {worst:?}");
    assert_eq!(h["forwardedEvents"], 0, "{h}");
    // The operator sees why nothing goes out.
    let h = wait_health(hub.http, WAIT, "upstream failing", |h| {
        h["upstream"]["state"] == "failing"
    })
    .await;
    assert!(h["pendingEvents"].as_u64().unwrap_or(0) > 0);
    assert!(
        h["upstream"]["lastError"]
            .as_str()
            .unwrap_or("")
            .contains("timed out"),
        "{h}"
    );
    // Odoo comes back: everything goes out.
    odoo.clear_faults();
    let drain_started = Instant::now();
    let (st, _) = admin(hub.http, "POST", "/admin/drain", Some(ADMIN), "").await;
    assert_eq!(st, 200);
    wait_health(hub.http, Duration::from_secs(30), "backlog drained", |h| {
        h["pendingEvents"] == 0
    })
    .await;
    println!(
        "backlog of {n} orders drained to the double in {:?}",
        drain_started.elapsed()
    );
    assert_eq!(odoo.orders().len() as u64, n);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_odoo_cannot_take_is_dead_lettered_at_once() {
    let odoo = OdooDouble::start().await;
    let env = odoo_env(&odoo);
    let hub = TestHub::start(&refs(&env)).await;
    let mut a = hub.term("till-1").await;
    let mut bad = order("M-1", 1, None);
    bad["lines"][0]["productId"] = json!("coffee");
    a.lease("M-1").await;
    assert_eq!(a.write("M-1", 0, bad).await["type"], "ORDER_ACK");
    a.lease("M-2").await;
    assert_eq!(
        a.write("M-2", 0, order("M-2", 1, None)).await["type"],
        "ORDER_ACK"
    );
    let h = wait_health(hub.http, WAIT, "dead letter", |h| {
        h["deadLetters"] == 1 && h["forwardedEvents"] == 1
    })
    .await;
    assert_eq!(h["pendingEvents"], 0, "{h}");
    let (_, dl) = admin(hub.http, "GET", "/admin/dead-letters", Some(ADMIN), "").await;
    let d = &dl["deadLetters"][0];
    assert_eq!(
        (d["posReference"].as_str(), d["attempts"].as_u64()),
        (Some("M-1"), Some(1))
    );
    assert!(
        d["lastError"].as_str().unwrap_or("").contains("productId"),
        "{d}"
    );
    assert!(!odoo.orders().contains_key("M-1"), "never sent");
    // The terminal fixes the order: the newer snapshot goes through.
    assert_eq!(
        a.write("M-1", 1, order("M-1", 2, None)).await["type"],
        "ORDER_ACK"
    );
    wait_health(hub.http, WAIT, "fixed order forwarded", |h| {
        h["forwardedEvents"] == 2
    })
    .await;
    assert_eq!(odoo.orders()["M-1"].len(), 1);
    hub.stop().await;
}
