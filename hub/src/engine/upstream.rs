//! Engine side of the upstream work (docs/upstream.md): the forwarder, the Odoo session check, the
//! register push and the cloud bridge run as tokio tasks that do the network I/O and report
//! outcomes here, where they are written in the batch's transaction like any terminal change.
//! Backoff is computed here so the durable `next_attempt_ms` and the retry count move together.

use rand::Rng;
use redb::ReadableTable;
use serde_json::Value;
use tokio::sync::oneshot;

use super::{Engine, Tx};
use crate::protocol::outbound;
use crate::store::records::{dec, enc, AppliedRec, DeadRec, OrderRec, PendingRec};
use crate::store::upstream::{RegisterRec, SessionRec, META_BRIDGE_CURSOR, META_REGISTER_ID};
use crate::store::{StoreError, META_FORWARDED};

/// Longest wait between two tries of one event or register.
const MAX_BACKOFF_MS: u64 = 10 * 60 * 1000;
/// Tries before a register push is dead-lettered (seed 004).
pub const REGISTER_MAX_TRIES: u32 = 5;

/// Outcomes of upstream work, recorded durably by the engine.
pub enum UpstreamCmd {
    /// These pending events reached every upstream: drop them from the queue.
    Forwarded {
        seqs: Vec<u64>,
        done: Option<oneshot::Sender<()>>,
    },
    /// Sending these pending events failed; `permanent` dead-letters at once.
    Failed {
        seqs: Vec<u64>,
        error: String,
        permanent: bool,
        done: Option<oneshot::Sender<()>>,
    },
    /// Move every dead letter (events and registers) back to the queue; answers how many.
    Requeue { done: oneshot::Sender<usize> },
    /// The upstream's health as the forwarder sees it.
    State {
        state: &'static str,
        last_ok_ms: Option<u64>,
    },
    /// Odoo accepted this session (key = sha256 of the session id).
    SessionValidated { key: String, rec: SessionRec },
    /// Odoo refused this session: forget any cached validation.
    SessionRejected { key: String },
    /// A new register to push to Odoo; answers its id.
    RegisterAdd { name: String, done: RegisterReply },
    /// Odoo created the register's `pos.config` with this id.
    RegisterPushed {
        id: u64,
        odoo_id: i64,
        done: Option<oneshot::Sender<()>>,
    },
    /// Pushing the register failed.
    RegisterFailed {
        id: u64,
        error: String,
        done: Option<oneshot::Sender<()>>,
    },
    /// Events pulled from the cloud bridge: apply, broadcast, and advance the cursor.
    BridgeApply {
        events: Vec<Value>,
        cursor: u64,
        done: Option<oneshot::Sender<()>>,
    },
}

/// Answer to `RegisterAdd`: the new register's id and record.
pub type RegisterReply = oneshot::Sender<(u64, RegisterRec)>;

/// Upstream tasks waiting for their outcome to be durable; answered after the commit, dropped
/// (so the task sees an error) when the commit fails.
#[derive(Default)]
pub struct Waiters {
    done: Vec<oneshot::Sender<()>>,
    requeued: Vec<(oneshot::Sender<usize>, usize)>,
    registered: Vec<(RegisterReply, u64, RegisterRec)>,
}

impl Waiters {
    /// The batch is durable: answer everyone.
    pub fn resolve(&mut self) {
        for d in self.done.drain(..) {
            let _ = d.send(());
        }
        for (d, n) in self.requeued.drain(..) {
            let _ = d.send(n);
        }
        for (d, id, rec) in self.registered.drain(..) {
            let _ = d.send((id, rec));
        }
    }

    /// The batch was lost: dropping the senders tells the waiting tasks.
    pub fn discard(&mut self) {
        *self = Waiters::default();
    }
}

/// Exponential backoff with jitter for the `attempts`-th failure: `base * 2^(attempts-1)`,
/// capped, then a random point in its upper half so many events do not retry in lockstep.
pub fn backoff_ms(base_ms: u64, attempts: u32) -> u64 {
    let exp = base_ms
        .max(1)
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
        .min(MAX_BACKOFF_MS);
    let half = exp / 2;
    half + rand::thread_rng().gen_range(0..=exp - half)
}

