//! `SYNC_STATUS` broadcasts, group commit under concurrent writers, and `poshub token issue`.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_status_reaches_every_terminal() {
    let hub = TestHub::start(&[("HUB_STATUS_INTERVAL_MS", "100")]).await;
    let mut a = hub.term("A").await;
    let _b = hub.term("B").await;
    a.lease("S-1").await;
    a.write("S-1", 0, snapshot("S-1", "draft", None)).await;
    let st = loop {
        let v = a.recv_type("SYNC_STATUS").await;
        if v["pendingEvents"] == 1 {
            break v;
        }
    };
    assert_eq!(st["terminals"], 2);
    assert_eq!(st["seq"], 1);
    assert_eq!(st["deadLetters"], 0);
    assert_eq!(st["upstream"]["state"], "disabled");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_commits() {
    let hub = TestHub::start(&[]).await;
    let ws = hub.ws;
    let tasks: Vec<_> = (0..10)
        .map(|w| {
            tokio::spawn(async move {
                let mut t = Term::open(ws, &format!("w{w}")).await;
                for i in 0..50 {
                    let p = format!("G-{w}-{i}");
                    t.send(json!({"type": "LEASE_ACQUIRE", "posReference": p})).await;
                    t.send(json!({"type": "ORDER_SNAPSHOT", "posReference": p, "baseVersion": 0, "snapshot": snapshot(&p, "draft", None)})).await;
                }
                for _ in 0..50 {
                    t.recv_type("ORDER_ACK").await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    let stats = &hub.running.as_ref().expect("running").hub.engine.stats;
    let commits = stats.commits.load(Ordering::Relaxed);
    let cmds = stats.committed_cmds.load(Ordering::Relaxed);
    // 1,000 acknowledged writes (plus their leases) took far fewer durable commits.
    assert!(cmds >= 1000, "{cmds}");
    assert!(
        commits * 4 < cmds,
        "commits {commits} for {cmds} commands: no group commit"
    );
    assert!(stats.max_batch.load(Ordering::Relaxed) > 10);
    assert_eq!(http_get(hub.http, "/orders").await.1["count"], 500);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_issue_cli_makes_a_token_the_hub_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("hub.redb").display().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_poshub"))
        .args([
            "token",
            "issue",
            "--terminal",
            "till-7",
            "--role",
            "manager",
            "--ttl",
            "2h",
            "--name",
            "Front till",
        ])
        .env("HUB_DB_PATH", &db)
        .env("TENANT_ID", "t1")
        .env("STORE_ID", "s1")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3);
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_poshub"))
        .args(["token", "issue", "--terminal", "x", "--role", "owner"])
        .env("HUB_DB_PATH", &db)
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--role"));

    let hub = TestHub::start_in(dir, &[("HUB_AUTH_MODE", "token")]).await;
    let ok = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "token": token, "terminalId": "till-7"}),
    )
    .await;
    drop(ok);
    let mut t = Term::connect(hub.ws).await;
    t.send(json!({"type": "AUTH", "token": token})).await;
    let v = t.recv().await;
    assert_eq!(
        (v["role"].as_str(), v["name"].as_str()),
        (Some("manager"), Some("Front till"))
    );
    hub.stop().await;
}
