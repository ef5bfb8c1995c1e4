//! `poshub-supervisor run`: the long-running service. Start-up steps are numbered below; then
//! it supervises the hub, serves the update API, runs the trial monitor when this boot is a
//! trial, and stops cleanly on SIGTERM/SIGINT (forwarded to the hub) or on a reboot request.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::api::{self, ApiCtx};
use crate::backup;
use crate::config::Config;
use crate::hub;
use crate::install::Progress;
use crate::lifecycle::{BootDecision, Slots};
use crate::notify::Notifier;
use crate::recovery;
use crate::slots::{self, Slot};
use crate::types::{HubState, RebootRequest};

/// Runs the service until a signal or a reboot request.
pub async fn run(cfg: Config) -> Result<()> {
    let notifier = Notifier;
    // 0. One supervisor per data dir: a second one would start a second hub on the same files.
    let _run_lock = take_run_lock(&cfg)?;
    // SIGTERM/SIGINT are caught from here on, so a stop that arrives while the supervisor
    // starts (systemd, a test that stops it as soon as the hub answers) is a clean stop at step 8
    // rather than the signal's default action killing it before its handlers exist.
    let mut stop_signals = (
        signal(SignalKind::terminate()).context("SIGTERM handler")?,
        signal(SignalKind::interrupt()).context("SIGINT handler")?,
    );
    // 1. Recovery checks, before the hub can touch its files.
    let failed = recovery_checks(&cfg, &notifier).await?;

    // 1b. A replacement card (no database yet) gets the newest offsite copy first.
    backup::offsite::restore::first_boot(&cfg, &notifier).await;

    // 2. What this boot is: normal, trial, or a trial that has used up its attempts.
    let slots = Slots::new(&cfg, slots::backend_from_config(&cfg));
    let (reboot_tx, mut reboot_rx) = mpsc::channel::<RebootRequest>(4);
    let decision = boot_decision(&slots, &reboot_tx).await?;

    // An install that a power cut or kill stopped is reported as interrupted before the hub
    // starts (tests take a running hub as "the supervisor has started").
    let progress = Arc::new(Progress::new(&cfg.state_dir()));
    progress.mark_interrupted();

    // 3. The hub, under health supervision.
    let (stop_tx, stop_rx) = watch::channel::<Option<Signal>>(None);
    let (hub_tx, hub_rx) = watch::channel(HubState::default());
    let hub_task = start_hub(&cfg, &slots, &notifier, hub_tx, stop_rx).await;

    // 4. The update API.
    let api_ctx = ApiCtx {
        cfg: cfg.clone(),
        slots: slots.clone(),
        progress: progress.clone(),
        reboot_tx: reboot_tx.clone(),
        token: String::new(),
        hub: hub_rx.clone(),
        active: AtomicBool::new(false),
        released: tokio::sync::Notify::new(),
    };
    let api_task = start_api(api_ctx);

    // 5. The trial monitor: commit after the health window, or fail and roll back.
    let trial_task = start_trial_monitor(
        &cfg,
        &slots,
        decision.as_ref(),
        &hub_rx,
        &reboot_tx,
        &notifier,
    );
    if failed > 0 {
        tracing::warn!("{failed} recovery check(s) failed; see `poshub-supervisor status`");
    }

    // 6. Keep the persisted clock moving forward (RTC-less clock check).
    let clock_task = tokio::spawn(persist_clock(cfg.clone()));

    // 7. Backups of the hub database on a schedule (hourly by default).
    let backup_task = tokio::spawn(backup::schedule(cfg.clone(), hub_rx.clone()));
    let offsite_task = backup::offsite::start(&cfg, hub_rx.clone());

    // 8. Wait for a stop signal or a reboot request.
    let (sig, reboot) = wait_for_stop(&mut stop_signals, &mut reboot_rx).await;
    notifier.stopping();

    // 9. Stop: forward the signal to the hub, wait for it, back up the closed database, record
    //    a clean stop, reboot if asked.
    let _ = stop_tx.send(Some(sig));
    let _ = hub_task.await;
    for t in [api_task, trial_task].into_iter().flatten() {
        t.abort();
    }
    clock_task.abort();
    backup_task.abort();
    if let Some(t) = offsite_task {
        t.abort();
    }
    stop_backup(&cfg, &notifier).await;
    recovery::mark_clean_stop(&cfg);
    match reboot {
        Some(r) => reboot_now(&slots, r).await,
        None => Ok(()),
    }
}

