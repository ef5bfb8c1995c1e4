//! The rules of `docs/protocol.md` as a small in-memory model: plain maps, no I/O, no engine
//! code. For each operation it says which frame the terminal sends and what the hub must answer
//! (the fields the rules decide), and it keeps the state the hub must end up with.
//!
//! Time is the test's `ManualClock`: `now` is the same number the hub's engine reads. Expiry
//! (lease and lock TTL, the grace period after a disconnect) happens in `advance`, which is what
//! the hub's lease and lock ticks do once the clock has moved (the runner waits for them).

use std::collections::BTreeMap;

use chrono::TimeZone;
use serde_json::{json, Map, Value};

use super::ops::{
    Base, Id, Op, Snapshot, Step, Who, EVENT_IDS, ORDERS, ORDER_TYPES, STATES, TERMINALS,
};

/// The hub's timing settings the model needs (ms).
#[derive(Debug, Clone, Copy)]
pub struct Ttls {
    pub lease: u64,
    pub lock: u64,
    pub grace: u64,
}

/// What the runner does for one operation.
#[derive(Debug)]
pub enum Plan {
    /// Nothing (a request from a terminal that is not connected, a second disconnect, …).
    Skip,
    /// Terminal `t` sends `frame`; its answer must contain `expect` (`null` = field absent).
    Send {
        t: usize,
        frame: Value,
        expect: Value,
    },
    Disconnect(usize),
    Reconnect(usize),
    /// Move the clock by this many ms, then wait for the hub's ticks to expire what is due.
    Advance(u64),
}

#[derive(Debug, Clone)]
struct Lease {
    t: usize,
    expires: u64,
}

#[derive(Debug, Clone)]
struct Lock {
    t: usize,
    expires: u64,
    /// The table id as the terminal that took the lock sent it.
    json: Value,
}

#[derive(Debug, Clone)]
struct Order {
    version: u64,
    snapshot: Value,
    /// The table key and the id as sent.
    table: Option<(String, Value)>,
}

#[derive(Debug, Clone)]
struct Table {
    json: Value,
    status: &'static str,
    order: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct Product {
    json: Value,
    p: BTreeMap<String, u64>,
    n: BTreeMap<String, u64>,
}

impl Product {
    fn level(&self) -> i64 {
        let p: u64 = self.p.values().sum();
        let n: u64 = self.n.values().sum();
        i64::try_from(i128::from(p) - i128::from(n)).unwrap_or(0)
    }
}

/// Which acknowledgement's `seq` the runner must hand back (`note_seq`): the model cannot know
/// it, but a resent eventId must be answered with the same one.
#[derive(Debug, Clone)]
enum SeqSlot {
    Order(String),
    Inventory(String),
}

/// The model's whole state.
#[derive(Debug)]
pub struct Model {
    pub now: u64,
    ttl: Ttls,
    connected: Vec<bool>,
    grace_ends: Vec<Option<u64>>,
    leases: BTreeMap<String, Lease>,
    locks: BTreeMap<String, Lock>,
    orders: BTreeMap<String, Order>,
    /// eventId -> (order, version, seq of its acknowledgement).
    order_events: BTreeMap<String, (String, u64, u64)>,
    tables: BTreeMap<String, Table>,
    products: BTreeMap<String, Product>,
    /// eventId -> (product key, seq of its acknowledgement).
    inv_events: BTreeMap<String, (String, u64)>,
    /// "date/orderType" -> last number drawn.
    tickets: BTreeMap<String, u64>,
    /// Notices (not replies) each terminal must have received since it connected.
    notices: Vec<Vec<Value>>,
    seq_slot: Option<SeqSlot>,
    /// How often each rule fired (expiries, new business days), for the run's figures.
    pub fired: BTreeMap<&'static str, u64>,
}

fn id_json(id: Id) -> Value {
    if id.text {
        json!(id.n.to_string())
    } else {
        json!(id.n)
    }
}

fn id_key(id: Id) -> String {
    id.n.to_string()
}

fn error(code: &str) -> Value {
    json!({"type": "ERROR", "code": code})
}

fn name(t: usize) -> &'static str {
    TERMINALS[t].0
}

