//! Which token subject a terminal id belongs to (docs/protocol.md "Authentication and identity"). A
//! JWT's `sub` is the identity: a terminal token is its terminal, a device token names the terminal
//! it runs. The first subject to take a terminal id is bound to it (table `terminal_subjects`,
//! durable), and while that terminal is in use (connected, in its grace period, holding a lease or
//! a table lock) no other subject may take it: no connection of another subject replaces it (4000)
//! nor writes what it leased. An unused terminal id goes to the next subject that claims it,
//! so a replaced device can take over its till's name once the old one is gone. Odoo sessions
//! and open mode carry no subject and keep the plain rule (the terminalId given is used).

use redb::ReadableTable;
use serde_json::Value;

use super::{Engine, Out, Session, Tx};
use crate::engine::outbox::Frame;
use crate::protocol::outbound;
use crate::store::StoreError;

/// What a terminal claim can do while the database cannot be written.
pub(super) enum ReadOnlyClaim {
    /// Already bound to this subject (or no subject): no write needed.
    Admit,
    /// In use by another subject: `AUTH_FAIL terminal_mismatch`.
    Refuse,
    /// The binding would have to be written: refused like a write.
    NeedsWrite,
}

impl Engine {
    /// Binds `s.terminal_id` to the session's subject, unless it is in use by another subject
    /// (then false, and nothing changes). Sessions without a subject always pass.
    pub(super) fn claim_terminal(&mut self, tx: &mut Tx, s: &Session) -> Result<bool, StoreError> {
        let Some(sub) = s.subject.as_deref() else {
            return Ok(true);
        };
        let t = s.terminal_id.as_str();
        let bound = tx.subjects.get(t)?.map(|g| g.value() == sub);
        match bound {
            Some(true) => return Ok(true),
            Some(false) if self.terminal_in_use(t) => return Ok(false),
            _ => {}
        }
        tx.subjects.insert(t, sub)?;
        self.dirty = true;
        Ok(true)
    }

    /// The claim of [`Engine::claim_terminal`] decided without writing, for a database that
    /// cannot be written (disk full): a session whose terminal is already bound to its subject,
    /// or that has no subject, is admitted; a terminal in use by another subject is refused as
    /// always; a claim that would have to bind the terminal (first login of that subject) gets
    /// the storage refusal, since the binding could not be made durable.
    pub(super) fn claim_read_only(&self, s: &Session) -> ReadOnlyClaim {
        let Some(sub) = s.subject.as_deref() else {
            return ReadOnlyClaim::Admit;
        };
        let t = s.terminal_id.as_str();
        match self.store.terminal_subject(t) {
            Ok(Some(bound)) if bound == sub => ReadOnlyClaim::Admit,
            Ok(Some(_)) if self.terminal_in_use(t) => ReadOnlyClaim::Refuse,
            _ => ReadOnlyClaim::NeedsWrite,
        }
    }

    /// Answers a refused claim: `AUTH_FAIL terminal_mismatch`, then close 4003.
    pub(super) fn refuse_claim(&mut self, s: &Session, rid: Option<&Value>) {
        tracing::info!(
            terminal = %s.terminal_id,
            subject = s.subject.as_deref().unwrap_or_default(),
            "authentication refused: terminal in use by another token subject"
        );
        let msg = format!(
            "terminal {:?} is in use by another token subject",
            s.terminal_id
        );
        let fail = outbound::auth_fail("terminal_mismatch", &msg, rid);
        self.out.push(Out::To(s.outbox.clone(), Frame::text(fail)));
        self.out.push(Out::To(
            s.outbox.clone(),
            Frame::Close {
                code: 4003,
                reason: "authentication failed",
            },
        ));
    }

    /// Connected, within its grace period, or holding a lease or a table lock.
    fn terminal_in_use(&self, t: &str) -> bool {
        self.reg.is_connected(t)
            || self.disconnected.contains_key(t)
            || self.leases.values().any(|l| l.terminal_id == t)
            || self.locks.values().any(|l| l.terminal_id == t)
    }
}
