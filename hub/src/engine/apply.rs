//! How each terminal request changes state: connection lifecycle, leases, orders (with the
//! automatic table status), tables, floor plans, ticket numbers and explicit sync requests.
//! Every function runs inside the batch's write transaction; its replies and broadcasts are
//! queued in `self.out` and leave only after the commit.

use std::sync::Arc;

use redb::ReadableTable;
use serde_json::Value;

use super::{Cmd, Engine, Out, Session, Tx};
use crate::engine::outbox::Frame;
use crate::protocol::inbound::{FloorPlanMsg, OrderSnapshotMsg, TableId, TableUpdateMsg};
use crate::protocol::{outbound, Inbound};
use crate::store::records::*;
use crate::store::StoreError;

impl Engine {
    pub(super) fn request(
        &mut self,
        tx: &mut Tx,
        s: &Arc<Session>,
        rid: Option<Value>,
        msg: Inbound,
    ) -> Result<(), StoreError> {
        // Before applying: a request whose own write fails is told too.
        self.askers.push((s.outbox.clone(), rid.clone()));
        let r = rid.as_ref();
        // Only a registered connection acts: not one whose AUTH the engine refused (its close
        // is on the way), nor one replaced by a newer connection of its terminal.
        if !self.reg.has_conn(s.conn_id) {
            let text = outbound::error("not_authenticated", "this connection is not registered", r);
            self.reply(s, text);
            return Ok(());
        }
        match msg {
            Inbound::LeaseAcquire(p) => self.lease_acquire(tx, s, &p, r)?,
            Inbound::LeaseHeartbeat(p) => self.lease_heartbeat(tx, s, &p, r)?,
            Inbound::LeaseRelease(p) => self.lease_release(tx, s, &p, r)?,
            Inbound::OrderSnapshot(m) => self.order_snapshot(tx, s, m, r)?,
            Inbound::TableUpdate(m) => self.table_update(tx, s, m, r)?,
            Inbound::TableLockAcquire(t) => self.lock_acquire(tx, s, &t, false, r)?,
            Inbound::TableLockForceAcquire(t) => self.lock_acquire(tx, s, &t, true, r)?,
            Inbound::TableLockHeartbeat(t) => self.lock_heartbeat(tx, s, &t, r)?,
            Inbound::TableLockRelease(t) => self.lock_release(tx, s, &t, r)?,
            Inbound::FloorPlanUpdate(m) => self.floor_plan(tx, s, m, r)?,
            Inbound::TicketNumberRequest(t) => self.ticket_number(tx, s, &t, r)?,
            Inbound::SyncRequest(cursor) => {
                self.out.push(Out::To(
                    s.outbox.clone(),
                    Frame::CatchUp {
                        after: cursor,
                        to: self.seq,
                    },
                ));
            }
            Inbound::KitchenTicket(m) => self.kitchen_ticket(tx, s, m, r)?,
            Inbound::KitchenTicketStatus(m) => self.kitchen_status(tx, s, m, r)?,
            Inbound::InventoryAdjust(m) => self.inventory_adjust(tx, s, m, r)?,
            Inbound::Subscribe(mask) => self.subscribe(s, mask, r),
            Inbound::Ping | Inbound::Auth(_) => {}
        }
        Ok(())
    }

    pub(super) fn connected(
        &mut self,
        tx: &mut Tx,
        s: Arc<Session>,
        cursor: Option<u64>,
        rid: Option<Value>,
    ) -> Result<(), StoreError> {
        if s.outbox.is_closed() {
            return Ok(()); // gone before it could be registered
        }
        if !self.claim_terminal(tx, &s)? {
            self.refuse_claim(&s, rid.as_ref());
            return Ok(());
        }
        self.admit(s, cursor, rid);
        Ok(())
    }

