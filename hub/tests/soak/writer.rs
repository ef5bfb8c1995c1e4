//! A till during the rush: it takes a table lock, leases a new order, writes a few versions of
//! it (the last one paid), sends kitchen tickets, and lets go of lease and lock. Now and then it
//! drops its socket right after sending a request, opens a new one and sends the same request
//! again (same `eventId`, same `ticketId`): the hub must answer as if it had been sent once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{snapshot, Term};
use crate::sample::Counters;

/// What a till was told was saved: order -> last acknowledged version; kitchen ticket ids.
#[derive(Default)]
pub struct Ledger {
    pub orders: BTreeMap<String, u64>,
    pub tickets: BTreeSet<String>,
}

pub struct Writer {
    pub id: String,
    pub index: u64,
    pub hub: SocketAddr,
    pub term: Term,
    pub rng: StdRng,
    pub c: Arc<Counters>,
    /// Think time between two steps of an order (jittered ±50 %).
    pub pace: Duration,
    /// Chance that a request is followed by dropping the socket before its answer.
    pub drop_chance: f64,
    pub ledger: Ledger,
    next_request: u64,
}

impl Writer {
    pub async fn start(
        index: u64,
        hub: SocketAddr,
        rng: StdRng,
        c: Arc<Counters>,
        pace: Duration,
    ) -> Writer {
        let id = format!("till-{index}");
        Writer {
            term: Term::open(hub, &id).await,
            id,
            index,
            hub,
            rng,
            c,
            pace,
            drop_chance: 0.04,
            ledger: Ledger::default(),
            next_request: 0,
        }
    }

    /// Orders until the load stops (the order in progress is finished); returns the ledger.
    pub async fn run(mut self) -> Ledger {
        let mut n = 0;
        while !self.c.stopped() {
            n += 1;
            self.order(n).await;
        }
        self.ledger
    }

    /// One order from table lock to payment.
    async fn order(&mut self, n: u64) {
        let p = format!("{}-{n:05}", self.id);
        let table = self.index * 100 + n % 20;
        self.ok(
            json!({"type": "TABLE_LOCK_ACQUIRE", "tableId": table}),
            "TABLE_LOCK_GRANTED",
        )
        .await;
        self.ok(
            json!({"type": "LEASE_ACQUIRE", "posReference": p}),
            "LEASE_GRANTED",
        )
        .await;
        let versions = self.rng.gen_range(2..=5u64);
        for v in 1..=versions {
            self.think().await;
            let state = if v == versions { "paid" } else { "draft" };
            self.write(&p, v, state, table).await;
            if v == 1 || (v == 3 && self.rng.gen_bool(0.5)) {
                self.think().await;
                self.ticket(&p, v, table).await;
            }
            if v == 2 {
                self.ok(
                    json!({"type": "TABLE_LOCK_HEARTBEAT", "tableId": table}),
                    "TABLE_LOCK_GRANTED",
                )
                .await;
            }
        }
        self.ok(
            json!({"type": "LEASE_RELEASE", "posReference": p}),
            "LEASE_RELEASED",
        )
        .await;
        self.release_lock(table).await;
    }

    /// `TABLE_LOCK_RELEASE` has no reply: the sender gets the event `TABLE_LOCK_RELEASED`, or,
    /// when a first copy of the request already released the lock, `ERROR not_lock_holder`.
    async fn release_lock(&mut self, table: u64) {
        let msg = json!({"type": "TABLE_LOCK_RELEASE", "tableId": table});
        let id = self.id.clone();
        let mine = move |v: &Value| {
            v["type"] == "TABLE_LOCK_RELEASED" && v["tableId"] == table && v["terminalId"] == id
        };
        let (r, resent) = self.ask(msg, &mine).await;
        let again = resent && r["code"] == "not_lock_holder";
        assert!(mine(&r) || again, "{}: release of {table}: {r}", self.id);
    }

    /// Writes version `v` (base `v - 1`) with an `eventId` of its own; a resend after a
    /// reconnect must get the same version back.
    async fn write(&mut self, p: &str, v: u64, state: &str, table: u64) {
        let mut s = snapshot(p, state, Some(i64::try_from(table).expect("table")));
        s["rev"] = json!(v);
        s["lines"][0]["quantity"] = json!(v);
        let msg = json!({"type": "ORDER_SNAPSHOT", "posReference": p, "baseVersion": v - 1,
            "eventId": format!("{p}-v{v}"), "snapshot": s});
        let ack = self.ok(msg, "ORDER_ACK").await;
        assert_eq!(ack["version"].as_u64(), Some(v), "{}: {p}: {ack}", self.id);
        Counters::bump(&self.c.acked_writes);
        self.ledger.orders.insert(p.to_string(), v);
    }

