//! The handle every task of a running hub shares (`Hub`): configuration, database, engine
//! handle, token verifier, upstream clients, metrics and the shutdown signal. It only holds
//! what `server` built; it starts nothing, so `net`, `upstream` and `print` can take a `Hub`
//! without depending on the module that starts them.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::auth::Verifier;
use crate::config::Config;
use crate::engine::EngineHandle;
use crate::store::Store;

/// What every connection shares.
pub struct Hub {
    pub cfg: Arc<Config>,
    pub store: Store,
    pub engine: EngineHandle,
    pub verifier: Option<Verifier>,
    pub started: Instant,
    pub next_conn: AtomicU64,
    pub shutdown: watch::Receiver<bool>,
    pub admin_token: String,
    /// Upstream clients, status and drain requests (docs/upstream.md).
    pub upstream: crate::uplink::Shared,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Open WebSocket connections; shutdown waits for them to send their close frames.
    pub sockets: Arc<SocketCount>,
    /// Catch-up reads of the event log running at once.
    pub catchup_slots: tokio::sync::Semaphore,
    /// The engine's clock: what "the last day" of a `STATE` is measured against.
    pub clock: Arc<dyn crate::clock::Clock>,
}

/// Counts live WebSocket tasks so shutdown can wait for them (they outlive their HTTP request).
#[derive(Default)]
pub struct SocketCount {
    live: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// Held by one WebSocket task; dropping it counts the socket as closed. It does not borrow the
/// hub, so the task can let go of the hub (and its database) first: once shutdown sees no live
/// socket, no socket task holds the database any more.
pub struct SocketGuard(Arc<SocketCount>);

impl SocketCount {
    pub fn enter(self: &Arc<Self>) -> SocketGuard {
        self.live.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        SocketGuard(self.clone())
    }

    pub(crate) async fn all_closed(&self) {
        loop {
            let notified = self.idle.notified();
            if self.live.load(std::sync::atomic::Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if self
            .0
            .live
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}
