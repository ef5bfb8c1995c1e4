//! Bringing an offsite copy back: on the first boot of a replacement card, before the hub
//! starts ([`first_boot`]), and by hand ([`restore`]).
//!
//! The copy is downloaded, decrypted and decompressed into a temporary file beside the
//! database, fsynced and passed through redb's integrity check; only then does it become
//! `hub.redb` (a database already there is first moved to `replaced/` beside it, never deleted).
//! A wrong key, a truncated or damaged object or a copy that fails the check therefore
//! changes nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::store::{Copy, Remote};
use super::{read_status, target, write_status, OffsiteError, Settings};
use crate::config::Config;
use crate::fsutil;
use crate::notify::Notifier;

/// Where a restore moves the database it replaces: `replaced/` beside it.
pub fn replaced_dir(db: &Path) -> PathBuf {
    db.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("replaced")
}

/// Picks the copy to restore: the newest, or the newest taken at or before `at`.
pub fn pick(copies: &[Copy], at: Option<u64>) -> Option<&Copy> {
    copies.iter().find(|c| at.is_none_or(|t| c.at <= t))
}

/// Restores the chosen copy over `db`; returns it. `db` must not be open (the hub stopped).
pub async fn restore(
    s: &Settings,
    remote: &Remote,
    db: &Path,
    at: Option<u64>,
) -> Result<Copy, OffsiteError> {
    let copies = remote.list().await?;
    let copy = pick(&copies, at).cloned().ok_or_else(|| {
        OffsiteError::Nothing(match at {
            Some(t) => format!(
                "no offsite copy in {} taken at or before {}",
                target(s),
                crate::backup::retention::stamp(t)
            ),
            None => format!("no offsite copy in {} yet", target(s)),
        })
    })?;
    let download = fsutil::tmp_path(&db.with_extension("offsite"));
    let plain = fsutil::tmp_path(db);
    let r = fetch_and_check(s, remote, &copy, &download, &plain).await;
    let _ = std::fs::remove_file(&download);
    let r = r.and_then(|()| put_in_place(&plain, db));
    if r.is_err() {
        let _ = std::fs::remove_file(&plain);
    }
    r.map(|()| copy)
}

async fn fetch_and_check(
    s: &Settings,
    remote: &Remote,
    copy: &Copy,
    download: &Path,
    plain: &Path,
) -> Result<(), OffsiteError> {
    remote.download(&copy.name, download).await?;
    let (key, src, dst) = (s.key.clone(), download.to_path_buf(), plain.to_path_buf());
    tokio::task::spawn_blocking(move || -> Result<(), OffsiteError> {
        let input = std::io::BufReader::new(std::fs::File::open(&src)?);
        let mut out = std::fs::File::create(&dst)?;
        super::crypt::open(&key, input, &mut out)?;
        out.sync_all()?;
        crate::dbcheck::check_redb(&dst).map_err(|e| {
            OffsiteError::Refused(format!(
                "the restored database fails the integrity check: {e}"
            ))
        })?;
        Ok(())
    })
    .await
    .map_err(|_| OffsiteError::Refused("the restore task panicked".into()))?
}

/// Moves a database already at `db` aside, renames the checked copy to `db` and gives it to
/// the owner of its directory (the hub's user).
fn put_in_place(plain: &Path, db: &Path) -> Result<(), OffsiteError> {
    if db.exists() {
        if crate::dbcheck::check_redb(db).is_err_and(|e| e == "in-use") {
            return Err(OffsiteError::Refused(format!(
                "{} is open (the hub runs): stop it first (systemctl stop poshub-supervisor)",
                db.display()
            )));
        }
        let name = db
            .file_name()
            .map_or_else(|| "hub.redb".into(), |n| n.to_string_lossy().into_owned());
        let aside = fsutil::move_aside(db, &replaced_dir(db), &name)?;
        tracing::info!("the database it replaces was moved to {}", aside.display());
    }
    std::fs::rename(plain, db)?;
    let dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let _ = fsutil::fsync_dir(dir);
    if let Ok(m) = dir.metadata() {
        use std::os::unix::fs::MetadataExt;
        let _ = std::os::unix::fs::chown(db, Some(m.uid()), Some(m.gid()));
    }
    Ok(())
}

