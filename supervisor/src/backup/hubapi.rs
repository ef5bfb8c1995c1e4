//! Asks the running hub for a consistent copy of its database (`POST /admin/backup`,
//! `docs/http-api.md`; `docs/backups.md`).
//!
//! Only the hub can copy its open database consistently (it copies between two commits); the
//! supervisor then gives the copy its own name. The call is blocking (plain HTTP/1.1 over a
//! std socket, `Connection: close`): it runs on a blocking thread, from the install as well as
//! from the schedule, and needs no runtime. Host and port are those of
//! `SUPERVISOR_HUB_HEALTH_URL`; the admin token is found where the hub finds it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{parse_env_file, Config};

/// How long the hub may take to copy and check a large database.
pub const BACKUP_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the hub did not make a copy.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Nothing listens: the hub is stopped (the file can be copied directly).
    #[error("no hub answers at {0}")]
    NoHub(String),
    #[error("no admin token for the hub: {0}")]
    Token(String),
    #[error("{0}")]
    Failed(String),
}

/// `POST /admin/backup`: the path of the checked copy the hub wrote.
pub fn request_backup(cfg: &Config) -> Result<PathBuf, HubError> {
    let url = crate::http::parse_url(&cfg.hub_health_url)
        .map_err(|e| HubError::Failed(format!("SUPERVISOR_HUB_HEALTH_URL: {e:#}")))?;
    let addr = format!("{}:{}", url.host, url.port);
    let sock = std::net::ToSocketAddrs::to_socket_addrs(&(url.host.as_str(), url.port))
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| HubError::Failed(format!("{addr}: cannot resolve")))?;
    let mut stream = TcpStream::connect_timeout(&sock, CONNECT_TIMEOUT)
        .map_err(|e| HubError::NoHub(format!("{addr} ({e})")))?;
    let token = admin_token(cfg)?;
    let req = format!(
        "POST /admin/backup HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let io = |e: std::io::Error| HubError::Failed(format!("{addr}: {e}"));
    stream.set_read_timeout(Some(BACKUP_TIMEOUT)).map_err(io)?;
    stream
        .set_write_timeout(Some(CONNECT_TIMEOUT))
        .map_err(io)?;
    stream.write_all(req.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    stream.take(1 << 20).read_to_end(&mut raw).map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
    if status != 200 {
        let why = v["error"].as_str().unwrap_or(body.trim());
        return Err(HubError::Failed(format!(
            "the hub answered {status}: {why}"
        )));
    }
    v["path"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| HubError::Failed(format!("unexpected answer from the hub: {body}")))
}

/// The hub's admin token, looked up in the hub's own order: `HUB_ADMIN_TOKEN` in the
/// environment (the hub inherits the supervisor's), in the hub's `--config` file, then the
/// `admin-token` file the hub creates beside its database.
pub fn admin_token(cfg: &Config) -> Result<String, HubError> {
    if let Some(t) = std::env::var("HUB_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(t.trim().to_string());
    }
    if let Some(file) = hub_config_file(&cfg.hub_args) {
        if let Ok(vars) = parse_env_file(&file) {
            if let Some(t) = vars.get("HUB_ADMIN_TOKEN").filter(|t| !t.trim().is_empty()) {
                return Ok(t.trim().to_string());
            }
        }
    }
    let dir = cfg.hub_db.parent().unwrap_or(Path::new("."));
    let path = dir.join("admin-token");
    std::fs::read_to_string(&path)
        .map(|t| t.trim().to_string())
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            HubError::Token(format!(
                "HUB_ADMIN_TOKEN is not set and {} cannot be read",
                path.display()
            ))
        })
}

/// The `--config FILE` (or `--config=FILE`) of the hub's command line.
pub(crate) fn hub_config_file(args: &[String]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(f) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(f));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_hub_config_file_in_its_arguments() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            hub_config_file(&args("serve --config /data/poshub/poshub.env")),
            Some(PathBuf::from("/data/poshub/poshub.env"))
        );
        assert_eq!(
            hub_config_file(&args("serve --config=/x.env")),
            Some(PathBuf::from("/x.env"))
        );
        assert_eq!(hub_config_file(&args("serve")), None);
        assert_eq!(hub_config_file(&args("serve --config")), None);
    }
}
