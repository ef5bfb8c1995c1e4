//! Runs the hub as a child process: start, health-probe it, restart it with exponential backoff
//! when it exits, forward SIGTERM/SIGINT on shutdown (SIGKILL after a grace period), and drive
//! the sd-notify messages from its health. The current [`HubState`] is published on a watch
//! channel for the trial monitor, the API and `STATUS=` lines.

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::config::Config;
use crate::http::{self, HttpUrl};
use crate::notify::{Notifier, CHILD_ENV_REMOVE};
pub use crate::types::HubState;

/// How long the hub gets to exit after the forwarded signal before SIGKILL (the hub itself stops
/// within 5 s, `docs/storage.md`).
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// A hub that stayed up this long resets the restart backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Runs the hub until `stop` carries a signal; returns after the child is gone.
pub async fn supervise(
    cfg: Config,
    os_version: Option<String>,
    notifier: Notifier,
    state_tx: watch::Sender<HubState>,
    mut stop: watch::Receiver<Option<Signal>>,
) {
    let url = match http::parse_url(&cfg.hub_health_url) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!("SUPERVISOR_HUB_HEALTH_URL: {e:#}");
            notifier.status(&format!("bad SUPERVISOR_HUB_HEALTH_URL: {e:#}"));
            let _ = stop.changed().await;
            return;
        }
    };
    let (interval, probe_timeout) = probe_timings(&cfg, &notifier);
    let floor = cfg.restart_backoff_min.max(Duration::from_millis(10));
    let ceiling = cfg.restart_backoff_max.max(floor);
    let mut backoff = floor;
    let mut ready_sent = false;
    loop {
        if stop.borrow().is_some() {
            return;
        }
        let started = Instant::now();
        match spawn(&cfg, os_version.as_deref()) {
            Ok(mut child) => {
                let pid = child.id();
                tracing::info!(pid, "hub started");
                notifier.status("hub starting");
                set_pid(&state_tx, pid);
                let ended = run_child(
                    &mut child,
                    &url,
                    interval,
                    probe_timeout,
                    &notifier,
                    &state_tx,
                    &mut stop,
                    &mut ready_sent,
                    &crate::backup::lock_path(&cfg),
                )
                .await;
                if let Some(sig) = ended {
                    stop_child(&mut child, sig).await;
                    set_pid(&state_tx, None);
                    return;
                }
            }
            Err(e) => {
                tracing::error!("unable to start the hub {}: {e}", cfg.hub_bin.display());
                state_tx.send_modify(|s| {
                    s.last_error = Some(format!("unable to start: {e}"));
                    s.restarts += 1;
                });
            }
        }
        // The hub is gone: back off before restarting, longer each time it dies young.
        if started.elapsed() >= STABLE_AFTER {
            backoff = floor;
        }
        notifier.status(&format!(
            "hub exited; restarting in {} ms",
            backoff.as_millis()
        ));
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(ceiling);
    }
}

/// How often the hub's health is probed (at least three times per systemd watchdog period),
/// and how long one probe may take.
fn probe_timings(cfg: &Config, notifier: &Notifier) -> (Duration, Duration) {
    let mut interval = cfg.health_interval;
    if let Some(wd) = notifier.watchdog_period() {
        interval = interval.min(wd / 3).max(Duration::from_millis(50));
    }
    let probe_timeout = cfg
        .health_timeout
        .min(interval.max(Duration::from_millis(200)));
    (interval, probe_timeout)
}

/// A hub process started (`Some`) or gone (`None`): not healthy until a probe says so.
fn set_pid(state_tx: &watch::Sender<HubState>, pid: Option<u32>) {
    state_tx.send_modify(|s| {
        s.pid = pid;
        s.healthy = false;
        s.healthy_since = None;
    });
}

fn spawn(cfg: &Config, os_version: Option<&str>) -> std::io::Result<Child> {
    let mut cmd = Command::new(&cfg.hub_bin);
    cmd.args(&cfg.hub_args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; it only sets a flag on the new process. If the
    // supervisor dies (SIGKILL, crash), the hub gets SIGTERM instead of living on as an orphan
    // that holds the database lock and the port.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    for var in CHILD_ENV_REMOVE {
        cmd.env_remove(var);
    }
    // The hub opens the database the recovery checks looked at (the environment wins over its
    // --config file), and runs in the data directory: the root filesystem is read-only, so a
    // relative path must never resolve against `/`.
    cmd.env("HUB_DB_PATH", &cfg.hub_db);
    // The OS (bundle) version the hub reports in /health, so a fleet tool compares like with like.
    match os_version {
        Some(v) => cmd.env("POSHUB_OS_VERSION", v),
        None => cmd.env_remove("POSHUB_OS_VERSION"),
    };
    if let Some(dir) = cfg.hub_db.parent().filter(|d| d.is_dir()) {
        cmd.current_dir(dir);
    }
    if let Some(user) = &cfg.hub_user {
        if nix::unistd::geteuid().is_root() {
            if let Ok(Some(u)) = nix::unistd::User::from_name(user) {
                give_hub_its_files(cfg, u.uid, u.gid);
                cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
            } else {
                tracing::warn!("SUPERVISOR_HUB_USER {user:?} not found; running the hub as root");
            }
        }
    }
    cmd.spawn()
}