    /// A kitchen ticket for the `kds` station (the printed one). The one sent with the third
    /// version is a banquet: 300 lines, about 9 KB of ESC/POS, more than the fake printer's
    /// receive buffer takes, so a printer that stops reading holds it up (a two-line ticket
    /// would sit in the buffer, acknowledged, and the hub would never see the stall).
    async fn ticket(&mut self, p: &str, v: u64, table: u64) {
        let id = format!("{p}-k{v}");
        let mut lines = vec![
            json!({"name": "Burger", "quantity": v, "note": "no onions"}),
            json!({"name": "Salad", "quantity": 1}),
        ];
        if v == 3 {
            lines.extend((0..298).map(|i| {
                json!({"name": format!("Menu {i}"), "quantity": 1,
                "note": "no onions"})
            }));
        }
        let msg = json!({"type": "KITCHEN_TICKET", "ticketId": id, "station": "kds",
            "posReference": p, "tableId": table, "lines": lines});
        let ack = self.ok(msg, "KITCHEN_TICKET_ACK").await;
        assert_eq!(ack["ticketId"], id.as_str(), "{}: {ack}", self.id);
        Counters::bump(&self.c.tickets);
        self.ledger.tickets.insert(id);
    }

    /// Sends `msg` until its reply arrives and asserts the reply is `want`.
    async fn ok(&mut self, msg: Value, want: &str) -> Value {
        let (r, _) = self.ask(msg.clone(), &|_| false).await;
        assert_eq!(r["type"], want, "{}: {msg} got {r}", self.id);
        r
    }

    /// Sends `msg` until its answer (the reply with its `requestId`, or a message `also`
    /// accepts) arrives on the same socket, dropping the socket right after sending now and
    /// then; returns the answer and whether the request was sent more than once.
    async fn ask(
        &mut self,
        mut msg: Value,
        also: &(dyn Fn(&Value) -> bool + Sync),
    ) -> (Value, bool) {
        let mut resent = false;
        for _ in 0..20 {
            self.next_request += 1;
            msg["requestId"] = json!(self.next_request);
            self.term.send(msg.clone()).await;
            if self.rng.gen_bool(self.drop_chance) {
                self.reconnect().await;
                Counters::bump(&self.c.reconnects);
                resent = true;
                continue;
            }
            if let Some(r) = self.reply(&msg, also).await {
                return (r, resent);
            }
            Counters::bump(&self.c.hub_closed);
            self.reconnect().await;
            resent = true;
        }
        panic!("{}: no answer to {msg} in 20 tries", self.id);
    }

    /// The answer to `msg`, skipping the broadcasts of the other tills; None if the hub closed
    /// the socket.
    async fn reply(
        &mut self,
        msg: &Value,
        also: &(dyn Fn(&Value) -> bool + Sync),
    ) -> Option<Value> {
        let request = &msg["requestId"];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(m) = tokio::time::timeout(left, self.term.ws.next()).await else {
                panic!("{}: no reply in 30 s to {msg}", self.id);
            };
            match m {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("hub sends JSON");
                    if v["requestId"] == *request || also(&v) {
                        return Some(v);
                    }
                    if v.get("requestId").is_some() || v["type"] == "ERROR" {
                        eprintln!("{}: stray reply {v}", self.id);
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Drops the socket without a close frame (a tablet losing Wi-Fi) and opens a new one.
    async fn reconnect(&mut self) {
        self.term = Term::open(self.hub, &self.id).await;
    }

    /// Waits the think time, reading (and discarding) the broadcasts meanwhile, as a till does.
    async fn think(&mut self) {
        let ms = u64::try_from(self.pace.as_millis()).unwrap_or(u64::MAX);
        let wait = Duration::from_millis(self.rng.gen_range(ms / 2..=ms + ms / 2));
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.term.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => {
                    Counters::bump(&self.c.hub_closed);
                    self.reconnect().await;
                }
            }
        }
    }
}
