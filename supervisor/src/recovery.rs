//! Start-up recovery checks (`docs/backups.md`, "How restore works"), run before the hub
//! starts, in this fixed order:
//!
//! 1. `data-dir`: the data directory is writable (write, fsync, rename, read back).
//! 2. `free-space`: free space on the data partition is above `SUPERVISOR_MIN_FREE_MB`.
//! 3. `clock`: the clock is not earlier than the last persisted timestamp (RTC-less Pi after a
//!    power cut); if it is, it is set forward to that timestamp.
//! 4. `database`: the hub's redb file opens and passes `check_integrity`; a corrupt file is moved
//!    to `<data>/corrupt/` (never deleted) and the newest backup in `backups/*.redb` beside the
//!    database (see [`crate::backup`]) that passes the same check is restored.
//! 5. `leftovers`: temp files of interrupted atomic writes and partial uploads are removed.
//! 6. `unclean-shutdown`: a run marker left by the previous start means it did not stop
//!    cleanly; it is counted.
//!
//! Each result is `ok`, `repaired` or `failed` with a detail line, logged and saved to
//! `<data>/supervisor/recovery.json` for `poshub-supervisor status`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;
pub use crate::dbcheck::check_redb;
use crate::fsutil::{self, now_unix, TMP_SUFFIX};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Repaired,
    Failed,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub result: Outcome,
    pub detail: String,
}

/// All checks of one start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RecoveryReport {
    pub at: u64,
    pub checks: Vec<CheckResult>,
    pub unclean_shutdowns: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Counters {
    unclean_shutdowns: u64,
}

/// Where the report is saved.
pub fn report_path(cfg: &Config) -> PathBuf {
    cfg.state_dir().join("recovery.json")
}

/// The run marker whose presence at start means an unclean previous stop.
pub fn run_marker(cfg: &Config) -> PathBuf {
    cfg.state_dir().join("running")
}

/// Runs every check in order, saves and returns the report.
pub fn run_checks(cfg: &Config) -> RecoveryReport {
    let mut report = RecoveryReport {
        at: now_unix(),
        ..Default::default()
    };
    let mut add = |name: &str, (result, detail): (Outcome, String)| {
        match result {
            Outcome::Ok => tracing::info!(check = name, "recovery check ok: {detail}"),
            Outcome::Repaired => tracing::warn!(check = name, "recovery check repaired: {detail}"),
            Outcome::Failed => tracing::error!(check = name, "recovery check failed: {detail}"),
        }
        report.checks.push(CheckResult {
            name: name.to_string(),
            result,
            detail,
        });
    };
    // 1. data directory writable
    add("data-dir", check_data_dir(cfg));
    // 2. free space
    add("free-space", check_free_space(cfg));
    // 3. clock not behind the last persisted timestamp
    add("clock", check_clock(cfg));
    // 4. hub database integrity, restore from backup if corrupt
    add("database", check_database(cfg));
    // 5. leftovers of interrupted writes
    add("leftovers", clean_leftovers(cfg));
    // 6. unclean previous shutdown
    let (r, n) = check_unclean(cfg);
    add("unclean-shutdown", r);
    report.unclean_shutdowns = n;
    if let Err(e) = fsutil::write_json(&report_path(cfg), &report) {
        tracing::error!("unable to save the recovery report: {e}");
    }
    report
}

fn check_data_dir(cfg: &Config) -> (Outcome, String) {
    let dir = cfg.state_dir();
    let probe = dir.join("write-probe");
    let payload = format!("probe {}", now_unix());
    let r = std::fs::create_dir_all(&dir)
        .and_then(|()| fsutil::atomic_write(&probe, payload.as_bytes()))
        .and_then(|()| std::fs::read_to_string(&probe))
        .and_then(|back| {
            let _ = std::fs::remove_file(&probe);
            if back == payload {
                Ok(())
            } else {
                Err(std::io::Error::other("read back different bytes"))
            }
        });
    match r {
        Ok(()) => (
            Outcome::Ok,
            format!("{} is writable", cfg.data_dir.display()),
        ),
        Err(e) => (
            Outcome::Failed,
            format!("{} is not writable: {e}", cfg.data_dir.display()),
        ),
    }
}

