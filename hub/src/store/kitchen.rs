//! Durable state of issue 7: kitchen tickets, one print queue per station, and the inventory
//! PN-counters with the set of adjustment `eventId`s already counted. The tables are created
//! with the others in `Store::open`; the engine writes them (see `engine::kitchen`), the HTTP
//! API, the spoolers and catch-up read them here.

use std::collections::BTreeMap;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::records::{dec, EventRec};
use super::{EventChunk, Store, StoreError, EVENTS};
use crate::station::{self, Station};

/// ticketId -> [`TicketRec`].
pub const KITCHEN_TICKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("kitchen_tickets");
/// Print jobs of the kitchen printer: ticket event seq -> [`PrintJobRec`].
pub const PRINT_QUEUE_KDS: TableDefinition<u64, &[u8]> = TableDefinition::new("print_queue_kds");
/// Print jobs of the bar printer.
pub const PRINT_QUEUE_BDS: TableDefinition<u64, &[u8]> = TableDefinition::new("print_queue_bds");
/// Canonical productId -> [`InventoryRec`].
pub const INVENTORY: TableDefinition<&str, &[u8]> = TableDefinition::new("inventory");
/// Adjustment eventId -> [`InvAppliedRec`]: each eventId counts once, forever (not compacted).
pub const INVENTORY_APPLIED: TableDefinition<&str, &[u8]> =
    TableDefinition::new("inventory_applied_ids");

/// The print queue table of a station.
pub fn print_queue(s: Station) -> TableDefinition<'static, u64, &'static [u8]> {
    match s {
        Station::Kds => PRINT_QUEUE_KDS,
        Station::Bds => PRINT_QUEUE_BDS,
    }
}

/// One kitchen ticket as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TicketRec {
    pub station: String,
    pub pos_reference: String,
    /// `lines` as the terminal sent them (JSON array text).
    pub lines_json: String,
    /// Optional table id JSON text (`5`, `"T5"`).
    pub table_json: Option<String>,
    /// `new`, `acked`, `done` or `recalled`.
    pub status: String,
    pub terminal_id: String,
    /// Seq of the `KITCHEN_TICKET_CREATED` event (also the print job's key).
    pub seq: u64,
    /// Seq of the newest event about this ticket.
    pub last_seq: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// When the station's printer acknowledged it (0 = not printed, or no printer).
    pub printed_ms: u64,
}

/// One queued print: the rendered ESC/POS bytes of a ticket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PrintJobRec {
    pub ticket_id: String,
    pub bytes: Vec<u8>,
    pub queued_ms: u64,
}

/// A product's PN-counter: per contributing terminal, the sum of its increments (`p`) and of
/// its decrements (`n`). The level is `Σp − Σn`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct InventoryRec {
    /// productId as sent (JSON text, `12` or `"SKU-1"`).
    pub product_id_json: String,
    pub p: BTreeMap<String, u64>,
    pub n: BTreeMap<String, u64>,
    /// Seq of the newest `INVENTORY_UPDATED`.
    pub seq: u64,
    pub updated_ms: u64,
}

/// What an applied adjustment eventId produced, to answer a resend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvAppliedRec {
    pub product_key: String,
    pub seq: u64,
    pub ts_ms: u64,
}

impl Store {
    /// Events with `after < seq <= to`, at most about `max_bytes` of messages (always at least
    /// one), leaving out events scoped to a station outside `mask` (`station::ALL_STATIONS` for
    /// every event). The chunk still covers the whole range, so the cursor moves past them.
    pub fn events_range_scoped(
        &self,
        after: u64,
        to: u64,
        max_bytes: usize,
        mask: u8,
    ) -> Result<EventChunk, StoreError> {
        let mut chunk = EventChunk {
            events: Vec::new(),
            through: after,
        };
        if to <= after {
            return Ok(chunk);
        }
        let r = self.db()?.begin_read()?;
        let t = r.open_table(EVENTS)?;
        let mut bytes = 0;
        for item in t.range(after + 1..=to)? {
            let (k, v) = item?;
            let rec: EventRec = dec(v.value())?;
            chunk.through = k.value();
            if !station::wants(mask, station::scope_bit(rec.scope.as_deref())) {
                continue;
            }
            bytes += rec.message.len();
            chunk.events.push((k.value(), rec.message));
            if bytes >= max_bytes {
                return Ok(chunk);
            }
        }
        chunk.through = to;
        Ok(chunk)
    }

    /// Kitchen tickets, oldest first, optionally only one station's and/or one status.
    pub fn kitchen_tickets(
        &self,
        station: Option<Station>,
        status: Option<&str>,
    ) -> Result<Vec<(String, TicketRec)>, StoreError> {
        let r = self.db()?.begin_read()?;
        let t = r.open_table(KITCHEN_TICKETS)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            let rec: TicketRec = dec(v.value())?;
            if station.is_some_and(|s| s.as_str() != rec.station)
                || status.is_some_and(|s| s != rec.status)
            {
                continue;
            }
            out.push((k.value().to_string(), rec));
        }
        out.sort_by_key(|(_, t)| t.seq);
        Ok(out)
    }

    /// The oldest job of a station's print queue and how many are queued.
    pub fn next_print_job(
        &self,
        s: Station,
    ) -> Result<(Option<(u64, PrintJobRec)>, u64), StoreError> {
        let r = self.db()?.begin_read()?;
        let queue = r.open_table(print_queue(s))?;
        let depth = queue.len()?;
        let first = match queue.first()? {
            Some((k, v)) => Some((k.value(), dec(v.value())?)),
            None => None,
        };
        Ok((first, depth))
    }

    /// Jobs waiting per station.
    pub fn print_depths(&self) -> Result<[u64; 2], StoreError> {
        let r = self.db()?.begin_read()?;
        let mut out = [0; 2];
        for s in Station::ALL {
            out[s.index()] = r.open_table(print_queue(s))?.len()?;
        }
        Ok(out)
    }

    /// Every product's counter.
    pub fn inventory(&self) -> Result<Vec<(String, InventoryRec)>, StoreError> {
        let r = self.db()?.begin_read()?;
        let t = r.open_table(INVENTORY)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (k, v) = item?;
            out.push((k.value().to_string(), dec(v.value())?));
        }
        Ok(out)
    }
}