/// Cashiers and waiters may not force a table lock.
fn may_force(t: usize) -> bool {
    matches!(TERMINALS[t].1, "manager" | "admin")
}

/// `ms` as chrono's signed milliseconds (test clocks are far below `i64::MAX`).
fn signed(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The store's business day: the local calendar date.
pub fn business_date(ms: u64) -> String {
    match chrono::Local.timestamp_millis_opt(signed(ms)).single() {
        Some(t) => t.format("%Y-%m-%d").to_string(),
        None => "1970-01-01".to_string(),
    }
}

/// Milliseconds from `ms` to the next local midnight.
fn to_midnight(ms: u64) -> u64 {
    let next = chrono::Local
        .timestamp_millis_opt(signed(ms))
        .single()
        .and_then(|t| t.date_naive().succ_opt())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|d| chrono::Local.from_local_datetime(&d).earliest());
    next.map_or(86_400_000, |n| {
        u64::try_from(n.timestamp_millis())
            .unwrap_or(0)
            .saturating_sub(ms)
    })
}

fn plus(base: u64, delta: i8) -> u64 {
    base.saturating_add_signed(i64::from(delta)).max(1)
}

impl Model {
    pub fn new(now: u64, ttl: Ttls) -> Model {
        Model {
            now,
            ttl,
            connected: vec![true; TERMINALS.len()],
            grace_ends: vec![None; TERMINALS.len()],
            leases: BTreeMap::new(),
            locks: BTreeMap::new(),
            orders: BTreeMap::new(),
            order_events: BTreeMap::new(),
            tables: BTreeMap::new(),
            products: BTreeMap::new(),
            inv_events: BTreeMap::new(),
            tickets: BTreeMap::new(),
            notices: vec![Vec::new(); TERMINALS.len()],
            seq_slot: None,
            fired: BTreeMap::new(),
        }
    }

    /// Applies `op` to the model and says what the runner must do and expect.
    pub fn step(&mut self, op: &Op) -> Plan {
        self.seq_slot = None;
        match op {
            Op::Disconnect { t } => self.disconnect(*t),
            Op::Reconnect { t } => self.reconnect(*t),
            Op::Advance(s) => Plan::Advance(self.advance(*s)),
            _ => match self.request(op) {
                Some((t, frame, expect)) => Plan::Send { t, frame, expect },
                None => Plan::Skip,
            },
        }
    }

    /// The sender, frame and expected answer of a request, applied to the model; `None` (and
    /// nothing changed) if its terminal is not connected.
    fn request(&mut self, op: &Op) -> Option<(usize, Value, Value)> {
        let t = self.sender(op)?;
        if !self.connected[t] {
            return None;
        }
        let (frame, expect) = match op {
            Op::LeaseAcquire { o, .. } => self.lease_acquire(t, ORDERS[*o]),
            Op::LeaseHeartbeat { o, .. } => self.lease_heartbeat(t, ORDERS[*o]),
            Op::LeaseRelease { o, .. } => self.lease_release(t, ORDERS[*o]),
            Op::Snapshot(s) => self.snapshot(t, s),
            Op::Lock { table, force, .. } => self.lock(t, *table, *force),
            Op::LockHeartbeat { table, .. } => self.lock_heartbeat(t, *table),
            Op::Unlock { table, .. } => self.unlock(t, *table),
            Op::Ticket { order_type, .. } => self.ticket(ORDER_TYPES[*order_type]),
            Op::Adjust {
                product,
                delta,
                event,
                ..
            } => self.adjust(t, *product, *delta, *event),
            Op::Disconnect { .. } | Op::Reconnect { .. } | Op::Advance(_) => return None,
        };
        Some((t, frame, expect))
    }

