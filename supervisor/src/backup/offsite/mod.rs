//! Offsite copies of the hub database in S3-compatible storage (see `docs/backups.md`,
//! "Offsite copies"), so a dead card costs minutes, not data.
//!
//! Upload ([`upload_once`], run by [`schedule`] every `BACKUP_S3_INTERVAL_S` while the
//! database changed): the newest checked local backup when it is recent, else a fresh one
//! ([`super::take`], trigger `offsite`); compressed and encrypted on a low-priority thread
//! ([`crypt`]) into a temporary file, uploaded at a bounded rate ([`store`]), then the old
//! copies thinned ([`thin`]). While storage is unreachable the tries back off exponentially
//! up to `BACKUP_S3_BACKOFF_MAX_S`. The outcome goes to `backups/offsite.json`, which the hub
//! reads for `/health`, its dashboard and its metrics, and `poshub-supervisor status` shows.
//!
//! Restore ([`restore`]): on the first boot of a new card (no database yet) before the hub
//! starts, and by hand (`poshub restore --from-offsite`, `poshub-supervisor offsite restore`).

pub mod cli;
pub mod crypt;
pub mod restore;
pub mod settings;
pub mod store;
pub mod thin;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::Config;
use crate::fsutil::{self, now_unix};
use crate::types::HubState;
pub use settings::Settings;
use store::Remote;

/// Why an offsite operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OffsiteError {
    /// Storage did not answer or refused (network down, credentials, bucket).
    #[error("storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Crypt(#[from] crypt::CryptError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Nothing to upload or restore.
    #[error("{0}")]
    Nothing(String),
    /// The restored database fails redb's integrity check, or cannot be put in place.
    #[error("{0}")]
    Refused(String),
}

/// The last upload and the last failure, in `backups/offsite.json` (read by the hub).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `s3://bucket/prefix/tenant/store`.
    pub target: String,
    /// Object name of the newest copy uploaded by this box (or restored by its first boot,
    /// until it uploads one of its own).
    pub newest: Option<String>,
    /// Snapshot time of that copy (unix seconds): the loss window starts here.
    pub snapshot_at: Option<u64>,
    pub uploaded_at: Option<u64>,
    /// Size of the uploaded object and of the database it holds.
    pub bytes: Option<u64>,
    pub db_bytes: Option<u64>,
    pub millis: Option<u64>,
    /// The local backup the copy was made from, and the hub's event seq when it was taken
    /// (`None` when unknown): an unchanged seq means nothing to upload.
    pub source: Option<String>,
    pub seq: Option<u64>,
    /// Failed tries since the last success, and why the last one failed.
    pub failures: u32,
    pub last_error: Option<String>,
    pub last_error_at: Option<u64>,
    /// What the first boot of this card did (restored a copy, found none, gave up).
    pub first_boot: Option<String>,
}

/// `backups/offsite.json`.
pub fn status_path(cfg: &Config) -> PathBuf {
    super::dir(cfg).join("offsite.json")
}

/// The saved status (default when none).
pub fn read_status(cfg: &Config) -> Status {
    fsutil::read_json(&status_path(cfg))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Saves the status where the hub (another user) can read it.
pub fn write_status(cfg: &Config, s: &Status) {
    let path = status_path(cfg);
    let dir = super::dir(cfg);
    let r = super::ensure_dir(&dir)
        .and_then(|()| fsutil::write_json(&path, s).map_err(|e| e.to_string()));
    if let Err(e) = r {
        tracing::warn!("unable to save {}: {e}", path.display());
        return;
    }
    if let Ok(m) = dir.metadata() {
        use std::os::unix::fs::MetadataExt;
        let _ = std::os::unix::fs::chown(&path, Some(m.uid()), Some(m.gid()));
    }
    let _ = std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644));
}

/// `s3://bucket/prefix` of this box's copies, for messages.
pub fn target(s: &Settings) -> String {
    format!("s3://{}/{}", s.bucket, s.prefix)
}

/// What one upload did.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub name: String,
    pub bytes: u64,
    pub db_bytes: u64,
    pub seal_ms: u64,
    pub upload_ms: u64,
    pub deleted: Vec<String>,
}

/// Uploads `snapshot` (a checked `.redb` copy taken at `at`) and thins the old copies.
pub async fn upload_file(
    cfg: &Config,
    s: &Settings,
    remote: &Remote,
    snapshot: &Path,
    at: u64,
) -> Result<Uploaded, OffsiteError> {
    let tmp = cfg.state_dir().join("offsite-upload.tmp");
    std::fs::create_dir_all(cfg.state_dir())?;
    let t0 = Instant::now();
    let (key, src, dst) = (s.key.clone(), snapshot.to_path_buf(), tmp.clone());
    let sealed = run_niced(move || -> std::io::Result<(u64, u64)> {
        let mut f = std::fs::File::open(&src)?;
        let db_bytes = f.metadata()?.len();
        let out = std::io::BufWriter::new(std::fs::File::create(&dst)?);
        let n = crypt::seal(&key, &mut f, out)?;
        Ok((n, db_bytes))
    })
    .await;
    let (bytes, db_bytes) = match sealed {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
    };
    let seal_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
    let name = store::object_name(at);
    let t1 = Instant::now();
    let r = remote.upload(&tmp, &name, s.max_kbps).await;
    let _ = std::fs::remove_file(&tmp);
    r?;
    let upload_ms = u64::try_from(t1.elapsed().as_millis()).unwrap_or(u64::MAX);
    let deleted = prune(s, remote).await;
    Ok(Uploaded {
        name,
        bytes,
        db_bytes,
        seal_ms,
        upload_ms,
        deleted,
    })
}

