//! `poshub-supervisor offsite list|upload|restore`: the offsite copies by hand. `poshub backups
//! list` and `poshub restore --from-offsite` run these (the code lives in the supervisor only,
//! so the hub binary carries no storage client).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use super::store::Remote;
use super::{restore, settings, target, Settings};
use crate::backup::retention;
use crate::config::Config;
use crate::fsutil::now_unix;

/// `offsite` subcommands.
#[derive(Debug, Subcommand)]
pub enum OffsiteCmd {
    /// List this box's copies in storage, newest first.
    List {
        /// poshub.env with the BACKUP_* settings (default: the hub's --config of
        /// `SUPERVISOR_HUB_ARGS`).
        #[arg(long, value_name = "FILE")]
        hub_config: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Take a backup now (through the running hub, or of the closed file) and upload it.
    Upload {
        /// poshub.env with the BACKUP_* settings (default: the hub's --config).
        #[arg(long, value_name = "FILE")]
        hub_config: Option<PathBuf>,
    },
    /// Restore the newest copy (or the newest taken at or before --at) over the database.
    /// The hub must be stopped; the database it replaces is moved to `replaced/`.
    Restore {
        /// poshub.env with the BACKUP_* settings (default: the hub's --config).
        #[arg(long, value_name = "FILE")]
        hub_config: Option<PathBuf>,
        /// UTC time, e.g. 2026-12-05T13:45:00Z or 20261205T134500Z.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Database to replace (default `SUPERVISOR_HUB_DB`).
        #[arg(long, value_name = "FILE")]
        db: Option<PathBuf>,
    },
}

/// Runs one `offsite` subcommand.
pub fn run(cfg: &Config, cmd: OffsiteCmd) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("unable to start the async runtime")?;
    rt.block_on(run_async(cfg, cmd))
}

fn load(cfg: &Config, file: Option<&std::path::Path>) -> Result<(Settings, Remote)> {
    let Some(s) = settings::load(cfg, file)? else {
        bail!("offsite copies are not configured (no BACKUP_S3_URL)");
    };
    let remote = Remote::new(&s)?;
    Ok((s, remote))
}

async fn run_async(cfg: &Config, cmd: OffsiteCmd) -> Result<()> {
    match cmd {
        OffsiteCmd::List { hub_config, json } => {
            let (s, remote) = load(cfg, hub_config.as_deref())?;
            let copies = remote.list().await?;
            if json {
                let v: Vec<_> = copies
                    .iter()
                    .map(|c| serde_json::json!({"name": c.name, "at": c.at, "bytes": c.bytes}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!("{} copies in {}", copies.len(), target(&s));
            for c in &copies {
                let age = crate::fsutil::age(now_unix().saturating_sub(c.at));
                println!("{}  {:>10} KiB  {age} old", c.name, c.bytes / 1024);
            }
            Ok(())
        }
        OffsiteCmd::Upload { hub_config } => {
            let (s, remote) = load(cfg, hub_config.as_deref())?;
            let c = cfg.clone();
            let a = tokio::task::spawn_blocking(move || {
                crate::backup::take(&c, crate::backup::Trigger::Offsite)
            })
            .await?;
            let Some(path) = a
                .path
                .filter(|_| a.result == crate::backup::BackupResult::Ok)
            else {
                bail!("no backup to upload: {}", a.detail);
            };
            let up = super::upload_file(cfg, &s, &remote, &path, a.at).await?;
            super::record(cfg, &s, &up, a.at, &path, None);
            println!(
                "uploaded {}/{}: {} bytes from a {}-byte database; compress+encrypt {} ms, \
                 upload {} ms; retention removed {}",
                target(&s),
                up.name,
                up.bytes,
                up.db_bytes,
                up.seal_ms,
                up.upload_ms,
                up.deleted.len()
            );
            Ok(())
        }
        OffsiteCmd::Restore { hub_config, at, db } => {
            let (s, remote) = load(cfg, hub_config.as_deref())?;
            let at = at.as_deref().map(parse_time).transpose()?;
            let db = db.unwrap_or_else(|| cfg.hub_db.clone());
            let t0 = std::time::Instant::now();
            let c = restore::restore(&s, &remote, &db, at).await?;
            println!(
                "restored {} (taken {}, {} KiB) into {} in {:.1} s",
                c.name,
                retention::stamp(c.at),
                c.bytes / 1024,
                db.display(),
                t0.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}

/// `2026-12-05T13:45:00Z`, `2026-12-05 13:45:00` or `20261205T134500Z` (UTC) to unix seconds.
pub fn parse_time(text: &str) -> Result<u64> {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    let stamp = match digits.len() {
        14 => format!("{}T{}Z", &digits[..8], &digits[8..]),
        8 => format!("{digits}T235959Z"),
        _ => String::new(),
    };
    retention::parse_stamp(&stamp).with_context(|| {
        format!("--at {text:?}: expected a UTC time like 2026-12-05T13:45:00Z or a day 2026-12-05")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_accepts_the_usual_spellings() {
        let t = 1_796_478_300; // 2026-12-05 13:45:00 UTC
        for s in [
            "2026-12-05T13:45:00Z",
            "2026-12-05 13:45:00",
            "20261205T134500Z",
        ] {
            assert_eq!(parse_time(s).expect(s), t, "{s}");
        }
        assert_eq!(parse_time("2026-12-05").expect("day"), 1_796_515_199);
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-13-05T00:00:00Z").is_err());
    }
}