    /// The terminal that sends a request operation (`None` for the others).
    fn sender(&self, op: &Op) -> Option<usize> {
        let lease = |o: usize| self.leases.get(ORDERS[o]).map(|l| l.t);
        let lock = |id: Id| self.locks.get(&id_key(id)).map(|l| l.t);
        let (by, holder) = match op {
            Op::LeaseHeartbeat { by, o } | Op::LeaseRelease { by, o } => (*by, lease(*o)),
            Op::Snapshot(s) => (s.by, lease(s.o)),
            Op::LockHeartbeat { by, table } | Op::Unlock { by, table } => (*by, lock(*table)),
            Op::LeaseAcquire { t, .. }
            | Op::Lock { t, .. }
            | Op::Ticket { t, .. }
            | Op::Adjust { t, .. } => (Who::T(*t), None),
            Op::Disconnect { .. } | Op::Reconnect { .. } | Op::Advance(_) => return None,
        };
        Some(match by {
            Who::T(t) => t,
            Who::Holder { or } => holder.filter(|&h| self.connected[h]).unwrap_or(or),
        })
    }

    /// The hub acknowledged the last request with `seq`: a resend of its eventId must get it.
    pub fn note_seq(&mut self, seq: u64) {
        match self.seq_slot.take() {
            Some(SeqSlot::Order(id)) => {
                if let Some(e) = self.order_events.get_mut(&id) {
                    e.2 = seq;
                }
            }
            Some(SeqSlot::Inventory(id)) => {
                if let Some(e) = self.inv_events.get_mut(&id) {
                    e.1 = seq;
                }
            }
            None => {}
        }
    }

    /// The notices terminal `t` must have received since it connected (and forgets them).
    pub fn take_notices(&mut self, t: usize) -> Vec<Value> {
        std::mem::take(&mut self.notices[t])
    }

    /// Terminals connected now.
    pub fn connected(&self) -> Vec<usize> {
        (0..TERMINALS.len())
            .filter(|&t| self.connected[t])
            .collect()
    }

    fn fired(&mut self, rule: &'static str) {
        *self.fired.entry(rule).or_insert(0) += 1;
    }

    fn notify(&mut self, t: usize, v: Value) {
        if self.connected[t] {
            self.notices[t].push(v);
        }
    }

    fn lease_acquire(&mut self, t: usize, p: &str) -> (Value, Value) {
        let frame = json!({"type": "LEASE_ACQUIRE", "posReference": p});
        if let Some(l) = self.leases.get(p) {
            if l.t != t && l.expires > self.now {
                let holder = json!({"terminalId": name(l.t), "name": name(l.t)});
                let denied = json!({"type": "LEASE_DENIED", "posReference": p,
                    "holder": holder, "expiresAt": l.expires});
                return (frame, denied);
            }
        }
        let expires = self.now + self.ttl.lease;
        self.leases.insert(p.to_string(), Lease { t, expires });
        let granted = json!({"type": "LEASE_GRANTED", "posReference": p, "expiresAt": expires,
            "ttlMs": self.ttl.lease});
        (frame, granted)
    }

    fn lease_heartbeat(&mut self, t: usize, p: &str) -> (Value, Value) {
        let frame = json!({"type": "LEASE_HEARTBEAT", "posReference": p});
        let expires = self.now + self.ttl.lease;
        match self.leases.get_mut(p) {
            Some(l) if l.t == t => {
                l.expires = expires;
                let renewed =
                    json!({"type": "LEASE_RENEWED", "posReference": p, "expiresAt": expires});
                (frame, renewed)
            }
            _ => {
                let revoked =
                    json!({"type": "LEASE_REVOKED", "posReference": p, "reason": "not_holder"});
                (frame, revoked)
            }
        }
    }

    fn lease_release(&mut self, t: usize, p: &str) -> (Value, Value) {
        if self.leases.get(p).is_some_and(|l| l.t == t) {
            self.leases.remove(p);
        }
        let frame = json!({"type": "LEASE_RELEASE", "posReference": p});
        (frame, json!({"type": "LEASE_RELEASED", "posReference": p}))
    }

