//! The HTTP API of docs/http-api.md and the CLI commands that act on a running hub.

mod common;

use common::*;
use serde_json::{json, Value};

async fn admin(hub: &TestHub, path: &str, token: Option<&str>) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(hub.http)
        .await
        .expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn admin_token(hub: &TestHub) -> String {
    std::fs::read_to_string(hub.dir.path().join("admin-token"))
        .expect("generated admin token")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_endpoints_show_what_terminals_did() {
    let hub = TestHub::start(&[]).await;
    let mut a = hub.term("A").await;
    a.lease("H-1").await;
    a.write("H-1", 0, snapshot("H-1", "draft", Some(2))).await;
    a.send(json!({"type": "TABLE_LOCK_ACQUIRE", "tableId": 2}))
        .await;
    a.recv_type("TABLE_LOCK_GRANTED").await;
    a.send(json!({"type": "TICKET_NUMBER_REQUEST", "orderType": "delivery"}))
        .await;
    a.recv_type("TICKET_NUMBER").await;

    let (_, health) = http_get(hub.http, "/healthz").await;
    for f in [
        "status",
        "uptimeS",
        "terminals",
        "orders",
        "pendingEvents",
        "forwardedEvents",
        "deadLetters",
        "version",
        "db",
    ] {
        assert!(health.get(f).is_some(), "/health lacks {f}: {health}");
    }
    let (_, status_view) = http_get(hub.http, "/status").await;
    assert_eq!(status_view["terminals"][0]["terminalId"], "A");
    assert_eq!(status_view["leases"][0]["posReference"], "H-1");
    assert_eq!(status_view["pendingEvents"], 1);
    let (_, orders) = http_get(hub.http, "/orders").await;
    assert_eq!(
        (
            orders["orders"][0]["itemCount"].as_u64(),
            orders["orders"][0]["tableId"].clone()
        ),
        (Some(4), json!(2))
    );
    let (_, tables) = http_get(hub.http, "/tables").await;
    assert_eq!(tables["tables"][0]["status"], "occupied");
    let (_, locks) = http_get(hub.http, "/table-locks").await;
    assert_eq!(locks["locks"][0]["terminalId"], "A");
    let (_, ts) = http_get(hub.http, "/ticket-sequences").await;
    assert_eq!(ts["sequences"]["delivery"], 1);
    let (_, ev) = http_get(hub.http, "/events?limit=2").await;
    assert_eq!(ev["count"], 2);
    assert_eq!(ev["events"][0]["type"], "TABLE_LOCKS_STATE", "newest first");
    let (_, since) = http_get(hub.http, "/events?since=1").await;
    assert_eq!(since["events"][0]["seq"], 2, "oldest first after `since`");
    assert_eq!(http_get(hub.http, "/events?limit=abc").await.0, 400);

    let (status, metrics) = http(hub.http, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    for needle in [
        "poshub_terminals_connected 1",
        "poshub_messages_in_total{type=\"ORDER_SNAPSHOT\"} 1",
        "poshub_messages_out_total{type=\"ORDER_ACK\"} 1",
        "poshub_commit_batch_size_count",
        "poshub_commit_duration_seconds_bucket",
        "poshub_broadcast_latency_seconds_count",
        "poshub_events_pending 1",
        "poshub_leases_active 1",
        "poshub_db_size_bytes",
    ] {
        assert!(
            metrics.contains(needle),
            "metrics lack {needle}:\n{metrics}"
        );
    }
    let (status, page) = http(hub.http, "GET", "/", "").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("poshub dashboard")
            && !page.contains("http://")
            && !page.contains("https://"),
        "dashboard must be self-contained"
    );
    let (_, term) = http(hub.http, "GET", "/terminal", "").await;
    assert!(term.contains("poshub terminal") && !term.contains("https://"));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_need_the_token() {
    let hub = TestHub::start(&[]).await;
    let mut a = hub.term("A").await;
    a.lease("R-1").await;
    for path in ["/reset", "/admin/reset-leases", "/admin/backup"] {
        assert_eq!(admin(&hub, path, None).await.0, 401, "{path}");
        assert_eq!(admin(&hub, path, Some("wrong")).await.0, 401, "{path}");
    }
    let token = admin_token(&hub);
    let (st, v) = admin(&hub, "/admin/reset-leases", Some(&token)).await;
    assert_eq!((st, v["leasesReset"].as_u64()), (200, Some(1)));
    assert_eq!(a.recv_type("LEASE_REVOKED").await["reason"], "reset");

    a.lease("R-2").await;
    a.write("R-2", 0, snapshot("R-2", "draft", None)).await;
    let (st, _) = admin(&hub, "/reset", Some(&token)).await;
    assert_eq!(st, 200);
    // Connected terminals are told to start over.
    a.recv_type("RESYNC_REQUIRED").await;
    assert_eq!(a.recv_type("STATE").await["orders"], json!([]));
    assert_eq!(http_get(hub.http, "/orders").await.1["count"], 0);
    // Every cursor is now too old: a terminal coming back resyncs.
    let mut b = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "terminalId": "B", "cursor": 1}),
    )
    .await;
    b.recv_type("RESYNC_REQUIRED").await;
    // Preflight and CORS.
    let (st, _) = http(hub.http, "OPTIONS", "/admin/backup", "").await;
    assert_eq!(st, 204);
    hub.stop().await;
}

