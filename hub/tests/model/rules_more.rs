//! The rest of the model's rules: table locks, ticket numbers, inventory, connections and time,
//! and the final state the hub must show.

use super::*;

impl Model {
    pub(super) fn lock(&mut self, t: usize, table: Id, force: bool) -> (Value, Value) {
        let ty = if force {
            "TABLE_LOCK_FORCE_ACQUIRE"
        } else {
            "TABLE_LOCK_ACQUIRE"
        };
        let (key, json) = (id_key(table), id_json(table));
        let frame = json!({"type": ty, "tableId": json});
        if force && !may_force(t) {
            return (frame, error("forbidden"));
        }
        if let Some(l) = self.locks.get(&key).cloned() {
            if l.t != t && l.expires > self.now {
                if !force {
                    let holder = json!({"terminalId": name(l.t), "userName": name(l.t),
                        "expiresAt": l.expires});
                    let denied = json!({"type": "TABLE_LOCK_DENIED", "tableId": json,
                        "holder": holder});
                    return (frame, denied);
                }
                let revoked = json!({"type": "TABLE_LOCK_REVOKED", "tableId": json,
                    "reason": "forced"});
                self.notify(l.t, revoked);
            }
        }
        let expires = self.now + self.ttl.lock;
        let lock = Lock {
            t,
            expires,
            json: json.clone(),
        };
        self.locks.insert(key, lock);
        let granted = json!({"type": "TABLE_LOCK_GRANTED", "tableId": json, "expiresAt": expires});
        (frame, granted)
    }

    pub(super) fn lock_heartbeat(&mut self, t: usize, table: Id) -> (Value, Value) {
        let json = id_json(table);
        let frame = json!({"type": "TABLE_LOCK_HEARTBEAT", "tableId": json});
        let expires = self.now + self.ttl.lock;
        match self.locks.get_mut(&id_key(table)) {
            Some(l) if l.t == t => {
                l.expires = expires;
                let granted =
                    json!({"type": "TABLE_LOCK_GRANTED", "tableId": json, "expiresAt": expires});
                (frame, granted)
            }
            _ => {
                let revoked =
                    json!({"type": "TABLE_LOCK_REVOKED", "tableId": json, "reason": "not_holder"});
                (frame, revoked)
            }
        }
    }

    /// A release has no reply: the sender gets the `TABLE_LOCK_RELEASED` event, or an error.
    pub(super) fn unlock(&mut self, t: usize, table: Id) -> (Value, Value) {
        let (key, json) = (id_key(table), id_json(table));
        let frame = json!({"type": "TABLE_LOCK_RELEASE", "tableId": json});
        let holds_lock = self.locks.get(&key).is_some_and(|l| l.t == t);
        if !holds_lock {
            return (frame, error("not_lock_holder"));
        }
        self.locks.remove(&key);
        let released = json!({"type": "TABLE_LOCK_RELEASED", "tableId": json,
            "terminalId": name(t), "requestId": null});
        (frame, released)
    }

    /// Numbers count per order type and business day, from 1.
    pub(super) fn ticket(&mut self, order_type: &str) -> (Value, Value) {
        let date = business_date(self.now);
        let n = self
            .tickets
            .entry(format!("{date}/{order_type}"))
            .or_insert(0);
        *n += 1;
        let number = *n;
        if number == 1 && self.tickets.keys().any(|k| !k.starts_with(&date)) {
            self.fired("ticket number 1 on a later business day");
        }
        let frame = json!({"type": "TICKET_NUMBER_REQUEST", "orderType": order_type});
        let reply = json!({"type": "TICKET_NUMBER", "orderType": order_type, "number": number,
            "businessDate": date});
        (frame, reply)
    }

    /// One PN-counter per product; an eventId counts once, for one product only.
    pub(super) fn adjust(&mut self, t: usize, id: Id, delta: i64, event: u8) -> (Value, Value) {
        let (key, json) = (id_key(id), id_json(id));
        let event = format!("inv-{}", event % EVENT_IDS);
        let frame = json!({"type": "INVENTORY_ADJUST", "productId": json, "delta": delta,
            "eventId": event});
        if let Some((product, seq)) = self.inv_events.get(&event) {
            if *product != key {
                return (frame, error("duplicate_event_id"));
            }
            let level = self.products.get(&key).map_or(0, Product::level);
            let ack = json!({"type": "INVENTORY_ACK", "productId": json, "level": level,
                "seq": seq, "duplicate": true});
            return (frame, ack);
        }
        let product = self.products.entry(key.clone()).or_insert_with(|| Product {
            json: json.clone(),
            ..Product::default()
        });
        let side = if delta > 0 {
            &mut product.p
        } else {
            &mut product.n
        };
        *side.entry(name(t).to_string()).or_insert(0) += delta.unsigned_abs();
        let level = product.level();
        self.inv_events.insert(event.clone(), (key, 0));
        self.seq_slot = Some(SeqSlot::Inventory(event));
        let ack = json!({"type": "INVENTORY_ACK", "productId": json, "level": level,
            "duplicate": null});
        (frame, ack)
    }