    fn snapshot(&mut self, t: usize, s: &Snapshot) -> (Value, Value) {
        let p = ORDERS[s.o];
        let current = self.orders.get(p).map_or(0, |o| o.version);
        let base = match s.base {
            Base::Current => current,
            Base::Stale => current.saturating_sub(1),
            Base::Ahead => current + 1,
            Base::Zero => 0,
        };
        let mut snap = json!({"posReference": p, "state": STATES[s.state], "lines": []});
        if let Some(table) = s.table {
            snap["tableId"] = id_json(table);
        }
        let mut frame = json!({"type": "ORDER_SNAPSHOT", "posReference": p, "baseVersion": base,
            "snapshot": snap});
        let event = s.event.map(|e| format!("ev-{}", e % EVENT_IDS));
        if let Some(e) = &event {
            frame["eventId"] = json!(e);
        }
        let expect = self.write(t, s, base, snap, event);
        (frame, expect)
    }

    /// Rules of `ORDER_SNAPSHOT`, in the order the protocol states them.
    fn write(
        &mut self,
        t: usize,
        s: &Snapshot,
        base: u64,
        snap: Value,
        event: Option<String>,
    ) -> Value {
        let p = ORDERS[s.o];
        // A resent eventId is answered with its original acknowledgement, lease or not.
        if let Some((order, version, seq)) = event.as_ref().and_then(|e| self.order_events.get(e)) {
            return if order == p {
                json!({"type": "ORDER_ACK", "posReference": p, "version": version, "seq": seq})
            } else {
                error("duplicate_event_id")
            };
        }
        let holds_lease = self.leases.get(p).is_some_and(|l| l.t == t);
        if !holds_lease {
            return error("lease_required");
        }
        let current = self.orders.get(p);
        let version = current.map_or(0, |o| o.version);
        if base < version {
            let stored = current.map_or(Value::Null, |o| o.snapshot.clone());
            return json!({"type": "CONFLICT", "posReference": p, "currentVersion": version,
                "snapshot": stored});
        }
        let table = s.table.map(|id| (id_key(id), id_json(id)));
        let prev = current.and_then(|o| o.table.clone());
        let order = Order {
            version: version + 1,
            snapshot: snap,
            table: table.clone(),
        };
        self.orders.insert(p.to_string(), order);
        if let Some(e) = event {
            self.order_events
                .insert(e.clone(), (p.to_string(), version + 1, 0));
            self.seq_slot = Some(SeqSlot::Order(e));
        }
        let finished = matches!(STATES[s.state], "paid" | "cancelled");
        self.follow_table(p, prev, table, finished);
        json!({"type": "ORDER_ACK", "posReference": p, "version": version + 1})
    }

    /// The table an order left, or a finished order's table, becomes available (if that order
    /// is the one occupying it); the table of an open order becomes occupied by it.
    fn follow_table(
        &mut self,
        p: &str,
        prev: Option<(String, Value)>,
        table: Option<(String, Value)>,
        finished: bool,
    ) {
        let new_key = table.as_ref().map(|(k, _)| k.clone());
        if let Some((k, _)) = prev.filter(|(k, _)| Some(k) != new_key.as_ref()) {
            self.free_table(&k, p);
        }
        let Some((k, json)) = table else { return };
        if finished {
            self.free_table(&k, p);
            return;
        }
        let occupied = Table {
            json,
            status: "occupied",
            order: Some(p.to_string()),
        };
        let already = self
            .tables
            .get(&k)
            .is_some_and(|c| c.status == "occupied" && c.order.as_deref() == Some(p));
        if !already {
            self.tables.insert(k, occupied);
        }
    }

    fn free_table(&mut self, key: &str, p: &str) {
        if let Some(c) = self.tables.get_mut(key) {
            if c.order.as_deref() == Some(p) {
                c.status = "available";
                c.order = None;
            }
        }
    }
}

#[path = "rules_more.rs"]
mod more;
