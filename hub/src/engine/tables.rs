//! Tables: status (set by orders or explicitly), floor plans and ticket numbers. Table locks are
//! in `locks`.

use redb::ReadableTable;
use serde_json::Value;

use super::{Engine, Session, Tx};
use crate::protocol::inbound::{FloorPlanMsg, TableUpdateMsg};
use crate::protocol::outbound;
use crate::protocol::TableId;
use crate::store::records::{dec, enc, FloorRec, TableRec};
use crate::store::StoreError;

impl Engine {
    /// Makes a table available if (and only if) this order is the one occupying it.
    pub(super) fn free_table_of(
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

    pub(super) fn set_table(
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

    pub(super) fn table_update(
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

    pub(super) fn floor_plan(
        &mut self,
        tx: &mut Tx,
        s: &Session,
        m: &FloorPlanMsg,
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

    pub(super) fn ticket_number(
        &mut self,
        tx: &mut Tx,
        s: &Session,
        order_type: &str,
        r: Option<&Value>,
    ) -> Result<(), StoreError> {
        let date = business_date(self.now_ms);
        let key = format!("{date}/{order_type}");
        let n = tx.tickets.get(key.as_str())?.map_or(0, |g| g.value()) + 1;
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
    let local = i64::try_from(ms)
        .ok()
        .map(|ms| chrono::Local.timestamp_millis_opt(ms));
    match local.and_then(chrono::LocalResult::single) {
        Some(t) => t.format("%Y-%m-%d").to_string(),
        None => "1970-01-01".to_string(),
    }
}