    /// The socket goes; leases and locks stay for the grace period.
    pub(super) fn disconnect(&mut self, t: usize) -> Plan {
        if !self.connected[t] {
            return Plan::Skip;
        }
        self.connected[t] = false;
        self.grace_ends[t] = Some(self.now + self.ttl.grace);
        Plan::Disconnect(t)
    }

    /// The first terminal from `t` on that is not connected comes back; within the grace
    /// period it keeps what it held.
    pub(super) fn reconnect(&mut self, t: usize) -> Plan {
        let n = TERMINALS.len();
        let Some(t) = (t..t + n).map(|i| i % n).find(|&i| !self.connected[i]) else {
            return Plan::Skip;
        };
        self.connected[t] = true;
        if self.grace_ends[t].take().is_some() && self.holds_anything(t) {
            self.fired("reconnect within grace, still holding");
        }
        self.notices[t].clear();
        Plan::Reconnect(t)
    }

    fn holds_anything(&self, t: usize) -> bool {
        self.leases.values().any(|l| l.t == t) || self.locks.values().any(|l| l.t == t)
    }

    /// Moves time on and expires what is due; returns the ms moved.
    pub(super) fn advance(&mut self, step: Step) -> u64 {
        let ms = match step {
            Step::Ms(ms) => ms,
            Step::Grace(d) => plus(self.ttl.grace, d),
            Step::LeaseTtl(d) => plus(self.ttl.lease, d),
            Step::LockTtl(d) => plus(self.ttl.lock, d),
            Step::Midnight(d) => plus(to_midnight(self.now), d),
        };
        self.now += ms;
        self.expire();
        ms
    }

    /// What is due at `now` (`expires <= now`): grace periods over release everything their
    /// terminal held (it is not connected: nobody is told); leases and locks past their TTL go
    /// and their holder is told if it is connected.
    fn expire(&mut self) {
        let now = self.now;
        for t in 0..TERMINALS.len() {
            if self.grace_ends[t].is_some_and(|e| e <= now) {
                self.grace_ends[t] = None;
                let held = self.leases.len() + self.locks.len();
                self.leases.retain(|_, l| l.t != t);
                self.locks.retain(|_, l| l.t != t);
                if self.leases.len() + self.locks.len() < held {
                    self.fired("grace over: leases/locks released");
                }
            }
        }
        let leases: Vec<(String, Lease)> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires <= now)
            .map(|(p, l)| (p.clone(), l.clone()))
            .collect();
        for (p, l) in leases {
            self.leases.remove(&p);
            self.fired("lease expired");
            self.notify(
                l.t,
                json!({"type": "LEASE_REVOKED", "posReference": p, "reason": "expired"}),
            );
        }
        let locks: Vec<(String, Lock)> = self
            .locks
            .iter()
            .filter(|(_, l)| l.expires <= now)
            .map(|(k, l)| (k.clone(), l.clone()))
            .collect();
        for (k, l) in locks {
            self.locks.remove(&k);
            self.fired("lock expired");
            let revoked =
                json!({"type": "TABLE_LOCK_REVOKED", "tableId": l.json, "reason": "expired"});
            self.notify(l.t, revoked);
        }
    }

    /// Current leases: posReference -> holder and expiry (as `GET /status` lists them).
    pub fn leases_json(&self) -> Value {
        let m: Map<String, Value> = self
            .leases
            .iter()
            .map(|(p, l)| {
                let v = json!({"terminalId": name(l.t), "expiresAt": l.expires});
                (p.clone(), v)
            })
            .collect();
        Value::Object(m)
    }

    /// Current table locks: table key -> id as sent, holder, expiry (`GET /table-locks`).
    pub fn locks_json(&self) -> Value {
        let m: Map<String, Value> = self
            .locks
            .iter()
            .map(|(k, l)| {
                let v = json!({"tableId": l.json, "terminalId": name(l.t), "expiresAt": l.expires});
                (k.clone(), v)
            })
            .collect();
        Value::Object(m)
    }

    /// Everything the hub must show at the end, in the shape `driver::hub_state` reads it.
    pub fn state(&self) -> Value {
        let mut terminals: Vec<&str> = self.connected().into_iter().map(name).collect();
        terminals.sort_unstable();
        let orders: Map<String, Value> = self
            .orders
            .iter()
            .map(|(p, o)| {
                let table = o.table.as_ref().map_or(Value::Null, |(_, j)| j.clone());
                let state = o.snapshot["state"].clone();
                let v = json!({"version": o.version, "state": state, "tableId": table});
                (p.clone(), v)
            })
            .collect();
        let tables: Map<String, Value> = self
            .tables
            .iter()
            .map(|(k, t)| {
                let v = json!({"tableId": t.json, "status": t.status, "posReference": t.order});
                (k.clone(), v)
            })
            .collect();
        let inventory: Map<String, Value> = self
            .products
            .iter()
            .map(|(k, p)| {
                let v = json!({"productId": p.json, "level": p.level(), "p": p.p, "n": p.n});
                (k.clone(), v)
            })
            .collect();
        json!({"terminals": terminals, "leases": self.leases_json(), "locks": self.locks_json(),
            "orders": orders, "tables": tables, "inventory": inventory, "tickets": self.tickets})
    }
}