/// Deletes the copies [`thin`] does not keep; a failure only costs storage until next time.
async fn prune(s: &Settings, remote: &Remote) -> Vec<String> {
    let copies = match remote.list().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("offsite retention skipped: {e}");
            return Vec::new();
        }
    };
    let all: Vec<(String, u64)> = copies.into_iter().map(|c| (c.name, c.at)).collect();
    let mut deleted = Vec::new();
    for name in thin::to_delete(&all, s.keep, s.keep_daily) {
        match remote.delete(&name).await {
            Ok(()) => deleted.push(name),
            Err(e) => tracing::warn!("offsite copy {name} not removed: {e}"),
        }
    }
    if !deleted.is_empty() {
        tracing::info!("offsite retention removed {} copies", deleted.len());
    }
    deleted
}

/// Runs CPU-heavy work (zstd, encryption) on its own thread at nice 10, so the hub's threads
/// come first on a busy box. (Not tokio's blocking pool: a niced pool thread would stay niced.)
async fn run_niced<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("offsite-seal".into())
        .spawn(move || {
            // SAFETY: setpriority(2) on the calling thread (who = 0: this thread on Linux).
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
            let _ = tx.send(f());
        })?;
    rx.await
        .unwrap_or_else(|_| Err(std::io::Error::other("the compression thread died")))
}

/// The hub's event seq from its `/health`; `None` when no hub answers.
async fn hub_seq(cfg: &Config) -> Option<u64> {
    use http_body_util::BodyExt;
    let url = crate::http::parse_url(&cfg.hub_health_url).ok()?;
    let resp = crate::http::get(&url, Duration::from_secs(5)).await.ok()?;
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v["seq"].as_u64()
}

/// The snapshot to upload now, or `None` when the database did not change since the last
/// upload: the newest local backup if it is newer than the last copy and younger than the
/// interval, else a fresh backup (taken through the running hub).
async fn pick_snapshot(
    cfg: &Config,
    s: &Settings,
    last: &Status,
    healthy: bool,
) -> Result<Option<(PathBuf, u64, Option<u64>)>, OffsiteError> {
    let seq = if healthy { hub_seq(cfg).await } else { None };
    if seq.is_some() && seq == last.seq {
        return Ok(None);
    }
    let c = cfg.clone();
    let newest = tokio::task::spawn_blocking(move || super::newest(&c))
        .await
        .ok()
        .flatten();
    let name_of = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    if let Some(n) = &newest {
        let fresh = n.age_s < s.interval.as_secs();
        if name_of(&n.path) != last.source && (fresh || !healthy) {
            let at = now_unix().saturating_sub(n.age_s);
            // Its seq is not known: the next round checks again with a fresh backup.
            return Ok(Some((n.path.clone(), at, None)));
        }
    }
    if !healthy {
        return Ok(None);
    }
    let c = cfg.clone();
    let a = tokio::task::spawn_blocking(move || super::take(&c, super::Trigger::Offsite))
        .await
        .map_err(|_| OffsiteError::Nothing("the backup task panicked".into()))?;
    match (a.result, a.path) {
        (super::BackupResult::Ok, Some(p)) => Ok(Some((p, a.at, seq))),
        _ => Err(OffsiteError::Nothing(format!(
            "no local backup to upload: {}",
            a.detail
        ))),
    }
}

/// One round of the schedule: upload if something changed. `Ok(false)`: nothing to do.
pub async fn upload_once(
    cfg: &Config,
    s: &Settings,
    remote: &Remote,
    healthy: bool,
) -> Result<bool, OffsiteError> {
    let st = read_status(cfg);
    let Some((path, at, seq)) = pick_snapshot(cfg, s, &st, healthy).await? else {
        return Ok(false);
    };
    let up = upload_file(cfg, s, remote, &path, at).await?;
    tracing::info!(
        bytes = up.bytes,
        db_bytes = up.db_bytes,
        seal_ms = up.seal_ms,
        upload_ms = up.upload_ms,
        "offsite copy uploaded: {}/{} ({} KiB of a {} KiB database)",
        target(s),
        up.name,
        up.bytes / 1024,
        up.db_bytes / 1024
    );
    record(cfg, s, &up, at, &path, seq);
    Ok(true)
}

