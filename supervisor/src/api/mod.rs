//! The update API (`docs/updates.md` §6), hyper HTTP/1 on the addresses and interfaces of
//! `SUPERVISOR_API_BIND` (see [`listen`]), port `SUPERVISOR_API_PORT`, every route behind
//! `Authorization: Bearer <token>`:
//! - `GET /slots`: booted slot, OS version, bootloader default, per-slot status, trial, hub health.
//! - `POST /update[?no_reboot=1&allow_downgrade=1&force=1]`: the bundle as the request body,
//!   streamed to `<data>/supervisor/incoming/`, verified, then installed in the background (202);
//!   409 while another install runs, 400/409/413/408 with the reason otherwise (see [`update`]).
//! - `GET /update/status`: state, phase, bytes written of total, percent, error, and the outcome
//!   of the trial that followed.
//!
//! The full contract, for fleet tools, is in `docs/updates.md`.

use std::convert::Infallible;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::fsutil;
use crate::install::Progress;
use crate::lifecycle::Slots;
use crate::types::{HubState, RebootRequest};

pub mod listen;
mod update;

/// How long a client may take to send a request head.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Everything a request handler needs.
pub struct ApiCtx {
    pub cfg: Config,
    pub slots: Slots,
    pub progress: Arc<Progress>,
    pub reboot_tx: mpsc::Sender<RebootRequest>,
    pub token: String,
    pub hub: watch::Receiver<HubState>,
    /// True while an API upload or install holds the install lock.
    pub active: AtomicBool,
    /// Woken when a job releases the install lock (`active` goes false).
    pub released: tokio::sync::Notify,
}

/// The configured token, or the one stored beside the state (generated on first use, 0600).
pub fn load_or_create_token(cfg: &Config) -> Result<String> {
    if let Some(t) = &cfg.api_token {
        return Ok(t.trim().to_string());
    }
    let path = cfg.state_dir().join("api-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    let t = fsutil::random_hex(24)?;
    fsutil::atomic_write_private(&path, t.as_bytes())
        .with_context(|| format!("unable to write {}", path.display()))?;
    Ok(t)
}

/// Accept loop of one listener (see [`listen`] for which). A client gets
/// [`HEADER_TIMEOUT`] to send its request head; the body has `SUPERVISOR_API_BODY_TIMEOUT_S`
/// between chunks (see [`update`]).
pub async fn serve(listener: TcpListener, ctx: Arc<ApiCtx>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("API accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(handle(req, ctx).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn reply(code: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn authorized(req: &Request<Incoming>, token: &str) -> bool {
    let Some(given) = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Constant-time comparison.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn handle(req: Request<Incoming>, ctx: Arc<ApiCtx>) -> Response<Full<Bytes>> {
    if !authorized(&req, &ctx.token) {
        return reply(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "missing or wrong bearer token"}),
        );
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/slots") => slots_json(&ctx).await,
        (&Method::GET, "/update/status") => update::status(ctx).await,
        (&Method::POST, "/update") => update::post(req, ctx).await,
        _ => reply(StatusCode::NOT_FOUND, &json!({"error": "no such route"})),
    }
}

async fn slots_json(ctx: &ApiCtx) -> Response<Full<Bytes>> {
    let slots = ctx.slots.clone();
    let hub = ctx.hub.borrow().clone();
    let r = tokio::task::spawn_blocking(move || crate::status::slots_view(&slots)).await;
    match r {
        Ok(Ok(mut v)) => {
            v["hub"] = json!({"healthy": hub.healthy, "pid": hub.pid, "restarts": hub.restarts, "lastError": hub.last_error, "lastExit": hub.last_exit});
            reply(StatusCode::OK, &v)
        }
        Ok(Err(e)) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": format!("{e:#}")}),
        ),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": e.to_string()}),
        ),
    }
}

fn flag(req: &Request<Incoming>, name: &str) -> bool {
    req.uri().query().unwrap_or("").split('&').any(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, "1"));
        k == name && matches!(v, "1" | "true" | "yes")
    })
}
