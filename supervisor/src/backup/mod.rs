//! Backups of the hub database on the data partition (see `docs/backups.md`).
//!
//! When: on a schedule (`SUPERVISOR_BACKUP_INTERVAL_S`, default hourly, counted from the newest
//! backup so a restart does not take an extra one), before every update install, and after the
//! hub stopped cleanly with the supervisor. How: while the hub runs, it copies its database
//! between two commits and checks the copy (`POST /admin/backup`); when it is stopped, the
//! supervisor copies the closed file and checks the copy with redb's integrity check. Only a
//! checked copy gets its final name `<db dir>/backups/backup-<UTC time>-<trigger>.redb`, so
//! everything with that name counts. Retention ([`retention`]) keeps the newest of each of the
//! last 24 hours and 7 days. A backup that would leave less than
//! `SUPERVISOR_BACKUP_MIN_FREE_MB` free is skipped, and the reason logged. The last attempt
//! is saved to `<data>/supervisor/backup.json` for `poshub-supervisor status`; the recovery
//! check restores the newest file of the directory that passes the integrity check.

pub mod hubapi;
pub mod offsite;
pub mod retention;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::Config;
use crate::fsutil::{self, now_unix};
use crate::types::HubState;
use hubapi::HubError;
pub use retention::Trigger;

/// The backup directory: `backups/` beside the hub database, where the hub writes its copies
/// and the recovery check looks.
pub fn dir(cfg: &Config) -> PathBuf {
    cfg.hub_db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("backups")
}

/// What one attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupResult {
    Ok,
    Skipped,
    Failed,
}

/// One backup attempt, as saved in `backup.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: u64,
    pub trigger: Trigger,
    pub result: BackupResult,
    pub detail: String,
    pub path: Option<PathBuf>,
    pub bytes: Option<u64>,
    pub millis: u64,
}

/// The newest file in the backup directory that counts (any `*.redb`: the recovery check
/// considers them all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Newest {
    pub path: PathBuf,
    pub age_s: u64,
    pub bytes: u64,
}

/// Where the last attempt is saved.
pub fn attempt_path(cfg: &Config) -> PathBuf {
    cfg.state_dir().join("backup.json")
}

/// Every `*.redb` of the backup directory with its modification time, newest first.
pub fn list(dir: &Path) -> Vec<(PathBuf, SystemTime, u64)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .filter_map(std::result::Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "redb"))
        .filter_map(|p| {
            let m = p.metadata().ok().filter(std::fs::Metadata::is_file)?;
            Some((p, m.modified().ok()?, m.len()))
        })
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    v
}

/// The newest backup and its age.
pub fn newest(cfg: &Config) -> Option<Newest> {
    let (path, at, bytes) = list(&dir(cfg)).into_iter().next()?;
    let age_s = SystemTime::now()
        .duration_since(at)
        .unwrap_or_default()
        .as_secs();
    Some(Newest { path, age_s, bytes })
}

/// The backup part of `poshub-supervisor status`: the newest backup, how many there are, and
/// the last attempt.
pub fn status_json(cfg: &Config) -> serde_json::Value {
    let all = list(&dir(cfg));
    let last: Option<Attempt> = fsutil::read_json(&attempt_path(cfg)).ok().flatten();
    serde_json::json!({
        "dir": dir(cfg),
        "count": all.len(),
        "totalBytes": all.iter().map(|(_, _, b)| b).sum::<u64>(),
        "newest": newest(cfg).map(|n| serde_json::json!({
            "path": n.path, "ageS": n.age_s, "bytes": n.bytes,
        })),
        "intervalS": cfg.backup_interval.as_secs(),
        "last": last,
    })
}

