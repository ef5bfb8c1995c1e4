//! Kitchen and bar tickets in the engine (docs/kitchen.md): a `KITCHEN_TICKET` is stored, appended
//! as a `KITCHEN_TICKET_CREATED` event scoped to its station and, when the station has a printer,
//! rendered to ESC/POS and queued for it, all in the batch's one transaction; so a ticket is
//! never acknowledged without its print job, nor printed without being stored. Status changes
//! become `KITCHEN_TICKET_UPDATED`. The spooler reports a printed job back with `Cmd::Printed`.

use std::sync::atomic::Ordering;

use redb::{ReadableTable, Table, WriteTransaction};
use serde_json::Value;

use super::{Engine, Out, Session, Tx};
use crate::printer::escpos;
use crate::protocol::kitchen::{KitchenStatusMsg, KitchenTicketMsg};
use crate::protocol::outbound;
use crate::station::{self, Station};
use crate::store::kitchen::{
    InvAppliedRec, PrintJobRec, TicketRec, INVENTORY, INVENTORY_APPLIED, KITCHEN_TICKETS,
    PRINT_QUEUE_BDS, PRINT_QUEUE_KDS,
};
use crate::store::records::{dec, enc};
use crate::store::StoreError;

/// The kitchen and inventory tables, opened once per write transaction.
pub(super) struct KitchenTx<'t> {
    pub tickets: Table<'t, &'static str, &'static [u8]>,
    pub queue_kds: Table<'t, u64, &'static [u8]>,
    pub queue_bds: Table<'t, u64, &'static [u8]>,
    pub inventory: Table<'t, &'static str, &'static [u8]>,
    pub inv_applied: Table<'t, &'static str, &'static [u8]>,
}

impl<'t> KitchenTx<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<KitchenTx<'t>, StoreError> {
        Ok(KitchenTx {
            tickets: txn.open_table(KITCHEN_TICKETS)?,
            queue_kds: txn.open_table(PRINT_QUEUE_KDS)?,
            queue_bds: txn.open_table(PRINT_QUEUE_BDS)?,
            inventory: txn.open_table(INVENTORY)?,
            inv_applied: txn.open_table(INVENTORY_APPLIED)?,
        })
    }

    fn queue(&mut self, s: Station) -> &mut Table<'t, u64, &'static [u8]> {
        match s {
            Station::Kds => &mut self.queue_kds,
            Station::Bds => &mut self.queue_bds,
        }
    }
}

/// A stored ticket as the messages about it show it.
fn view<'a>(id: &'a str, t: &'a TicketRec) -> outbound::Ticket<'a> {
    outbound::Ticket {
        id,
        station: &t.station,
        pos_reference: &t.pos_reference,
        table_json: t.table_json.as_deref(),
        lines_json: &t.lines_json,
        status: &t.status,
        terminal_id: &t.terminal_id,
    }
}

/// The `KITCHEN_TICKET_CREATED` message (also the stored event).
fn created_message(id: &str, t: &TicketRec, seq: u64, ts: u64) -> String {
    outbound::kitchen_ticket_created(&view(id, t), seq, ts)
}

fn ticket_ack(id: &str, t: &TicketRec, duplicate: bool, r: Option<&Value>) -> String {
    outbound::reply(
        outbound::kitchen_ticket_ack(&view(id, t), t.last_seq, duplicate),
        r,
    )
}

impl Engine {
    pub(super) fn kitchen_ticket(
        &mut self,
        tx: &mut Tx,
        s: &Session,
        m: &KitchenTicketMsg,
        r: Option<&Value>,
    ) -> Result<(), StoreError> {
        let id = m.ticket_id.as_str();
        // 1. Idempotent on ticketId: a resent ticket answers with what is stored.
        if let Some(g) = tx.k.tickets.get(id)? {
            let t: TicketRec = dec(g.value())?;
            self.reply(s, ticket_ack(id, &t, true, r));
            return Ok(());
        }
        // 2. Store the ticket and its event (scoped to the station).
        let mut t = TicketRec {
            station: m.station.as_str().to_string(),
            pos_reference: m.pos_reference.clone(),
            lines_json: m.lines.get().to_string(),
            table_json: m.table.as_ref().map(|t| t.json.clone()),
            status: "new".to_string(),
            terminal_id: s.terminal_id.clone(),
            seq: 0,
            last_seq: 0,
            created_ms: self.now_ms,
            updated_ms: self.now_ms,
            printed_ms: 0,
        };
        let seq = self.append_scoped(
            tx,
            "kitchen_ticket",
            Some(&m.pos_reference),
            &s.terminal_id,
            false,
            Some(s.conn_id),
            Some(m.station),
            |seq, ts| created_message(id, &t, seq, ts),
        )?;
        t.seq = seq;
        t.last_seq = seq;
        tx.k.tickets.insert(id, enc(&t).as_slice())?;
        // 3. Its print job, in the same transaction, keyed by seq so each printer prints in order.
        if crate::config::printers::printer_for(&self.cfg, m.station).is_some() {
            let job = PrintJobRec {
                ticket_id: id.to_string(),
                bytes: escpos::render(id, &t),
                queued_ms: self.now_ms,
            };
            tx.k.queue(m.station).insert(seq, enc(&job).as_slice())?;
            self.out.push(Out::WakePrinter(m.station));
        }
        self.reply(s, ticket_ack(id, &t, false, r));
        Ok(())
    }

