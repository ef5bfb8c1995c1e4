//! Authentication (tokens, realm, deadline, replacement) and table locks with the role check.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use poshub::auth::{Claims, HubKey, AUDIENCE};
use poshub::clock::ManualClock;
use serde_json::json;

fn token(dir: &std::path::Path, sub: &str, tenant: &str, role: &str, exp_offset: i64) -> String {
    let key = HubKey::load_or_create(dir).expect("hub key");
    let now = i64::try_from(poshub::auth::now_secs()).expect("clock before 2^63 s");
    key.issue(&Claims {
        sub: sub.into(),
        aud: AUDIENCE.into(),
        tenant_id: tenant.into(),
        store_id: "s1".into(),
        exp: u64::try_from(now + exp_offset).expect("expiry after 1970"),
        nbf: None,
        iat: None,
        uid: Some(json!(42)),
        role: Some(role.into()),
        name: Some(format!("{sub} user")),
    })
    .expect("sign")
}

async fn auth_reply(hub: &TestHub, auth: serde_json::Value) -> (serde_json::Value, Option<u16>) {
    let mut t = Term::connect(hub.ws).await;
    t.send(auth).await;
    let v = t.recv().await;
    let code = if v["type"] == "AUTH_FAIL" {
        t.close_code().await
    } else {
        None
    };
    (v, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_mode_checks_signature_realm_and_expiry() {
    let hub = TestHub::start(&[("HUB_AUTH_MODE", "token")]).await;
    let dir = hub.dir.path().to_path_buf();
    let good = token(&dir, "till-1", "t1", "manager", 3600);
    let (ok, _) = auth_reply(
        &hub,
        json!({"type": "AUTH", "token": good, "terminalId": "till-1", "cursor": 0}),
    )
    .await;
    assert_eq!(ok["type"], "AUTH_OK", "{ok}");
    assert_eq!(ok["role"], "manager");
    assert_eq!(ok["uid"], 42);
    assert_eq!(ok["realm"], json!({"tenantId": "t1", "storeId": "s1"}));
    assert!(ok["seq"].is_u64() && ok["serverTime"].is_u64() && ok["hubVersion"].is_string());

    let cases = [
        (
            token(&dir, "till-1", "other-tenant", "cashier", 3600),
            "realm_mismatch",
        ),
        (token(&dir, "till-1", "t1", "cashier", -3600), "expired"),
        ("not.a.jwt".to_string(), "invalid_token"),
    ];
    for (tok, reason) in cases {
        let (fail, code) = auth_reply(
            &hub,
            json!({"type": "AUTH", "token": tok, "terminalId": "till-1"}),
        )
        .await;
        assert_eq!(
            (fail["type"].as_str(), fail["reason"].as_str()),
            (Some("AUTH_FAIL"), Some(reason)),
            "{fail}"
        );
        assert_eq!(code, Some(4003));
    }
    // A token signed by another hub's key is refused.
    let other = tempfile::tempdir().expect("tempdir");
    let foreign = token(other.path(), "till-1", "t1", "admin", 3600);
    let (fail, _) = auth_reply(
        &hub,
        json!({"type": "AUTH", "token": foreign, "terminalId": "till-1"}),
    )
    .await;
    assert_eq!(fail["reason"], "invalid_token");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_key_tokens_are_accepted_offline() {
    use base64::Engine;
    let cloud = tempfile::tempdir().expect("tempdir");
    let cloud_key = HubKey::load_or_create(cloud.path()).expect("cloud key");
    let pem = std::fs::read_to_string(cloud.path().join(poshub::auth::HUB_KEY_FILE)).expect("pem");
    let sk =
        <ed25519_dalek::SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_pem(&pem)
            .expect("key");
    let pub_pem = ed25519_dalek::pkcs8::EncodePublicKey::to_public_key_pem(
        &sk.verifying_key(),
        ed25519_dalek::pkcs8::spki::der::pem::LineEnding::default(),
    )
    .expect("pub");
    let b64 = base64::engine::general_purpose::STANDARD.encode(pub_pem);
    let hub = TestHub::start(&[
        ("HUB_AUTH_MODE", "token"),
        ("CLUSTER_PUBLIC_KEY_BASE64", &b64),
    ])
    .await;
    drop(cloud_key);
    let tok = token(cloud.path(), "kds-1", "t1", "waiter", 600);
    let (ok, _) = auth_reply(&hub, json!({"type": "AUTH", "token": tok})).await;
    assert_eq!(ok["type"], "AUTH_OK", "{ok}");
    assert_eq!(
        ok["terminalId"], "kds-1",
        "terminalId defaults to the token subject"
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_deadline_ping_and_unauthenticated_messages() {
    let hub = TestHub::start(&[("HUB_AUTH_TIMEOUT_MS", "300")]).await;
    let mut t = Term::connect(hub.ws).await;
    t.send(json!({"type": "PING", "requestId": "p1"})).await;
    let pong = t.recv().await;
    assert_eq!(
        (pong["type"].as_str(), pong["requestId"].as_str()),
        (Some("PONG"), Some("p1"))
    );
    t.send(json!({"type": "LEASE_ACQUIRE", "posReference": "X"}))
        .await;
    assert_eq!(t.recv().await["code"], "not_authenticated");
    assert_eq!(t.close_code().await, Some(4001));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_replaces_the_first() {
    let hub = TestHub::start(&[]).await;
    let mut first = hub.term("till-9").await;
    let _second = hub.term("till-9").await;
    assert_eq!(first.close_code().await, Some(4000));
    let (_, h) = http_get(hub.http, "/health").await;
    assert_eq!(h["terminals"], 1);
    hub.stop().await;
}

/// When `stop` returns, the database is closed, even while clients still hold their sockets
/// (one of them replaced): a restart right away opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_hub_has_closed_its_database_with_clients_attached() {
    let mut dir = tempfile::tempdir().expect("tempdir");
    for round in 0..10 {
        let hub = TestHub::start_in(dir, &[]).await;
        let mut first = hub.term("till-9").await;
        let second = hub.term("till-9").await;
        assert_eq!(first.close_code().await, Some(4000));
        let other = hub.term("till-1").await;
        dir = hub.stop().await;
        let db = redb::Database::create(db_path(dir.path()));
        assert!(db.is_ok(), "round {round}: {:?}", db.err());
        drop((first, second, other, db));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_locks_deny_force_by_role_and_expire() {
    // The engine runs on a stepped clock: the lock expires when the test moves time on.
    let clock = Arc::new(ManualClock::new());
    let hub = TestHub::start_with_clock(
        &[
            ("HUB_TABLE_LOCK_TTL_MS", "500"),
            ("HUB_TABLE_LOCK_TICK_MS", "100"),
        ],
        clock.clone(),
    )
    .await;
    let mut cashier = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "terminalId": "c1", "role": "cashier", "name": "Cara"}),
    )
    .await;
    let mut manager = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "terminalId": "m1", "role": "manager", "name": "Max"}),
    )
    .await;
    let mut other = hub.term("o1").await;

    cashier
        .send(json!({"type": "TABLE_LOCK_ACQUIRE", "tableId": 7}))
        .await;
    assert_eq!(cashier.recv_type("TABLE_LOCK_GRANTED").await["tableId"], 7);
    let state = other.recv_type("TABLE_LOCKS_STATE").await;
    assert_eq!(state["locks"][0]["terminalId"], "c1");
    assert_eq!(state["locks"][0]["userName"], "Cara");

    manager
        .send(json!({"type": "TABLE_LOCK_ACQUIRE", "tableId": 7}))
        .await;
    let denied = manager.recv_type("TABLE_LOCK_DENIED").await;
    assert_eq!(denied["holder"]["terminalId"], "c1");

    // The role is checked on the hub: a cashier cannot force.
    other
        .send(json!({"type": "TABLE_LOCK_FORCE_ACQUIRE", "tableId": 7}))
        .await;
    assert_eq!(other.recv_type("ERROR").await["code"], "forbidden");

    manager
        .send(json!({"type": "TABLE_LOCK_FORCE_ACQUIRE", "tableId": 7}))
        .await;
    assert_eq!(manager.recv_type("TABLE_LOCK_GRANTED").await["tableId"], 7);
    assert_eq!(
        cashier.recv_type("TABLE_LOCK_REVOKED").await["reason"],
        "forced"
    );
    assert_eq!(
        other.recv_type("TABLE_LOCKS_STATE").await["locks"][0]["terminalId"],
        "m1"
    );

    // Release broadcasts to all; a non-holder cannot release.
    cashier
        .send(json!({"type": "TABLE_LOCK_RELEASE", "tableId": 7}))
        .await;
    assert_eq!(cashier.recv_type("ERROR").await["code"], "not_lock_holder");
    manager
        .send(json!({"type": "TABLE_LOCK_RELEASE", "tableId": 7}))
        .await;
    assert_eq!(other.recv_type("TABLE_LOCK_RELEASED").await["tableId"], 7);

    // An unrenewed lock expires on the tick.
    other
        .send(json!({"type": "TABLE_LOCK_ACQUIRE", "tableId": "bar-1"}))
        .await;
    other.recv_type("TABLE_LOCK_GRANTED").await;
    other
        .send(json!({"type": "TABLE_LOCK_HEARTBEAT", "tableId": "bar-1"}))
        .await;
    other.recv_type("TABLE_LOCK_GRANTED").await;
    // Ticks run every 100 ms: before the 500 ms are up nothing happens, then it is revoked.
    clock.advance(Duration::from_millis(400));
    let quiet_until = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Some(m) = other
        .next(quiet_until.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        assert_ne!(m["type"], "TABLE_LOCK_REVOKED", "expired too early: {m}");
    }
    clock.advance(Duration::from_millis(100));
    assert_eq!(
        other.recv_type("TABLE_LOCK_REVOKED").await["reason"],
        "expired"
    );
    let (_, locks) = http_get(hub.http, "/health").await;
    assert_eq!(locks["status"], "ok");
    hub.stop().await;
}

/// AUTH with `auth`: the terminal if accepted, else the refusal and the close code.
async fn try_auth(
    hub: &TestHub,
    auth: serde_json::Value,
) -> Result<Term, (serde_json::Value, Option<u16>)> {
    let mut t = Term::connect(hub.ws).await;
    t.id = auth["terminalId"].as_str().unwrap_or_default().to_string();
    t.send(auth).await;
    let v = t.recv_type_of(&["AUTH_OK", "AUTH_FAIL"]).await;
    if v["type"] == "AUTH_OK" {
        return Ok(t);
    }
    Err((v, t.close_code().await))
}

fn assert_mismatch(r: Result<Term, (serde_json::Value, Option<u16>)>, what: &str) {
    match r {
        Ok(t) => panic!("{what}: accepted as {}", t.id),
        Err((v, code)) => assert_eq!(
            (v["reason"].as_str(), code),
            (Some("terminal_mismatch"), Some(4003)),
            "{what}: {v}"
        ),
    }
}

/// docs/protocol.md "Authentication and identity": a token's subject is its identity. A token
/// cannot name another subject's terminal (nor kick it off with 4000, nor write what it leased); a
/// device token may name a terminal, which is then bound to the device while in use (connected, in
/// its grace period, holding a lease or a lock), also across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_acts_only_as_its_subject() {
    let hub = TestHub::start(&[("HUB_AUTH_MODE", "token"), ("HUB_GRACE_MS", "300")]).await;
    let dir = hub.dir.path().to_path_buf();
    let tok = |sub: &str| token(&dir, sub, "t1", "cashier", 3600);
    let auth = |sub: &str, terminal: Option<&str>, device: Option<&str>| {
        let mut a = json!({"type": "AUTH", "token": tok(sub)});
        if let Some(t) = terminal {
            a["terminalId"] = json!(t);
        }
        if let Some(d) = device {
            a["deviceId"] = json!(d);
        }
        a
    };
    let mut victim = try_auth(&hub, auth("T-victim", Some("T-victim"), None))
        .await
        .expect("the victim's own terminal");
    assert_eq!(victim.lease("V-1").await["type"], "LEASE_GRANTED");

    // Another subject naming the victim's terminal, with or without a deviceId of its own.
    assert_mismatch(
        try_auth(&hub, auth("T-attacker", Some("T-victim"), None)).await,
        "terminalId of another subject",
    );
    assert_mismatch(
        try_auth(&hub, auth("T-attacker", Some("T-victim"), Some("T-victim"))).await,
        "deviceId of another subject",
    );
    assert_mismatch(
        try_auth(&hub, auth("T-attacker", Some("till-1"), Some("dev-9"))).await,
        "neither equals sub",
    );
    // The victim was not replaced and still writes its order; the attacker, as itself, cannot.
    victim
        .send(json!({"type": "PING", "requestId": "alive"}))
        .await;
    assert_eq!(victim.recv().await["requestId"], "alive");
    assert_eq!(
        victim.write("V-1", 0, snapshot("V-1", "draft", None)).await["type"],
        "ORDER_ACK"
    );
    let mut attacker = try_auth(&hub, auth("T-attacker", None, None))
        .await
        .expect("as itself");
    let ok = attacker
        .write("V-1", 1, snapshot("V-1", "paid", None))
        .await;
    assert_eq!(ok["code"], "lease_required", "{ok}");

    // A device token names its terminal; no other subject may take that terminal while used.
    let mut till5 = try_auth(&hub, auth("dev-1", Some("till-5"), Some("dev-1")))
        .await
        .expect("device names its terminal");
    assert_mismatch(
        try_auth(&hub, auth("dev-2", Some("till-5"), Some("dev-2"))).await,
        "terminal bound to dev-1",
    );
    assert_mismatch(
        try_auth(&hub, auth("dev-2", Some("T-victim"), Some("dev-2"))).await,
        "a device naming a terminal subject",
    );
    // Writes pipelined behind a refused AUTH do not act as the terminal either.
    assert_writes_behind_a_refused_auth_do_nothing(
        &hub,
        auth("dev-2", Some("T-victim"), Some("dev-2")),
    )
    .await;
    // Its own device replaces its connection, as before.
    let mut again = try_auth(&hub, auth("dev-1", Some("till-5"), Some("dev-1")))
        .await
        .expect("same device");
    assert_eq!(till5.close_code().await, Some(4000));
    assert_eq!(again.lease("L-5").await["type"], "LEASE_GRANTED");
    drop((again, victim, attacker));

    device_binding_survives_a_restart_until_unused(hub).await;
}

