//! Connection lifecycle in the engine: a terminal connects (`connected`, `admit`), goes
//! (`disconnected`), and keeps its leases and table locks for the grace period, which ends by the
//! engine clock (`grace_expired`, also checked on every lease tick).

use std::sync::Arc;

use serde_json::Value;

use super::{Cmd, Engine, Out, Session, Tx};
use crate::engine::outbox::Frame;
use crate::protocol::outbound;
use crate::store::StoreError;

impl Engine {
    pub(super) fn connected(
        &mut self,
        tx: &mut Tx,
        s: &Arc<Session>,
        cursor: Option<u64>,
        rid: Option<&Value>,
    ) -> Result<(), StoreError> {
        if s.outbox.is_closed() {
            return Ok(()); // gone before it could be registered
        }
        if !self.claim_terminal(tx, s)? {
            self.refuse_claim(s, rid);
            return Ok(());
        }
        self.admit(s, cursor, rid);
        Ok(())
    }

    /// Registers an authenticated session whose terminal claim passed: `AUTH_OK`, the 4000
    /// close of a connection it replaces, and catch-up from its cursor.
    pub(super) fn admit(&mut self, s: &Arc<Session>, cursor: Option<u64>, rid: Option<&Value>) {
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
            Frame::text(outbound::reply(ok, rid)),
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
        let ends = self.now_ms + crate::clock::millis(grace);
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

    /// The grace period of a terminal that did not come back: its leases and locks go.
    pub(super) fn grace_expired(
        &mut self,
        tx: &mut Tx,
        terminal: &str,
        conn_id: u64,
    ) -> Result<(), StoreError> {
        match self.disconnected.get(terminal) {
            Some(&(c, ends)) if c == conn_id && ends <= self.now_ms => {}
            _ => return Ok(()),
        }
        if self.reg.is_connected(terminal) {
            return Ok(());
        }
        self.disconnected.remove(terminal);
        let leases: Vec<String> = self
            .leases
            .iter()
            .filter(|(_, l)| l.terminal_id == terminal)
            .map(|(k, _)| k.clone())
            .collect();
        for p in &leases {
            self.leases.remove(p);
            tx.leases.remove(p.as_str())?;
            self.dirty = true;
        }
        let locks: Vec<String> = self
            .locks
            .iter()
            .filter(|(_, l)| l.terminal_id == terminal)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &locks {
            self.locks.remove(k);
            tx.locks.remove(k.as_str())?;
        }
        if !leases.is_empty() || !locks.is_empty() {
            tracing::info!(
                terminal,
                leases = leases.len(),
                locks = locks.len(),
                "grace period over; released"
            );
        }
        if !locks.is_empty() {
            self.locks_state(tx, "hub", None)?;
        }
        Ok(())
    }
}
