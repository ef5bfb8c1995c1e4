//! The HTTP side (docs/http-api.md, the part the hub core needs): health, orders, CORS, and the
//! WebSocket upgrade on both ports (any path on `HUB_PORT`, `/ws` on `HUB_HTTP_PORT`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::api;
use crate::context::Hub;
use crate::protocol::outbound;

pub type Body = Full<Bytes>;

/// Largest frame or message a terminal may send (docs/protocol.md "Limits").
pub const MAX_FRAME: usize = 256 * 1024;

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    WebSocket,
    Http,
}

pub fn ws_config() -> WebSocketConfig {
    let mut c = WebSocketConfig::default();
    c.max_message_size = Some(MAX_FRAME);
    c.max_frame_size = Some(MAX_FRAME);
    // Small per-connection buffers keep 50 terminals well inside a Pi's memory; they grow for
    // the rare large frame. tungstenite writes only pongs and close replies (`ws_write`).
    c.read_buffer_size = 8 * 1024;
    c.write_buffer_size = 0;
    c
}

fn cors(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    r
}

/// A JSON answer (`handle` adds the CORS headers to it, as to every answer).
pub fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn error(status: StatusCode, msg: &str) -> Response<Body> {
    json_response(status, &json!({"error": msg}))
}

/// Routes one request. Every answer but the WebSocket upgrade itself carries the CORS headers
/// (docs/http-api.md), whichever route built it.
pub async fn handle(
    hub: Arc<Hub>,
    port: Port,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    if is_upgrade(&req) && (port == Port::WebSocket || req.uri().path() == "/ws") {
        return Ok(upgrade(hub, req));
    }
    Ok(cors(route(hub, port, req).await))
}

