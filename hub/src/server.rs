//! Starting and stopping a hub: open the database, load keys, start the engine, bind both
//! listeners, run the periodic ticks, and shut down in order on request (SIGTERM/SIGINT).

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::auth::{HubKey, Verifier};
use crate::clock::{Clock, SystemClock};
use crate::config::{AuthMode, Config};
use crate::context::Hub;
use crate::engine::{Cmd, Engine};
use crate::net::http::{self, Port};
use crate::store::Store;

/// A hub that is up: its bound addresses, and the way to stop it.
pub struct RunningHub {
    pub ws_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub hub: Arc<Hub>,
    shutdown_tx: watch::Sender<bool>,
    done_rx: mpsc::Receiver<()>,
    engine_thread: Option<std::thread::JoinHandle<()>>,
    /// The mDNS advertisement, withdrawn before the runtime stops (see `mdns`).
    mdns: Option<tokio::task::JoinHandle<()>>,
}

/// Opens everything and starts serving; returns once both ports accept connections.
pub async fn start(cfg: Config) -> anyhow::Result<RunningHub> {
    start_with_clock(cfg, Arc::new(SystemClock)).await
}

/// `start`, with the engine on `clock` instead of the system clock (tests step a
/// `ManualClock` to expire leases, locks and grace periods without waiting).
pub async fn start_with_clock(cfg: Config, clock: Arc<dyn Clock>) -> anyhow::Result<RunningHub> {
    // 1. Database (repaired if the last run crashed).
    let store = Store::open(&cfg.db_path, cfg.db_cache_bytes)
        .with_context(|| format!("unable to open database {}", cfg.db_path.display()))?;
    start_on_store(cfg, store, clock).await
}

/// `start` on a database that is already open, e.g. one on a test's storage backend that can
/// simulate a power cut (`hub/tests/power_loss.rs`).
pub async fn start_on_store(
    cfg: Config,
    store: Store,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<RunningHub> {
    let cfg = Arc::new(cfg);
    let data_dir = cfg.data_dir();
    if cfg.demo {
        crate::demo::seed(&store).context("unable to seed the demo floor plan")?;
    }
    // 2. Keys: the hub's own signing key and the admin token, created on first start.
    let (verifier, admin_token) = load_keys(&cfg, &data_dir)?;
    let upstream =
        crate::upstream::Shared::new(&cfg).context("unable to set up the upstream clients")?;
    // 3. The engine thread.
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let (engine, engine_thread) = Engine::start(
        cfg.clone(),
        store.clone(),
        tokio::runtime::Handle::current(),
        metrics.clone(),
        clock.clone(),
    )
    .context("unable to start the engine")?;
    // 4. Listeners.
    let (ws_listener, http_listener) = bind(&cfg).await?;
    let ws_addr = ws_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    let (shutdown_tx, shutdown) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel::<()>(1);
    let hub = Arc::new(Hub {
        cfg: cfg.clone(),
        store,
        engine,
        verifier: Some(verifier),
        started: Instant::now(),
        next_conn: AtomicU64::new(1),
        shutdown,
        admin_token,
        upstream,
        metrics,
        sockets: Arc::default(),
        catchup_slots: tokio::sync::Semaphore::new(4),
        clock,
    });
    tokio::spawn(accept_loop(
        hub.clone(),
        ws_listener,
        Port::WebSocket,
        done_tx.clone(),
    ));
    tokio::spawn(accept_loop(
        hub.clone(),
        http_listener,
        Port::Http,
        done_tx.clone(),
    ));
    let mdns = cfg
        .mdns_enabled
        .then(|| crate::mdns::spawn(&cfg, ws_addr.port(), http_addr.port(), hub.shutdown.clone()));
    // 5. One print spooler per configured station printer, and the upstream forwarder.
    crate::print::spooler::spawn_all(&hub);
    crate::upstream::spawn(&hub, done_tx.clone());
    // 6. Periodic work.
    spawn_ticks(&hub, &cfg);
    tracing::info!(%ws_addr, %http_addr, db = %cfg.db_path.display(), realm = %format!("{}/{}", cfg.tenant_id, cfg.store_id),
        auth = cfg.auth_mode.as_str(), version = crate::VERSION, "poshub ready");
    Ok(RunningHub {
        ws_addr,
        http_addr,
        hub,
        shutdown_tx,
        done_rx,
        engine_thread: Some(engine_thread),
        mdns,
    })
}

/// The token verifier (cluster key and the hub's own key) and the admin token.
fn load_keys(cfg: &Config, data_dir: &std::path::Path) -> anyhow::Result<(Verifier, String)> {
    if cfg.auth_mode == AuthMode::Open {
        tracing::warn!(
            "HUB_AUTH_MODE=open: any terminal is accepted without a token; development only"
        );
    }
    let hub_key = HubKey::load_or_create(data_dir).context("unable to load the hub signing key")?;
    let verifier = Verifier::new(
        cfg.cluster_public_key_pem.as_deref(),
        Some(&hub_key),
        &cfg.tenant_id,
        &cfg.store_id,
    )
    .context("unable to set up token verification")?;
    let admin_token = crate::auth::admin_token(cfg.admin_token.as_deref(), data_dir)
        .context("unable to set up the admin token")?;
    Ok((verifier, admin_token))
}

/// Binds the WebSocket and the HTTP listener.
async fn bind(cfg: &Config) -> anyhow::Result<(TcpListener, TcpListener)> {
    let ws_listener = TcpListener::bind((cfg.bind, cfg.ws_port))
        .await
        .with_context(|| {
            format!(
                "unable to listen on {}:{} (HUB_PORT)",
                cfg.bind, cfg.ws_port
            )
        })?;
    let http_listener = TcpListener::bind((cfg.bind, cfg.http_port))
        .await
        .with_context(|| {
            format!(
                "unable to listen on {}:{} (HUB_HTTP_PORT)",
                cfg.bind, cfg.http_port
            )
        })?;
    Ok((ws_listener, http_listener))
}

/// The engine's periodic commands: lease and lock expiry, status broadcast, compaction.
fn spawn_ticks(hub: &Arc<Hub>, cfg: &Config) {
    spawn_tick(hub, cfg.heartbeat, || Cmd::LeaseTick);
    spawn_tick(hub, cfg.table_lock_tick, || Cmd::LockTick);
    spawn_tick(hub, cfg.status_interval, || Cmd::StatusTick);
    let retention = cfg.event_retention;
    spawn_tick(hub, Duration::from_secs(3600).min(retention), || {
        Cmd::Compact
    });
}

fn spawn_tick(hub: &Arc<Hub>, every: Duration, make: impl Fn() -> Cmd + Send + 'static) {
    let engine = hub.engine.clone();
    let mut shutdown = hub.shutdown.clone();
    tokio::spawn(async move {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t.tick().await;
        loop {
            tokio::select! {
                _ = t.tick() => { if !engine.send(make()) { return; } }
                _ = shutdown.changed() => return,
            }
        }
    });
}

async fn accept_loop(hub: Arc<Hub>, listener: TcpListener, port: Port, done: mpsc::Sender<()>) {
    let mut shutdown = hub.shutdown.clone();
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::from_millis(10);
                a
            }
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            hub.clone(),
            stream,
            peer,
            port,
            done.clone(),
        ));
    }
}

