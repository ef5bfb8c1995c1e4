//! HTTP views of issue 7 (SPEC §3): `GET /kitchen-tickets?station=kds&status=new` and
//! `GET /inventory`. Reads run on the blocking pool against a redb read snapshot.

use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::http::{error, json_response, Body};
use crate::engine::inventory::PnCounter;
use crate::protocol::outbound;
use crate::server::Hub;
use crate::station::Station;

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
    let items: Vec<Value> = list
        .iter()
        .map(|(id, t)| {
            json!({"ticketId": id, "station": t.station, "posReference": t.pos_reference,
                "tableId": t.table_json.as_deref().map(outbound::raw), "status": t.status,
                "lines": outbound::raw(&t.lines_json), "terminalId": t.terminal_id, "seq": t.seq,
                "createdAt": t.created_ms, "updatedAt": t.updated_ms,
                "printedAt": if t.printed_ms == 0 { Value::Null } else { t.printed_ms.into() }})
        })
        .collect();
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
    let items: Vec<Value> = list
        .iter()
        .map(|(_, r)| {
            json!({"productId": outbound::raw(&r.product_id_json), "level": PnCounter::from(r).level(),
                "p": r.p, "n": r.n, "seq": r.seq, "updatedAt": r.updated_ms})
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"products": items, "count": items.len()}),
    )
}
