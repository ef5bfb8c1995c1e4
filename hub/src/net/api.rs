//! The rest of the HTTP API (docs/http-api.md): status, events, tables, locks, ticket sequences,
//! Prometheus metrics, the admin calls behind the bearer token, and the two pages.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::http::{json_response, Body};
use crate::context::Hub;
use crate::engine::{AdminCmd, Cmd, EngineView};
use crate::metrics::gauge_value;
use crate::protocol::outbound;
use crate::store::{Store, StoreError};

/// How many backups the hub keeps beside its database (the supervisor restores the newest).
const KEEP_BACKUPS: usize = 3;

pub fn error(status: StatusCode, msg: &str) -> Response<Body> {
    json_response(status, &json!({"error": msg}))
}

fn unavailable(e: impl std::fmt::Display) -> Response<Body> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("database unavailable: {e}"),
    )
}

async fn read<T: Send + 'static>(
    hub: &Hub,
    f: impl FnOnce(&crate::store::Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    let store = hub.store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Sends an admin command to the engine and waits (at most 30 s) for its answer.
async fn ask<T>(hub: &Hub, make: impl FnOnce(oneshot::Sender<T>) -> AdminCmd) -> Result<T, String> {
    let within = std::time::Duration::from_secs(30);
    let (tx, rx) = oneshot::channel();
    if !hub.engine.send(Cmd::Admin(make(tx))) {
        return Err("hub is shutting down".into());
    }
    match tokio::time::timeout(within, rx).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err("the change could not be saved".into()),
        Err(_) => Err("timed out".into()),
    }
}

/// The credentials of an `Authorization: Bearer <token>` header. The scheme name is
/// case-insensitive (RFC 7235 §2.1), one or more spaces follow it.
pub fn bearer(headers: &hyper::HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// Constant-time comparison of the bearer token with the admin token: the one check of every
/// admin route (the hub's and the upstream's).
pub fn is_admin(headers: &hyper::HeaderMap, token: &str) -> bool {
    let Some(given) = bearer(headers) else {
        return false;
    };
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
    })
}

pub async fn status(hub: &Hub) -> Response<Body> {
    let view: EngineView = match ask(hub, AdminCmd::View).await {
        Ok(v) => v,
        Err(e) => return unavailable(e),
    };
    let counts = match read(hub, Store::counts).await {
        Ok(c) => c,
        Err(e) => return unavailable(e),
    };
    let terminals: Vec<Value> = view
        .terminals
        .iter()
        .map(|t| json!({"terminalId": t.terminal_id, "name": t.name, "role": t.role, "deviceId": t.device_id, "connectedAt": t.connected_ms}))
        .collect();
    let leases: Vec<Value> = view
        .leases
        .iter()
        .map(|(p, l)| json!({"posReference": p, "terminalId": l.terminal_id, "name": l.name, "grantedAt": l.granted_ms, "expiresAt": l.expires_ms}))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "terminals": terminals,
            "leases": leases,
            "pendingEvents": counts.pending,
            "forwardedEvents": counts.forwarded,
            "deadLetters": counts.dead,
            "upstream": hub.upstream.status_json(),
            "seq": view.seq,
            "authMode": hub.cfg.auth_mode.as_str(),
            "realm": {"tenantId": hub.cfg.tenant_id, "storeId": hub.cfg.store_id},
            "version": crate::VERSION,
            "uptimeS": hub.started.elapsed().as_secs(),
        }),
    )
}

pub async fn events(hub: &Hub, query: Option<&str>) -> Response<Body> {
    let limit = match query_param(query, "limit").map(str::parse::<usize>) {
        None => 50,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "limit must be a number from 1 to 1000",
            )
        }
    };
    let since = match query_param(query, "since").map(str::parse::<u64>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "since must be a sequence number"),
    };
    match read(hub, move |s| s.recent_events(limit, since)).await {
        Ok(list) => {
            let items: Vec<Value> = list
                .into_iter()
                .map(|(seq, e, state)| {
                    json!({"seq": seq, "type": crate::metrics::message_type(&e.message), "kind": e.kind,
                        "posReference": e.pos_reference, "terminalId": e.terminal_id, "ts": e.ts_ms,
                        "upstream": state})
                })
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"events": items, "count": items.len()}),
            )
        }
        Err(e) => unavailable(e),
    }
}

