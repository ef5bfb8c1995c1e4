//! The cloud bridge (push with stable `eventId`s, pull since a durable cursor, apply and
//! rebroadcast) and the register push (template clone via JSON-RPC `call_kw`, id stamped,
//! dead letter after 5 failed tries, requeue), against the double on loopback.

mod common;

use std::time::{Duration, Instant};

use common::odoo_double::*;
use common::*;
use serde_json::{json, Value};

fn bridge_env(d: &OdooDouble) -> Vec<(&'static str, String)> {
    vec![
        ("CLOUD_BRIDGE_URL", d.url.clone()),
        ("CLOUD_BRIDGE_TOKEN", BRIDGE_TOKEN.into()),
        ("HUB_FORWARD_INTERVAL_MS", "50".into()),
        ("HUB_UPSTREAM_TIMEOUT_MS", "1000".into()),
        ("HUB_ADMIN_TOKEN", ADMIN.into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_bridge_pushes_and_pulls() {
    let cloud = OdooDouble::start().await;
    let env = bridge_env(&cloud);
    let env = refs(&env);
    let hub = TestHub::start(&env).await;
    let mut a = hub.term("till-1").await;
    a.lease("B-1").await;
    let ack = a.write("B-1", 0, snapshot("B-1", "draft", None)).await;
    let seq = ack["seq"].as_u64().expect("seq");
    wait_health(hub.http, WAIT, "event pushed", |h| h["pendingEvents"] == 0).await;
    let got = cloud.ingested();
    let ev = got
        .get(&format!("t1/s1/{seq}"))
        .unwrap_or_else(|| panic!("eventId t1/s1/{seq} not ingested: {got:?}"));
    assert_eq!(
        (ev["kind"].as_str(), ev["posReference"].as_str()),
        (Some("order_snapshot"), Some("B-1"))
    );
    assert_eq!(ev["message"]["snapshot"]["posReference"], "B-1");

    // The cloud has an online order and a notice for the store.
    let mut web = snapshot("WEB-1", "sent", None);
    web["orderType"] = json!("delivery");
    cloud.add_cloud_event(json!({"eventId": "web-1", "type": "ORDER_SNAPSHOT", "posReference": "WEB-1", "snapshot": web}));
    cloud.add_cloud_event(
        json!({"eventId": "note-1", "type": "NOTICE", "text": "kitchen closes at 22:00"}),
    );
    let upd = a.recv_type("ORDER_UPDATED").await;
    assert_eq!(
        (
            upd["posReference"].as_str(),
            upd["terminalId"].as_str(),
            upd["version"].as_u64()
        ),
        (Some("WEB-1"), Some("cloud"), Some(1))
    );
    let notice = a.recv_type("CLOUD_EVENT").await;
    assert_eq!(notice["event"]["text"], "kitchen closes at 22:00");
    let (st, order) = http_get(hub.http, "/orders/WEB-1").await;
    assert_eq!(
        (st, order["snapshot"]["orderType"].as_str()),
        (200, Some("delivery"))
    );

    // After a restart nothing is applied twice (durable cursor, eventIds applied once).
    let hub = restart(hub, &env).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, order) = http_get(hub.http, "/orders/WEB-1").await;
    assert_eq!(order["version"], 1, "{order}");
    let pulls: Vec<_> = cloud
        .requests()
        .into_iter()
        .filter(|r| r.path == "/events")
        .collect();
    assert!(pulls.len() > 2);
    hub.stop().await;

    // A wrong token: the events wait (no retry spent, no dead letter) and the operator sees why.
    let mut wrong = env.clone();
    wrong.retain(|(k, _)| *k != "CLOUD_BRIDGE_TOKEN");
    wrong.push(("CLOUD_BRIDGE_TOKEN", "stale"));
    wrong.push(("HUB_FORWARD_MAX_RETRIES", "2"));
    let hub = TestHub::start(&wrong).await;
    let mut a = hub.term("till-1").await;
    a.lease("B-2").await;
    a.write("B-2", 0, snapshot("B-2", "draft", None)).await;
    let h = wait_health(hub.http, WAIT, "failing", |h| {
        h["upstream"]["state"] == "failing"
    })
    .await;
    assert!(
        h["upstream"]["lastError"]
            .as_str()
            .unwrap_or("")
            .contains("token"),
        "{h}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, h) = http_get(hub.http, "/health").await;
    assert_eq!(
        (h["pendingEvents"].as_u64(), h["deadLetters"].as_u64()),
        (Some(1), Some(0)),
        "{h}"
    );
    hub.stop().await;
}

async fn registers(hub: &TestHub) -> Vec<Value> {
    let (st, v) = admin(hub.http, "GET", "/admin/registers", Some(ADMIN), "").await;
    assert_eq!(st, 200, "{v}");
    v["registers"].as_array().cloned().unwrap_or_default()
}

async fn wait_register(hub: &TestHub, name: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let regs = registers(hub).await;
        if let Some(r) = regs
            .iter()
            .find(|r| r["name"] == name && r["state"] == state)
        {
            return r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{name} never became {state}: {regs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_are_cloned_from_the_template_in_odoo() {
    let odoo = OdooDouble::start().await;
    let env = odoo_env(&odoo);
    let hub = TestHub::start(&refs(&env)).await;
    assert_eq!(
        admin(
            hub.http,
            "POST",
            "/admin/registers",
            None,
            r#"{"name":"x"}"#
        )
        .await
        .0,
        401
    );
    assert_eq!(
        admin(
            hub.http,
            "POST",
            "/admin/registers",
            Some(ADMIN),
            r#"{"nom":"x"}"#
        )
        .await
        .0,
        400
    );
    let (st, r) = admin(
        hub.http,
        "POST",
        "/admin/registers",
        Some(ADMIN),
        r#"{"name":"Bar 2"}"#,
    )
    .await;
    assert_eq!(
        (st, r["state"].as_str()),
        (201, Some("pending_create")),
        "{r}"
    );
    let done = wait_register(&hub, "Bar 2", "synced").await;
    let created = odoo.created_configs();
    assert_eq!(created.len(), 1);
    assert_eq!(
        created[0],
        json!({"name": "Bar 2", "journal_id": 7, "picking_type_id": 9, "pricelist_id": 1, "company_id": 1,
            "currency_id": 2, "stock_location_id": 8, "available_pricelist_ids": [[6, 0, [1, 3]]],
            "payment_method_ids": [[6, 0, [1, 2, 5]]]})
    );
    assert!(done["odooId"].as_i64().is_some(), "{done}");

    assert_failing_register_sync_errors_then_requeues(&hub, &odoo).await;
    // A pos.config Odoo already has under that name (created before a crash, say) is adopted,
    // not created a second time.
    let patio = odoo.add_pos_config("Patio");
    let (st, _) = admin(
        hub.http,
        "POST",
        "/admin/registers",
        Some(ADMIN),
        r#"{"name":"Patio"}"#,
    )
    .await;
    assert_eq!(st, 201);
    let r = wait_register(&hub, "Patio", "synced").await;
    assert_eq!(r["odooId"], patio, "{r}");
    assert_eq!(odoo.created_configs().len(), 2);
    hub.stop().await;
}

/// Odoo refuses every `call_kw`: a register added through the CLI gets five tries, then
/// `sync_error` with the error; fixed and requeued, it goes through, once.
async fn assert_failing_register_sync_errors_then_requeues(hub: &TestHub, odoo: &OdooDouble) {
    odoo.fault("/web/dataset/call_kw", Fault::Status(500), None);
    let port = hub.http.port().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_poshub"))
        .args(["registers", "add", "Terrace"])
        .env_clear()
        .env("HUB_HTTP_PORT", &port)
        .env("HUB_ADMIN_TOKEN", ADMIN)
        .env("HUB_DB_PATH", db_path(hub.dir.path()))
        .output()
        .expect("run poshub");
    assert!(out.status.success(), "{out:?}");
    let failed = wait_register(hub, "Terrace", "sync_error").await;
    assert_eq!(failed["attempts"], 5, "{failed}");
    assert!(
        failed["lastError"].as_str().unwrap_or("").contains("500"),
        "{failed}"
    );
    let tries = odoo
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/search_read"))
        .count();
    assert_eq!(
        tries,
        2 + 5,
        "Bar 2: by name, then the template; Terrace: 5 failed tries"
    );
    // Fixed, requeued: it goes through, once.
    odoo.clear_faults();
    let (st, v) = admin(
        hub.http,
        "POST",
        "/admin/dead-letters/requeue",
        Some(ADMIN),
        "",
    )
    .await;
    assert_eq!((st, v["requeued"].as_u64()), (200, Some(1)));
    wait_register(hub, "Terrace", "synced").await;
    assert_eq!(odoo.created_configs().len(), 2);
    assert_eq!(registers(hub).await.len(), 2);
}
