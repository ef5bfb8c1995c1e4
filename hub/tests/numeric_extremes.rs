//! Extreme integers in every numeric field of every inbound message (issue 13, point 5): each
//! is accepted with exactly its value or refused with `invalid_message`, never wrapped, never a
//! panic; through a real hub, `INVENTORY_ADJUST` with `delta` = −2⁶³ is refused and the level
//! keeps counting.

mod common;

use common::*;
use poshub::protocol::{parse, Inbound};
use proptest::prelude::*;
use serde_json::json;

/// Integers at and around every boundary a field could trip over, as JSON number text (the
/// ones outside i64/u64 become floats in `serde_json`).
const EXTREMES: &[&str] = &[
    "0",
    "-1",
    "1",
    "1000000000",
    "1000000001",
    "-1000000000",
    "-1000000001",
    "2147483647",
    "-2147483648",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "-9223372036854775807",
    "-9223372036854775808",
    "-9223372036854775809",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-18446744073709551616",
    "1e308",
    "-1e308",
    "1.5",
];

/// Every inbound message with a numeric field, the field's placeholder `@N`.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "AUTH.cursor",
        r#"{"type":"AUTH","terminalId":"x","cursor":@N}"#,
    ),
    (
        "SYNC_REQUEST.cursor",
        r#"{"type":"SYNC_REQUEST","cursor":@N}"#,
    ),
    (
        "ORDER_SNAPSHOT.baseVersion",
        r#"{"type":"ORDER_SNAPSHOT","posReference":"P","baseVersion":@N,"snapshot":{}}"#,
    ),
    (
        "ORDER_SNAPSHOT.snapshot.tableId",
        r#"{"type":"ORDER_SNAPSHOT","posReference":"P","baseVersion":0,"snapshot":{"tableId":@N}}"#,
    ),
    (
        "TABLE_UPDATE.tableId",
        r#"{"type":"TABLE_UPDATE","tableId":@N,"status":"occupied"}"#,
    ),
    (
        "TABLE_LOCK_ACQUIRE.tableId",
        r#"{"type":"TABLE_LOCK_ACQUIRE","tableId":@N}"#,
    ),
    (
        "TABLE_LOCK_HEARTBEAT.tableId",
        r#"{"type":"TABLE_LOCK_HEARTBEAT","tableId":@N}"#,
    ),
    (
        "TABLE_LOCK_RELEASE.tableId",
        r#"{"type":"TABLE_LOCK_RELEASE","tableId":@N}"#,
    ),
    (
        "TABLE_LOCK_FORCE_ACQUIRE.tableId",
        r#"{"type":"TABLE_LOCK_FORCE_ACQUIRE","tableId":@N}"#,
    ),
    (
        "FLOOR_PLAN_UPDATE.floorId",
        r#"{"type":"FLOOR_PLAN_UPDATE","floorId":@N,"tables":[]}"#,
    ),
    (
        "KITCHEN_TICKET.tableId",
        r#"{"type":"KITCHEN_TICKET","ticketId":"k","station":"kds","posReference":"P","lines":[],"tableId":@N}"#,
    ),
    (
        "INVENTORY_ADJUST.productId",
        r#"{"type":"INVENTORY_ADJUST","productId":@N,"delta":1,"eventId":"e"}"#,
    ),
    (
        "INVENTORY_ADJUST.delta",
        r#"{"type":"INVENTORY_ADJUST","productId":1,"delta":@N,"eventId":"e"}"#,
    ),
    (
        "REQUEST_ID (echoed, any JSON)",
        r#"{"type":"PING","requestId":@N}"#,
    ),
];

/// What the documented range of `field` says about the number `n` (exact decimal text).
fn in_range(field: &str, n: &str) -> bool {
    let int: Option<i128> = n.parse().ok();
    match field {
        f if f.ends_with("cursor") || f.ends_with("baseVersion") => {
            int.is_some_and(|v| (0..=i128::from(u64::MAX)).contains(&v))
        }
        f if f.ends_with("delta") => int.is_some_and(|v| v != 0 && v.abs() <= 1_000_000_000),
        f if f.starts_with("REQUEST_ID") => true,
        // Table, floor and product ids: any integer of i64 or u64.
        _ => int.is_some_and(|v| v >= i128::from(i64::MIN) && v <= i128::from(u64::MAX)),
    }
}