/// Serves one HTTP connection. On shutdown an idle keep-alive connection (an open dashboard
/// tab) is closed at once, and one with a request in progress after its response: waiting for
/// the browser to close it would delay every stop.
async fn serve_connection(
    hub: Arc<Hub>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    port: Port,
    done: mpsc::Sender<()>,
) {
    let _done = done;
    let mut shutdown = hub.shutdown.clone();
    let svc = service_fn(move |mut req| {
        req.extensions_mut().insert(peer);
        http::handle(hub.clone(), port, req)
    });
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        _ = async { shutdown.wait_for(|stop| *stop).await.is_ok() } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "http connection ended with an error");
    }
}

impl RunningHub {
    /// Stops accepting, lets the engine commit and answer what it has, closes every socket
    /// with 1001 and closes the database; bounded by `limit`.
    pub async fn shutdown(mut self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        let _ = self.shutdown_tx.send(true);
        self.hub.engine.send(Cmd::Shutdown);
        if let Some(mdns) = self.mdns.take() {
            let _ = tokio::time::timeout_at(deadline, mdns).await;
        }
        if let Some(t) = self.engine_thread.take() {
            let joined = tokio::task::spawn_blocking(move || t.join());
            let _ = tokio::time::timeout_at(deadline, joined).await;
        }
        // HTTP connection tasks hold a clone of `done`; recv() ends when all are gone. Upgraded
        // WebSocket tasks are counted separately; each ends after sending its close frame.
        let _ = tokio::time::timeout_at(deadline, self.done_rx.recv()).await;
        let _ = tokio::time::timeout_at(deadline, self.hub.sockets.all_closed()).await;
        tracing::info!("poshub stopped");
    }
}

/// Runs until SIGTERM or SIGINT, then shuts down within 5 s.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    // Watched before anything starts: a stop that arrives while the hub starts is a clean stop,
    // not the default action of the signal.
    let stop = stop_signal()?;
    let running = start(cfg).await?;
    stop.await;
    tracing::info!("shutting down");
    running.shutdown(Duration::from_millis(4500)).await;
    Ok(())
}

/// Resolves at the first SIGTERM or SIGINT; the handlers are installed when this returns.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("unable to watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("unable to watch SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
