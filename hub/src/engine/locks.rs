//! Table locks: one terminal edits a table at a time, managers may force; unrenewed locks
//! expire on the lock tick by the engine clock.

use serde_json::{json, Value};

use super::{Engine, Out, Session, Tx};
use crate::engine::outbox::Frame;
use crate::protocol::{outbound, TableId};
use crate::store::records::{enc, LockRec};
use crate::store::StoreError;

impl Engine {
    pub(super) fn locks_json(&self) -> Value {
        let mut locks: Vec<&LockRec> = self.locks.values().collect();
        locks.sort_by(|a, b| a.table_id_json.cmp(&b.table_id_json));
        Value::Array(
            locks
                .into_iter()
                .map(|l| {
                    json!({"tableId": outbound::raw(&l.table_id_json), "terminalId": l.terminal_id,
                        "uid": outbound::raw(&l.uid_json), "userName": l.user_name, "expiresAt": l.expires_ms})
                })
                .collect(),
        )
    }

    /// Appends a `TABLE_LOCKS_STATE` event with every current lock.
    pub(super) fn locks_state(
        &mut self,
        tx: &mut Tx,
        terminal: &str,
        exclude: Option<u64>,
    ) -> Result<(), StoreError> {
        let locks = self.locks_json();
        self.append(
            tx,
            "table_lock",
            None,
            terminal,
            false,
            exclude,
            |seq, ts| outbound::table_locks_state(&locks, seq, ts),
        )?;
        Ok(())
    }

    pub(super) fn lock_acquire(
        &mut self,
        tx: &mut Tx,
        s: &Session,
        t: &TableId,
        force: bool,
        r: Option<&Value>,
    ) -> Result<(), StoreError> {
        if force && !s.role.may_force() {
            let text = outbound::error(
                "forbidden",
                "forcing a table lock needs the manager or admin role",
                r,
            );
            self.reply(s, text);
            return Ok(());
        }
        if let Some(l) = self.locks.get(&t.key) {
            let other = l.terminal_id != s.terminal_id && l.expires_ms > self.now_ms;
            if other && !force {
                let holder = outbound::LockHolder {
                    terminal_id: &l.terminal_id,
                    uid_json: &l.uid_json,
                    user_name: &l.user_name,
                    expires_at: l.expires_ms,
                };
                let msg = outbound::table_lock_denied(&t.json, &holder);
                self.reply(s, outbound::reply(msg, r));
                return Ok(());
            }
            if other {
                let revoked = outbound::table_lock_revoked(&t.json, "forced");
                if let Some(holder) = self.reg.by_terminal(&l.terminal_id) {
                    self.out.push(Out::To(
                        holder.outbox.clone(),
                        Frame::text(revoked.to_string()),
                    ));
                }
            }
        }
        let rec = LockRec {
            table_id_json: t.json.clone(),
            terminal_id: s.terminal_id.clone(),
            uid_json: s.uid_json.clone(),
            user_name: s.name.clone(),
            expires_ms: self.now_ms + crate::clock::millis(self.cfg.table_lock_ttl),
        };
        tx.locks.insert(t.key.as_str(), enc(&rec).as_slice())?;
        let granted = outbound::table_lock_granted(&t.json, rec.expires_ms);
        self.locks.insert(t.key.clone(), rec);
        self.reply(s, outbound::reply(granted, r));
        self.locks_state(tx, &s.terminal_id, Some(s.conn_id))
    }

    pub(super) fn lock_heartbeat(
        &mut self,
        tx: &mut Tx,
        s: &Session,
        t: &TableId,
        r: Option<&Value>,
    ) -> Result<(), StoreError> {
        let expires = self.now_ms + crate::clock::millis(self.cfg.table_lock_ttl);
        match self.locks.get_mut(&t.key) {
            Some(l) if l.terminal_id == s.terminal_id => {
                l.expires_ms = expires;
                tx.locks.insert(t.key.as_str(), enc(&*l).as_slice())?;
                self.dirty = true;
                let msg = outbound::table_lock_granted(&t.json, expires);
                self.reply(s, outbound::reply(msg, r));
            }
            _ => {
                let msg = outbound::table_lock_revoked(&t.json, "not_holder");
                self.reply(s, outbound::reply(msg, r));
            }
        }
        Ok(())
    }

    pub(super) fn lock_release(
        &mut self,
        tx: &mut Tx,
        s: &Session,
        t: &TableId,
        r: Option<&Value>,
    ) -> Result<(), StoreError> {
        if self
            .locks
            .get(&t.key)
            .is_none_or(|l| l.terminal_id != s.terminal_id)
        {
            let text = outbound::error(
                "not_lock_holder",
                "this terminal does not hold that table's lock",
                r,
            );
            self.reply(s, text);
            return Ok(());
        }
        self.locks.remove(&t.key);
        tx.locks.remove(t.key.as_str())?;
        let id = t.json.clone();
        let terminal = s.terminal_id.clone();
        self.append(tx, "table_lock", None, &terminal, false, None, |seq, ts| {
            outbound::table_lock_released(&id, &terminal, seq, ts)
        })?;
        Ok(())
    }

    /// Removes every table lock past its expiry, tells the holder and everyone else.
    pub(super) fn lock_tick(&mut self, tx: &mut Tx) -> Result<(), StoreError> {
        let now = self.now_ms;
        let expired: Vec<String> = self
            .locks
            .iter()
            .filter(|(_, l)| l.expires_ms <= now)
            .map(|(k, _)| k.clone())
            .collect();
        if expired.is_empty() {
            return Ok(());
        }
        for key in expired {
            if let Some(l) = self.locks.remove(&key) {
                tx.locks.remove(key.as_str())?;
                if let Some(holder) = self.reg.by_terminal(&l.terminal_id) {
                    let msg = outbound::table_lock_revoked(&l.table_id_json, "expired");
                    self.out
                        .push(Out::To(holder.outbox.clone(), Frame::text(msg.to_string())));
                }
            }
        }
        self.locks_state(tx, "hub", None)
    }
}
