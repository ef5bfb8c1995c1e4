//! The hub side of a model-based run: a real hub (real redb file in a temporary directory,
//! WebSocket and HTTP on 127.0.0.1 port 0) on a `ManualClock`, one real WebSocket per
//! connected terminal, and the reads of its state over the HTTP API.
//!
//! Expiry: the engine decides lease, lock and grace expiry against its clock, on its lease and
//! lock ticks (and a grace timer on real time that only acts once the clock is past the end).
//! The hub runs here with both ticks every 10 ms of real time, so after the test moves the
//! `ManualClock` it waits for the hub's leases and locks to become what the model says
//! (bounded: `SETTLE`). Nothing else depends on real time, so a run is deterministic.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::common::{http_get, Term, TestHub};
use super::ops::TERMINALS;
use poshub::clock::{Clock, ManualClock};

/// Longest wait for an answer, a disconnect to register, or expiry to happen (the ticks run
/// every 10 ms; a shrinking run fails on this wait many times, so it is not longer).
const SETTLE: Duration = Duration::from_secs(2);

/// Settings of the hub under test (the model reads the same TTLs).
pub const LEASE_TTL_MS: u64 = 60_000;
pub const LOCK_TTL_MS: u64 = 45_000;
pub const GRACE_MS: u64 = 10_000;

/// One connected terminal and the notices (messages that are neither its replies nor events)
/// it received since it connected.
struct Conn {
    term: Term,
    notices: Vec<Value>,
}

/// The hub and its terminals.
pub struct HubSide {
    hub: TestHub,
    pub clock: Arc<ManualClock>,
    conns: Vec<Option<Conn>>,
    next_rid: u64,
}

/// True if every field of `expect` is in `got` with that value (`null` = absent or null),
/// recursively for objects.
pub fn matches(expect: &Value, got: &Value) -> bool {
    match expect {
        Value::Object(m) => m.iter().all(|(k, e)| {
            let g = got.get(k).unwrap_or(&Value::Null);
            matches(e, g)
        }),
        other => other == got,
    }
}

/// A notice the model predicts: revoked leases and locks not asked for.
fn is_notice(v: &Value) -> bool {
    let ty = v["type"].as_str().unwrap_or_default();
    matches!(ty, "LEASE_REVOKED" | "TABLE_LOCK_REVOKED") && v.get("requestId").is_none()
}

impl HubSide {
    pub async fn start() -> HubSide {
        let clock = Arc::new(ManualClock::new());
        let (lease, lock, grace) = (
            LEASE_TTL_MS.to_string(),
            LOCK_TTL_MS.to_string(),
            GRACE_MS.to_string(),
        );
        let vars = [
            ("HUB_LEASE_TTL_MS", lease.as_str()),
            ("HUB_TABLE_LOCK_TTL_MS", lock.as_str()),
            ("HUB_GRACE_MS", grace.as_str()),
            ("HUB_HEARTBEAT_MS", "10"),
            ("HUB_TABLE_LOCK_TICK_MS", "10"),
        ];
        let hub = TestHub::start_with_clock(&vars, clock.clone()).await;
        let mut side = HubSide {
            hub,
            clock,
            conns: (0..TERMINALS.len()).map(|_| None).collect(),
            next_rid: 1,
        };
        for t in 0..TERMINALS.len() {
            side.connect(t).await;
        }
        side
    }

    pub fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    pub async fn stop(self) {
        drop(self.conns);
        self.hub.stop().await;
    }

    /// Opens terminal `t`'s socket and authenticates it with its role (open mode).
    pub async fn connect(&mut self, t: usize) {
        let (id, role) = TERMINALS[t];
        let auth = json!({"type": "AUTH", "terminalId": id, "name": id, "role": role});
        let term = Term::open_with(self.hub.ws, auth).await;
        self.conns[t] = Some(Conn {
            term,
            notices: Vec::new(),
        });
    }

