//! A raw HTTP/1 client for the update API (every request a new loopback connection, bounded by
//! a read timeout) and a guard that kills and reaps a supervisor when a test ends, failed or not.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::{wait_for, Rig};

/// Sends one request to `addr` and returns the status code and the JSON body (Null if none).
pub fn http_to(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
    declared: Option<usize>,
) -> std::io::Result<(u16, serde_json::Value)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        declared.unwrap_or(body.len())
    );
    if let Some(t) = token {
        head.push_str(&format!("authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    Ok(parse_response(&resp))
}

/// Status code and JSON body of a raw HTTP/1 response.
pub fn parse_response(resp: &[u8]) -> (u16, serde_json::Value) {
    let text = String::from_utf8_lossy(resp).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        code,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// [`http_to`] on 127.0.0.1:`port`; a connection failure is code 0.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
    declared: Option<usize>,
) -> (u16, serde_json::Value) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    http_to(addr, method, path, token, body, declared).unwrap_or((0, serde_json::Value::Null))
}

/// A supervisor process killed (SIGKILL) and reaped when dropped.
pub use super::Proc as Running;

impl Rig {
    /// Starts `run` (env added to the process) and waits for the API port and the hub.
    pub fn run_api(&self, env: &[(&str, &str)]) -> (Running, u16) {
        let _ = std::fs::remove_file(self.path("data/supervisor/api-port"));
        let _ = std::fs::remove_file(self.path("hub/pid"));
        let sup = self.spawn(&["run"], env);
        let port_file = self.path("data/supervisor/api-port");
        let up = wait_for(Duration::from_secs(20), || {
            port_file.exists() && self.hub_pid().is_some()
        });
        assert!(up, "supervisor did not come up:\n{}", self.log("run"));
        let port = std::fs::read_to_string(&port_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        (sup, port)
    }
}
