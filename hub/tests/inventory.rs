//! Inventory PN-counters (docs/kitchen.md): adjustments from several terminals all count, a resent
//! eventId counts once, the level survives `kill -9`, `INVENTORY_UPDATED` is broadcast with a
//! seq and the event waits for upstream like every other. Property tests: the level is the same
//! whatever the order and duplication of the adjustments, both for the pure counter and through
//! the real hub over `WebSockets`.

mod common;

use common::*;
use poshub::engine::inventory::{Ledger, PnCounter};
use proptest::prelude::*;
use serde_json::{json, Value};

fn adjust(product: &Value, delta: i64, event_id: &str) -> Value {
    json!({"type": "INVENTORY_ADJUST", "productId": product, "delta": delta, "eventId": event_id, "requestId": event_id})
}

async fn level(http: std::net::SocketAddr, product: &Value) -> Option<i64> {
    let (status, body) = http_get(http, "/inventory").await;
    assert_eq!(status, 200);
    body["products"]
        .as_array()?
        .iter()
        .find(|p| &p["productId"] == product)
        .and_then(|p| p["level"].as_i64())
}

/// Sends `adjs` from terminal `t`, waiting for every answer; returns the acks.
async fn send_all(t: &mut Term, adjs: &[(String, i64)], product: &Value) -> Vec<Value> {
    let mut acks = Vec::new();
    for (id, d) in adjs {
        t.send(adjust(product, *d, id)).await;
        acks.push(t.recv_type_of(&["INVENTORY_ACK", "ERROR"]).await);
    }
    acks
}

#[tokio::test]
async fn adjustments_from_several_terminals_all_count_and_resends_count_once() {
    let hub = TestHub::start(&[]).await;
    let product = json!("SKU-42");
    let mut observer = hub.term("office").await;
    let mut tasks = Vec::new();
    for t in 0..4 {
        let ws = hub.ws;
        let product = product.clone();
        tasks.push(tokio::spawn(async move {
            let mut term = Term::open(ws, &format!("pos-{t}")).await;
            let adjs: Vec<(String, i64)> = (0..20)
                .map(|i| (format!("t{t}-e{i}"), if i % 3 == 0 { -2 } else { 5 }))
                .collect();
            let first = send_all(&mut term, &adjs, &product).await;
            // The outbox resends everything once more (lost acks): nothing changes.
            let again = send_all(&mut term, &adjs, &product).await;
            for (a, b) in first.iter().zip(&again) {
                assert_eq!(a["type"], "INVENTORY_ACK", "{a}");
                assert_eq!(
                    (&b["seq"], b["duplicate"].as_bool()),
                    (&a["seq"], Some(true))
                );
            }
        }));
    }
    for t in tasks {
        t.await.expect("terminal task");
    }
    // 4 terminals x (7 x -2 + 13 x 5) = 4 x 51.
    assert_eq!(level(hub.http, &product).await, Some(204));
    let mut last = None;
    for _ in 0..80 {
        let u = observer.recv_type("INVENTORY_UPDATED").await;
        assert!(u["seq"].as_u64().is_some(), "{u}");
        last = u["level"].as_i64();
    }
    assert_eq!(
        last,
        Some(204),
        "the last broadcast carries the final level"
    );
    observer.quiet_for(200).await;
    let (_, inv) = http_get(hub.http, "/inventory").await;
    assert_eq!(inv["products"][0]["p"]["pos-0"], 65);
    assert_eq!(inv["products"][0]["n"]["pos-0"], 14);
    let (_, health) = http_get(hub.http, "/health").await;
    assert_eq!(
        health["pendingEvents"], 80,
        "inventory events wait for upstream"
    );

    let mut t = hub.term("pos-9").await;
    t.send(adjust(&json!(7), 1, "t0-e1")).await;
    assert_eq!(t.recv_type("ERROR").await["code"], "duplicate_event_id");
    t.send(adjust(&json!(7), 0, "z")).await;
    assert_eq!(t.recv_type("ERROR").await["code"], "invalid_message");
    hub.stop().await;
}

#[tokio::test]
async fn level_survives_kill9_and_a_resend_after_restart_counts_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut p = HubProcess::spawn(dir.path(), &[]).await;
    let product = json!(12);
    let mut t = Term::open(p.ws, "pos-1").await;
    let acks = send_all(
        &mut t,
        &[("a".into(), 10), ("b".into(), -3), ("c".into(), 4)],
        &product,
    )
    .await;
    assert_eq!(acks[2]["level"], 11);
    drop(t);
    p.kill9();

    let mut p = HubProcess::spawn(dir.path(), &[]).await;
    assert_eq!(level(p.http, &product).await, Some(11));
    let mut t = Term::open(p.ws, "pos-1").await;
    let again = send_all(&mut t, &[("b".into(), -3)], &product).await;
    assert_eq!(
        (again[0]["level"].as_i64(), again[0]["duplicate"].as_bool()),
        (Some(11), Some(true))
    );
    assert_eq!(level(p.http, &product).await, Some(11));
    p.kill9();
}