/// Whether this is a card with no database yet (or an empty file).
fn no_database(db: &Path) -> bool {
    std::fs::metadata(db).map_or(true, |m| m.len() == 0)
}

/// The first boot of a replacement card: with offsite settings and no database, the newest
/// offsite copy is restored before the hub starts. Storage that does not answer is tried
/// again every 5 s for at most `BACKUP_S3_RESTORE_TIMEOUT_S`; then the hub starts anyway, on
/// an empty database, and the log says so. systemd's start timeout is extended meanwhile.
pub async fn first_boot(cfg: &Config, notifier: &Notifier) {
    if !no_database(&cfg.hub_db) {
        return;
    }
    let s = match super::settings::load(cfg, None) {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            tracing::error!("no offsite restore: {e}");
            return;
        }
    };
    let bound = s.restore_timeout;
    tracing::info!(
        "no database at {}: restoring the newest offsite copy from {} before the hub starts \
         (for at most {} s)",
        cfg.hub_db.display(),
        target(&s),
        bound.as_secs()
    );
    notifier.status("restoring the newest offsite copy");
    let started = Instant::now();
    let work = try_until(cfg, &s, started + bound);
    tokio::pin!(work);
    let outcome = loop {
        notifier.extend_timeout(Duration::from_secs(30));
        tokio::select! {
            r = &mut work => break r,
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let mut st = read_status(cfg);
    let line = match outcome {
        Ok(c) => {
            // The copy restored is the newest offsite copy this box has until it uploads its
            // own: /health and the dashboard show its age (the loss window) from the start.
            st.newest = Some(c.name.clone());
            st.snapshot_at = Some(c.at);
            st.bytes = Some(c.bytes);
            let line = format!(
                "restored offsite copy {} ({} KiB, taken {}) in {secs:.1} s",
                c.name,
                c.bytes / 1024,
                crate::backup::retention::stamp(c.at)
            );
            tracing::info!("{line}");
            line
        }
        Err(OffsiteError::Nothing(why)) => {
            let line = format!("{why}: the hub starts with an empty database");
            tracing::info!("{line}");
            line
        }
        Err(e) => {
            let line = format!(
                "offsite restore gave up after {secs:.0} s: {e}; the hub starts WITHOUT it, on \
                 an empty database (restore by hand: poshub restore --from-offsite)"
            );
            tracing::error!("{line}");
            line
        }
    };
    st.target = target(&s);
    st.first_boot = Some(line);
    write_status(cfg, &st);
}

/// Restores, retrying storage errors every 5 s until `deadline`.
async fn try_until(cfg: &Config, s: &Settings, deadline: Instant) -> Result<Copy, OffsiteError> {
    let remote = Remote::new(s)?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = tokio::time::timeout(left, restore(s, &remote, &cfg.hub_db, None));
        let e = match attempt.await {
            Ok(Ok(c)) => return Ok(c),
            Ok(Err(e @ (OffsiteError::Storage(_) | OffsiteError::Io(_)))) => e,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                // The restore was cut off mid-way: its temporary files stay behind.
                let db = &cfg.hub_db;
                let _ = std::fs::remove_file(fsutil::tmp_path(&db.with_extension("offsite")));
                let _ = std::fs::remove_file(fsutil::tmp_path(db));
                return Err(OffsiteError::Storage(format!(
                    "not done within BACKUP_S3_RESTORE_TIMEOUT_S ({} s)",
                    s.restore_timeout.as_secs()
                )));
            }
        };
        if Instant::now() + Duration::from_secs(5) >= deadline {
            return Err(e);
        }
        tracing::warn!("offsite restore: {e}; trying again in 5 s");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
