//! Order leases: one writer per order. Acquire, heartbeat (renew), release, and expiry on the
//! lease tick by the engine clock.

use super::{Engine, Out, Session, Tx};
use crate::engine::outbox::Frame;
use crate::protocol::outbound;
use crate::store::records::{enc, LeaseRec};
use crate::store::StoreError;
use serde_json::Value;

impl Engine {
    pub(super) fn lease_acquire(
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
        let ttl = crate::clock::millis(self.cfg.lease_ttl);
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

    pub(super) fn lease_heartbeat(
        &mut self,
        tx: &mut Tx,
        s: &Session,
        p: &str,
        r: Option<&Value>,
    ) -> Result<(), StoreError> {
        let ttl = crate::clock::millis(self.cfg.lease_ttl);
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

    pub(super) fn lease_release(
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

    /// Revokes every lease past its expiry and tells the holder; ends the grace periods that
    /// are over by the engine clock.
    /// Runs the expiry of leases, table locks and grace periods at the first batch at or after
    /// their end, not only at the next tick: a write or heartbeat on a lease that has run out
    /// is refused (`lease_required`, `LEASE_REVOKED not_holder`) whenever it arrives, as the
    /// protocol says, instead of depending on when the tick last ran. (Found by the model test.)
    pub(super) fn expire_due(&mut self, tx: &mut Tx) -> Result<(), StoreError> {
        let now = self.now_ms;
        if self.leases.values().any(|l| l.expires_ms <= now)
            || self.disconnected.values().any(|&(_, ends)| ends <= now)
        {
            self.lease_tick(tx)?;
        }
        if self.locks.values().any(|l| l.expires_ms <= now) {
            self.lock_tick(tx)?;
        }
        Ok(())
    }

    pub(super) fn lease_tick(&mut self, tx: &mut Tx) -> Result<(), StoreError> {
        let now = self.now_ms;
        let graces_over: Vec<(String, u64)> = self
            .disconnected
            .iter()
            .filter(|(_, &(_, ends))| ends <= now)
            .map(|(t, &(c, _))| (t.clone(), c))
            .collect();
        for (terminal, conn_id) in graces_over {
            self.grace_expired(tx, &terminal, conn_id)?;
        }
        let expired: Vec<String> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires_ms <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for p in expired {
            if let Some(l) = self.leases.remove(&p) {
                tx.leases.remove(p.as_str())?;
                self.dirty = true;
                if let Some(holder) = self.reg.by_terminal(&l.terminal_id) {
                    let msg = outbound::lease_revoked(&p, "expired");
                    self.out
                        .push(Out::To(holder.outbox.clone(), Frame::text(msg.to_string())));
                }
            }
        }
        Ok(())
    }
}