/// The hub must be able to create its database, key and backups next to the database: the
/// database directory and the database itself belong to the hub's user. Directories made by
/// root (first boot, provisioning, a backup restored by the recovery checks) are handed over;
/// nothing else is touched. Failures are logged: the hub then reports what it cannot open.
fn give_hub_its_files(cfg: &Config, uid: nix::unistd::Uid, gid: nix::unistd::Gid) {
    use std::os::unix::fs::MetadataExt;
    let dir = cfg.hub_db.parent().filter(|d| d.is_dir());
    for path in dir.into_iter().chain([cfg.hub_db.as_path()]) {
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        if meta.uid() != uid.as_raw() {
            match std::os::unix::fs::chown(path, Some(uid.as_raw()), Some(gid.as_raw())) {
                Ok(()) => tracing::info!("gave {} to the hub's user (uid {uid})", path.display()),
                Err(e) => tracing::warn!("unable to give {} to uid {uid}: {e}", path.display()),
            }
        }
    }
}

/// Watches one child until it exits (returns `None`) or a stop signal arrives (`Some`).
#[allow(clippy::too_many_arguments)]
async fn run_child(
    child: &mut Child,
    url: &HttpUrl,
    interval: Duration,
    probe_timeout: Duration,
    notifier: &Notifier,
    state_tx: &watch::Sender<HubState>,
    stop: &mut watch::Receiver<Option<Signal>>,
    ready_sent: &mut bool,
    backup_lock: &std::path::Path,
) -> Option<Signal> {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            status = child.wait() => {
                let what = match status {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::warn!("hub exited: {what}");
                state_tx.send_modify(|s| {
                    s.pid = None;
                    s.healthy = false;
                    s.healthy_since = None;
                    s.restarts += 1;
                    s.last_exit = Some(what);
                });
                return None;
            }
            _ = stop.changed() => {
                return Some((*stop.borrow()).unwrap_or(Signal::SIGTERM));
            }
            _ = tick.tick() => {
                let r = http::probe_health(url, probe_timeout).await;
                let was_healthy = state_tx.borrow().healthy;
                match r {
                    Ok(()) => {
                        if !*ready_sent {
                            *ready_sent = true;
                            notifier.ready("hub healthy");
                        } else if !was_healthy {
                            notifier.status("hub healthy");
                        }
                        notifier.watchdog();
                        if !was_healthy {
                            tracing::info!("hub healthy");
                        }
                        state_tx.send_modify(|s| {
                            s.healthy = true;
                            s.healthy_since.get_or_insert_with(Instant::now);
                            s.last_error = None;
                        });
                    }
                    Err(e) if was_healthy && crate::backup::in_progress(backup_lock) => {
                        // The hub is copying its database for a backup the supervisor asked
                        // for: writes, and so the health probe, wait for the copy. Busy, not
                        // hung (bounded by the backup's own timeout).
                        tracing::debug!("health check failed during a backup: {e:#}");
                        notifier.watchdog();
                    }
                    Err(e) => {
                        let msg = format!("{e:#}");
                        if was_healthy {
                            tracing::warn!("hub unhealthy: {msg}");
                        }
                        notifier.status(&format!("hub unhealthy: {msg}"));
                        state_tx.send_modify(|s| {
                            s.healthy = false;
                            s.healthy_since = None;
                            s.last_error = Some(msg);
                        });
                    }
                }
            }
        }
    }
}

/// Forwards `sig` to the hub, waits [`STOP_GRACE`], then SIGKILLs it.
async fn stop_child(child: &mut Child, sig: Signal) {
    if let Some(pid) = child.id() {
        tracing::info!(pid, "forwarding {sig} to the hub");
        let _ = signal::kill(Pid::from_raw(pid.cast_signed()), sig);
        // A stopped (SIGSTOPped) hub cannot act on the signal: let it run again.
        let _ = signal::kill(Pid::from_raw(pid.cast_signed()), Signal::SIGCONT);
    }
    if let Ok(Ok(s)) = tokio::time::timeout(STOP_GRACE, child.wait()).await {
        tracing::info!("hub stopped: {s}");
    } else {
        tracing::warn!("hub did not stop within {STOP_GRACE:?}; killing it");
        let _ = child.kill().await;
    }
}