/// Step 1: the recovery checks; returns how many failed.
async fn recovery_checks(cfg: &Config, notifier: &Notifier) -> Result<usize> {
    notifier.status("running recovery checks");
    let c = cfg.clone();
    let report = tokio::task::spawn_blocking(move || recovery::run_checks(&c))
        .await
        .context("recovery checks panicked")?;
    Ok(report
        .checks
        .iter()
        .filter(|c| c.result == recovery::Outcome::Failed)
        .count())
}

/// Step 2: the slot bookkeeping of this boot. A trial that used up its attempts asks for a
/// reboot at once; a bookkeeping failure is logged and the hub runs anyway (`None`).
async fn boot_decision(
    slots: &Slots,
    reboot_tx: &mpsc::Sender<RebootRequest>,
) -> Result<Option<BootDecision>> {
    let s2 = slots.clone();
    let decision = match tokio::task::spawn_blocking(move || s2.on_boot())
        .await
        .context("slot bookkeeping panicked")?
    {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::error!("slot bookkeeping failed: {e:#}; running the hub anyway");
            None
        }
    };
    if let Some(BootDecision::TrialExhausted { slot, reason }) = &decision {
        tracing::error!("trial of slot {slot} failed: {reason}; rebooting");
        let _ = reboot_tx.try_send(RebootRequest {
            trial: false,
            reason: reason.clone(),
        });
    }
    Ok(decision)
}

/// Step 3: the hub under health supervision (it gets the running OS version); stops when
/// `stop_rx` carries a signal.
async fn start_hub(
    cfg: &Config,
    slots: &Slots,
    notifier: &Notifier,
    hub_tx: watch::Sender<HubState>,
    stop_rx: watch::Receiver<Option<Signal>>,
) -> tokio::task::JoinHandle<()> {
    let s3 = slots.clone();
    let os_version = tokio::task::spawn_blocking(move || s3.os_version())
        .await
        .unwrap_or_default();
    tokio::spawn(hub::supervise(
        cfg.clone(),
        os_version,
        notifier.clone(),
        hub_tx,
        stop_rx,
    ))
}

/// Step 4: the update API with its token. Without a token or a port the hub still runs; only
/// remote updates are unavailable.
fn start_api(mut ctx: ApiCtx) -> Option<tokio::task::JoinHandle<()>> {
    match api::load_or_create_token(&ctx.cfg) {
        Err(e) => {
            tracing::error!("update API not available: no API token: {e:#}");
            None
        }
        Ok(token) => {
            ctx.token = token;
            Some(tokio::spawn(api::listen::serve_all(Arc::new(ctx))))
        }
    }
}

/// Step 5: on a trial boot, the monitor that commits the slot or rolls it back.
fn start_trial_monitor(
    cfg: &Config,
    slots: &Slots,
    decision: Option<&BootDecision>,
    hub_rx: &watch::Receiver<HubState>,
    reboot_tx: &mpsc::Sender<RebootRequest>,
    notifier: &Notifier,
) -> Option<tokio::task::JoinHandle<()>> {
    let Some(&BootDecision::Trial {
        slot,
        attempt,
        elapsed,
    }) = decision
    else {
        return None;
    };
    tracing::info!(%slot, attempt, "trial boot: committing after {:?} of health", cfg.health_window);
    Some(tokio::spawn(trial_monitor(
        cfg.clone(),
        slots.clone(),
        slot,
        elapsed,
        hub_rx.clone(),
        reboot_tx.clone(),
        notifier.clone(),
    )))
}

/// Step 8: waits for SIGTERM, SIGINT or a reboot request (which stops the hub with SIGTERM).
async fn wait_for_stop(
    (term, int): &mut (tokio::signal::unix::Signal, tokio::signal::unix::Signal),
    reboot_rx: &mut mpsc::Receiver<RebootRequest>,
) -> (Signal, Option<RebootRequest>) {
    let (sig, reboot) = tokio::select! {
        _ = term.recv() => (Signal::SIGTERM, None),
        _ = int.recv() => (Signal::SIGINT, None),
        Some(r) = reboot_rx.recv() => (Signal::SIGTERM, Some(r)),
    };
    if let Some(r) = &reboot {
        tracing::info!("stopping the hub to reboot: {}", r.reason);
    } else {
        tracing::info!("{sig} received: stopping");
    }
    (sig, reboot)
}

/// Step 6: persists the clock every 10 minutes.
async fn persist_clock(cfg: Config) {
    let mut t = tokio::time::interval(Duration::from_secs(600));
    loop {
        t.tick().await;
        let c = cfg.clone();
        let _ = tokio::task::spawn_blocking(move || recovery::persist_clock(&c)).await;
    }
}