/// Takes one backup now, whatever the hub is doing: through the hub when it answers, else by
/// copying the closed file. Never fails the caller: the outcome is logged, saved and returned.
pub fn take(cfg: &Config, trigger: Trigger) -> Attempt {
    let started = Instant::now();
    let _lock = lock(cfg);
    let (result, detail, path, bytes) = match attempt(cfg, trigger) {
        Ok((path, bytes)) => {
            let d = format!("{} ({} KiB)", path.display(), bytes / 1024);
            (BackupResult::Ok, d, Some(path), Some(bytes))
        }
        Err(Outcome::Skipped(why)) => (BackupResult::Skipped, why, None, None),
        Err(Outcome::Failed(why)) => (BackupResult::Failed, why, None, None),
    };
    let a = Attempt {
        at: now_unix(),
        trigger,
        result,
        detail,
        path,
        bytes,
        millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    let t = trigger.as_str();
    match a.result {
        BackupResult::Ok => {
            tracing::info!(trigger = t, ms = a.millis, "backup taken: {}", a.detail);
        }
        BackupResult::Skipped => tracing::warn!(trigger = t, "backup skipped: {}", a.detail),
        BackupResult::Failed => tracing::error!(trigger = t, "backup failed: {}", a.detail),
    }
    if let Err(e) = fsutil::write_json(&attempt_path(cfg), &a) {
        tracing::warn!("unable to save the backup status: {e}");
    }
    a
}

enum Outcome {
    Skipped(String),
    Failed(String),
}

fn attempt(cfg: &Config, trigger: Trigger) -> Result<(PathBuf, u64), Outcome> {
    let db_bytes = if let Ok(m) = std::fs::metadata(&cfg.hub_db) {
        m.len()
    } else {
        let why = format!("no database at {} yet", cfg.hub_db.display());
        return Err(Outcome::Skipped(why));
    };
    let dir = dir(cfg);
    ensure_dir(&dir).map_err(Outcome::Failed)?;
    // Before the space check: a copy cut short may be what fills the partition.
    remove_stale_partials(&dir);
    check_space(cfg, &dir, db_bytes).map_err(Outcome::Skipped)?;
    let dest = dir.join(retention::file_name(now_unix(), trigger));
    let bytes = match hubapi::request_backup(cfg) {
        Ok(copy) => adopt(&copy, &dest).map_err(Outcome::Failed)?,
        Err(HubError::NoHub(why)) => {
            tracing::info!("{why}: copying the closed database file");
            copy_closed(cfg, &dest).map_err(Outcome::Failed)?
        }
        Err(e) => return Err(Outcome::Failed(e.to_string())),
    };
    prune(cfg, &dir);
    Ok((dest, bytes))
}

/// The hub's `*.partial` copies left by a backup that was cut short (power cut, hub killed).
/// Only those older than any backup can run: one in flight (also one an operator started with
/// `poshub backup`) is younger than [`hubapi::BACKUP_TIMEOUT`].
fn remove_stale_partials(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.filter_map(std::result::Result::ok) {
        let p = e.path();
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > hubapi::BACKUP_TIMEOUT);
        if stale && p.extension().is_some_and(|x| x == "partial") {
            match std::fs::remove_file(&p) {
                Ok(()) => tracing::info!("removed {}, a backup cut short", p.display()),
                Err(e) => tracing::warn!("unable to remove {}: {e}", p.display()),
            }
        }
    }
}

/// The lock held while a backup runs.
pub fn lock_path(cfg: &Config) -> PathBuf {
    cfg.state_dir().join("backup.lock")
}

/// Whether a backup runs now, in this or another process (the hub's health check then waits
/// for the copy; see `hub.rs`).
pub fn in_progress(lock: &Path) -> bool {
    let Ok(f) = std::fs::File::open(lock) else {
        return false;
    };
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockSharedNonblock).is_err()
}

/// One backup at a time, across processes (the schedule, an install from the CLI).
fn lock(cfg: &Config) -> Option<nix::fcntl::Flock<std::fs::File>> {
    let path = lock_path(cfg);
    let f = std::fs::create_dir_all(cfg.state_dir())
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
        })
        .ok()?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).ok()
}

/// Creates the backup directory for the hub: it belongs to the owner of the database's
/// directory (the hub's user), or the hub could neither write its copies into it nor read
/// `offsite.json` (the supervisor runs as root with `UMask=0027`: a directory it creates is
/// `root:root 0750`). One created by an earlier version as root is handed over too.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let owner = dir.parent().and_then(|p| p.metadata().ok());
    if let (Some(parent), Ok(own)) = (owner, dir.metadata()) {
        if (own.uid(), own.gid()) != (parent.uid(), parent.gid()) {
            let _ = std::os::unix::fs::chown(dir, Some(parent.uid()), Some(parent.gid()));
        }
    }
    Ok(())
}

/// A backup is as large as the database file; it must leave `SUPERVISOR_BACKUP_MIN_FREE_MB`.
fn check_space(cfg: &Config, dir: &Path, db_bytes: u64) -> Result<(), String> {
    let s = nix::sys::statvfs::statvfs(dir).map_err(|e| format!("statvfs failed: {e}"))?;
    let free = s.blocks_available().saturating_mul(s.fragment_size());
    let mb = |b: u64| b / (1024 * 1024);
    if free.saturating_sub(db_bytes) >= cfg.backup_min_free_bytes {
        return Ok(());
    }
    Err(format!(
        "only {} MiB free on {}: a copy of the {} MiB database would leave less than \
         SUPERVISOR_BACKUP_MIN_FREE_MB ({} MiB)",
        mb(free),
        dir.display(),
        mb(db_bytes),
        mb(cfg.backup_min_free_bytes)
    ))
}

/// Gives the hub's checked copy its final name (same directory: a rename).
fn adopt(copy: &Path, dest: &Path) -> Result<u64, String> {
    let bytes = std::fs::metadata(copy)
        .map_err(|e| format!("the hub's copy {}: {e}", copy.display()))?
        .len();
    std::fs::rename(copy, dest)
        .map_err(|e| format!("rename {} to {}: {e}", copy.display(), dest.display()))?;
    if let Some(d) = dest.parent() {
        let _ = fsutil::fsync_dir(d);
    }
    Ok(bytes)
}

