//! The hub's clients of the cloud (docs/upstream.md): the Odoo JSON-RPC client (`odoo`), the cloud
//! bridge client (`bridge`), and the upstream status they share with `/health`, `/status` and
//! the engine (`Shared`). Nothing here runs by itself or knows the `Hub`: the tasks that drive
//! these clients (forwarder, bridge pull, register push, session checks) are in `upstream`.

pub mod bridge;
pub mod odoo;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::engine::{Cmd, EngineHandle, UpstreamCmd};

/// A failed upstream call, classified by what the forwarder should do about it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    #[error("network error: {0}")]
    Network(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("rejected: {0}")]
    Rejected(String),
}

impl UpstreamError {
    /// A failure that will happen again however often it is retried: a 4xx other than
    /// auth/timeout/rate limit, or a payload the upstream refused.
    pub fn is_permanent(&self) -> bool {
        match self {
            UpstreamError::Status { status, .. } => {
                (400..500).contains(status) && ![401, 403, 408, 429].contains(status)
            }
            UpstreamError::Rejected(_) => true,
            _ => false,
        }
    }
}

/// Upstream health as shown in `SYNC_STATUS`, `/health` and the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Disabled = 0,
    Idle = 1,
    Ok = 2,
    Failing = 3,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Disabled => "disabled",
            State::Idle => "idle",
            State::Ok => "ok",
            State::Failing => "failing",
        }
    }

    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Idle,
            2 => State::Ok,
            3 => State::Failing,
            _ => State::Disabled,
        }
    }
}

/// What one drain round did.
#[derive(Debug, Clone, Default)]
pub struct DrainReport {
    pub forwarded: usize,
    pub failed: usize,
    pub dead_lettered: usize,
    pub error: Option<String>,
}

impl DrainReport {
    pub fn to_json(&self) -> Value {
        json!({"forwarded": self.forwarded, "failed": self.failed,
            "deadLettered": self.dead_lettered, "error": self.error})
    }
}

pub type DrainAsk = oneshot::Sender<DrainReport>;

/// The upstream side shared by the hub: clients, status, and the way to ask for a drain.
pub struct Shared {
    pub odoo: Option<Arc<odoo::OdooClient>>,
    pub bridge: Option<bridge::BridgeClient>,
    state: AtomicU8,
    last_ok_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
    drain_tx: mpsc::Sender<DrainAsk>,
    drain_rx: Mutex<Option<mpsc::Receiver<DrainAsk>>>,
}

impl Shared {
    /// Builds the clients the configuration asks for (none: forwarding disabled).
    pub fn new(cfg: &Config) -> Result<Shared, UpstreamError> {
        let odoo = match &cfg.odoo_url {
            Some(url) => Some(Arc::new(odoo::OdooClient::new(
                cfg.upstream_timeout,
                url,
                cfg.odoo_db.as_deref(),
                cfg.odoo_user.as_deref(),
                cfg.odoo_password.as_deref(),
            )?)),
            None => None,
        };
        let bridge = match &cfg.cloud_bridge_url {
            Some(url) => Some(bridge::BridgeClient::new(
                cfg.upstream_timeout,
                url,
                cfg.cloud_bridge_token.as_deref(),
            )?),
            None => None,
        };
        let state = if odoo.is_some() || bridge.is_some() {
            State::Idle
        } else {
            State::Disabled
        };
        let (drain_tx, drain_rx) = mpsc::channel(16);
        Ok(Shared {
            odoo,
            bridge,
            state: AtomicU8::new(state as u8),
            last_ok_ms: AtomicU64::new(0),
            last_error: Mutex::new(None),
            drain_tx,
            drain_rx: Mutex::new(Some(drain_rx)),
        })
    }

    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// When the upstream last accepted something (ms since the epoch; 0 = not since start).
    pub fn last_ok_ms(&self) -> u64 {
        self.last_ok_ms.load(Ordering::Relaxed)
    }

    /// `{state, lastSuccessAt, lastError}` for `/health`, `/status` and the dashboard.
    pub fn status_json(&self) -> Value {
        let last = self.last_ok_ms.load(Ordering::Relaxed);
        let err = self.last_error.lock().ok().and_then(|e| e.clone());
        json!({"state": self.state().as_str(), "lastSuccessAt": (last > 0).then_some(last), "lastError": err})
    }

    /// Records the upstream's health here and in the engine (for `SYNC_STATUS`).
    pub fn set_state(
        &self,
        engine: &EngineHandle,
        state: State,
        ok_at: Option<u64>,
        error: Option<String>,
    ) {
        let before = self.state.swap(state as u8, Ordering::Relaxed);
        if let Some(t) = ok_at {
            self.last_ok_ms.store(t, Ordering::Relaxed);
        }
        if let Ok(mut e) = self.last_error.lock() {
            if error.is_some() || state == State::Ok {
                *e = error;
            }
        }
        if before != state as u8 || ok_at.is_some() {
            engine.send(Cmd::Upstream(UpstreamCmd::State {
                state: state.as_str(),
                last_ok_ms: ok_at,
            }));
        }
    }

    /// The drain requests' receiving end, taken once by the forwarder loop that answers them.
    pub fn take_drain_rx(&self) -> Option<mpsc::Receiver<DrainAsk>> {
        self.drain_rx.lock().ok().and_then(|mut r| r.take())
    }

    /// Runs a drain round now (ignoring backoff) and answers what it did.
    pub async fn drain_now(&self) -> Result<DrainReport, &'static str> {
        if self.state() == State::Disabled {
            return Err("no upstream is configured (ODOO_URL, CLOUD_BRIDGE_URL)");
        }
        let (tx, rx) = oneshot::channel();
        self.drain_tx
            .send(tx)
            .await
            .map_err(|_| "the forwarder is not running")?;
        rx.await.map_err(|_| "the forwarder stopped")
    }
}
