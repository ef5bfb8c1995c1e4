//! `POST /update` and `GET /update/status`. One install at a time: the request takes the install
//! lock (the same `flock` a command-line install takes) before reading the body, so a second
//! upload, or an upload during `poshub-supervisor install`, is a 409 at once. Refusals known
//! before writing (a trial in progress, the booted version again without `force`, a bad bundle)
//! are answered with their reason, never a 202. A body that stops arriving for
//! `SUPERVISOR_API_BODY_TIMEOUT_S` ends the upload (408) and frees the box. Whatever way a job
//! ends, the status leaves `receiving`/`installing` (see [`Job`]).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::{flag, reply, ApiCtx};
use crate::bundle;
use crate::fsutil;
use crate::install::{
    self, InstallLock, LockError, UpdateState, UpdateStatus, Verified, VerifyError, VerifyOptions,
};
use crate::lifecycle::Slots;
use crate::slots::store::SlotState;
use crate::types::RebootRequest;

type Answer = (StatusCode, String);

/// An API install in progress: holds the install lock and marks the API busy. Dropped at the end
/// of the job, however it ends (refusal, timeout, install error, panic): a status still showing
/// `receiving`/`installing` is then turned into `failed`, so it can never stay stuck.
struct Job {
    ctx: Arc<ApiCtx>,
    lock: InstallLock,
    /// Declared after `lock`: fields drop in order, so the API stops saying busy only once
    /// the lock is free, and a waiting upload that wakes then can take it.
    _busy: Busy,
}

/// Marks the API busy while it lives (`ApiCtx::active`); its drop wakes a waiting upload.
struct Busy(Arc<ApiCtx>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.active.store(false, Ordering::SeqCst);
        self.0.released.notify_waiters();
    }
}

impl Job {
    fn start(ctx: &Arc<ApiCtx>) -> Result<Job, Answer> {
        let lock = InstallLock::try_take(&ctx.cfg).map_err(|e| match e {
            LockError::Busy => (
                StatusCode::CONFLICT,
                "another install is already running (an upload or `poshub-supervisor install`); \
                 see GET /update/status"
                    .to_string(),
            ),
            other @ LockError::Open { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, other.to_string())
            }
        })?;
        ctx.active.store(true, Ordering::SeqCst);
        Ok(Job {
            ctx: ctx.clone(),
            lock,
            _busy: Busy(ctx.clone()),
        })
    }

    fn fail(&self, msg: &str) {
        self.ctx.progress.set(true, |s| {
            s.state = UpdateState::Failed;
            s.error = Some(msg.to_string());
        });
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if self.ctx.progress.get().state.in_progress() {
            self.fail("the update ended without a result (internal error)");
        }
    }
}

/// An API job publishes its result (`installed`, `failed`) just before it releases the install
/// lock: an upload sent as soon as a client sees that result waits for the release (at most a
/// second) instead of getting a 409 from a job that has already ended.
async fn previous_job_released(ctx: &ApiCtx) {
    let released = async {
        loop {
            // Registered before the check, so a release between the two is not missed.
            let woken = ctx.released.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if !ctx.active.load(Ordering::SeqCst) || ctx.progress.get().state.in_progress() {
                return;
            }
            woken.await;
        }
    };
    // A job still running after its result was published is not this wait's to fix: after a
    // second the upload goes on, and the lock answers 409 if it is still held.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), released).await;
}

/// `POST /update[?no_reboot=1&allow_downgrade=1&force=1]`.
pub async fn post(req: Request<Incoming>, ctx: Arc<ApiCtx>) -> Response<Full<Bytes>> {
    match accept(req, &ctx).await {
        Ok(v) => reply(StatusCode::ACCEPTED, &v),
        Err((code, msg)) => reply(code, &json!({"error": msg})),
    }
}