impl Engine {
    pub(super) fn upstream(&mut self, tx: &mut Tx, cmd: UpstreamCmd) -> Result<(), StoreError> {
        match cmd {
            UpstreamCmd::Forwarded { seqs, done } => self.forwarded(tx, seqs, done)?,
            UpstreamCmd::Failed {
                seqs,
                error,
                permanent,
                done,
            } => {
                self.failed_events(tx, &seqs, &error, permanent)?;
                if let Some(d) = done {
                    self.upstream_waiters.done.push(d);
                }
            }
            UpstreamCmd::Requeue { done } => {
                let n = self.requeue(tx)?;
                self.upstream_waiters.requeued.push((done, n));
            }
            UpstreamCmd::State { state, last_ok_ms } => {
                self.upstream_state = state;
                if last_ok_ms.is_some() {
                    self.upstream_last_ok = last_ok_ms;
                }
            }
            UpstreamCmd::SessionValidated { key, rec } => {
                tx.odoo_sessions
                    .insert(key.as_str(), enc(&rec).as_slice())?;
                self.dirty = true;
            }
            UpstreamCmd::SessionRejected { key } => {
                if tx.odoo_sessions.remove(key.as_str())?.is_some() {
                    self.dirty = true;
                }
            }
            UpstreamCmd::RegisterAdd { name, done } => self.register_add(tx, name, done)?,
            UpstreamCmd::RegisterPushed { id, odoo_id, done } => {
                self.upstream_waiters.done.extend(done);
                if let Some(mut rec) = Self::register(tx, id)? {
                    rec.state = "synced".into();
                    rec.odoo_id = Some(odoo_id);
                    rec.attempts = 0;
                    rec.last_error = None;
                    rec.next_attempt_ms = 0;
                    tx.registers.insert(id, enc(&rec).as_slice())?;
                    self.dirty = true;
                }
            }
            UpstreamCmd::RegisterFailed { id, error, done } => {
                self.register_failed(tx, id, error, done)?;
            }
            UpstreamCmd::BridgeApply {
                events,
                cursor,
                done,
            } => {
                for ev in events {
                    self.bridge_event(tx, &ev)?;
                }
                tx.meta.insert(META_BRIDGE_CURSOR, cursor)?;
                self.dirty = true;
                if let Some(d) = done {
                    self.upstream_waiters.done.push(d);
                }
            }
        }
        Ok(())
    }

    /// Events the upstream accepted: off the pending queue, counted, upstream marked ok.
    fn forwarded(
        &mut self,
        tx: &mut Tx,
        seqs: Vec<u64>,
        done: Option<oneshot::Sender<()>>,
    ) -> Result<(), StoreError> {
        let mut n = 0u64;
        for s in seqs {
            if tx.pending.remove(s)?.is_some() {
                n += 1;
            }
        }
        if n > 0 {
            let total = tx.meta.get(META_FORWARDED)?.map_or(0, |g| g.value());
            tx.meta.insert(META_FORWARDED, total + n)?;
            self.dirty = true;
        }
        self.upstream_last_ok = Some(self.now_ms);
        self.upstream_state = "ok";
        if let Some(d) = done {
            self.upstream_waiters.done.push(d);
        }
        Ok(())
    }

    /// A new register to create in Odoo, numbered from `META_REGISTER_ID`.
    fn register_add(
        &mut self,
        tx: &mut Tx,
        name: String,
        done: RegisterReply,
    ) -> Result<(), StoreError> {
        let id = tx.meta.get(META_REGISTER_ID)?.map_or(0, |g| g.value()) + 1;
        tx.meta.insert(META_REGISTER_ID, id)?;
        let rec = RegisterRec {
            name,
            state: "pending_create".into(),
            odoo_id: None,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: None,
            created_ms: self.now_ms,
        };
        tx.registers.insert(id, enc(&rec).as_slice())?;
        self.dirty = true;
        self.upstream_waiters
            .registered
            .push((done, id, rec.clone()));
        Ok(())
    }

    /// A failed register push: retried with backoff, `sync_error` after `REGISTER_MAX_TRIES`.
    fn register_failed(
        &mut self,
        tx: &mut Tx,
        id: u64,
        error: String,
        done: Option<oneshot::Sender<()>>,
    ) -> Result<(), StoreError> {
        self.upstream_waiters.done.extend(done);
        if let Some(mut rec) = Self::register(tx, id)? {
            rec.attempts += 1;
            rec.last_error = Some(error);
            if rec.attempts >= REGISTER_MAX_TRIES {
                rec.state = "sync_error".into();
                rec.next_attempt_ms = 0;
            } else {
                let base = crate::clock::millis(self.cfg.forward_interval);
                rec.next_attempt_ms = self.now_ms + backoff_ms(base, rec.attempts);
            }
            tx.registers.insert(id, enc(&rec).as_slice())?;
            self.dirty = true;
        }
        Ok(())
    }

    fn register(tx: &mut Tx, id: u64) -> Result<Option<RegisterRec>, StoreError> {
        tx.registers
            .get(id)?
            .map(|g| dec::<RegisterRec>(g.value()))
            .transpose()
    }