/// The parse of one templated frame agrees with the documented range: accepted with the same
/// value, or refused with `invalid_message` (never a panic, never a wrapped value).
fn check_field(field: &str, template: &str, n: &str) -> Result<(), String> {
    let text = template.replace("@N", n);
    let outcome = std::panic::catch_unwind(|| parse(&text).map(|p| p.msg));
    let parsed = outcome.map_err(|_| format!("{field}={n}: parse panicked"))?;
    let want = in_range(field, n);
    match parsed {
        Ok(msg) if want => {
            let got = match msg {
                Inbound::InventoryAdjust(m) if field.ends_with("delta") => m.delta.to_string(),
                Inbound::SyncRequest(c) => c.to_string(),
                Inbound::Auth(a) => a.cursor.map(|c| c.to_string()).unwrap_or_default(),
                Inbound::OrderSnapshot(m) if field.ends_with("baseVersion") => {
                    m.base_version.to_string()
                }
                Inbound::OrderSnapshot(m) => m.table.map(|t| t.key).unwrap_or_default(),
                Inbound::TableUpdate(m) => m.table.key,
                Inbound::TableLockAcquire(t)
                | Inbound::TableLockHeartbeat(t)
                | Inbound::TableLockRelease(t)
                | Inbound::TableLockForceAcquire(t) => t.key,
                Inbound::FloorPlanUpdate(m) => m.floor_id.key,
                Inbound::KitchenTicket(m) => m.table.map(|t| t.key).unwrap_or_default(),
                Inbound::InventoryAdjust(m) => m.product.key,
                Inbound::Ping => return Ok(()),
                other => return Err(format!("{field}={n}: unexpected {other:?}")),
            };
            (got == n)
                .then_some(())
                .ok_or_else(|| format!("{field}={n}: accepted as {got}"))
        }
        Ok(_) => Err(format!("{field}={n}: accepted but out of range")),
        Err(e) if !want && e.code == "invalid_message" && !e.message.is_empty() => Ok(()),
        Err(e) => Err(format!(
            "{field}={n}: refused ({} {}) though in range={want}",
            e.code, e.message
        )),
    }
}

#[test]
fn every_numeric_field_at_every_boundary() {
    let mut failures = Vec::new();
    for (field, template) in TEMPLATES {
        for n in EXTREMES {
            if let Err(e) = check_field(field, template, n) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// An integer drawn mostly near the edges of i64/u64 (and ±1e9), sometimes anywhere.
fn extreme_int() -> impl Strategy<Value = i128> {
    let edges = [
        i128::from(i64::MIN),
        i128::from(i64::MAX),
        i128::from(u64::MAX),
        0,
        1_000_000_000,
        -1_000_000_000,
    ];
    prop_oneof![
        (proptest::sample::select(edges.to_vec()), -3i128..=3).prop_map(|(e, d)| e + d),
        any::<i64>().prop_map(i128::from),
        any::<u64>().prop_map(i128::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn extreme_integers_are_accepted_exactly_or_refused(
        n in extreme_int(),
        which in 0..TEMPLATES.len(),
    ) {
        let (field, template) = TEMPLATES[which];
        if let Err(e) = check_field(field, template, &n.to_string()) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// Through a real hub: −2⁶³ and the other out-of-range deltas are refused, the socket stays
/// open, and the adjustments around them count exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_delta_extremes_are_refused_and_the_level_keeps_counting() {
    let hub = TestHub::start(&[]).await;
    let mut t = hub.term("pos-1").await;
    let send = |delta: &str, id: &str| {
        format!(
            r#"{{"type":"INVENTORY_ADJUST","productId":"SKU","delta":{delta},"eventId":"{id}"}}"#
        )
    };
    let mut expected = 0i64;
    let cases = [
        ("5", true),
        ("-9223372036854775808", false),
        ("9223372036854775807", false),
        ("-9223372036854775807", false),
        ("1000000001", false),
        ("-1000000001", false),
        ("18446744073709551615", false),
        ("1000000000", true),
        ("-1000000000", true),
        ("-7", true),
    ];
    for (i, (delta, ok)) in cases.iter().enumerate() {
        t.send_raw(tokio_tungstenite::tungstenite::Message::Text(
            send(delta, &format!("e{i}")).into(),
        ))
        .await;
        let v = t.recv_type_of(&["INVENTORY_ACK", "ERROR"]).await;
        if *ok {
            expected += delta.parse::<i64>().expect("in range");
            assert_eq!(
                (&v["type"], v["level"].as_i64()),
                (&json!("INVENTORY_ACK"), Some(expected)),
                "delta {delta}: {v}"
            );
        } else {
            assert_eq!(
                (&v["type"], &v["code"]),
                (&json!("ERROR"), &json!("invalid_message")),
                "delta {delta}: {v}"
            );
        }
    }
    let (_, inv) = http_get(hub.http, "/inventory").await;
    assert_eq!(inv["products"][0]["level"], expected, "{inv}");
    // Every other numeric field at its extremes: an answer each, the socket stays open.
    for (field, template) in TEMPLATES.iter().filter(|(f, _)| !f.starts_with("AUTH")) {
        for n in EXTREMES {
            let text = template.replace("@N", n);
            t.send_raw(tokio_tungstenite::tungstenite::Message::Text(
                text.clone().into(),
            ))
            .await;
            t.send(json!({"type": "PING", "requestId": "after"})).await;
            let pong = loop {
                let v = t
                    .next(WAIT)
                    .await
                    .unwrap_or_else(|| panic!("{field}={n}: socket closed"));
                if v["type"] == "PONG" && v["requestId"] == "after" {
                    break v;
                }
            };
            assert_eq!(pong["type"], "PONG");
        }
    }
    hub.stop().await;
}