/// Step 9's end: the reboot asked for (returns only with an emulated bootloader).
async fn reboot_now(slots: &Slots, r: RebootRequest) -> Result<()> {
    tracing::warn!("rebooting: {}", r.reason);
    let backend = slots.backend.clone();
    tokio::task::spawn_blocking(move || backend.reboot(r.trial))
        .await
        .context("reboot task panicked")?
        .context("reboot failed")?;
    tracing::info!("reboot requested from the emulated bootloader; exiting");
    Ok(())
}

/// The backup after the hub stopped: the database is closed, so the supervisor copies and
/// checks the file itself. systemd's stop timeout is extended while it runs.
async fn stop_backup(cfg: &Config, notifier: &Notifier) {
    let c = cfg.clone();
    let work = tokio::task::spawn_blocking(move || backup::take(&c, backup::Trigger::Stop));
    tokio::pin!(work);
    loop {
        notifier.extend_timeout(Duration::from_secs(30));
        tokio::select! {
            _ = &mut work => return,
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

/// The run lock; `Ok(None)` when the data dir cannot hold one (read-only or missing: the
/// recovery checks report that, and the hub is still started), an error only when another
/// supervisor holds it.
fn take_run_lock(cfg: &Config) -> Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    let dir = cfg.state_dir();
    let opened = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("run.lock"))
    });
    let f = match opened {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("no run lock in {}: {e}", dir.display());
            return Ok(None);
        }
    };
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map(Some)
        .map_err(|_| {
            anyhow::anyhow!(
                "another poshub-supervisor is already running on {}",
                cfg.data_dir.display()
            )
        })
}

/// Watches the hub during a trial boot: commit once it has been healthy for the health window;
/// a crash loop or no healthy window before the trial timeout marks the slot bad and reboots.
pub async fn trial_monitor(
    cfg: Config,
    slots: Slots,
    slot: Slot,
    elapsed: Duration,
    mut hub: watch::Receiver<HubState>,
    reboot_tx: mpsc::Sender<RebootRequest>,
    notifier: Notifier,
) {
    let start = Instant::now()
        .checked_sub(elapsed)
        .unwrap_or_else(Instant::now);
    let base_restarts = hub.borrow().restarts;
    let window = cfg.health_window;
    // The first status line is due at once (`None`: no `Instant` arithmetic that could fail).
    let mut last_status: Option<Instant> = None;
    loop {
        let s = hub.borrow_and_update().clone();
        let healthy_for = s.healthy_since.map(|t| t.elapsed()).unwrap_or_default();
        let restarts = s.restarts.saturating_sub(base_restarts);
        let failure = if s.healthy && healthy_for >= window {
            let sl = slots.clone();
            let why = format!("hub healthy for {}s during the trial", window.as_secs());
            match tokio::task::spawn_blocking(move || sl.commit(slot, &why)).await {
                Ok(Ok(())) => {
                    tracing::info!(%slot, "trial passed: slot committed");
                    notifier.status(&format!("slot {slot} committed; hub healthy"));
                }
                Ok(Err(e)) => tracing::error!("unable to commit slot {slot}: {e:#}"),
                Err(e) => tracing::error!("commit task failed: {e}"),
            }
            return;
        } else if restarts >= cfg.trial_max_restarts.max(1) {
            Some(format!(
                "crash loop: the hub exited {restarts} time(s) during the trial"
            ))
        } else if start.elapsed() >= cfg.trial_timeout {
            Some(format!(
                "health timeout: the hub was not healthy for {}s within {}s",
                window.as_secs(),
                cfg.trial_timeout.as_secs()
            ))
        } else {
            None
        };
        if let Some(reason) = failure {
            tracing::error!(%slot, "trial failed: {reason}");
            notifier.status(&format!(
                "trial of slot {slot} failed: {reason}; rolling back"
            ));
            let sl = slots.clone();
            let r = reason.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || sl.fail_trial(&r)).await {
                tracing::error!("unable to mark slot {slot} bad: {e:#}");
            }
            let _ = reboot_tx
                .send(RebootRequest {
                    trial: false,
                    reason: format!("trial of slot {slot} failed: {reason}"),
                })
                .await;
            return;
        }
        if last_status.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            last_status = Some(Instant::now());
            notifier.status(&format!(
                "trial of slot {slot}: hub healthy for {}/{}s",
                healthy_for.as_secs(),
                window.as_secs()
            ));
        }
        let _ = tokio::time::timeout(Duration::from_millis(250), hub.changed()).await;
    }
}