/// Saves a successful upload of `snapshot` (taken at `at`, the hub at `seq`) as the status.
pub fn record(
    cfg: &Config,
    s: &Settings,
    up: &Uploaded,
    at: u64,
    snapshot: &Path,
    seq: Option<u64>,
) {
    let mut st = read_status(cfg);
    st.target = target(s);
    st.newest = Some(up.name.clone());
    st.snapshot_at = Some(at);
    st.uploaded_at = Some(now_unix());
    st.bytes = Some(up.bytes);
    st.db_bytes = Some(up.db_bytes);
    st.millis = Some(up.seal_ms + up.upload_ms);
    st.source = snapshot
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    st.seq = seq;
    st.failures = 0;
    st.last_error = None;
    write_status(cfg, &st);
}

/// The wait before try `failures + 1`: 1 s doubling, at most `max` (a WAN that blips comes
/// back within seconds; one that is down for hours is tried every `max`).
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    Duration::from_secs(1u64 << exp).min(max)
}

/// The upload schedule, a task of its own beside the hub: every `BACKUP_S3_INTERVAL_S`
/// (counted from the last upload, also across restarts) while the database changed; after a
/// failure, the next try waits [`backoff`].
pub async fn schedule(cfg: Config, s: Settings, hub: watch::Receiver<HubState>) {
    let remote = match Remote::new(&s) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("offsite copies are off: {e}");
            off_because(&cfg, &target(&s), &format!("offsite copies are off: {e}"));
            return;
        }
    };
    tracing::info!(
        "offsite copies to {} every {} s while the database changes",
        target(&s),
        s.interval.as_secs()
    );
    let poll = (s.interval / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
    let mut next_try = Instant::now();
    loop {
        tokio::time::sleep(poll).await;
        if Instant::now() < next_try {
            continue;
        }
        let st = read_status(&cfg);
        let since = now_unix().saturating_sub(st.uploaded_at.unwrap_or(0));
        if st.failures == 0 && since < s.interval.as_secs() {
            continue;
        }
        let healthy = hub.borrow().healthy;
        match upload_once(&cfg, &s, &remote, healthy).await {
            Ok(_) => next_try = Instant::now(),
            Err(e) => {
                let mut st = read_status(&cfg);
                st.target = target(&s);
                st.failures += 1;
                st.last_error = Some(e.to_string());
                st.last_error_at = Some(now_unix());
                write_status(&cfg, &st);
                let wait = backoff(st.failures, s.backoff_max);
                next_try = Instant::now() + wait;
                tracing::warn!(
                    "offsite upload failed (try {}): {e}; next try in {} s",
                    st.failures,
                    wait.as_secs()
                );
            }
        }
    }
}

/// Starts the schedule if offsite copies are configured; a bad setting is logged and the
/// supervisor runs on without them (the hub must start either way).
pub fn start(cfg: &Config, hub: watch::Receiver<HubState>) -> Option<tokio::task::JoinHandle<()>> {
    match settings::load(cfg, None) {
        Ok(Some(s)) => Some(tokio::spawn(schedule(cfg.clone(), s, hub))),
        Ok(None) => None,
        Err(e) => {
            tracing::error!("offsite copies are off: {e}");
            off_because(
                cfg,
                "off: invalid settings",
                &format!("offsite copies are off: {e}"),
            );
            None
        }
    }
}

/// Records why a box set up for offsite copies makes none, where the box is looked at
/// (`/health`, the dashboard, `status`), not only in the journal.
fn off_because(cfg: &Config, target: &str, why: &str) {
    write_status(
        cfg,
        &Status {
            target: target.into(),
            failures: 1,
            last_error: Some(why.into()),
            last_error_at: Some(now_unix()),
            ..read_status(cfg)
        },
    );
}

/// The offsite part of `poshub-supervisor status`.
pub fn status_json(cfg: &Config) -> serde_json::Value {
    let st = read_status(cfg);
    if st.target.is_empty() && st.first_boot.is_none() {
        return serde_json::Value::Null;
    }
    let mut v = serde_json::to_value(&st).unwrap_or_default();
    if let Some(at) = st.snapshot_at {
        v["ageS"] = now_unix().saturating_sub(at).into();
    }
    v
}

/// `offsite: newest NAME, AGE old, uploaded to TARGET` for `status`, and the last failure.
pub fn render(out: &mut String, v: &serde_json::Value) {
    use std::fmt::Write as _;
    if v.is_null() {
        return;
    }
    let target = v["target"].as_str().unwrap_or("-");
    match v["newest"].as_str() {
        Some(name) => {
            let age = fsutil::age(v["ageS"].as_u64().unwrap_or(0));
            let _ = writeln!(out, "offsite: newest {name}, {age} old, in {target}");
        }
        None => {
            let _ = writeln!(out, "offsite: no copy uploaded yet to {target}");
        }
    }
    if let Some(e) = v["lastError"].as_str() {
        let _ = writeln!(out, "  failing ({} tries): {e}", v["failures"]);
    }
    if let Some(f) = v["firstBoot"].as_str() {
        let _ = writeln!(out, "  first boot: {f}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let max = Duration::from_secs(900);
        let waits: Vec<u64> = (1..=10).map(|n| backoff(n, max).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
        assert_eq!(backoff(11, max).as_secs(), 900);
        assert_eq!(backoff(u32::MAX, max), max);
    }
}
