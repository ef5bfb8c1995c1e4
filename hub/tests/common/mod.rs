//! Test harness: a hub on 127.0.0.1 with ephemeral ports and its own temporary data directory
//! (in-process, or the real binary for crash tests), terminals that speak the wire protocol over
//! a real WebSocket, and a tiny HTTP client.
#![allow(dead_code)]

pub mod fake_printer;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use poshub::clock::{Clock, SystemClock};
use poshub::config::{Config, Vars};
use poshub::server::{self, RunningHub};

pub mod odoo_double;

pub const WAIT: Duration = Duration::from_secs(10);

/// Base settings of a test hub; `extra` overrides them.
pub fn vars(dir: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = vec![
        ("HUB_BIND".into(), "127.0.0.1".into()),
        ("HUB_PORT".into(), "0".into()),
        ("HUB_HTTP_PORT".into(), "0".into()),
        (
            "HUB_DB_PATH".into(),
            dir.join("hub.redb").display().to_string(),
        ),
        ("HUB_MDNS_ENABLED".into(), "false".into()),
        ("HUB_AUTH_MODE".into(), "open".into()),
        ("TENANT_ID".into(), "t1".into()),
        ("STORE_ID".into(), "s1".into()),
    ];
    for (k, val) in extra {
        v.retain(|(key, _)| key != k);
        v.push((k.to_string(), val.to_string()));
    }
    v
}

/// An in-process hub and the directory it lives in.
pub struct TestHub {
    pub dir: tempfile::TempDir,
    pub running: Option<RunningHub>,
    pub ws: SocketAddr,
    pub http: SocketAddr,
}

impl TestHub {
    pub async fn start(extra: &[(&str, &str)]) -> TestHub {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, extra).await
    }

    pub async fn start_in(dir: tempfile::TempDir, extra: &[(&str, &str)]) -> TestHub {
        Self::start_in_with_clock(dir, extra, Arc::new(SystemClock)).await
    }

    /// A hub whose engine runs on `clock` (a `ManualClock` the test steps to expire leases,
    /// locks and grace periods without waiting for them).
    pub async fn start_with_clock(extra: &[(&str, &str)], clock: Arc<dyn Clock>) -> TestHub {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in_with_clock(dir, extra, clock).await
    }

    async fn start_in_with_clock(
        dir: tempfile::TempDir,
        extra: &[(&str, &str)],
        clock: Arc<dyn Clock>,
    ) -> TestHub {
        let cfg = Config::from_vars(&Vars::from_map(vars(dir.path(), extra)), false)
            .expect("valid config");
        let running = server::start_with_clock(cfg, clock)
            .await
            .expect("hub starts");
        TestHub {
            ws: running.ws_addr,
            http: running.http_addr,
            running: Some(running),
            dir,
        }
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::from_secs(5)).await;
        }
        self.dir
    }

    /// A counter or gauge from `/metrics` (`name` with its labels), 0 when absent.
    pub async fn metric(&self, name: &str) -> u64 {
        let (status, body) = http(self.http, "GET", "/metrics", "").await;
        assert_eq!(status, 200);
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    }

    /// The metric once it reaches `want`, or its value after 5 s: a writer adds its counts
    /// after the flush, so a terminal can read a frame a moment before it is counted.
    pub async fn metric_at_least(&self, name: &str, want: u64) -> u64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.metric(name).await;
            if v >= want || tokio::time::Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn term(&self, id: &str) -> Term {
        Term::open(self.ws, id).await
    }
}

/// A terminal speaking the protocol.
pub struct Term {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub id: String,
}

impl Term {
    pub async fn connect(addr: SocketAddr) -> Term {
        Self::connect_url(&format!("ws://{addr}/")).await
    }

    pub async fn connect_url(url: &str) -> Term {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("websocket connects");
        Term {
            ws,
            id: String::new(),
        }
    }

    /// Connects and authenticates in open mode.
    pub async fn open(addr: SocketAddr, id: &str) -> Term {
        Self::open_with(addr, json!({"type": "AUTH", "terminalId": id, "name": id})).await
    }

    pub async fn open_with(addr: SocketAddr, auth: Value) -> Term {
        let mut t = Self::connect(addr).await;
        t.id = auth["terminalId"].as_str().unwrap_or_default().to_string();
        t.send(auth).await;
        let ok = t.recv_type("AUTH_OK").await;
        assert_eq!(ok["terminalId"].as_str(), Some(t.id.as_str()), "{ok}");
        t
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send");
    }

    /// The next text message (`SYNC_STATUS` included), or None if the socket closed.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        loop {
            let m = tokio::time::timeout(within, self.ws.next()).await.ok()??;
            match m {
                Ok(Message::Text(t)) => {
                    return Some(serde_json::from_str(t.as_str()).expect("hub sends JSON"))
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Waits for a message of type `ty`, skipping status broadcasts and anything else.
    pub async fn recv_type(&mut self, ty: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(v) if v["type"] == ty => return v,
                Some(_) => {}
                None => panic!("{}: socket closed or timed out waiting for {ty}", self.id),
            }
        }
    }

