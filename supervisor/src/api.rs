//! The update API (SPEC §7.6), hyper HTTP/1 on `SUPERVISOR_API_BIND:SUPERVISOR_API_PORT`, every
//! route behind `Authorization: Bearer <token>`:
//! - `GET /slots`: booted slot, bootloader default, per-slot status, trial, hub health.
//! - `POST /update[?no_reboot=1&allow_downgrade=1]`: the bundle as the request body, streamed to
//!   `<data>/supervisor/incoming/` (413 past `SUPERVISOR_MAX_BUNDLE_MB`), verified (400 with the
//!   reason if refused), then installed in the background (202); reboots into the trial unless
//!   `no_reboot`.
//! - `GET /update/status`: state, phase, bytes written of total, percent, error.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::bundle;
use crate::config::Config;
use crate::fsutil;
use crate::hub::HubState;
use crate::install::{self, InstallOptions, Progress};
use crate::lifecycle::Slots;
use crate::run::RebootRequest;

/// Everything a request handler needs.
pub struct ApiCtx {
    pub cfg: Config,
    pub slots: Slots,
    pub progress: Arc<Progress>,
    pub reboot_tx: mpsc::Sender<RebootRequest>,
    pub token: String,
    pub hub: watch::Receiver<HubState>,
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

/// Binds the API port; the bound port is written to `<state>/api-port` (useful with port 0).
pub async fn bind(cfg: &Config) -> Result<TcpListener> {
    let l = TcpListener::bind((cfg.api_bind.as_str(), cfg.api_port))
        .await
        .with_context(|| format!("unable to bind {}:{}", cfg.api_bind, cfg.api_port))?;
    let port = l.local_addr()?.port();
    fsutil::atomic_write(
        &cfg.state_dir().join("api-port"),
        port.to_string().as_bytes(),
    )?;
    tracing::info!("update API on {}:{port}", cfg.api_bind);
    Ok(l)
}

/// Accept loop.
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
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn reply(code: StatusCode, v: serde_json::Value) -> Response<Full<Bytes>> {
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
            json!({"error": "missing or wrong bearer token"}),
        );
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/slots") => slots_json(&ctx).await,
        (&Method::GET, "/update/status") => reply(StatusCode::OK, json!(ctx.progress.get())),
        (&Method::POST, "/update") => post_update(req, ctx).await,
        _ => reply(StatusCode::NOT_FOUND, json!({"error": "no such route"})),
    }
}

async fn slots_json(ctx: &ApiCtx) -> Response<Full<Bytes>> {
    let slots = ctx.slots.clone();
    let hub = ctx.hub.borrow().clone();
    let r = tokio::task::spawn_blocking(move || crate::status::slots_view(&slots)).await;
    match r {
        Ok(Ok(mut v)) => {
            v["hub"] = json!({"healthy": hub.healthy, "pid": hub.pid, "restarts": hub.restarts, "lastError": hub.last_error, "lastExit": hub.last_exit});
            reply(StatusCode::OK, v)
        }
        Ok(Err(e)) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": format!("{e:#}")}),
        ),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": e.to_string()}),
        ),
    }
}

fn flag(req: &Request<Incoming>, name: &str) -> bool {
    req.uri().query().unwrap_or("").split('&').any(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, "1"));
        k == name && matches!(v, "1" | "true" | "yes")
    })
}