async fn route(hub: Arc<Hub>, port: Port, req: Request<Incoming>) -> Response<Body> {
    if is_upgrade(&req) {
        return error(
            StatusCode::NOT_FOUND,
            "WebSocket is served at /ws on this port",
        );
    }
    if req.method() == Method::OPTIONS {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NO_CONTENT;
        return r;
    }
    if port == Port::WebSocket {
        return error(
            StatusCode::UPGRADE_REQUIRED,
            "this port speaks WebSocket; HTTP is on HUB_HTTP_PORT",
        );
    }
    let path = req.uri().path().to_string();
    if super::upstream_admin::owns(&path) {
        return super::upstream_admin::handle(hub, req).await;
    }
    let query = req.uri().query().map(str::to_string);
    let q = query.as_deref();
    let admin = || api::is_admin(req.headers(), &hub.admin_token);
    match (req.method(), path.as_str()) {
        (&Method::GET, "/health" | "/healthz") => health(&hub).await,
        (&Method::GET, "/" | "/dashboard") => api::page(crate::pages::DASHBOARD),
        (&Method::GET, "/terminal") => api::page(crate::pages::TERMINAL),
        (&Method::GET, "/kitchen") => api::page(crate::pages::KITCHEN),
        (&Method::GET, "/status") => api::status(&hub).await,
        (&Method::GET, "/events") => api::events(&hub, q).await,
        (&Method::GET, "/orders") => orders(&hub, q).await,
        (&Method::GET, "/kitchen-tickets") => {
            super::kitchen::tickets(&hub, req.uri().query()).await
        }
        (&Method::GET, "/inventory") => super::kitchen::inventory(&hub).await,
        (&Method::GET, p) if p.starts_with("/orders/") => order(&hub, &p["/orders/".len()..]).await,
        (&Method::GET, "/tables") => api::tables(&hub).await,
        (&Method::GET, "/table-locks") => api::table_locks(&hub).await,
        (&Method::GET, "/ticket-sequences") => api::ticket_sequences(&hub).await,
        (&Method::GET, "/metrics") => api::metrics(&hub).await,
        (&Method::POST, "/reset" | "/admin/reset-leases" | "/admin/backup") if !admin() => error(
            StatusCode::UNAUTHORIZED,
            "admin token required (Authorization: Bearer ...)",
        ),
        (&Method::POST, "/reset") => api::reset_data(&hub).await,
        (&Method::POST, "/admin/reset-leases") => api::reset_leases(&hub).await,
        (&Method::POST, "/admin/backup") => api::backup(&hub).await,
        (&Method::GET, _) => error(StatusCode::NOT_FOUND, "no such endpoint"),
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn upgrade(hub: Arc<Hub>, mut req: Request<Incoming>) -> Response<Body> {
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return error(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    if !version_ok {
        return error(
            StatusCode::BAD_REQUEST,
            "only WebSocket version 13 is supported",
        );
    }
    let accept = derive_accept_key(key.as_bytes());
    let peer = req
        .extensions()
        .get::<std::net::SocketAddr>()
        .map(std::string::ToString::to_string)
        .unwrap_or_default();
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => crate::net::conn::serve(hub, TokioIo::new(up), peer).await,
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

async fn health(hub: &Hub) -> Response<Body> {
    let probe = tokio::time::timeout(Duration::from_secs(3), hub.engine.probe()).await;
    let db = match probe {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("database write timed out".to_string()),
    };
    let store = hub.store.clone();
    let counts = tokio::task::spawn_blocking(move || store.counts()).await;
    let counts = match counts {
        Ok(Ok(c)) => c,
        _ => crate::store::Counts::default(),
    };
    let ok = db.is_ok();
    let printers = crate::print::health_json(hub).await;
    let backups = hub.cfg.data_dir().join("backups");
    let (backup, offsite) = tokio::task::spawn_blocking(move || {
        (
            crate::backups::newest_json(&backups),
            crate::backups::offsite_json(&backups),
        )
    })
    .await
    .unwrap_or_default();
    let body = json!({
        "status": if ok { "ok" } else { "error" },
        "uptimeS": hub.started.elapsed().as_secs(),
        "terminals": hub.engine.stats.terminals.load(Ordering::Relaxed),
        "orders": counts.orders,
        "pendingEvents": counts.pending,
        "forwardedEvents": counts.forwarded,
        "deadLetters": counts.dead,
        "upstream": hub.upstream.status_json(),
        "seq": counts.head_seq,
        "version": crate::VERSION,
        // The OS (bundle) version, given by poshub-supervisor (POSHUB_OS_VERSION); null without.
        "osVersion": hub.cfg.os_version,
        "authMode": hub.cfg.auth_mode.as_str(),
        "realm": {"tenantId": hub.cfg.tenant_id, "storeId": hub.cfg.store_id},
        "printers": printers,
        "backup": backup,
        "offsite": offsite,
        "db": db_json(hub, &db),
    });
    json_response(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &body,
    )
}

/// `/health`'s `db`: `writable`, `full` (below `HUB_MIN_FREE_MB` or ENOSPC) or `error`, with
/// the free bytes on its file system and the reserve.
fn db_json(hub: &Hub, probe: &Result<(), String>) -> Value {
    let (state, free, fault) = hub.engine.stats.storage.get();
    let status = match (probe, state) {
        (Ok(()), _) => "writable",
        (Err(_), crate::engine::storage::DbState::Writable) => "error",
        (Err(_), s) => s.as_str(),
    };
    let mut db = json!({"status": status, "path": hub.cfg.db_path, "freeBytes": free,
        "minFreeBytes": hub.cfg.min_free_bytes});
    if let Err(e) = probe {
        db["error"] = json!(fault.unwrap_or_else(|| e.clone()));
    }
    db
}

/// `GET /orders`: the orders a terminal's `STATE` carries (open ones, and paid or cancelled
/// ones changed within the last day), at most `limit` (default 1000, up to 10,000). Older
/// finished orders are one `GET /orders/{posReference}` away: listing a year of them on every
/// dashboard refresh would cost a Pi hundreds of MB.
async fn orders(hub: &Hub, query: Option<&str>) -> Response<Body> {
    let limit = match api::query_param(query, "limit").map(str::parse::<usize>) {
        None => 1000,
        Some(Ok(n)) if (1..=10_000).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "limit must be a number from 1 to 10000",
            )
        }
    };
    let store = hub.store.clone();
    let now = hub.clock.now_ms();
    match tokio::task::spawn_blocking(move || store.live_orders(now)).await {
        Ok(Ok(list)) => {
            let more = list.len() > limit;
            let items: Vec<Value> = list
                .iter()
                .take(limit)
                .map(|(pos_reference, rec)| {
                    let snap = outbound::raw(&rec.snapshot_json);
                    let items = snap.get("lines").and_then(Value::as_array).map_or(0, |l| {
                        l.iter()
                            .filter(|x| x.get("isVoided") != Some(&Value::Bool(true)))
                            .count()
                    });
                    json!({"posReference": pos_reference, "version": rec.version, "seq": rec.seq,
                        "state": rec.state, "tableId": snap.get("tableId"), "itemCount": items,
                        "total": snap.pointer("/totals/total"), "terminalId": rec.terminal_id,
                        "updatedAt": rec.updated_ms})
                })
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"orders": items, "count": items.len(), "more": more}),
            )
        }
        _ => error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn order(hub: &Hub, raw_ref: &str) -> Response<Body> {
    let Some(p) = percent_decode(raw_ref).filter(|p| !p.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "bad posReference in path");
    };
    let store = hub.store.clone();
    let key = p.clone();
    match tokio::task::spawn_blocking(move || store.order(&key)).await {
        Ok(Ok(Some(o))) => json_response(
            StatusCode::OK,
            &json!({"posReference": p, "version": o.version, "seq": o.seq, "state": o.state,
                "terminalId": o.terminal_id, "updatedAt": o.updated_ms, "snapshot": outbound::raw(&o.snapshot_json)}),
        ),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "no such order"),
        _ => error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}
