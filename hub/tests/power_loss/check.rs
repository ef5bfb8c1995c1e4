//! What must be on the medium after a power cut, given what the terminals saw acknowledged
//! before it, and the check of one surviving image: `poshub check`'s integrity check, then the
//! hub's own open (with redb's repair) and a read of every table the acknowledgements touched.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use poshub::store::kitchen::{print_queue, TicketRec, KITCHEN_TICKETS};
use poshub::store::records::dec;
use poshub::store::{Store, EVENTS, PENDING};
use redb::{ReadableDatabase, ReadableTable};

/// One acknowledgement a terminal received.
#[derive(Debug, Clone)]
pub enum Ack {
    /// `ORDER_ACK`: this version of the order is durable, written as event `seq`.
    Order { p: String, version: u64, seq: u64 },
    /// `LEASE_GRANTED` to `terminal`.
    Lease { p: String, terminal: String },
    /// `TICKET_NUMBER` `number` for `businessDate/orderType` (the `ticket_sequences` key).
    Ticket { key: String, number: u64 },
    /// `KITCHEN_TICKET_ACK`: the ticket and its print job are durable.
    Kitchen { id: String },
}

/// An acknowledgement and the disk operation count when the terminal saw it.
#[derive(Debug, Clone)]
pub struct Acked {
    pub at: usize,
    pub ack: Ack,
}

/// The strongest promise made by the acknowledgements seen before a cut.
#[derive(Debug, Default, Clone)]
pub struct Expect {
    pub orders: HashMap<String, (u64, u64)>,
    pub leases: HashMap<String, String>,
    pub tickets: HashMap<String, u64>,
    pub kitchen: BTreeSet<String>,
    pub max_seq: u64,
    pub acks: usize,
}

impl Expect {
    pub fn add(&mut self, a: &Ack) {
        self.acks += 1;
        match a {
            Ack::Order { p, version, seq } => {
                let e = self.orders.entry(p.clone()).or_insert((0, 0));
                if *version > e.0 {
                    *e = (*version, *seq);
                }
                self.max_seq = self.max_seq.max(*seq);
            }
            Ack::Lease { p, terminal } => {
                self.leases.insert(p.clone(), terminal.clone());
            }
            Ack::Ticket { key, number } => {
                let n = self.tickets.entry(key.clone()).or_insert(0);
                *n = (*n).max(*number);
            }
            Ack::Kitchen { id } => {
                self.kitchen.insert(id.clone());
            }
        }
    }
}

/// What the surviving database holds, for the summary and the restart check.
#[derive(Debug, Default, Clone)]
pub struct Found {
    pub head_seq: u64,
    pub orders: usize,
    pub tickets: BTreeMap<String, u64>,
    pub pending: usize,
    pub queued_prints: usize,
    pub repaired: bool,
}

/// Opens the image at `path` the way the hub does after a power cut and checks every promise
/// in `want`; then runs `poshub check`'s integrity check on it. `Err` names what was lost.
pub fn verify(path: &Path, want: &Expect, max_version: u64) -> Result<Found, String> {
    let store = Store::open(path, 4 << 20).map_err(|e| format!("the hub cannot open it: {e}"))?;
    let found = read_and_compare(&store, want, max_version)?;
    drop(store);
    let repaired = match poshub::ops::check_file(path) {
        Ok(poshub::ops::Integrity::Ok) => false,
        Ok(poshub::ops::Integrity::Repaired) => true,
        Err(e) => return Err(format!("poshub check fails: {e}")),
    };
    Ok(Found { repaired, ..found })
}

