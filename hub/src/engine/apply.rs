//! The engine's dispatch: which function applies each terminal request (`request`) and each
//! command from the rest of the hub (`command`). The work is grouped by feature: `sessions`,
//! `leases`, `orders`, `tables`, `locks`, `kitchen`, `inventory`, `upstream`, `admin`,
//! `maintenance`. Every function runs inside the batch's write transaction; its replies and
//! broadcasts are queued in `self.out` and leave only after the commit.

use std::sync::Arc;

use serde_json::Value;

use super::{Cmd, Engine, Out, Session, Tx};
use crate::engine::outbox::Frame;
use crate::protocol::{outbound, Inbound};
use crate::store::StoreError;
use crate::store::META_LAST_TS;

impl Engine {
    pub(super) fn request(
        &mut self,
        tx: &mut Tx,
        s: &Arc<Session>,
        r: Option<&Value>,
        msg: Inbound,
    ) -> Result<(), StoreError> {
        // Before applying: a request whose own write fails is told too.
        self.askers.push((s.outbox.clone(), r.cloned()));
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
            Inbound::OrderSnapshot(m) => self.order_snapshot(tx, s, &m, r)?,
            Inbound::TableUpdate(m) => self.table_update(tx, s, m, r)?,
            Inbound::TableLockAcquire(t) => self.lock_acquire(tx, s, &t, false, r)?,
            Inbound::TableLockForceAcquire(t) => self.lock_acquire(tx, s, &t, true, r)?,
            Inbound::TableLockHeartbeat(t) => self.lock_heartbeat(tx, s, &t, r)?,
            Inbound::TableLockRelease(t) => self.lock_release(tx, s, &t, r)?,
            Inbound::FloorPlanUpdate(m) => self.floor_plan(tx, s, &m, r)?,
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
            Inbound::KitchenTicket(m) => self.kitchen_ticket(tx, s, &m, r)?,
            Inbound::KitchenTicketStatus(m) => self.kitchen_status(tx, s, m, r)?,
            Inbound::InventoryAdjust(m) => self.inventory_adjust(tx, s, &m, r)?,
            Inbound::Subscribe(mask) => self.subscribe(s, mask, r),
            Inbound::Ping | Inbound::Auth(_) => {}
        }
        Ok(())
    }

    pub(super) fn command(&mut self, tx: &mut Tx, cmd: Cmd) -> Result<(), StoreError> {
        match cmd {
            Cmd::Connected {
                session,
                cursor,
                request_id,
            } => return self.connected(tx, &session, cursor, request_id.as_ref()),
            Cmd::Disconnected { conn_id } => self.disconnected(conn_id),
            Cmd::GraceExpired {
                terminal_id,
                conn_id,
            } => return self.grace_expired(tx, &terminal_id, conn_id),
            Cmd::Resume { conn_id } => self.resume(conn_id),
            Cmd::LeaseTick => return self.lease_tick(tx),
            Cmd::LockTick => return self.lock_tick(tx),
            Cmd::StatusTick => self.status_tick(tx)?,
            Cmd::Probe(p) => {
                tx.meta.insert(META_LAST_TS, self.now_ms)?;
                self.probes.push(p);
            }
            Cmd::Compact => {
                let cutoff_ms = self.retention_cutoff();
                self.compact_kitchen(tx, cutoff_ms)?;
                self.prune_live(tx)?;
                self.retire_orders(tx)?;
                return self.compact(tx, cutoff_ms);
            }
            Cmd::Printed { station, key, done } => {
                self.printed(tx, station, key)?;
                self.probes.push(done);
            }
            Cmd::Upstream(c) => return self.upstream(tx, c),
            Cmd::Admin(a) => return self.admin(tx, a),
            Cmd::Request { .. } | Cmd::Shutdown => {}
        }
        Ok(())
    }
}