    pub(super) fn kitchen_status(
        &mut self,
        tx: &mut Tx,
        s: &Session,
        m: KitchenStatusMsg,
        r: Option<&Value>,
    ) -> Result<(), StoreError> {
        let id = m.ticket_id.as_str();
        let stored: Option<TicketRec> =
            tx.k.tickets.get(id)?.map(|g| dec(g.value())).transpose()?;
        let Some(mut t) = stored else {
            let text = outbound::error("not_found", &format!("no kitchen ticket {id:?}"), r);
            self.reply(s, text);
            return Ok(());
        };
        // Setting the status it already has changes nothing (a resend).
        if t.status == m.status {
            self.reply(s, ticket_ack(id, &t, true, r));
            return Ok(());
        }
        t.status = m.status;
        t.updated_ms = self.now_ms;
        let scope = Station::parse(&t.station);
        let terminal = s.terminal_id.clone();
        let seq = self.append_scoped(
            tx,
            "kitchen_status",
            Some(&t.pos_reference),
            &terminal,
            false,
            Some(s.conn_id),
            scope,
            |seq, ts| {
                outbound::kitchen_ticket_updated(
                    &outbound::Ticket {
                        terminal_id: &terminal,
                        ..view(id, &t)
                    },
                    seq,
                    ts,
                )
            },
        )?;
        t.last_seq = seq;
        tx.k.tickets.insert(id, enc(&t).as_slice())?;
        self.reply(s, ticket_ack(id, &t, false, r));
        Ok(())
    }

    /// The spooler's printer acknowledged job `key`: remove it and note the time on the ticket.
    pub(super) fn printed(
        &mut self,
        tx: &mut Tx,
        station: Station,
        key: u64,
    ) -> Result<(), StoreError> {
        let job: Option<PrintJobRec> =
            tx.k.queue(station)
                .remove(key)?
                .map(|g| dec(g.value()))
                .transpose()?;
        let Some(job) = job else {
            return Ok(()); // already recorded
        };
        self.dirty = true;
        let stored: Option<TicketRec> =
            tx.k.tickets
                .get(job.ticket_id.as_str())?
                .map(|g| dec(g.value()))
                .transpose()?;
        if let Some(mut t) = stored {
            t.printed_ms = self.now_ms;
            tx.k.tickets
                .insert(job.ticket_id.as_str(), enc(&t).as_slice())?;
        }
        Ok(())
    }

    /// Retention for issue 7's tables (runs with the hourly `Cmd::Compact`): tickets last
    /// changed before `cutoff_ms` go, unless still waiting for their printer; applied inventory
    /// eventIds are kept four retentions (28 days by default), far beyond any terminal outbox.
    pub(super) fn compact_kitchen(
        &mut self,
        tx: &mut Tx,
        cutoff_ms: u64,
    ) -> Result<(), StoreError> {
        use redb::ReadableTableMetadata;
        let mut old = Vec::new();
        for item in tx.k.tickets.iter()? {
            let (k, v) = item?;
            let t: TicketRec = dec(v.value())?;
            if t.updated_ms < cutoff_ms {
                old.push((k.value().to_string(), Station::parse(&t.station), t.seq));
            }
        }
        let mut removed = 0;
        for (id, station, seq) in old {
            let queued = match station {
                Some(s) => tx.k.queue(s).get(seq)?.is_some(),
                None => false,
            };
            if !queued {
                tx.k.tickets.remove(id.as_str())?;
                removed += 1;
            }
        }
        let retention = crate::clock::millis(self.cfg.event_retention);
        let ids_cutoff = cutoff_ms.saturating_sub(3 * retention);
        let before = tx.k.inv_applied.len()?;
        tx.k.inv_applied
            .retain(|_, v| dec::<InvAppliedRec>(v).is_ok_and(|a| a.ts_ms >= ids_cutoff))?;
        let ids_removed = before - tx.k.inv_applied.len()?;
        if removed > 0 || ids_removed > 0 {
            self.dirty = true;
            tracing::info!(
                tickets = removed,
                inventory_ids = ids_removed,
                "compacted kitchen tickets and inventory ids"
            );
        }
        Ok(())
    }

    pub(super) fn subscribe(&mut self, s: &Session, mask: u8, r: Option<&Value>) {
        s.outbox.stations.store(mask, Ordering::Relaxed);
        let msg = outbound::subscribed(&station::names_of(mask), self.seq);
        self.reply(s, outbound::reply(msg, r));
    }
}