    /// Closes terminal `t`'s socket and waits until the hub has seen it go (so the grace
    /// period starts at the current clock); returns the notices it had received.
    pub async fn disconnect(&mut self, t: usize) -> Result<Vec<Value>, String> {
        let notices = self.barrier(t).await?;
        if let Some(mut c) = self.conns[t].take() {
            let _ = c.term.ws.close(None).await;
        }
        let id = TERMINALS[t].0;
        self.wait_for("the hub to see the terminal go", |s| {
            !s["terminals"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["terminalId"] == id))
        })
        .await?;
        Ok(notices)
    }

    /// Every notice terminal `t` received up to now: a request the engine answers after
    /// everything it sent before (a heartbeat for a lease nobody holds) flushes them.
    pub async fn barrier(&mut self, t: usize) -> Result<Vec<Value>, String> {
        let frame = json!({"type": "LEASE_HEARTBEAT", "posReference": "barrier"});
        self.request(t, frame).await?;
        let c = self.conns[t]
            .as_mut()
            .ok_or("barrier on a closed terminal")?;
        Ok(std::mem::take(&mut c.notices))
    }

    /// Sends `frame` from terminal `t` and returns the hub's answer to it: the reply with its
    /// requestId, or for `TABLE_LOCK_RELEASE` (no reply) the sender's `TABLE_LOCK_RELEASED`.
    pub async fn request(&mut self, t: usize, mut frame: Value) -> Result<Value, String> {
        let rid = self.next_rid;
        self.next_rid += 1;
        frame["requestId"] = json!(rid);
        let release = frame["type"] == "TABLE_LOCK_RELEASE";
        let id = TERMINALS[t].0;
        let c = self.conns[t]
            .as_mut()
            .ok_or("request on a closed terminal")?;
        c.term.send(frame).await;
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(v) = c.term.next(left).await else {
                return Err(format!(
                    "{id}: no answer to request {rid} within {SETTLE:?}"
                ));
            };
            let own_release =
                release && v["type"] == "TABLE_LOCK_RELEASED" && v["terminalId"] == id;
            if v["requestId"] == json!(rid) || own_release {
                return Ok(v);
            }
            if is_notice(&v) {
                c.notices.push(v);
            }
        }
    }

    /// Moves the clock, then waits until the hub's ticks have expired what the model expired:
    /// its leases and table locks equal `leases` and `locks`.
    pub async fn advance(&mut self, ms: u64, leases: &Value, locks: &Value) -> Result<(), String> {
        self.clock.advance(Duration::from_millis(ms));
        // A few ticks pass in any case, so a wrong expiry shows here and not later.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let deadline = tokio::time::Instant::now() + SETTLE;
        loop {
            let got = self.leases_and_locks().await;
            if got.0 == *leases && got.1 == *locks {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "after moving the clock {ms} ms the hub did not reach the model's leases and locks \
                     within {SETTLE:?}:\n  leases: hub {} model {leases}\n  locks: hub {} model {locks}",
                    got.0, got.1
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn status(&self) -> Value {
        http_get(self.hub.http, "/status").await.1
    }

    async fn wait_for(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + SETTLE;
        while !ok(&self.status().await) {
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("timed out waiting for {what}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Leases (from `GET /status`) and table locks (`GET /table-locks`) in the model's shape.
    async fn leases_and_locks(&self) -> (Value, Value) {
        let status = self.status().await;
        let leases = keyed(
            &status["leases"],
            "posReference",
            &["terminalId", "expiresAt"],
        );
        let locks = http_get(self.hub.http, "/table-locks").await.1;
        let locks = keyed(
            &locks["locks"],
            "tableId",
            &["tableId", "terminalId", "expiresAt"],
        );
        (leases, locks)
    }

    /// Everything the run changed, read back from the hub, in the shape of `Model::state`.
    pub async fn state(&self) -> Result<Value, String> {
        let status = self.status().await;
        let mut terminals: Vec<Value> = status["terminals"]
            .as_array()
            .map(|a| a.iter().map(|t| t["terminalId"].clone()).collect())
            .unwrap_or_default();
        terminals.sort_by_key(Value::to_string);
        let (leases, locks) = self.leases_and_locks().await;
        let orders = self.orders()?;
        let tables = http_get(self.hub.http, "/tables").await.1;
        let inventory = http_get(self.hub.http, "/inventory").await.1;
        let tickets = self.tickets()?;
        Ok(json!({
            "terminals": terminals,
            "leases": leases,
            "locks": locks,
            "orders": keyed(&orders, "posReference", &["version", "state", "tableId"]),
            "tables": keyed(&tables["tables"], "tableId", &["tableId", "status", "posReference"]),
            "inventory": keyed(&inventory["products"], "productId", &["productId", "level", "p", "n"]),
            "tickets": tickets,
        }))
    }

    /// Every order the hub keeps, read from its database: `GET /orders` lists only open ones
    /// and those finished within the last day of the test's clock, which moves by days here.
    fn orders(&self) -> Result<Value, String> {
        let running = self.hub.running.as_ref().ok_or("hub stopped")?;
        let all = running
            .hub
            .store
            .orders()
            .map_err(|e| format!("reading orders: {e}"))?;
        Ok(all
            .into_iter()
            .map(|o| {
                let snap: Value = serde_json::from_str(&o.rec.snapshot_json).unwrap_or_default();
                json!({"posReference": o.pos_reference, "version": o.rec.version,
                       "state": o.rec.state, "tableId": snap["tableId"]})
            })
            .collect())
    }

    /// Every ticket counter of every business day, read from the hub's database (`GET
    /// /ticket-sequences` shows only today by the system clock, not the test's clock).
    fn tickets(&self) -> Result<Value, String> {
        let running = self.hub.running.as_ref().ok_or("hub stopped")?;
        let all = running
            .hub
            .store
            .ticket_sequences()
            .map_err(|e| format!("reading ticket counters: {e}"))?;
        Ok(Value::Object(
            all.into_iter().map(|(k, n)| (k, json!(n))).collect(),
        ))
    }
}

/// A JSON array of objects as an object keyed by `key` (a number key as its text), keeping
/// `fields` of each.
fn keyed(list: &Value, key: &str, fields: &[&str]) -> Value {
    let mut out = Map::new();
    for item in list.as_array().into_iter().flatten() {
        let k = match &item[key] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let v: Map<String, Value> = fields
            .iter()
            .map(|f| (f.to_string(), item[*f].clone()))
            .collect();
        out.insert(k, Value::Object(v));
    }
    Value::Object(out)
}