    /// Registers an authenticated session whose terminal claim passed: `AUTH_OK`, the 4000
    /// close of a connection it replaces, and catch-up from its cursor.
    pub(super) fn admit(&mut self, s: Arc<Session>, cursor: Option<u64>, rid: Option<Value>) {
        self.disconnected.remove(&s.terminal_id);
        self.joined.push(s.outbox.clone());
        if let Some(old) = self.reg.register(s.clone(), self.seq) {
            tracing::info!(terminal = %s.terminal_id, "terminal reconnected; closing its previous socket");
            self.out.push(Out::To(
                old.outbox.clone(),
                Frame::Close {
                    code: 4000,
                    reason: "replaced by a new connection",
                },
            ));
        }
        let ok = outbound::auth_ok(&outbound::AuthOk {
            terminal_id: &s.terminal_id,
            uid_json: &s.uid_json,
            role: s.role.as_str(),
            name: &s.name,
            tenant_id: &self.cfg.tenant_id,
            store_id: &self.cfg.store_id,
            hub_version: crate::VERSION,
            seq: self.seq,
            server_time: self.now_ms,
        });
        self.out.push(Out::To(
            s.outbox.clone(),
            Frame::text(outbound::reply(ok, rid.as_ref())),
        ));
        if let Some(after) = cursor {
            self.out.push(Out::To(
                s.outbox.clone(),
                Frame::CatchUp {
                    after,
                    to: self.seq,
                },
            ));
        }
        self.stats
            .terminals
            .store(self.reg.len(), std::sync::atomic::Ordering::Relaxed);
    }

