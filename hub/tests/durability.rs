//! The real binary: acknowledged writes survive `kill -9`, ticket numbers continue and leases
//! are still held after a restart; SIGTERM closes sockets with 1001 and exits 0 within 5 s; a
//! bad setting stops the hub with one line naming the variable.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_orders_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("HUB_LEASE_TTL_MS", "120000")];
    let mut hub = HubProcess::spawn(dir.path(), &env).await;
    let mut a = Term::open(hub.ws, "till-A").await;

    // 200 orders, pipelined; every tenth is written twice (version 2).
    for i in 0..200u32 {
        let p = format!("K-{i}");
        a.send(json!({"type": "LEASE_ACQUIRE", "posReference": p}))
            .await;
        a.send(json!({"type": "ORDER_SNAPSHOT", "posReference": p, "baseVersion": 0, "snapshot": snapshot(&p, "draft", None)})).await;
        if i.is_multiple_of(10) {
            a.send(json!({"type": "ORDER_SNAPSHOT", "posReference": p, "baseVersion": 1, "snapshot": snapshot(&p, "sent", None)})).await;
        }
    }
    let mut acks = 0;
    while acks < 220 {
        let v = a.recv_type_of(&["ORDER_ACK", "ERROR", "CONFLICT"]).await;
        assert_eq!(v["type"], "ORDER_ACK", "{v}");
        acks += 1;
    }
    for expect in 1..=3 {
        a.send(json!({"type": "TICKET_NUMBER_REQUEST", "orderType": "takeout"}))
            .await;
        assert_eq!(a.recv_type("TICKET_NUMBER").await["number"], expect);
    }
    a.send(json!({"type": "TABLE_LOCK_ACQUIRE", "tableId": 9}))
        .await;
    a.recv_type("TABLE_LOCK_GRANTED").await;
    // Power cut right after the last acknowledgement.
    hub.kill9();
    drop(a);

    let hub = HubProcess::spawn(dir.path(), &env).await;
    let (status, orders) = http_get(hub.http, "/orders").await;
    assert_eq!(status, 200);
    let list = orders["orders"].as_array().expect("orders");
    assert_eq!(list.len(), 200, "every acknowledged order is still there");
    for o in list {
        let i: usize = o["posReference"]
            .as_str()
            .and_then(|p| p.strip_prefix("K-"))
            .and_then(|n| n.parse().ok())
            .expect("ref");
        let want = if i.is_multiple_of(10) { 2 } else { 1 };
        assert_eq!(o["version"], want, "{o}");
    }
    let (_, one) = http_get(hub.http, "/orders/K-10").await;
    assert_eq!(one["snapshot"]["state"], "sent");

    // Leases survived: another terminal is denied, the holder keeps its lease on reconnect.
    let mut b = Term::open(hub.ws, "till-B").await;
    let d = b.lease("K-5").await;
    assert_eq!(
        (d["type"].as_str(), d["holder"]["terminalId"].as_str()),
        (Some("LEASE_DENIED"), Some("till-A"))
    );
    // Table locks survived too.
    b.send(json!({"type": "TABLE_LOCK_ACQUIRE", "tableId": 9}))
        .await;
    let denied = b
        .recv_type_of(&["TABLE_LOCK_DENIED", "TABLE_LOCK_GRANTED"])
        .await;
    assert_eq!(denied["holder"]["terminalId"], "till-A", "{denied}");
    let mut a = Term::open(hub.ws, "till-A").await;
    a.send(json!({"type": "LEASE_HEARTBEAT", "posReference": "K-5"}))
        .await;
    assert_eq!(a.recv_type("LEASE_RENEWED").await["posReference"], "K-5");
    // Ticket numbers continue; versions continue.
    a.send(json!({"type": "TICKET_NUMBER_REQUEST", "orderType": "takeout"}))
        .await;
    assert_eq!(a.recv_type("TICKET_NUMBER").await["number"], 4);
    assert_eq!(
        a.write("K-10", 2, snapshot("K-10", "paid", None)).await["version"],
        3
    );
    let (_, h) = http_get(hub.http, "/health").await;
    assert_eq!(
        (
            h["status"].as_str(),
            h["orders"].as_u64(),
            h["pendingEvents"].as_u64()
        ),
        (Some("ok"), Some(200), Some(221))
    );
    drop(hub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = HubProcess::spawn(dir.path(), &[]).await;
    let mut a = Term::open(hub.ws, "till-A").await;
    a.lease("S-1").await;
    a.send(json!({"type": "ORDER_SNAPSHOT", "posReference": "S-1", "baseVersion": 0, "snapshot": snapshot("S-1", "draft", None)})).await;
    assert_eq!(a.recv_type("ORDER_ACK").await["version"], 1);
    let start = Instant::now();
    nix_kill(hub.child.id(), "TERM");
    assert_eq!(a.close_code().await, Some(1001));
    let status = loop {
        if let Some(s) = hub.child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "did not exit within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        status.success(),
        "exit status {status:?}; log: {}",
        log(dir.path())
    );
    // The database was closed cleanly and opens again with the order in it.
    let hub = HubProcess::spawn(dir.path(), &[]).await;
    assert_eq!(http_get(hub.http, "/orders/S-1").await.1["version"], 1);
}

fn nix_kill(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(ok.success());
}

#[test]
fn a_bad_setting_stops_the_hub_with_one_line() {
    for (var, val) in [
        ("HUB_PORT", "eighty"),
        ("HUB_AUTH_MODE", "maybe"),
        ("HUB_LEASE_TTL_MS", "-5"),
        ("CLUSTER_PUBLIC_KEY_BASE64", "bm90IGEga2V5"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_poshub"))
            .arg("serve")
            .env(var, val)
            .env("HUB_DB_PATH", "/nonexistent/should-not-be-created/hub.redb")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with(&format!("poshub: {var}: ")), "{err}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("bad.env");
    std::fs::write(&f, "HUB_HTTP_PORT=99999\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_poshub"))
        .args(["serve", "--config"])
        .arg(&f)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("poshub: HUB_HTTP_PORT: "));
}

/// Sends one keep-alive request on `s` and reads its whole response, leaving the connection
/// open and idle, as a browser tab showing the dashboard does.
async fn keep_alive_get(s: &mut tokio::net::TcpStream, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!("GET {path} HTTP/1.1\r\nHost: hub\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= len {
                return head.to_string();
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "connection closed before the response ended");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_do_not_delay_a_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hub = HubProcess::spawn(dir.path(), &[]).await;
    // Two open dashboard tabs: one idle after a page, one idle after /health.
    let mut tabs = Vec::new();
    for path in ["/", "/health"] {
        let mut s = tokio::net::TcpStream::connect(hub.http)
            .await
            .expect("connect");
        let head = keep_alive_get(&mut s, path).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
        tabs.push(s);
    }
    // The old code waited for these connections until its 4.5 s limit.
    let stopped = hub.term(Duration::from_secs(2)).await;
    match &stopped {
        Ok((status, took)) => {
            println!("stopped in {took:?} with 2 idle keep-alive connections ({status})");
        }
        Err(waited) => {
            println!("still running after {waited:?} with 2 idle keep-alive connections");
        }
    }
    let (status, _) =
        stopped.unwrap_or_else(|w| panic!("not stopped within {w:?}; log: {}", log(dir.path())));
    assert!(
        status.success(),
        "exit status {status:?}; log: {}",
        log(dir.path())
    );
    drop(tabs);
}