pub async fn tables(hub: &Hub) -> Response<Body> {
    match read(hub, Store::tables_and_floors).await {
        Ok((tables, floors)) => {
            let tables: Vec<Value> = tables
                .iter()
                .map(|t| json!({"tableId": outbound::raw(&t.table_id_json), "status": t.status, "posReference": t.pos_reference, "terminalId": t.terminal_id, "updatedAt": t.updated_ms}))
                .collect();
            let floors: Vec<Value> = floors
                .iter()
                .map(|f| json!({"floorId": outbound::raw(&f.floor_id_json), "tables": outbound::raw(&f.tables_json), "layoutMode": f.layout_mode_json.as_deref().map(outbound::raw)}))
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"tables": tables, "floorPlans": floors}),
            )
        }
        Err(e) => unavailable(e),
    }
}

pub async fn table_locks(hub: &Hub) -> Response<Body> {
    match read(hub, Store::table_locks).await {
        Ok(locks) => {
            let locks: Vec<Value> = locks
                .iter()
                .map(|(_, l)| json!({"tableId": outbound::raw(&l.table_id_json), "terminalId": l.terminal_id, "uid": outbound::raw(&l.uid_json), "userName": l.user_name, "expiresAt": l.expires_ms}))
                .collect();
            json_response(StatusCode::OK, &json!({"locks": locks}))
        }
        Err(e) => unavailable(e),
    }
}

pub async fn ticket_sequences(hub: &Hub) -> Response<Body> {
    let today = crate::engine::business_date(crate::engine::now_ms());
    match read(hub, Store::ticket_sequences).await {
        Ok(all) => {
            let mut seqs = serde_json::Map::new();
            for (k, n) in all {
                if let Some((date, ty)) = k.split_once('/') {
                    if date == today {
                        seqs.insert(ty.to_string(), n.into());
                    }
                }
            }
            json_response(
                StatusCode::OK,
                &json!({"businessDate": today, "sequences": seqs}),
            )
        }
        Err(e) => unavailable(e),
    }
}

pub async fn metrics(hub: &Hub) -> Response<Body> {
    if let Ok(c) = read(hub, Store::counts).await {
        hub.metrics.pending.set(gauge_value(c.pending));
        hub.metrics.forwarded.set(c.forwarded);
        hub.metrics.dead.set(gauge_value(c.dead));
    }
    hub.metrics.upstream_state.set(hub.upstream.state() as i64);
    hub.metrics
        .upstream_last_success
        .set(gauge_value(hub.upstream.last_ok_ms() / 1000));
    if let Ok(m) = std::fs::metadata(&hub.cfg.db_path) {
        hub.metrics.db_bytes.set(gauge_value(m.len()));
    }
    let mut extra = crate::print::metrics_text(&hub.cfg, &hub.engine.stats.print);
    let backups = hub.cfg.data_dir().join("backups");
    extra.push_str(&crate::backups::offsite_metrics(
        &crate::backups::offsite_json(&backups),
    ));
    let mut r = Response::new(Full::new(Bytes::from(hub.metrics.render(&extra))));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

pub fn page(html: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(html.as_bytes())));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub async fn reset_leases(hub: &Hub) -> Response<Body> {
    match ask(hub, AdminCmd::ResetLeases).await {
        Ok(n) => json_response(StatusCode::OK, &json!({"ok": true, "leasesReset": n})),
        Err(e) => unavailable(e),
    }
}

pub async fn reset_data(hub: &Hub) -> Response<Body> {
    match ask(hub, AdminCmd::ResetData).await {
        Ok(seq) => json_response(StatusCode::OK, &json!({"ok": true, "seq": seq})),
        Err(e) => unavailable(e),
    }
}

/// A consistent copy in `<data>/backups/`, keeping the newest few; answers its path and size.
pub async fn backup(hub: &Arc<Hub>) -> Response<Body> {
    let dir = hub.cfg.data_dir().join("backups");
    let name = format!(
        "hub-{}.redb",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    );
    let path = dir.join(&name);
    // The engine answers a read transaction on its next commit; the copy runs off its thread
    // while terminals go on writing.
    let snapshot = ask(hub, |reply| AdminCmd::Backup { reply }).await;
    let result = match snapshot {
        Ok(Ok(snapshot)) => {
            let p = path.clone();
            tokio::task::spawn_blocking(move || crate::engine::write_backup(&snapshot, &p))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
        }
        Ok(Err(e)) | Err(e) => Err(e),
    };
    match result {
        Ok(bytes) => {
            prune_backups(&dir, KEEP_BACKUPS);
            let abs = std::fs::canonicalize(&path).unwrap_or(path);
            json_response(
                StatusCode::OK,
                &json!({"ok": true, "path": abs, "bytes": bytes}),
            )
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("backup failed: {e}"),
        ),
    }
}

fn prune_backups(dir: &std::path::Path, keep: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<_> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "redb")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("hub-"))
        })
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep);
    for old in names.into_iter().take(excess) {
        let _ = std::fs::remove_file(old);
    }
}