    pub(super) fn disconnected(&mut self, conn_id: u64) {
        let Some(s) = self.reg.unregister(conn_id) else {
            return;
        };
        self.stats
            .terminals
            .store(self.reg.len(), std::sync::atomic::Ordering::Relaxed);
        if self.reg.is_connected(&s.terminal_id) {
            return; // replaced by a newer connection of the same terminal
        }
        // Leases and locks stay with the terminal for the grace period. It ends at the first of
        // the timer below and the lease tick that sees the engine clock past `ends`.
        let grace = self.cfg.grace;
        let ends = self.now_ms + grace.as_millis() as u64;
        self.disconnected
            .insert(s.terminal_id.clone(), (conn_id, ends));
        let tx = self.tx.clone();
        let terminal_id = s.terminal_id.clone();
        self.rt.spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = tx.send(Cmd::GraceExpired {
                terminal_id,
                conn_id,
            });
        });
    }

    fn lease_acquire(
        &mut self,
        tx: &mut Tx,
        s: &Session,
        p: &str,
        r: Option<&Value>,
    ) -> Result<(), StoreError> {
        if let Some(l) = self.leases.get(p) {
            if l.terminal_id != s.terminal_id && l.expires_ms > self.now_ms {
                let msg = outbound::lease_denied(p, &l.terminal_id, &l.name, l.expires_ms);
                self.reply(s, outbound::reply(msg, r));
                return Ok(());
            }
        }
        let ttl = self.cfg.lease_ttl.as_millis() as u64;
        let rec = LeaseRec {
            terminal_id: s.terminal_id.clone(),
            name: s.name.clone(),
            uid_json: s.uid_json.clone(),
            granted_ms: self.now_ms,
            expires_ms: self.now_ms + ttl,
        };
        tx.leases.insert(p, enc(&rec).as_slice())?;
        self.dirty = true;
        let msg = outbound::lease_granted(p, rec.expires_ms, ttl);
        self.leases.insert(p.to_string(), rec);
        self.reply(s, outbound::reply(msg, r));
        Ok(())
    }

    fn lease_heartbeat(
        &mut self,
        tx: &mut Tx,
        s: &Session,
        p: &str,
        r: Option<&Value>,
    ) -> Result<(), StoreError> {
        let ttl = self.cfg.lease_ttl.as_millis() as u64;
        let now = self.now_ms;
        match self.leases.get_mut(p) {
            Some(l) if l.terminal_id == s.terminal_id => {
                l.expires_ms = now + ttl;
                let msg = outbound::lease_renewed(p, l.expires_ms);
                tx.leases.insert(p, enc(&*l).as_slice())?;
                self.dirty = true;
                self.reply(s, outbound::reply(msg, r));
            }
            _ => {
                let msg = outbound::lease_revoked(p, "not_holder");
                self.reply(s, outbound::reply(msg, r));
            }
        }
        Ok(())
    }

    fn lease_release(
        &mut self,
        tx: &mut Tx,
        s: &Session,
        p: &str,
        r: Option<&Value>,
    ) -> Result<(), StoreError> {
        if self
            .leases
            .get(p)
            .is_some_and(|l| l.terminal_id == s.terminal_id)
        {
            self.leases.remove(p);
            tx.leases.remove(p)?;
            self.dirty = true;
        }
        self.reply(s, outbound::reply(outbound::lease_released(p), r));
        Ok(())
    }

    fn order_snapshot(
        &mut self,
        tx: &mut Tx,
        s: &Session,
        m: OrderSnapshotMsg,
        r: Option<&Value>,
    ) -> Result<(), StoreError> {
        let p = m.pos_reference.as_str();
        // 1. A resent eventId answers with the original acknowledgement and changes nothing.
        if let Some(id) = &m.event_id {
            if let Some(g) = tx.event_ids.get(id.as_str())? {
                let a: AppliedRec = dec(g.value())?;
                let text = if a.pos_reference == p {
                    outbound::order_ack(p, a.version, a.seq, r)
                } else {
                    outbound::error(
                        "duplicate_event_id",
                        "this eventId was already used for another order",
                        r,
                    )
                };
                self.reply(s, text);
                return Ok(());
            }
        }
        // 2. Single writer: the sender must hold the order's lease.
        let holds = self
            .leases
            .get(p)
            .is_some_and(|l| l.terminal_id == s.terminal_id);
        if !holds {
            let text = outbound::error(
                "lease_required",
                &format!("acquire the lease on {p} before writing it"),
                r,
            );
            self.reply(s, text);
            return Ok(());
        }
        // 3. Optimistic versioning against the stored order.
        let stored: Option<OrderRec> = tx.orders.get(p)?.map(|g| dec(g.value())).transpose()?;
        let current = stored.as_ref().map_or(0, |o| o.version);
        if m.base_version < current {
            let snap = stored
                .as_ref()
                .map_or(Value::Null, |o| outbound::raw(&o.snapshot_json));
            let msg = outbound::conflict(p, current, snap);
            self.reply(s, outbound::reply(msg, r));
            return Ok(());
        }
        // 4. Store the new version and its event in this transaction.
        let version = current + 1;
        let terminal = s.terminal_id.clone();
        let seq = self.append(
            tx,
            "order_snapshot",
            Some(p),
            &terminal,
            true,
            Some(s.conn_id),
            |seq, ts| outbound::order_updated(p, version, &m.snapshot, &terminal, seq, ts),
        )?;
        let table_key = m.table.as_ref().map(|t| t.key.clone());
        let rec = OrderRec {
            version,
            seq,
            state: m.state.clone(),
            table_key: table_key.clone(),
            terminal_id: terminal.clone(),
            updated_ms: self.now_ms,
            snapshot_json: m.snapshot.get().to_string(),
        };
        tx.orders.insert(p, enc(&rec).as_slice())?;
        if let Some(id) = &m.event_id {
            let a = AppliedRec {
                pos_reference: p.to_string(),
                version,
                seq,
                ts_ms: self.now_ms,
            };
            tx.event_ids.insert(id.as_str(), enc(&a).as_slice())?;
        }
        self.reply(s, outbound::order_ack(p, version, seq, r));
        // 5. Automatic table status: a table that an order left, or that a finished order
        // occupied, becomes available; the order's table becomes occupied.
        let prev_table = stored.and_then(|o| o.table_key);
        let finished = m.state == "paid" || m.state == "cancelled";
        if let Some(prev) = prev_table.filter(|k| Some(k) != table_key.as_ref()) {
            self.free_table_of(tx, &prev, p, &terminal)?;
        }
        if let Some(t) = &m.table {
            if finished {
                self.free_table_of(tx, &t.key, p, &terminal)?;
            } else {
                let cur: Option<TableRec> = tx
                    .tables
                    .get(t.key.as_str())?
                    .map(|g| dec(g.value()))
                    .transpose()?;
                let already = cur.is_some_and(|c| {
                    c.status == "occupied" && c.pos_reference.as_deref() == Some(p)
                });
                if !already {
                    self.set_table(tx, &t.key, &t.json, "occupied", Some(p), &terminal)?;
                }
            }
        }
        Ok(())
    }

    /// Makes a table available if (and only if) this order is the one occupying it.
    fn free_table_of(
        &mut self,
        tx: &mut Tx,
        key: &str,
        p: &str,
        terminal: &str,
    ) -> Result<(), StoreError> {
        let cur: Option<TableRec> = tx.tables.get(key)?.map(|g| dec(g.value())).transpose()?;
        if let Some(c) = cur.filter(|c| c.pos_reference.as_deref() == Some(p)) {
            self.set_table(tx, key, &c.table_id_json, "available", None, terminal)?;
        }
        Ok(())
    }

    fn set_table(
        &mut self,
        tx: &mut Tx,
        key: &str,
        id_json: &str,
        status: &str,
        p: Option<&str>,
        terminal: &str,
    ) -> Result<(), StoreError> {
        let rec = TableRec {
            table_id_json: id_json.to_string(),
            status: status.to_string(),
            pos_reference: p.map(str::to_string),
            terminal_id: Some(terminal.to_string()),
            updated_ms: self.now_ms,
        };
        tx.tables.insert(key, enc(&rec).as_slice())?;
        self.append(tx, "table_update", p, terminal, false, None, |seq, ts| {
            outbound::table_updated(id_json, status, p, terminal, seq, ts)
        })?;
        Ok(())
    }

    fn table_update(
        &mut self,
        tx: &mut Tx,
        s: &Session,
        m: TableUpdateMsg,
        _r: Option<&Value>,
    ) -> Result<(), StoreError> {
        let TableId { json, key } = m.table;
        self.set_table(
            tx,
            &key,
            &json,
            &m.status,
            m.pos_reference.as_deref(),
            &s.terminal_id,
        )
    }

    fn floor_plan(
        &mut self,
        tx: &mut Tx,
        s: &Session,
        m: FloorPlanMsg,
        r: Option<&Value>,
    ) -> Result<(), StoreError> {
        let rec = FloorRec {
            floor_id_json: m.floor_id.json.clone(),
            tables_json: m.tables.get().to_string(),
            layout_mode_json: m.layout_mode.as_ref().map(|l| l.get().to_string()),
            terminal_id: s.terminal_id.clone(),
            updated_ms: self.now_ms,
        };
        tx.floors
            .insert(m.floor_id.key.as_str(), enc(&rec).as_slice())?;
        let seq = self.append(
            tx,
            "floor_plan",
            None,
            &s.terminal_id,
            false,
            Some(s.conn_id),
            |seq, ts| {
                let plan = outbound::FloorPlan {
                    floor_id_json: &rec.floor_id_json,
                    tables_json: &rec.tables_json,
                    layout_mode_json: rec.layout_mode_json.as_deref(),
                    terminal_id: &rec.terminal_id,
                };
                outbound::floor_plan_changed(&plan, seq, ts)
            },
        )?;
        let ack = outbound::floor_plan_saved(&m.floor_id.json, seq);
        self.reply(s, outbound::reply(ack, r));
        Ok(())
    }

    fn ticket_number(
        &mut self,
        tx: &mut Tx,
        s: &Session,
        order_type: &str,
        r: Option<&Value>,
    ) -> Result<(), StoreError> {
        let date = business_date(self.now_ms);
        let key = format!("{date}/{order_type}");
        let n = tx
            .tickets
            .get(key.as_str())?
            .map(|g| g.value())
            .unwrap_or(0)
            + 1;
        tx.tickets.insert(key.as_str(), n)?;
        self.dirty = true;
        let msg = outbound::ticket_number(order_type, n, &date);
        self.reply(s, outbound::reply(msg, r));
        Ok(())
    }
}

/// The store's business day: the local calendar date of `ms`.
pub fn business_date(ms: u64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_millis_opt(ms as i64).single() {
        Some(t) => t.format("%Y-%m-%d").to_string(),
        None => "1970-01-01".to_string(),
    }
}
