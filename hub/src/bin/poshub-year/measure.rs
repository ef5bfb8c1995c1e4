//! Measures the year's database from outside, as a store would live with it: the real `poshub`
//! binary started on it with a cold page cache (time until `/health` answers, resident memory),
//! terminals reconnecting with cursors an hour, a day and a week old (time and bytes until
//! they are caught up), `poshub backup` of the live hub and `poshub check` of the copy.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// The real hub, killed when dropped.
pub struct RealHub {
    child: Child,
    pub ws: u16,
    http: u16,
    pub ready: Duration,
    env: Vec<(String, String)>,
    bin: PathBuf,
}

impl Drop for RealHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Empties the page cache (root only): `false` when it could not, and the figures are warm.
pub fn drop_caches() -> bool {
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

impl RealHub {
    pub async fn start(bin: &Path, dir: &Path) -> anyhow::Result<RealHub> {
        let (ws, http) = (free_port()?, free_port()?);
        let env: Vec<(String, String)> = [
            ("HUB_BIND", "127.0.0.1".to_string()),
            ("HUB_PORT", ws.to_string()),
            ("HUB_HTTP_PORT", http.to_string()),
            ("HUB_DB_PATH", dir.join("hub.redb").display().to_string()),
            ("HUB_MDNS_ENABLED", "false".into()),
            ("HUB_AUTH_MODE", "open".into()),
            ("HUB_ADMIN_TOKEN", "year-bench".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let t = Instant::now();
        let child = Command::new(bin)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut hub = RealHub {
            child,
            ws,
            http,
            ready: Duration::ZERO,
            env,
            bin: bin.to_path_buf(),
        };
        while !health_ok(http).await {
            if t.elapsed() > Duration::from_secs(60) || hub.child.try_wait()?.is_some() {
                bail!("the hub did not become ready");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        hub.ready = t.elapsed();
        Ok(hub)
    }

    /// (resident now, peak resident) in KiB, from /proc.
    pub fn rss_kb(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Runs `poshub ARGS` against this hub (its settings in the environment): time and output.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<(Duration, String)> {
        let t = Instant::now();
        let out = Command::new(&self.bin)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!("poshub {}: {}", args.join(" "), text.trim());
        }
        Ok((t.elapsed(), text))
    }
}

/// `GET path` on the hub's HTTP port: the whole response (status line, headers, body).
async fn get(port: u16, path: &str) -> std::io::Result<Vec<u8>> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    Ok(buf)
}

async fn health_ok(port: u16) -> bool {
    get(port, "/health")
        .await
        .is_ok_and(|r| r.starts_with(b"HTTP/1.1 200"))
}

impl RealHub {
    /// `GET path` as the dashboard does: how long the answer took and how many bytes it was.
    pub async fn http_get(&self, path: &str) -> anyhow::Result<(Duration, usize)> {
        let t = Instant::now();
        let r = get(self.http, path).await?;
        if !r.starts_with(b"HTTP/1.1 200") {
            bail!(
                "GET {path}: {}",
                String::from_utf8_lossy(&r[..r.len().min(80)])
            );
        }
        Ok((t.elapsed(), r.len()))
    }
}

/// One reconnect: how the terminal was caught up, in how long, with how many bytes.
#[derive(Debug)]
pub struct CatchUp {
    pub how: &'static str,
    pub time: Duration,
    pub bytes: usize,
    pub frames: usize,
}

/// A terminal reconnects with `cursor`: frames until the last `EVENTS_BULK` or the `STATE`.
pub async fn catch_up(ws_port: u16, cursor: u64) -> anyhow::Result<CatchUp> {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{ws_port}/")).await?;
    let t = Instant::now();
    let auth = json!({"type": "AUTH", "terminalId": format!("back-{cursor}"), "cursor": cursor});
    ws.send(Message::Text(auth.to_string().into())).await?;
    let (mut bytes, mut frames) = (0, 0);
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(120), ws.next())
            .await
            .context("catch-up stalled")?;
        let Some(Ok(Message::Text(text))) = frame else {
            bail!("connection ended during catch-up");
        };
        bytes += text.len();
        frames += 1;
        let how = if text.starts_with("{\"type\":\"STATE\"") {
            Some("STATE")
        } else if text.starts_with("{\"type\":\"EVENTS_BULK\"") && text.ends_with("\"done\":true}")
        {
            Some("EVENTS_BULK")
        } else {
            None
        };
        if let Some(how) = how {
            return Ok(CatchUp {
                how,
                time: t.elapsed(),
                bytes,
                frames,
            });
        }
    }
}