fn poshub(dir: &std::path::Path, http_port: u16, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_poshub"))
        .args(args)
        .env("HUB_DB_PATH", dir.join("hub.redb"))
        .env("HUB_HTTP_PORT", http_port.to_string())
        .env("HUB_BIND", "127.0.0.1")
        .output()
        .expect("run poshub");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_backup_and_check_work_on_a_live_hub() {
    let hub = TestHub::start(&[]).await;
    let dir = hub.dir.path().to_path_buf();
    let port = hub.http.port();
    let mut a = hub.term("A").await;
    for i in 0..30 {
        let p = format!("B-{i}");
        a.lease(&p).await;
        a.write(&p, 0, snapshot(&p, "draft", None)).await;
    }
    let out = dir.join("copies/backup.redb");
    let out_s = out.display().to_string();
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || poshub(&dir, port, &["backup", "--out", &out_s]))
            .await
            .expect("join");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("integrity ok"), "{stdout}");
    let dir = hub.dir.path().to_path_buf();
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || poshub(&dir, port, &["check"]))
            .await
            .expect("join");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("ok (live hub"), "{stdout}");
    let dir = hub.dir.path().to_path_buf();
    let (code, stdout, _) = tokio::task::spawn_blocking(move || poshub(&dir, port, &["stats"]))
        .await
        .expect("join");
    assert_eq!(code, 0);
    assert!(stdout.contains("orders: 30"), "{stdout}");
    // Pointed at the wrong port, the CLI finds the file held and says where it looked.
    let dir = hub.dir.path().to_path_buf();
    let wrong = free_port();
    let (code, _, stderr) = tokio::task::spawn_blocking(move || poshub(&dir, wrong, &["check"]))
        .await
        .expect("join");
    assert_ne!(code, 0);
    assert!(
        stderr.contains(&format!(
            "in use by a running hub, but no hub answers at http://127.0.0.1:{wrong}"
        )),
        "{stderr}"
    );
    // Writing goes on while the backup exists; the backup is a hub that starts with 30 orders.
    a.lease("after").await;
    a.write("after", 0, snapshot("after", "draft", None)).await;
    let _dir = hub.stop().await;
    let restored = tempfile::tempdir().expect("tempdir");
    std::fs::copy(&out, restored.path().join("hub.redb")).expect("copy backup");
    let hub2 = TestHub::start_in(restored, &[]).await;
    assert_eq!(http_get(hub2.http, "/orders").await.1["count"], 30);
    hub2.stop().await;
}

#[test]
fn cli_says_plainly_when_no_hub_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    for args in [&["stats"][..], &["events"], &["reset-leases"]] {
        let (code, _, stderr) = poshub(dir.path(), port, args);
        assert_eq!(code, 2);
        assert!(
            stderr.contains("no hub answers at http://127.0.0.1:"),
            "{stderr}"
        );
    }
    // With no hub running, check and backup work on the file itself.
    std::fs::write(dir.path().join("junk.redb"), b"definitely not a database").expect("write");
    let (code, _, stderr) = poshub(
        dir.path(),
        port,
        &[
            "check",
            "--db",
            &dir.path().join("junk.redb").display().to_string(),
        ],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("junk.redb"), "{stderr}");
}