async fn accept(req: Request<Incoming>, ctx: &Arc<ApiCtx>) -> Result<Value, Answer> {
    previous_job_released(ctx).await;
    let job = Job::start(ctx)?;
    let limit = ctx.cfg.max_bundle_bytes;
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("bundle is larger than the {limit}-byte limit"),
        ));
    }
    let no_reboot = flag(&req, "no_reboot");
    let allow_downgrade = flag(&req, "allow_downgrade");
    let force = flag(&req, "force");
    // 1. A trial in progress refuses any install: known before a byte is read.
    let slots = ctx.slots.clone();
    blocking(move || trial_in_progress(&slots)).await?;
    ctx.progress.set(true, |s| {
        *s = UpdateStatus {
            state: UpdateState::Receiving,
            bytes_total: declared.unwrap_or(0),
            ..Default::default()
        }
    });
    // 2. Stream the body to a spool file (never to a slot), against the limit and the timeout.
    let path = receive(req.into_body(), ctx)
        .await
        .inspect_err(|(_, m)| job.fail(m))?;
    // 3. Verify before accepting (`install::verify`: signature, board, version, a delta's base);
    //    the booted version needs `force`. The install gets the verified bundle.
    let opts = VerifyOptions {
        allow_downgrade,
        downgrade_flag: bundle::API_DOWNGRADE_FLAG,
        refuse_same_version: !force,
    };
    let (c, p) = (ctx.clone(), path.clone());
    let checked =
        blocking(move || install::verify(&c.cfg, &c.slots, &p, opts).map_err(|e| refusal(&e)))
            .await;
    let verified = match checked {
        Ok(v) => v,
        Err((code, msg)) => {
            let _ = std::fs::remove_file(&path);
            job.fail(&msg);
            return Err((code, msg));
        }
    };
    let version = verified.bundle.manifest.version.clone();
    // 4. Install in the background, holding the lock; the client follows GET /update/status.
    tokio::spawn(install_in_background(job, path, verified, no_reboot));
    Ok(json!({"status": "installing", "version": version, "noReboot": no_reboot}))
}

/// Runs a blocking check; a panic is a 500.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Answer> + Send + 'static,
) -> Result<T, Answer> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

fn internal(e: impl std::fmt::Display) -> Answer {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}

fn trial_in_progress(slots: &Slots) -> Result<(), Answer> {
    let booted = slots.backend.booted().map_err(internal)?.slot;
    let st = slots.store.load().map_err(internal)?;
    match st.trial.filter(|t| t.slot == booted) {
        Some(t) => Err((
            StatusCode::CONFLICT,
            format!(
                "a trial of slot {} (version {}) is in progress: wait for its commit or rollback",
                t.slot,
                t.version.as_deref().unwrap_or("?")
            ),
        )),
        None => Ok(()),
    }
}