    /// The next message that is not `SYNC_STATUS`.
    pub async fn recv(&mut self) -> Value {
        loop {
            let v = self
                .next(WAIT)
                .await
                .unwrap_or_else(|| panic!("{}: nothing received", self.id));
            if v["type"] != "SYNC_STATUS" {
                return v;
            }
        }
    }

    /// Asserts that nothing but status broadcasts arrives for `ms`.
    pub async fn quiet_for(&mut self, ms: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match tokio::time::timeout(left, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("json");
                    assert_eq!(
                        v["type"], "SYNC_STATUS",
                        "{}: unexpected message {v}",
                        self.id
                    );
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                // timed out (quiet as asked), closed, or a non-text frame
                _ => return,
            }
        }
    }

    /// Waits for the hub to close the socket; returns the close code.
    pub async fn close_code(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(elapsed) => panic!("{}: socket not closed in time ({elapsed})", self.id),
                Ok(None | Some(Err(_))) => return None,
                Ok(Some(Ok(Message::Close(f)))) => return f.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    pub async fn lease(&mut self, p: &str) -> Value {
        self.send(json!({"type": "LEASE_ACQUIRE", "posReference": p}))
            .await;
        self.recv_type_of(&["LEASE_GRANTED", "LEASE_DENIED"]).await
    }

    pub async fn recv_type_of(&mut self, types: &[&str]) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(v) if types.iter().any(|t| v["type"] == *t) => return v,
                Some(_) => {}
                None => panic!("{}: closed or timed out waiting for {types:?}", self.id),
            }
        }
    }

    /// Sends a snapshot and returns the hub's direct answer (`ORDER_ACK`, CONFLICT or ERROR).
    pub async fn write(&mut self, p: &str, base: u64, snapshot: Value) -> Value {
        self.send(json!({"type": "ORDER_SNAPSHOT", "posReference": p, "baseVersion": base, "snapshot": snapshot})).await;
        self.recv_type_of(&["ORDER_ACK", "CONFLICT", "ERROR"]).await
    }
}

/// An order snapshot of about 1 KB with a few lines.
pub fn snapshot(p: &str, state: &str, table: Option<i64>) -> Value {
    let lines: Vec<Value> = (0..4)
        .map(|i| json!({"id": format!("l{i}"), "productId": 100 + i, "quantity": 1 + i, "unitPrice": 4.5, "taxIds": [1], "note": "no onions please"}))
        .collect();
    let mut s = json!({"posReference": p, "state": state, "orderType": "dine_in", "lines": lines,
        "totals": {"subtotal": 45.0, "tax": 4.5, "total": 49.5}, "paymentLines": []});
    if let Some(t) = table {
        s["tableId"] = json!(t);
    }
    s
}

/// GET over a fresh connection; returns status and parsed JSON body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = http(addr, "GET", path, "").await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("http connect");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).await.expect("http write");
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("http in time")
        .expect("http read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The hub binary as a child process, for kill -9 and signal tests. Dropping it kills and reaps
/// the process, also when the test fails; it also dies with the test thread that started it
/// (see `die_with_parent`).
pub struct HubProcess {
    pub child: std::process::Child,
    pub ws: SocketAddr,
    pub http: SocketAddr,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl HubProcess {
    pub async fn spawn(dir: &Path, extra: &[(&str, &str)]) -> HubProcess {
        let (wp, hp) = (free_port(), free_port());
        let (wps, hps) = (wp.to_string(), hp.to_string());
        let mut all: Vec<(&str, &str)> = vec![("HUB_PORT", &wps), ("HUB_HTTP_PORT", &hps)];
        all.extend_from_slice(extra);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_poshub"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in vars(dir, &all) {
            cmd.env(k, v);
        }
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("hub.log"))
                    .expect("log"),
            ));
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("spawn poshub");
        let p = HubProcess {
            child,
            ws: ([127, 0, 0, 1], wp).into(),
            http: ([127, 0, 0, 1], hp).into(),
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if TcpStream::connect(p.http).await.is_ok()
                && http_get(p.http, "/health").await.0 == 200
            {
                return p;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "hub did not become healthy; log: {}",
                log(dir)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit: its exit status and how
    /// long the stop took, or the time waited if it is still running (the drop kills it then).
    pub async fn term(
        &mut self,
        within: Duration,
    ) -> Result<(std::process::ExitStatus, Duration), Duration> {
        let start = std::time::Instant::now();
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on the pid of our own child, which is not reaped before this returns.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Ok((status, start.elapsed()));
            }
            if start.elapsed() >= within {
                return Err(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Makes a process the test starts die (SIGKILL) when the thread that started it ends, so
/// nothing outlives a test binary killed midway (a timeout, ^C). Guards that kill on drop
/// handle the ordinary end of a test, panics included.
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl only sets a flag on the new process; it is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A child process that is killed and reaped when dropped (for processes other than the hub
/// started through `HubProcess`).
pub struct Reaped(pub std::process::Child);

impl Reaped {
    /// Spawns `cmd` so that it dies with the test (see `die_with_parent`) and on drop.
    pub fn spawn(cmd: &mut std::process::Command) -> std::io::Result<Reaped> {
        die_with_parent(cmd);
        cmd.spawn().map(Reaped)
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("hub.log")).unwrap_or_default()
}

pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("hub.redb")
}
