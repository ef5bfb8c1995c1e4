//! Test helper, not shipped: a stand-in for the real hub that serves `GET /health` on
//! `--port N` and is steered through files in `$FAKE_HUB_DIR`:
//! - `crash` present: exit with status 3 right after start (crash loop);
//! - `unhealthy` present: answer 503 `{"status":"error"}`;
//! - writes `pid` on start, appends `start <unix ms>` to `starts`, writes `notify-socket` if it inherited
//!   `NOTIFY_SOCKET`, `db-path` with the `HUB_DB_PATH` it was given, `os-version` with the
//!   `POSHUB_OS_VERSION` it was given, and `got-sigterm`/`got-sigint`
//!   when it is asked to stop.
//!
//! A hung hub is simulated by the test with SIGSTOP on the pid.

use std::io::Write;
use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args
        .iter()
        .position(|a| a == "--port")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(8766);
    let dir = PathBuf::from(std::env::var("FAKE_HUB_DIR").unwrap_or_else(|_| ".".into()));
    let _ = std::fs::write(dir.join("pid"), std::process::id().to_string());
    let _ = std::fs::write(
        dir.join("db-path"),
        std::env::var("HUB_DB_PATH").unwrap_or_default(),
    );
    let _ = std::fs::write(
        dir.join("os-version"),
        std::env::var("POSHUB_OS_VERSION").unwrap_or_default(),
    );
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("starts"))
    {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let _ = writeln!(f, "start {ms}");
    }
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let _ = std::fs::write(dir.join("notify-socket"), "inherited");
    }
    if dir.join("crash").exists() {
        std::process::exit(3);
    }
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fake hub: bind {port}: {e}");
            std::process::exit(4);
        }
    };
    let mut term = signal(SignalKind::terminate()).expect("signal handler");
    let mut int = signal(SignalKind::interrupt()).expect("signal handler");
    loop {
        tokio::select! {
            _ = term.recv() => {
                let _ = std::fs::write(dir.join("got-sigterm"), "1");
                std::process::exit(0);
            }
            _ = int.recv() => {
                let _ = std::fs::write(dir.join("got-sigint"), "1");
                std::process::exit(0);
            }
            accepted = listener.accept() => {
                let Ok((mut s, _)) = accepted else { continue };
                let dir = dir.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    let (code, body) = if dir.join("unhealthy").exists() {
                        ("503 Service Unavailable", r#"{"status":"error","db":"not writable"}"#)
                    } else {
                        ("200 OK", r#"{"status":"ok","uptimeS":1}"#)
                    };
                    let resp = format!(
                        "HTTP/1.1 {code}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        }
    }
}