/// Writes pipelined behind a refused AUTH (`refused_auth`) do not act as the terminal: V-1
/// stays at version 1, draft.
async fn assert_writes_behind_a_refused_auth_do_nothing(
    hub: &TestHub,
    refused_auth: serde_json::Value,
) {
    let mut sneaky = Term::connect(hub.ws).await;
    sneaky.send(refused_auth).await;
    for _ in 0..5 {
        sneaky
            .send(
                json!({"type": "ORDER_SNAPSHOT", "posReference": "V-1", "baseVersion": 1,
            "snapshot": snapshot("V-1", "cancelled", None)}),
            )
            .await;
    }
    assert_eq!(
        sneaky.recv_type("AUTH_FAIL").await["reason"],
        "terminal_mismatch"
    );
    while let Some(v) = sneaky.next(WAIT).await {
        assert_ne!(v["type"], "ORDER_ACK", "{v}");
    }
    let (_, order) = http_get(hub.http, "/orders/V-1").await;
    assert_eq!(
        (&order["version"], &order["state"]),
        (&json!(1), &json!("draft")),
        "{order}"
    );
}

/// The device binding is durable: after a restart, till-5 still holds L-5, so it is still
/// dev-1's; once unused (disconnected, grace over, nothing held) a replacement device may take
/// the name.
async fn device_binding_survives_a_restart_until_unused(hub: TestHub) {
    let dir = hub.stop().await;
    let hub = TestHub::start_in(dir, &[("HUB_AUTH_MODE", "token"), ("HUB_GRACE_MS", "300")]).await;
    let dir = hub.dir.path().to_path_buf();
    let tok = |sub: &str| token(&dir, sub, "t1", "cashier", 3600);
    let device = |sub: &str| json!({"type": "AUTH", "token": tok(sub), "terminalId": "till-5", "deviceId": sub});
    assert_mismatch(
        try_auth(&hub, device("dev-2")).await,
        "after a restart, while till-5 holds a lease",
    );
    let mut back = try_auth(&hub, device("dev-1")).await.expect("dev-1 again");
    back.send(json!({"type": "LEASE_RELEASE", "posReference": "L-5"}))
        .await;
    back.recv_type("LEASE_RELEASED").await;
    drop(back);
    // Unused (disconnected, grace over, nothing held): a replacement device may take the name.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match try_auth(&hub, device("dev-2")).await {
            Ok(t) => {
                assert_eq!(t.id, "till-5");
                break;
            }
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "never released: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_mismatch(try_auth(&hub, device("dev-1")).await, "now dev-2's");
    hub.stop().await;
}