/// The answer to a bundle that [`install::verify`] did not accept: a bad bundle is 400 with its
/// reason; a delta for another base, the running version again or a trial are 409; a fault of
/// this box (no key, unreadable key, disk or bootloader error) is 500, and logged.
fn refusal(e: &VerifyError) -> Answer {
    if e.is_box_fault() {
        tracing::error!("update refused by a fault of this device: {e}");
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    match e {
        VerifyError::Bundle(_) => (StatusCode::BAD_REQUEST, format!("bundle refused: {e}")),
        VerifyError::WrongBase(_) => (StatusCode::CONFLICT, format!("bundle refused: {e}")),
        _ => (StatusCode::CONFLICT, e.to_string()),
    }
}

async fn install_in_background(job: Job, path: PathBuf, verified: Verified, no_reboot: bool) {
    let ctx = job.ctx.clone();
    let c = ctx.clone();
    let r = tokio::task::spawn_blocking(move || {
        let r = install::install_verified(&job.lock, &c.cfg, &c.slots, verified, &c.progress);
        drop(job);
        r
    })
    .await;
    let _ = std::fs::remove_file(&path);
    match r {
        Ok(Ok(o)) if !no_reboot => {
            let _ = ctx
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
}

async fn receive(mut body: Incoming, ctx: &ApiCtx) -> Result<PathBuf, Answer> {
    let dir = ctx.cfg.state_dir().join("incoming");
    tokio::fs::create_dir_all(&dir).await.map_err(internal)?;
    let name = fsutil::random_hex(8).map_err(internal)?;
    let partial = dir.join(format!("upload-{name}.partial"));
    let done = dir.join(format!("upload-{name}.poshub"));
    let mut f = tokio::fs::File::create(&partial).await.map_err(internal)?;
    let mut total = 0u64;
    let limit = ctx.cfg.max_bundle_bytes;
    let idle = ctx.cfg.api_body_timeout;
    let r: Result<(), Answer> = async {
        loop {
            // A peer that vanished without FIN or RST (a dropped tailnet path) sends nothing
            // more: without this timeout the read would wait forever, holding the lock.
            let next = tokio::time::timeout(idle, body.frame())
                .await
                .map_err(|_| {
                    (
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "upload stalled: no data for {}s after {total} bytes \
                         (SUPERVISOR_API_BODY_TIMEOUT_S)",
                            idle.as_secs()
                        ),
                    )
                })?;
            let Some(frame) = next else { break };
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

/// `GET /update/status`: the current or last update, whether it came from the API or the
/// command line, plus `outcome`, the fate of the trial that followed it.
pub async fn status(ctx: Arc<ApiCtx>) -> Response<Full<Bytes>> {
    let r = tokio::task::spawn_blocking(move || status_view(&ctx)).await;
    match r {
        Ok(v) => reply(StatusCode::OK, &v),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": e.to_string()}),
        ),
    }
}

fn status_view(ctx: &ApiCtx) -> Value {
    let mut st = ctx.progress.get();
    let mut source = "api";
    if !ctx.active.load(Ordering::SeqCst) {
        // Not ours: a command-line install writes the same file at every phase.
        let path = ctx.cfg.state_dir().join("update-status.json");
        if let Ok(Some(disk)) = fsutil::read_json::<UpdateStatus>(&path) {
            st = disk;
        }
        if st.state.in_progress() {
            if let Err(LockError::Busy) = InstallLock::try_take(&ctx.cfg) {
                source = "cli";
            } else {
                let phase = st.phase.clone().unwrap_or_else(|| "receive".into());
                st.state = UpdateState::Interrupted;
                st.error = Some(format!(
                    "the install stopped during phase {phase} (its process ended)"
                ));
            }
        }
    }
    let outcome = trial_outcome(&ctx.slots, &st);
    // Once the trial has ended, the state itself says how (as `status` on the command line).
    match outcome.as_ref().and_then(|o| o["state"].as_str()) {
        Some("committed") => {
            st.state = UpdateState::Committed;
            st.error = None;
        }
        Some("rolled-back") => {
            st.state = UpdateState::RolledBack;
            st.error = outcome
                .as_ref()
                .and_then(|o| o["reason"].as_str())
                .map(String::from);
        }
        _ => {}
    }
    let mut v = json!(st);
    v["source"] = json!(source);
    v["outcome"] = outcome.unwrap_or(Value::Null);
    v
}

/// What became of the slot the last install wrote: `armed` (waiting for the reboot), `trying`
/// (the trial boot runs), `committed`, or `rolled-back` with the reason; `None` before an
/// install finished or once the slot was written over.
fn trial_outcome(slots: &Slots, st: &UpdateStatus) -> Option<Value> {
    if !matches!(
        st.state,
        UpdateState::Installed | UpdateState::Committed | UpdateState::RolledBack
    ) {
        return None;
    }
    let (target, version) = (st.target?, st.version.clone()?);
    let store = slots.store.load().ok()?;
    let info = store.slot(target);
    if info.version.as_deref() != Some(version.as_str()) {
        return None; // written over since
    }
    let (state, at) = match (&store.trial, info.state) {
        (Some(t), _) if t.slot == target && t.attempts == 0 => ("armed", t.armed_at),
        (Some(t), _) if t.slot == target => ("trying", t.armed_at),
        (_, SlotState::Good) => ("committed", info.committed_at.unwrap_or(0)),
        (_, SlotState::Bad) => ("rolled-back", 0),
        _ => return None,
    };
    let at = match state {
        "rolled-back" => store
            .journal
            .iter()
            .rev()
            .find(|e| e.slot == target && e.event == "mark-bad")
            .map_or(0, |e| e.at),
        _ => at,
    };
    Some(json!({
        "state": state,
        "slot": target,
        "version": version,
        "reason": info.reason,
        "at": at,
    }))
}