async fn post_update(req: Request<Incoming>, ctx: Arc<ApiCtx>) -> Response<Full<Bytes>> {
    let busy = matches!(
        ctx.progress.get().state.as_str(),
        "receiving" | "installing"
    );
    if busy {
        return reply(
            StatusCode::CONFLICT,
            json!({"error": "an update is already in progress"}),
        );
    }
    let limit = ctx.cfg.max_bundle_bytes;
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": format!("bundle is larger than the {limit}-byte limit")}),
        );
    }
    let no_reboot = flag(&req, "no_reboot");
    let allow_downgrade = flag(&req, "allow_downgrade");
    ctx.progress.set(true, |s| {
        *s = install::UpdateStatus {
            state: "receiving".into(),
            bytes_total: declared.unwrap_or(0),
            ..Default::default()
        }
    });
    // 1. Stream the body to a spool file (never to a slot), counting against the limit.
    let path = match receive(req.into_body(), &ctx).await {
        Ok(p) => p,
        Err((code, msg)) => {
            ctx.progress.set(true, |s| {
                s.state = "failed".into();
                s.error = Some(msg.clone());
            });
            return reply(code, json!({"error": msg}));
        }
    };
    // 2. Verify before accepting: a refused bundle is a 400 with the reason.
    let c2 = ctx.clone();
    let p2 = path.clone();
    let verified = tokio::task::spawn_blocking(move || {
        let key_path = c2
            .cfg
            .public_key
            .as_deref()
            .context("SUPERVISOR_PUBLIC_KEY is not set")?;
        let key = bundle::load_verifying_key(key_path)?;
        let booted = c2.slots.backend.booted()?.slot;
        let current = c2.slots.current_version(booted)?;
        let vb = bundle::verify(
            &p2,
            &bundle::Expect {
                key: &key,
                board: &c2.cfg.board,
                board_from: bundle::BOARD_OF_DEVICE,
                current_version: current.as_deref(),
                allow_downgrade,
                downgrade_flag: bundle::API_DOWNGRADE_FLAG,
            },
        )?;
        anyhow::Ok(vb.manifest)
    })
    .await;
    let manifest = match verified {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            let _ = std::fs::remove_file(&path);
            let msg = format!("bundle refused: {e:#}");
            ctx.progress.set(true, |s| {
                s.state = "failed".into();
                s.error = Some(msg.clone());
            });
            return reply(StatusCode::BAD_REQUEST, json!({"error": msg}));
        }
        Err(e) => {
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": e.to_string()}),
            )
        }
    };
    // 3. Install in the background; the client follows GET /update/status.
    let c3 = ctx.clone();
    tokio::spawn(async move {
        let c4 = c3.clone();
        let p3 = path.clone();
        let r = tokio::task::spawn_blocking(move || {
            install::install(
                &c4.cfg,
                &c4.slots,
                &p3,
                InstallOptions {
                    allow_downgrade,
                    downgrade_flag: bundle::API_DOWNGRADE_FLAG,
                },
                &c4.progress,
            )
        })
        .await;
        let _ = std::fs::remove_file(&path);
        match r {
            Ok(Ok(o)) if !no_reboot => {
                let _ = c3
                    .reboot_tx
                    .send(RebootRequest {
                        trial: true,
                        reason: format!(
                            "trial boot of slot {} (version {})",
                            o.target, o.manifest.version
                        ),
                    })
                    .await;
            }
            Ok(Ok(o)) => tracing::info!("slot {} installed; reboot to try it", o.target),
            Ok(Err(e)) => tracing::error!("install failed: {e:#}"),
            Err(e) => tracing::error!("install task failed: {e}"),
        }
    });
    reply(
        StatusCode::ACCEPTED,
        json!({"status": "installing", "version": manifest.version, "noReboot": no_reboot}),
    )
}

async fn receive(mut body: Incoming, ctx: &ApiCtx) -> Result<PathBuf, (StatusCode, String)> {
    let internal = |e: std::io::Error| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let dir = ctx.cfg.state_dir().join("incoming");
    tokio::fs::create_dir_all(&dir).await.map_err(internal)?;
    let name = fsutil::random_hex(8).map_err(internal)?;
    let partial = dir.join(format!("upload-{name}.partial"));
    let done = dir.join(format!("upload-{name}.poshub"));
    let mut f = tokio::fs::File::create(&partial).await.map_err(internal)?;
    let mut total = 0u64;
    let limit = ctx.cfg.max_bundle_bytes;
    let r: Result<(), (StatusCode, String)> = async {
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| (StatusCode::BAD_REQUEST, format!("upload interrupted: {e}")))?;
            if let Ok(data) = frame.into_data() {
                total += data.len() as u64;
                if total > limit {
                    return Err((
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("bundle is larger than the {limit}-byte limit"),
                    ));
                }
                f.write_all(&data).await.map_err(internal)?;
                ctx.progress.set(false, |s| s.bytes_done = total);
            }
        }
        f.sync_all().await.map_err(internal)?;
        Ok(())
    }
    .await;
    if let Err(e) = r {
        drop(f);
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(e);
    }
    tokio::fs::rename(&partial, &done).await.map_err(internal)?;
    Ok(done)
}