    fn failed_events(
        &mut self,
        tx: &mut Tx,
        seqs: &[u64],
        error: &str,
        permanent: bool,
    ) -> Result<(), StoreError> {
        let max = self.cfg.forward_max_retries.max(1);
        let base = crate::clock::millis(self.cfg.forward_interval);
        for &s in seqs {
            let Some(mut p) = tx
                .pending
                .get(s)?
                .map(|g| dec::<PendingRec>(g.value()))
                .transpose()?
            else {
                continue;
            };
            p.attempts += 1;
            p.last_error = Some(error.to_string());
            if permanent || p.attempts >= max {
                let dead = DeadRec {
                    attempts: p.attempts,
                    last_error: error.to_string(),
                    dead_ms: self.now_ms,
                };
                tx.pending.remove(s)?;
                tx.dead.insert(s, enc(&dead).as_slice())?;
                tracing::warn!(seq = s, attempts = p.attempts, error, "event dead-lettered");
            } else {
                p.next_attempt_ms = self.now_ms + backoff_ms(base, p.attempts);
                tx.pending.insert(s, enc(&p).as_slice())?;
            }
            self.dirty = true;
        }
        Ok(())
    }

    fn requeue(&mut self, tx: &mut Tx) -> Result<usize, StoreError> {
        let mut seqs = Vec::new();
        for item in tx.dead.iter()? {
            seqs.push(item?.0.value());
        }
        for s in &seqs {
            tx.dead.remove(*s)?;
            tx.pending
                .insert(*s, enc(&PendingRec::default()).as_slice())?;
        }
        let mut regs = Vec::new();
        for item in tx.registers.iter()? {
            let (k, v) = item?;
            let rec: RegisterRec = dec(v.value())?;
            if rec.state == "sync_error" {
                regs.push((k.value(), rec));
            }
        }
        for (id, mut rec) in regs.iter().cloned() {
            rec.state = "pending_create".into();
            rec.attempts = 0;
            rec.next_attempt_ms = 0;
            tx.registers.insert(id, enc(&rec).as_slice())?;
        }
        let n = seqs.len() + regs.len();
        if n > 0 {
            self.dirty = true;
            tracing::info!(
                events = seqs.len(),
                registers = regs.len(),
                "dead letters requeued"
            );
        }
        Ok(n)
    }

    /// Applies one event the cloud sent: an order snapshot becomes the order's next version
    /// (broadcast as `ORDER_UPDATED` from terminal `cloud`); anything else is broadcast as
    /// `CLOUD_EVENT`. Each `eventId` is applied once.
    fn bridge_event(&mut self, tx: &mut Tx, ev: &Value) -> Result<(), StoreError> {
        let Some(event_id) = ev.get("eventId").and_then(Value::as_str) else {
            tracing::warn!("cloud event without eventId ignored");
            return Ok(());
        };
        let key = format!("cloud:{event_id}");
        if key.len() > 300 || tx.event_ids.get(key.as_str())?.is_some() {
            return Ok(());
        }
        let kind = ev.get("type").and_then(Value::as_str).unwrap_or_default();
        let pos = ev
            .get("posReference")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty() && p.len() <= 128)
            .map(str::to_string);
        let snapshot = ev.get("snapshot").filter(|s| s.is_object());
        let applied = if let ("ORDER_SNAPSHOT" | "order_snapshot", Some(p), Some(snap)) =
            (kind, pos, snapshot)
        {
            let stored: Option<OrderRec> = tx
                .orders
                .get(p.as_str())?
                .map(|g| dec(g.value()))
                .transpose()?;
            let version = stored.as_ref().map_or(0, |o| o.version) + 1;
            let text = snap.to_string();
            let raw = serde_json::value::RawValue::from_string(text.clone())
                .map_err(|e| StoreError::Decode(e.to_string()))?;
            let seq = self.append(
                tx,
                "order_snapshot",
                Some(&p),
                "cloud",
                false,
                None,
                |seq, ts| outbound::order_updated(&p, version, &raw, "cloud", seq, ts),
            )?;
            let state = snap.get("state").and_then(Value::as_str).unwrap_or("draft");
            let rec = OrderRec {
                version,
                seq,
                state: state.to_string(),
                table_key: stored.as_ref().and_then(|o| o.table_key.clone()),
                terminal_id: "cloud".into(),
                updated_ms: self.now_ms,
                snapshot_json: text,
            };
            super::orders::put_order(tx, p.as_str(), &rec, stored.as_ref())?;
            AppliedRec {
                pos_reference: p,
                version,
                seq,
                ts_ms: self.now_ms,
            }
        } else {
            let seq = self.append(tx, "cloud_event", None, "cloud", false, None, |seq, ts| {
                outbound::cloud_event(ev, seq, ts)
            })?;
            AppliedRec {
                pos_reference: String::new(),
                version: 0,
                seq,
                ts_ms: self.now_ms,
            }
        };
        tx.event_ids
            .insert(key.as_str(), enc(&applied).as_slice())?;
        Ok(())
    }
}