fn check_free_space(cfg: &Config) -> (Outcome, String) {
    match nix::sys::statvfs::statvfs(&cfg.data_dir) {
        Ok(s) => {
            let free = s.blocks_available().saturating_mul(s.fragment_size());
            let mb = |b: u64| b / (1024 * 1024);
            if free >= cfg.min_free_bytes {
                (Outcome::Ok, format!("{} MiB free", mb(free)))
            } else {
                (
                    Outcome::Failed,
                    format!(
                        "only {} MiB free, below the {} MiB threshold",
                        mb(free),
                        mb(cfg.min_free_bytes)
                    ),
                )
            }
        }
        Err(e) => (Outcome::Failed, format!("statvfs failed: {e}")),
    }
}

/// Persists the current time (never moving the stored value backwards).
pub fn persist_clock(cfg: &Config) -> std::io::Result<()> {
    let path = cfg.state_dir().join("clock");
    let last = read_clock(&path).unwrap_or(0);
    fsutil::atomic_write(&path, now_unix().max(last).to_string().as_bytes())
}

fn read_clock(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn check_clock(cfg: &Config) -> (Outcome, String) {
    let path = cfg.state_dir().join("clock");
    let now = now_unix();
    let result = match read_clock(&path) {
        None => (Outcome::Ok, "no persisted timestamp yet".to_string()),
        Some(last) if now >= last => (
            Outcome::Ok,
            format!("clock is {}s past the last persisted timestamp", now - last),
        ),
        Some(last) => {
            let behind = last - now;
            if cfg.clock_set {
                let ts =
                    nix::sys::time::TimeSpec::from_duration(std::time::Duration::from_secs(last));
                match nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts) {
                    Ok(()) => (Outcome::Repaired, format!("clock was {behind}s behind the last persisted timestamp; set forward to {last}")),
                    Err(e) => (Outcome::Failed, format!("clock is {behind}s behind the last persisted timestamp {last}; setting it failed: {e}")),
                }
            } else {
                (Outcome::Failed, format!("clock is {behind}s behind the last persisted timestamp {last} and SUPERVISOR_CLOCK_SET=false"))
            }
        }
    };
    if let Err(e) = persist_clock(cfg) {
        tracing::warn!("unable to persist the clock: {e}");
    }
    result
}

fn check_database(cfg: &Config) -> (Outcome, String) {
    let db = &cfg.hub_db;
    if !db.exists() {
        return (Outcome::Ok, format!("no database at {} yet", db.display()));
    }
    let err = match check_redb(db) {
        Ok(true) => return (Outcome::Ok, "integrity check passed".into()),
        Ok(false) => return (Outcome::Repaired, "redb repaired the file during its check".into()),
        Err(e) if e == "in-use" => {
            return (Outcome::Failed, "database is open in another process (is a hub running outside the supervisor?); not checked".into())
        }
        Err(e) => e,
    };
    // Corrupt: move aside, never delete. The restored copy keeps the original's owner (the hub
    // may run as its own user while the supervisor runs as root).
    let owner = {
        use std::os::unix::fs::MetadataExt;
        db.metadata().ok().map(|m| (m.uid(), m.gid()))
    };
    let corrupt_dir = cfg.data_dir.join("corrupt");
    let name = db
        .file_name()
        .map_or_else(|| "hub.redb".into(), |n| n.to_string_lossy().into_owned());
    let aside = match fsutil::move_aside(db, &corrupt_dir, &name) {
        Ok(p) => p,
        Err(e) => {
            return (
                Outcome::Failed,
                format!("database corrupt ({err}) and could not be moved aside: {e}"),
            )
        }
    };
    let _ = db.parent().map(fsutil::fsync_dir);
    let restored = restore_newest_backup(cfg);
    if let (Some(_), Some((uid, gid))) = (&restored, owner) {
        if let Err(e) = std::os::unix::fs::chown(db, Some(uid), Some(gid)) {
            tracing::warn!("unable to give the restored database back to uid {uid}: {e}");
        }
    }
    match restored {
        Some(b) => (Outcome::Repaired, format!("database corrupt ({err}); moved to {}; restored backup {}", aside.display(), b.display())),
        None => (Outcome::Failed, format!("database corrupt ({err}); moved to {}; no valid backup in {}: the hub starts with an empty database", aside.display(), crate::backup::dir(cfg).display())),
    }
}