fn read_and_compare(store: &Store, want: &Expect, max_version: u64) -> Result<Found, String> {
    let e = |e: poshub::store::StoreError| e.to_string();
    let mut found = Found {
        head_seq: store.head_seq().map_err(e)?,
        ..Found::default()
    };
    // 1. Orders: every acknowledged version (or a later one that was written) with its seq.
    let orders: HashMap<String, (u64, u64)> = store
        .orders()
        .map_err(e)?
        .into_iter()
        .map(|o| (o.pos_reference, (o.rec.version, o.rec.seq)))
        .collect();
    found.orders = orders.len();
    for (p, &(v, seq)) in &want.orders {
        match orders.get(p) {
            None => {
                return Err(format!(
                    "lost acknowledged order {p} (version {v}, seq {seq})"
                ))
            }
            Some(&(have, _)) if have < v => {
                return Err(format!(
                    "lost acknowledged version {v} of {p}: found {have}"
                ))
            }
            Some(&(have, have_seq)) if have == v && have_seq != seq => {
                return Err(format!(
                    "{p} v{v} has seq {have_seq}, acknowledged as {seq}"
                ))
            }
            _ => {}
        }
    }
    if let Some((p, (v, _))) = orders.iter().find(|(_, (v, _))| *v > max_version) {
        return Err(format!("{p} has version {v}, never written"));
    }
    // 2. Leases held as granted.
    let leases: HashMap<String, String> = store
        .leases()
        .map_err(e)?
        .into_iter()
        .map(|(p, l)| (p, l.terminal_id))
        .collect();
    for (p, t) in &want.leases {
        if leases.get(p) != Some(t) {
            return Err(format!(
                "lost the lease on {p} granted to {t}: {:?}",
                leases.get(p)
            ));
        }
    }
    // 3. Ticket numbers never go back (a repeat would follow).
    found.tickets = store.ticket_sequences().map_err(e)?.into_iter().collect();
    for (k, &n) in &want.tickets {
        let have = found.tickets.get(k).copied().unwrap_or(0);
        if have < n {
            return Err(format!(
                "ticket counter {k} is {have}, but {n} was handed out"
            ));
        }
    }
    check_log(store, want, &mut found)?;
    check_spool(store, want, &mut found)?;
    Ok(found)
}

/// Events `1..=head_seq` without a gap, each acknowledged seq in it, and every acknowledged order
/// version still queued for upstream (no Odoo is configured, so nothing left the queue).
fn check_log(store: &Store, want: &Expect, found: &mut Found) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let db = store.db().map_err(|x| e(&x))?;
    let r = db.begin_read().map_err(|x| e(&x))?;
    let events = r.open_table(EVENTS).map_err(|x| e(&x))?;
    let mut expect_seq = 1;
    for item in events.iter().map_err(|x| e(&x))? {
        let seq = item.map_err(|x| e(&x))?.0.value();
        if seq != expect_seq {
            return Err(format!("event log jumps from {} to {seq}", expect_seq - 1));
        }
        expect_seq += 1;
    }
    if expect_seq - 1 != found.head_seq {
        return Err(format!(
            "head_seq {} but the log ends at {}",
            found.head_seq,
            expect_seq - 1
        ));
    }
    if found.head_seq < want.max_seq {
        return Err(format!(
            "head_seq {} is behind acknowledged seq {}: it would be reused",
            found.head_seq, want.max_seq
        ));
    }
    let pending = r.open_table(PENDING).map_err(|x| e(&x))?;
    for (p, &(v, seq)) in &want.orders {
        if pending.get(seq).map_err(|x| e(&x))?.is_none() {
            return Err(format!(
                "{p} v{v} (seq {seq}) is missing from the upstream queue"
            ));
        }
    }
    found.pending = pending.iter().map_err(|x| e(&x))?.count();
    Ok(())
}

/// Every acknowledged kitchen ticket is stored and either still queued for its printer or
/// marked printed; no queued job without its ticket.
fn check_spool(store: &Store, want: &Expect, found: &mut Found) -> Result<(), String> {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let db = store.db().map_err(|x| text(&x))?;
    let read_tx = db.begin_read().map_err(|x| text(&x))?;
    let tickets = read_tx.open_table(KITCHEN_TICKETS).map_err(|x| text(&x))?;
    let queue = read_tx
        .open_table(print_queue(poshub::station::Station::Kds))
        .map_err(|x| text(&x))?;
    let mut stored: HashMap<String, TicketRec> = HashMap::new();
    for item in tickets.iter().map_err(|x| text(&x))? {
        let (k, v) = item.map_err(|x| text(&x))?;
        let t: TicketRec = dec(v.value()).map_err(|x| text(&x))?;
        stored.insert(k.value().to_string(), t);
    }
    for id in &want.kitchen {
        if !stored.contains_key(id) {
            return Err(format!("lost acknowledged kitchen ticket {id}"));
        }
    }
    for (id, t) in &stored {
        let queued = queue.get(t.seq).map_err(|x| text(&x))?.is_some();
        if queued == (t.printed_ms != 0) {
            return Err(format!(
                "kitchen ticket {id}: printed_ms {} but queued {queued}",
                t.printed_ms
            ));
        }
    }
    for item in queue.iter().map_err(|x| text(&x))? {
        let seq = item.map_err(|x| text(&x))?.0.value();
        if !stored.values().any(|t| t.seq == seq) {
            return Err(format!("print job {seq} has no kitchen ticket"));
        }
        found.queued_prints += 1;
    }
    Ok(())
}
