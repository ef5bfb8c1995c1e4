//! Upstream (docs/upstream.md): everything the hub sends to or fetches from the cloud. One tokio
//! task (the forwarder loop) wakes every `HUB_FORWARD_INTERVAL_MS` or on `/admin/drain` and runs,
//! in turn, the event drain to Odoo and the cloud bridge (`forwarder`), the cloud bridge pull
//! (`bridge`) and the register push (`registers`). It reads through `hub.store` and records
//! every outcome through the engine (`Cmd::Upstream`), so all of its state is in redb and a
//! restart resumes where it stopped. `session_cache` checks terminals' Odoo sessions for
//! `HUB_AUTH_MODE=odoo`; `client` is the CLI face of the operator commands (drain, dead
//! letters, registers), `net::upstream_admin` their HTTP face. The clients themselves and the
//! status they share are in `uplink`.

pub mod bridge;
pub mod client;
pub mod forwarder;
pub mod registers;
pub mod session_cache;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::context::Hub;
use crate::engine::{Cmd, UpstreamCmd};
pub use crate::uplink::{odoo, DrainAsk, DrainReport, Shared, State, UpstreamError};

/// Starts the forwarder loop if an upstream is configured. It holds `done` until it has
/// stopped, so a hub shutdown waits for it (and for the database handle it keeps).
pub fn spawn(hub: &Arc<Hub>, done: mpsc::Sender<()>) {
    let rx = hub.upstream.take_drain_rx();
    let Some(rx) = rx else {
        return;
    };
    if hub.upstream.state() == State::Disabled {
        tracing::info!("no ODOO_URL or CLOUD_BRIDGE_URL: events stay pending on the hub");
        return;
    }
    let hub = hub.clone();
    tokio::spawn(async move {
        let _done = done;
        forwarder::run(hub, rx).await;
    });
}

/// Sends a command to the engine and waits until its outcome is durable.
async fn record(hub: &Hub, make: impl FnOnce(oneshot::Sender<()>) -> UpstreamCmd) -> bool {
    let (tx, rx) = oneshot::channel();
    hub.engine.send(Cmd::Upstream(make(tx))) && rx.await.is_ok()
}