/// Distinct adjustments (eventId, non-zero delta) and the order in which they are sent: every
/// one at least once, some several times (resends carry the same delta), shuffled.
fn adjustments() -> impl Strategy<Value = (Vec<(u8, i64)>, Vec<usize>)> {
    let delta = prop_oneof![-50i64..0, 1i64..50];
    prop::collection::btree_map(any::<u8>(), delta, 1..60).prop_flat_map(|m| {
        let adjs: Vec<(u8, i64)> = m.into_iter().collect();
        let n = adjs.len();
        let extra = prop::collection::vec(0..n, 0..n * 2);
        (Just(adjs), extra).prop_flat_map(|(adjs, extra)| {
            let mut idx: Vec<usize> = (0..adjs.len()).collect();
            idx.extend(extra);
            (Just(adjs), Just(idx).prop_shuffle())
        })
    })
}

/// What a correct counter must reach: each distinct adjustment once.
fn expected(adjs: &[(u8, i64)]) -> i64 {
    adjs.iter().map(|a| a.1).sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The pure counter: the same level for any interleaving and duplication, whichever
    /// terminals the adjustments come from.
    #[test]
    fn pure_counter_converges((adjs, order) in adjustments(), replicas in 1usize..5) {
        let mut a = Ledger::default();
        for (k, &i) in order.iter().enumerate() {
            let (id, d) = adjs[i];
            a.apply(&format!("e{id}"), &format!("t{}", k % replicas), d);
        }
        let mut b = Ledger::default();
        for &i in order.iter().rev() {
            let (id, d) = adjs[i];
            b.apply(&format!("e{id}"), "t0", d);
        }
        prop_assert_eq!(a.counter.level(), expected(&adjs));
        prop_assert_eq!(b.counter.level(), expected(&adjs));
        prop_assert_eq!(a.applied.len(), adjs.len());
    }

    /// CRDT merge of PN-counters is commutative, associative and idempotent.
    #[test]
    fn merge_is_a_semilattice(xs in prop::collection::vec((0u8..4, -20i64..20), 0..30),
                              ys in prop::collection::vec((0u8..4, -20i64..20), 0..30),
                              zs in prop::collection::vec((0u8..4, -20i64..20), 0..30)) {
        let build = |v: &[(u8, i64)]| {
            let mut c = PnCounter::default();
            for (r, d) in v { c.add(&format!("t{r}"), *d); }
            c
        };
        let (x, y, z) = (build(&xs), build(&ys), build(&zs));
        let mut xy = x.clone(); xy.merge(&y);
        let mut yx = y.clone(); yx.merge(&x);
        prop_assert_eq!(&xy, &yx);
        let mut xy_z = xy.clone(); xy_z.merge(&z);
        let mut yz = y.clone(); yz.merge(&z);
        let mut x_yz = x.clone(); x_yz.merge(&yz);
        prop_assert_eq!(&xy_z, &x_yz);
        let mut xx = x.clone(); xx.merge(&x);
        prop_assert_eq!(xx, x);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Through the real hub: three terminals send the shuffled, duplicated adjustments
    /// concurrently; the stored level is the sum of the distinct adjustments.
    #[test]
    fn hub_level_converges((adjs, order) in adjustments()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let got = rt.block_on(async {
            let hub = TestHub::start(&[]).await;
            let product = json!("p");
            let mut tasks = Vec::new();
            for t in 0..3usize {
                let mine: Vec<(String, i64)> = order.iter().enumerate().filter(|(k, _)| k % 3 == t)
                    .map(|(_, &i)| (format!("e{}", adjs[i].0), adjs[i].1))
                    .collect();
                let (ws, product) = (hub.ws, product.clone());
                tasks.push(tokio::spawn(async move {
                    let mut term = Term::open(ws, &format!("pos-{t}")).await;
                    send_all(&mut term, &mine, &product).await
                }));
            }
            for t in tasks { t.await.expect("task"); }
            let l = level(hub.http, &product).await;
            hub.stop().await;
            l
        });
        prop_assert_eq!(got, Some(expected(&adjs)));
    }
}