fn restore_newest_backup(cfg: &Config) -> Option<PathBuf> {
    let tmp = fsutil::tmp_path(&cfg.hub_db);
    for (b, _, _) in crate::backup::list(&crate::backup::dir(cfg)) {
        // Check a copy: opening may repair, and the backup itself must stay as it was.
        let ok = std::fs::copy(&b, &tmp)
            .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
            .is_ok()
            && check_redb(&tmp).is_ok();
        if ok && std::fs::rename(&tmp, &cfg.hub_db).is_ok() {
            let _ = cfg.hub_db.parent().map(fsutil::fsync_dir);
            return Some(b);
        }
        tracing::warn!(
            "backup {} does not pass the integrity check; skipped",
            b.display()
        );
        let _ = std::fs::remove_file(&tmp);
    }
    None
}

fn clean_leftovers(cfg: &Config) -> (Outcome, String) {
    let mut removed = Vec::new();
    // Our temp files anywhere we write; partial uploads/downloads only in our spool dir (a
    // `.partial` elsewhere may belong to the hub).
    let dirs = [
        (cfg.data_dir.clone(), false),
        (cfg.state_dir(), false),
        (cfg.state_dir().join("incoming"), true),
        (crate::backup::dir(cfg), false),
    ];
    for (dir, spool) in dirs {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.filter_map(std::result::Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = name.ends_with(TMP_SUFFIX)
                || (spool && (name.ends_with(".partial") || name.ends_with(".poshub")));
            if ours && std::fs::remove_file(e.path()).is_ok() {
                removed.push(e.path().display().to_string());
            }
        }
    }
    if removed.is_empty() {
        (Outcome::Ok, "no leftovers".into())
    } else {
        (Outcome::Repaired, format!("removed {}", removed.join(", ")))
    }
}

fn check_unclean(cfg: &Config) -> ((Outcome, String), u64) {
    let counters_path = cfg.state_dir().join("counters.json");
    let mut counters: Counters = fsutil::read_json(&counters_path)
        .ok()
        .flatten()
        .unwrap_or_default();
    let marker = run_marker(cfg);
    let unclean = marker.exists();
    if unclean {
        counters.unclean_shutdowns += 1;
        let _ = fsutil::write_json(&counters_path, &counters);
    }
    if let Err(e) = fsutil::atomic_write(&marker, now_unix().to_string().as_bytes()) {
        tracing::warn!("unable to write the run marker: {e}");
    }
    let n = counters.unclean_shutdowns;
    if unclean {
        ((Outcome::Repaired, format!("previous run did not stop cleanly (power loss, kill or watchdog); {n} unclean shutdown(s) so far")), n)
    } else {
        (
            (
                Outcome::Ok,
                format!("previous run stopped cleanly; {n} unclean shutdown(s) so far"),
            ),
            n,
        )
    }
}

/// Removes the run marker: called on a clean stop.
pub fn mark_clean_stop(cfg: &Config) {
    let _ = persist_clock(cfg);
    let _ = std::fs::remove_file(run_marker(cfg));
    let _ = fsutil::fsync_dir(&cfg.state_dir());
}
