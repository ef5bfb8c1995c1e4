//! What the CLI's maintenance commands do: talk to the running hub through its admin API, or,
//! when no hub runs, work on the database file directly (redb lets one process open it).

use std::fmt::Write as _; // `write!` into a String cannot fail: its Result is dropped.
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::client::{call, ClientError};
use crate::config::Config;

/// Outcome of an integrity check, as `poshub check` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    Ok,
    Repaired,
}

/// Why a database file could not be checked. `InUse` is told apart because the CLI then knows
/// a hub holds the file and can say where it looked for that hub's API.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("{0} is in use by a running hub")]
    InUse(PathBuf),
    #[error("{0} cannot be opened: {1}")]
    Open(PathBuf, redb::DatabaseError),
    #[error("{0} is corrupt: {1}")]
    Corrupt(PathBuf, redb::DatabaseError),
}

/// Opens a redb file on its own and runs redb's integrity check.
pub fn check_file(path: &Path) -> Result<Integrity, CheckError> {
    if !path.exists() {
        return Err(CheckError::Missing(path.to_path_buf()));
    }
    let mut db = redb::Database::open(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => CheckError::InUse(path.to_path_buf()),
        other => CheckError::Open(path.to_path_buf(), other),
    })?;
    match db.check_integrity() {
        Ok(true) => Ok(Integrity::Ok),
        Ok(false) => Ok(Integrity::Repaired),
        Err(e) => Err(CheckError::Corrupt(path.to_path_buf(), e)),
    }
}

/// Asks the running hub for a consistent copy; `Ok(None)` when no hub answers.
fn live_backup(cfg: &Config) -> Result<Option<PathBuf>, String> {
    match call(cfg, reqwest::Method::POST, "/admin/backup", true, None) {
        Ok(v) => v["path"]
            .as_str()
            .map(|p| Some(PathBuf::from(p)))
            .ok_or_else(|| format!("unexpected answer: {v}")),
        Err(ClientError::NoHub(_)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// `poshub check`: on a live hub, checks a consistent copy; otherwise the file itself.
pub fn check(cfg: &Config, db: Option<&Path>) -> Result<String, String> {
    if let Some(path) = db {
        return check_file(path)
            .map(|i| describe(path, i))
            .map_err(|e| e.to_string());
    }
    match live_backup(cfg)? {
        Some(copy) => check_file(&copy)
            .map(|i| {
                format!(
                    "{} (live hub; checked a consistent copy at {})",
                    word(i),
                    copy.display()
                )
            })
            .map_err(|e| e.to_string()),
        None => check_offline(cfg).map(|i| describe(&cfg.db_path, i)),
    }
}

/// Checks the configured database when no hub answered its API. If a hub holds the file all
/// the same, the CLI was pointed at the wrong port: say so, with the address it tried.
fn check_offline(cfg: &Config) -> Result<Integrity, String> {
    check_file(&cfg.db_path).map_err(|e| match e {
        CheckError::InUse(_) => format!(
            "{e}, but no hub answers at {}: run this with the hub's settings \
             (--config FILE, or HUB_HTTP_PORT / HUB_BIND as the hub has them)",
            crate::client::base_url(cfg)
        ),
        other => other.to_string(),
    })
}

fn word(i: Integrity) -> &'static str {
    match i {
        Integrity::Ok => "ok",
        Integrity::Repaired => "repaired",
    }
}

fn describe(path: &Path, i: Integrity) -> String {
    format!("{}: {}", path.display(), word(i))
}

/// `poshub backup --out FILE`: a consistent copy of the live database (or of the file when the
/// hub is stopped), checked before it is reported.
pub fn backup(cfg: &Config, out: &Path) -> Result<String, String> {
    let source = if let Some(copy) = live_backup(cfg)? {
        copy
    } else {
        check_offline(cfg)?;
        cfg.db_path.clone()
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let bytes = std::fs::copy(&source, out)
        .map_err(|e| format!("copy {} to {}: {e}", source.display(), out.display()))?;
    std::fs::File::open(out)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("{}: {e}", out.display()))?;
    let i = check_file(out).map_err(|e| e.to_string())?;
    Ok(format!(
        "wrote {} ({bytes} bytes, integrity {})",
        out.display(),
        word(i)
    ))
}

/// Runs one admin or read call against the running hub.
pub fn hub_call(cfg: &Config, method: &str, path: &str, admin: bool) -> Result<Value, String> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    call(cfg, method, path, admin, None).map_err(|e| e.to_string())
}

/// `poshub stats`: a short human summary of `/health` and `/status`.
pub fn stats(cfg: &Config) -> Result<String, String> {
    let h = hub_call(cfg, "GET", "/health", false)?;
    let s = hub_call(cfg, "GET", "/status", false)?;
    let mut out = format!(
        "poshub {} — {} — up {}s, auth {}\nterminals: {}   orders: {}   leases: {}   seq: {}\nupstream: {}   pending: {}   forwarded: {}   dead letters: {}\ndatabase: {}",
        h["version"].as_str().unwrap_or("?"),
        h["status"].as_str().unwrap_or("?"),
        h["uptimeS"],
        h["authMode"].as_str().unwrap_or("?"),
        h["terminals"],
        h["orders"],
        s["leases"].as_array().map_or(0, Vec::len),
        h["seq"],
        s["upstream"]["state"].as_str().unwrap_or("?"),
        h["pendingEvents"],
        h["forwardedEvents"],
        h["deadLetters"],
        h["db"]["status"].as_str().unwrap_or("?"),
    );
    for t in s["terminals"].as_array().into_iter().flatten() {
        let _ = write!(
            out,
            "\n  {} ({}, {})",
            t["terminalId"].as_str().unwrap_or("?"),
            t["name"].as_str().unwrap_or(""),
            t["role"].as_str().unwrap_or("")
        );
    }
    Ok(out)
}

/// `poshub events`: newest events, one line each.
pub fn events(cfg: &Config, limit: usize) -> Result<String, String> {
    let v = hub_call(cfg, "GET", &format!("/events?limit={limit}"), false)?;
    let mut out = String::new();
    for e in v["events"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{:>8}  {:<20} {:<28} {:<14} {}",
            e["seq"],
            e["type"].as_str().unwrap_or(""),
            e["posReference"].as_str().unwrap_or("-"),
            e["terminalId"].as_str().unwrap_or(""),
            e["upstream"].as_str().unwrap_or("")
        );
    }
    if out.is_empty() {
        out.push_str("no events\n");
    }
    Ok(out.trim_end().to_string())
}
