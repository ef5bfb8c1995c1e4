//! Outside views of issue 7: `GET /kitchen-tickets?station=kds&status=new` and `GET /inventory`
//! (docs/http-api.md), and the `kitchenTickets` / `inventory` fields of the catch-up `STATE`
//! (docs/protocol.md "Sync and catch-up"), filtered by the terminal's stations like the events.
//! HTTP reads run on the blocking pool against a redb read snapshot.

use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::http::{error, json_response, Body};
use crate::context::Hub;
use crate::engine::inventory::PnCounter;
use crate::protocol::outbound;
use crate::station::{self, Station};
use crate::store::kitchen::{InventoryRec, TicketRec};
use crate::store::{Store, StoreError};

fn ticket_json(id: &str, t: &TicketRec) -> Value {
    json!({"ticketId": id, "station": t.station, "posReference": t.pos_reference,
        "tableId": t.table_json.as_deref().map(outbound::raw), "status": t.status,
        "lines": outbound::raw(&t.lines_json), "terminalId": t.terminal_id, "seq": t.seq,
        "createdAt": t.created_ms, "updatedAt": t.updated_ms,
        "printedAt": if t.printed_ms == 0 { Value::Null } else { t.printed_ms.into() }})
}

fn product_json(r: &InventoryRec) -> Value {
    json!({"productId": outbound::raw(&r.product_id_json), "level": PnCounter::from(r).level(),
        "p": r.p, "n": r.n, "seq": r.seq, "updatedAt": r.updated_ms})
}

/// `STATE` fields for a terminal subscribed to `mask`: kitchen tickets still open (or closed
/// within the last day) of its stations, and every product's inventory level.
pub fn state_fields(
    store: &Store,
    mask: u8,
    day_ago_ms: u64,
) -> Result<(Vec<Box<serde_json::value::RawValue>>, Value), StoreError> {
    let tickets = store
        .kitchen_tickets(None, None)?
        .iter()
        .filter(|(_, t)| station::wants(mask, station::scope_bit(Some(&t.station))))
        .filter(|(_, t)| {
            !(t.status == "done" || t.status == "recalled") || t.updated_ms >= day_ago_ms
        })
        // Each ticket serialised as it is taken: no tree of every ticket at once.
        .filter_map(|(id, t)| serde_json::value::to_raw_value(&ticket_json(id, t)).ok())
        .collect();
    let products: Vec<Value> = store
        .inventory()?
        .iter()
        .map(|(_, r)| product_json(r))
        .collect();
    Ok((tickets, Value::Array(products)))
}

/// `GET /kitchen-tickets`, oldest first; `station` and `status` filter.
pub async fn tickets(hub: &Hub, query: Option<&str>) -> Response<Body> {
    let mut station = None;
    let mut status: Option<String> = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "station" => match Station::parse(v) {
                Some(s) => station = Some(s),
                None => return error(StatusCode::BAD_REQUEST, "station must be kds or bds"),
            },
            "status" => status = Some(v.to_string()),
            _ => {}
        }
    }
    let store = hub.store.clone();
    let list =
        tokio::task::spawn_blocking(move || store.kitchen_tickets(station, status.as_deref()))
            .await;
    let Ok(Ok(list)) = list else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
    };
    let items: Vec<Value> = list.iter().map(|(id, t)| ticket_json(id, t)).collect();
    json_response(
        StatusCode::OK,
        &json!({"tickets": items, "count": items.len()}),
    )
}

/// `GET /inventory`: every product's level and its per-terminal P/N sums.
pub async fn inventory(hub: &Hub) -> Response<Body> {
    let store = hub.store.clone();
    let Ok(Ok(list)) = tokio::task::spawn_blocking(move || store.inventory()).await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
    };
    let items: Vec<Value> = list.iter().map(|(_, r)| product_json(r)).collect();
    json_response(
        StatusCode::OK,
        &json!({"products": items, "count": items.len()}),
    )
}
