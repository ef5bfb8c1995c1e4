//! Admin HTTP endpoints of the upstream (docs/http-api.md), behind `Authorization: Bearer
//! HUB_ADMIN_TOKEN` (401 otherwise): `POST /admin/drain` (a drain round now, ignoring backoff),
//! `GET /admin/dead-letters`, `POST /admin/dead-letters/requeue`, `GET /admin/registers` and
//! `POST /admin/registers {name}`.

use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::http::{json_response, Body};
use crate::context::Hub;
use crate::engine::{Cmd, UpstreamCmd};
use crate::store::upstream::RegisterRec;

const PATHS: &[&str] = &[
    "/admin/drain",
    "/admin/dead-letters",
    "/admin/dead-letters/requeue",
    "/admin/registers",
];

/// Whether this module serves `path`.
pub fn owns(path: &str) -> bool {
    PATHS.contains(&path.trim_end_matches('/'))
}

/// The admin token check, the same as on the hub's own admin routes.
pub fn authorized(hub: &Hub, req: &Request<Incoming>) -> bool {
    super::api::is_admin(req.headers(), &hub.admin_token)
}

fn err(status: StatusCode, msg: &str) -> Response<Body> {
    json_response(status, &json!({"error": msg}))
}

pub async fn handle(hub: Arc<Hub>, req: Request<Incoming>) -> Response<Body> {
    if !authorized(&hub, &req) {
        return err(
            StatusCode::UNAUTHORIZED,
            "admin endpoints need Authorization: Bearer <admin token>",
        );
    }
    let path = req.uri().path().trim_end_matches('/').to_string();
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::POST, "/admin/drain") => match hub.upstream.drain_now().await {
            Ok(r) => {
                let mut body = r.to_json();
                body["upstream"] = hub.upstream.status_json();
                json_response(StatusCode::OK, &body)
            }
            Err(e) => err(StatusCode::CONFLICT, e),
        },
        (Method::GET, "/admin/dead-letters") => dead_letters(&hub).await,
        (Method::POST, "/admin/dead-letters/requeue") => {
            let (tx, rx) = oneshot::channel();
            hub.engine
                .send(Cmd::Upstream(UpstreamCmd::Requeue { done: tx }));
            match rx.await {
                Ok(n) => json_response(StatusCode::OK, &json!({"requeued": n})),
                Err(_) => err(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "could not save the requeue",
                ),
            }
        }
        (Method::GET, "/admin/registers") => registers(&hub).await,
        (Method::POST, "/admin/registers") => add_register(hub, req).await,
        _ => err(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

async fn dead_letters(hub: &Hub) -> Response<Body> {
    let store = hub.store.clone();
    match tokio::task::spawn_blocking(move || store.dead_letters()).await {
        Ok(Ok(list)) => {
            let items: Vec<Value> = list
                .iter()
                .map(|d| {
                    json!({"seq": d.seq, "kind": d.kind, "posReference": d.pos_reference,
                        "attempts": d.rec.attempts, "lastError": d.rec.last_error, "deadAt": d.rec.dead_ms})
                })
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"count": items.len(), "deadLetters": items}),
            )
        }
        _ => err(StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}

fn register_json(id: u64, r: &RegisterRec) -> Value {
    json!({"id": id, "name": r.name, "state": r.state, "odooId": r.odoo_id, "attempts": r.attempts,
        "lastError": r.last_error, "createdAt": r.created_ms})
}

async fn registers(hub: &Hub) -> Response<Body> {
    let store = hub.store.clone();
    match tokio::task::spawn_blocking(move || store.registers()).await {
        Ok(Ok(list)) => {
            let items: Vec<Value> = list.iter().map(|(id, r)| register_json(*id, r)).collect();
            json_response(StatusCode::OK, &json!({"registers": items}))
        }
        _ => err(StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}

async fn add_register(hub: Arc<Hub>, req: Request<Incoming>) -> Response<Body> {
    let Ok(body) = Limited::new(req.into_body(), 16 * 1024).collect().await else {
        return err(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body too large or unreadable",
        );
    };
    let v: Value = serde_json::from_slice(&body.to_bytes()).unwrap_or(Value::Null);
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return err(
            StatusCode::BAD_REQUEST,
            "body must be {\"name\": \"...\"} with a 1-128 character name",
        );
    }
    let (tx, rx) = oneshot::channel();
    hub.engine
        .send(Cmd::Upstream(UpstreamCmd::RegisterAdd { name, done: tx }));
    match rx.await {
        Ok((id, rec)) => {
            // Push it now rather than at the next tick.
            let h = hub.clone();
            tokio::spawn(async move {
                let _ = h.upstream.drain_now().await;
            });
            json_response(StatusCode::CREATED, &register_json(id, &rec))
        }
        Err(_) => err(
            StatusCode::SERVICE_UNAVAILABLE,
            "could not save the register",
        ),
    }
}