/// Copies the database while no hub holds it, checks the copy, then names it.
fn copy_closed(cfg: &Config, dest: &Path) -> Result<u64, String> {
    let tmp = fsutil::tmp_path(dest);
    let r = copy_and_check(&cfg.hub_db, &tmp, dest);
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

fn copy_and_check(src: &Path, tmp: &Path, dest: &Path) -> Result<u64, String> {
    // Opened once with redb: a file another process holds is refused (its copy could be torn),
    // and an unclean one is repaired in place, as the hub would at its next start. Closed again
    // before the copy, so the copy is of a cleanly closed file. (Called when no hub answers; the
    // supervisor is the one that would start it.)
    let p = src.to_path_buf();
    let opened = std::panic::catch_unwind(move || redb::Database::open(&p).map(drop));
    match opened {
        Ok(Ok(())) => {}
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
            return Err(format!(
                "{} is open in another process but no hub answers",
                src.display()
            ))
        }
        Ok(Err(e)) => return Err(format!("{} does not open: {e}", src.display())),
        Err(_) => return Err(format!("redb panicked while opening {}", src.display())),
    }
    let bytes = std::fs::copy(src, tmp).map_err(|e| format!("copy to {}: {e}", tmp.display()))?;
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    // Only a copy that passes counts (redb may finish a repair of an unclean file here: the
    // copy then holds the last committed state).
    crate::dbcheck::check_redb(tmp)
        .map_err(|e| format!("the copy fails the integrity check: {e}"))?;
    std::fs::rename(tmp, dest).map_err(|e| format!("rename to {}: {e}", dest.display()))?;
    if let Some(d) = dest.parent() {
        let _ = fsutil::fsync_dir(d);
    }
    Ok(bytes)
}

/// Deletes the supervisor's backups that retention does not keep.
fn prune(cfg: &Config, dir: &Path) {
    let ours: Vec<(String, u64)> = list(dir)
        .into_iter()
        .filter_map(|(p, _, _)| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            let t = retention::parse_time(&name)?;
            Some((name, t))
        })
        .collect();
    for name in retention::to_delete(&ours, cfg.backup_keep_hourly, cfg.backup_keep_daily) {
        match std::fs::remove_file(dir.join(&name)) {
            Ok(()) => tracing::info!("backup {name} removed by retention"),
            Err(e) => tracing::warn!("unable to remove old backup {name}: {e}"),
        }
    }
}

/// The schedule: a backup once the newest one is `SUPERVISOR_BACKUP_INTERVAL_S` old and the
/// hub is healthy. After a skipped or failed attempt the next try waits a whole interval.
pub async fn schedule(cfg: Config, hub: watch::Receiver<HubState>) {
    let interval = cfg.backup_interval;
    if interval.is_zero() {
        tracing::info!("scheduled backups are off (SUPERVISOR_BACKUP_INTERVAL_S=0)");
        return;
    }
    let poll = (interval / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
    let mut last_try: Option<Instant> = None;
    loop {
        tokio::time::sleep(poll).await;
        if !hub.borrow().healthy || last_try.is_some_and(|t| t.elapsed() < interval) {
            continue;
        }
        let c = cfg.clone();
        let due = tokio::task::spawn_blocking(move || {
            newest(&c).is_none_or(|n| n.age_s >= interval.as_secs())
        })
        .await
        .unwrap_or(false);
        if !due {
            continue;
        }
        let c = cfg.clone();
        let a = tokio::task::spawn_blocking(move || take(&c, Trigger::Scheduled)).await;
        last_try = match a {
            Ok(a) if a.result == BackupResult::Ok => None,
            _ => Some(Instant::now()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::ensure_dir;
    use std::os::unix::fs::MetadataExt;

    /// The hub (another user) must own `backups/`, whoever created it: a root-owned 0750
    /// directory left `/health` blind to both local and offsite copies. Needs root (to chown).
    #[test]
    fn the_backup_directory_belongs_to_the_database_directory_owner() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to change owners");
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let db_dir = tmp.path().join("poshub");
        std::fs::create_dir(&db_dir).expect("db dir");
        std::os::unix::fs::chown(&db_dir, Some(65534), Some(65534)).expect("chown");
        // Created by root, as an earlier supervisor (or the offsite status) did.
        let root_made = db_dir.join("backups");
        std::fs::create_dir(&root_made).expect("backups");
        ensure_dir(&root_made).expect("ensure");
        let m = std::fs::metadata(&root_made).expect("meta");
        assert_eq!((m.uid(), m.gid()), (65534, 65534));
        // Created here.
        let fresh = tmp.path().join("other").join("backups");
        std::fs::create_dir_all(fresh.parent().expect("parent")).expect("parent");
        std::os::unix::fs::chown(fresh.parent().expect("parent"), Some(65534), Some(65534))
            .expect("chown");
        ensure_dir(&fresh).expect("ensure");
        assert_eq!(std::fs::metadata(&fresh).expect("meta").uid(), 65534);
    }
}
