//! Upstream resilience with real processes and sockets: `kill -9` of the hub binary in the
//! middle of a drain loses no event (duplicates allowed), retry counts survive a restart, and `HUB_AUTH_MODE=odoo` lets a
//! known Odoo session in while Odoo is unreachable (also after a restart), refuses a session
//! Odoo rejects at once, and refuses unknown or too old sessions while offline.

mod common;

use std::time::{Duration, Instant};

use common::odoo_double::*;
use common::*;
use poshub::auth::{Claims, HubKey, AUDIENCE};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_drain_loses_nothing() {
    let odoo = OdooDouble::start().await;
    // A slow Odoo: every order takes 150 ms, so the drain is still running when we kill.
    odoo.fault(
        "/pos-react/api/orders",
        Fault::Delay(Duration::from_millis(150)),
        None,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let env = odoo_env(&odoo);
    let mut env = refs(&env);
    env.push(("HUB_FORWARD_BATCH_SIZE", "5"));
    env.push(("HUB_UPSTREAM_TIMEOUT_MS", "5000"));
    let mut hub = HubProcess::spawn(dir.path(), &env).await;
    let mut a = Term::open(hub.ws, "till-1").await;
    let n = 60;
    for i in 0..n {
        let p = format!("K-{i}");
        a.lease(&p).await;
        let v = a.write(&p, 0, snapshot(&p, "paid", None)).await;
        assert_eq!(v["type"], "ORDER_ACK", "{v}");
    }
    wait_health(hub.http, WAIT, "the drain to be under way", |h| {
        h["forwardedEvents"].as_u64().unwrap_or(0) >= 8
    })
    .await;
    hub.kill9();
    let before = odoo.orders().len();
    assert!(
        before < n,
        "the drain was still running at the kill ({before} of {n})"
    );

    // Restart; Odoo is fast again. Everything arrives.
    odoo.clear_faults();
    let hub = HubProcess::spawn(dir.path(), &env).await;
    let h = wait_health(hub.http, Duration::from_secs(30), "queue drained", |h| {
        h["pendingEvents"] == 0
    })
    .await;
    assert_eq!(h["deadLetters"], 0, "{h}");
    let got = odoo.orders();
    let dupes: usize = got.values().map(|v| v.len() - 1).sum();
    println!("kill -9 mid-drain: {before} of {n} orders out before the kill; {dupes} sent twice after the restart; {h}");
    for i in 0..n {
        let p = format!("K-{i}");
        let sent = got.get(&p).unwrap_or_else(|| panic!("{p} lost"));
        assert_eq!(
            sent.last().map(|s| s.1["state"].clone()),
            Some(json!("paid"))
        );
    }
    assert!(dupes <= 5, "at most the batch in flight is resent: {dupes}");
}

fn jwt(dir: &std::path::Path, sub: &str) -> String {
    let key = HubKey::load_or_create(dir).expect("hub key");
    let now = poshub::auth::now_secs();
    key.issue(&Claims {
        sub: sub.into(),
        aud: AUDIENCE.into(),
        tenant_id: "t1".into(),
        store_id: "s1".into(),
        exp: now + 3600,
        nbf: None,
        iat: None,
        uid: Some(json!(42)),
        role: Some("cashier".into()),
        name: None,
    })
    .expect("sign")
}

/// AUTH with `token`; the reply (`AUTH_OK` or `AUTH_FAIL`).
async fn auth(hub: &TestHub, token: &str, terminal: &str) -> Value {
    let mut t = Term::connect(hub.ws).await;
    t.send(json!({"type": "AUTH", "token": token, "terminalId": terminal}))
        .await;
    t.recv_type_of(&["AUTH_OK", "AUTH_FAIL"]).await
}

fn outcome(v: &Value) -> (String, String) {
    let t = v["type"].as_str().unwrap_or_default().to_string();
    let r = if t == "AUTH_OK" {
        format!("{}/{}", v["uid"], v["role"].as_str().unwrap_or_default())
    } else {
        v["reason"].as_str().unwrap_or_default().to_string()
    };
    (t, r)
}

fn ok(who: &str) -> (String, String) {
    ("AUTH_OK".into(), who.into())
}

fn fail(reason: &str) -> (String, String) {
    ("AUTH_FAIL".into(), reason.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odoo_sessions_are_cached_for_offline_use() {
    let odoo = OdooDouble::start().await;
    odoo.add_terminal_session(
        "sess-ana",
        json!({"uid": 7, "name": "Ana", "role": "manager"}),
    );
    odoo.add_terminal_session("sess-bo", json!({"uid": 8, "name": "Bo"}));
    odoo.add_terminal_session("sess-cy", json!({"uid": 9, "name": "Cy"}));
    let env = odoo_env(&odoo);
    let mut env = refs(&env);
    env.push(("HUB_AUTH_MODE", "odoo"));
    let hub = TestHub::start(&env).await;

    // Online: Odoo decides; JWTs still work.
    assert_eq!(
        outcome(&auth(&hub, "sess-ana", "till-1").await),
        ok("7/manager")
    );
    assert_eq!(
        outcome(&auth(&hub, "sess-cy", "till-3").await),
        ok("9/cashier")
    );
    assert_eq!(
        outcome(&auth(&hub, "sess-nobody", "till-2").await),
        fail("invalid_token")
    );
    let token = jwt(hub.dir.path(), "till-9");
    assert_eq!(
        outcome(&auth(&hub, &token, "till-9").await),
        ok("42/cashier")
    );
    let checks = || {
        odoo.requests()
            .iter()
            .filter(|r| r.path == "/pos-react/api/session")
            .count()
    };
    assert_eq!(checks(), 3, "the JWT never went to Odoo");
    let with_cookie = odoo
        .requests()
        .into_iter()
        .find(|r| r.path == "/pos-react/api/session")
        .and_then(|r| r.cookie);
    assert_eq!(with_cookie.as_deref(), Some("session_id=sess-ana"));

    assert_cache_serves_while_odoo_is_down(&hub, &odoo).await;

    // Still offline after a restart.
    let hub = restart(hub, &env).await;
    assert_eq!(
        outcome(&auth(&hub, "sess-ana", "till-1").await),
        ok("7/manager")
    );

    // Odoo back: a session it now rejects is refused at once, and forgotten for offline use.
    odoo.clear_faults();
    odoo.revoke_terminal_session("sess-ana");
    assert_eq!(
        outcome(&auth(&hub, "sess-ana", "till-1").await),
        fail("invalid_token")
    );
    odoo.fault("/pos-react/api/session", Fault::Status(502), None);
    // Give the engine its commit before the offline check reads the cache.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        outcome(&auth(&hub, "sess-ana", "till-1").await),
        fail("upstream_unreachable")
    );
    hub.stop().await;

    assert_offline_grace_bounds_the_cache(&env, &odoo).await;
}

/// Odoo unreachable (5xx, then a hang, then dropped connections): known sessions get in from
/// the cache, unknown ones are told why they cannot, and a hanging Odoo holds a terminal no
/// longer than the upstream timeout.
async fn assert_cache_serves_while_odoo_is_down(hub: &TestHub, odoo: &OdooDouble) {
    odoo.fault("/pos-react/api/session", Fault::Status(503), None);
    assert_eq!(
        outcome(&auth(hub, "sess-ana", "till-1").await),
        ok("7/manager")
    );
    assert_eq!(
        outcome(&auth(hub, "sess-bo", "till-2").await),
        fail("upstream_unreachable")
    );
    // A hanging Odoo holds a terminal no longer than the upstream timeout.
    odoo.clear_faults();
    odoo.fault(
        "/pos-react/api/session",
        Fault::Delay(Duration::from_secs(5)),
        None,
    );
    let t = Instant::now();
    assert_eq!(
        outcome(&auth(hub, "sess-ana", "till-1").await),
        ok("7/manager")
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    odoo.clear_faults();
    odoo.fault("/pos-react/api/session", Fault::Drop, None);
    assert_eq!(
        outcome(&auth(hub, "sess-ana", "till-1").await),
        ok("7/manager")
    );
}

/// `HUB_AUTH_OFFLINE_GRACE_MS` bounds how old a validation may be.
async fn assert_offline_grace_bounds_the_cache(env: &[(&'static str, &str)], odoo: &OdooDouble) {
    let mut short = env.to_vec();
    short.push(("HUB_AUTH_OFFLINE_GRACE_MS", "300"));
    let hub = TestHub::start(&short).await;
    odoo.clear_faults();
    assert_eq!(
        outcome(&auth(&hub, "sess-cy", "till-3").await),
        ok("9/cashier")
    );
    odoo.fault("/pos-react/api/session", Fault::Status(503), None);
    assert_eq!(
        outcome(&auth(&hub, "sess-cy", "till-3").await),
        ok("9/cashier")
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        outcome(&auth(&hub, "sess-cy", "till-3").await),
        fail("upstream_unreachable")
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_counts_survive_a_restart() {
    let odoo = OdooDouble::start().await;
    odoo.refuse("R-1", 503);
    let env = odoo_env(&odoo);
    let mut env = refs(&env);
    env.push(("HUB_FORWARD_INTERVAL_MS", "300"));
    env.push(("HUB_FORWARD_MAX_RETRIES", "3"));
    let hub = TestHub::start(&env).await;
    let mut a = hub.term("till-1").await;
    a.lease("R-1").await;
    assert_eq!(
        a.write("R-1", 0, snapshot("R-1", "draft", None)).await["type"],
        "ORDER_ACK"
    );
    let tries = || {
        odoo.requests()
            .iter()
            .filter(|r| r.body["pos_reference"] == "R-1")
            .count()
    };
    let deadline = Instant::now() + WAIT;
    while tries() < 2 {
        assert!(Instant::now() < deadline, "no second try");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the hub record the second failure (the third try is at least 300 ms away).
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(a);
    // Two tries spent; the restarted hub has one left, not three.
    let hub = restart(hub, &env).await;
    let h = wait_health(hub.http, WAIT, "dead letter", |h| h["deadLetters"] == 1).await;
    assert_eq!(h["pendingEvents"], 0, "{h}");
    assert_eq!(tries(), 3);
    let (_, dl) = admin(hub.http, "GET", "/admin/dead-letters", Some(ADMIN), "").await;
    assert_eq!(dl["deadLetters"][0]["attempts"], 3, "{dl}");
    hub.stop().await;
}
