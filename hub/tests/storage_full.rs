//! A full disk (docs/storage.md "When the disk is full", docs/http-api.md), with the real binary
//! and its database on a small tmpfs the test mounts: a write that does not fit is answered at once
//! with `ERROR storage_full`, later writes too; reads, catch-up and HTTP keep working; `/health`
//! answers 503 with `db: full` and the free bytes; a metric counts it; once space is back writes
//! resume without a restart and nothing acknowledged is lost; SIGTERM stops the hub within 5 s
//! while full. With the reserve (`HUB_MIN_FREE_MB`) writes are refused before the file system is
//! full. Where a tmpfs cannot be mounted (not root), the tests say why and skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A tmpfs of `mb` MiB mounted on a fresh temporary directory; unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(mb: u64) -> Result<SmallFs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mb}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("`mount` not usable: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(SmallFs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn free(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(self.path()).expect("statvfs");
        st.blocks_available() as u64 * st.fragment_size() as u64
    }

    /// Fills the file system with `filler` until `leave` bytes are free.
    fn fill_until(&self, leave: u64) -> PathBuf {
        let filler = self.path().join("filler");
        let take = self.free().saturating_sub(leave);
        let take = usize::try_from(take).expect("filler fits in memory");
        std::fs::write(&filler, vec![0xA5u8; take]).expect("write filler");
        filler
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A small tmpfs, a directory for the hub's log, and the database path on the tmpfs; None, with
/// the reason printed, where a tmpfs cannot be mounted (not root).
fn small_fs_or_skip(mb: u64) -> Option<(SmallFs, tempfile::TempDir, String)> {
    match SmallFs::mount(mb) {
        Ok(fs) => {
            let logs = tempfile::tempdir().expect("tempdir");
            let db = fs.path().join("hub.redb").display().to_string();
            Some((fs, logs, db))
        }
        Err(why) => {
            println!("SKIPPED: cannot mount a small tmpfs ({why})");
            None
        }
    }
}

/// An order snapshot of about `kb` KiB (a long kitchen note).
fn big_snapshot(p: &str, kb: usize) -> Value {
    let mut s = snapshot(p, "draft", Some(4));
    s["lines"][0]["note"] = json!("x".repeat(kb * 1024));
    s
}

/// Sends one write and waits at most 5 s for its answer: `ORDER_ACK`, CONFLICT or ERROR.
async fn write(t: &mut Term, p: &str, base: u64, kb: usize) -> Result<Value, String> {
    t.send(
        json!({"type": "ORDER_SNAPSHOT", "posReference": p, "baseVersion": base,
        "snapshot": big_snapshot(p, kb)}),
    )
    .await;
    answer(t, &["ORDER_ACK", "CONFLICT", "ERROR"]).await
}

/// The next message of one of `types` within 5 s (the issue saw no answer at all).
async fn answer(t: &mut Term, types: &[&str]) -> Result<Value, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match t.next(left).await {
            Some(v) if types.iter().any(|ty| v["type"] == *ty) => return Ok(v),
            Some(_) => {}
            None => return Err(format!("no answer within 5 s (waiting for {types:?})")),
        }
    }
}

/// Writes versions of order `p` until the hub refuses one; returns the last acknowledged
/// version and the refusal.
async fn write_until_refused(t: &mut Term, p: &str, kb: usize) -> (u64, Value) {
    let mut version = 0;
    for _ in 0..2000 {
        let v = write(t, p, version, kb).await.unwrap_or_else(|e| {
            panic!("write after {version} acknowledged: {e}");
        });
        match v["type"].as_str() {
            Some("ORDER_ACK") => version = v["version"].as_u64().expect("version"),
            _ => return (version, v),
        }
    }
    panic!("2000 writes of {kb} KiB fitted: the file system did not fill");
}

/// Writes again every 200 ms until one is acknowledged (bounded by `within`).
async fn write_until_acknowledged(t: &mut Term, p: &str, base: u64, within: Duration) -> Value {
    let start = Instant::now();
    loop {
        let v = write(t, p, base, 1).await.expect("an answer");
        if v["type"] == "ORDER_ACK" {
            println!("writes resumed {:?} after space came back", start.elapsed());
            return v;
        }
        assert_eq!(v["code"], "storage_full", "{v}");
        assert!(
            start.elapsed() < within,
            "writes did not resume within {within:?}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asserts what a user sees while the disk is full: writes refused at once, reads, catch-up,
/// `/health` with `db: full`, the metric.
async fn assert_full_but_serving(hub: &HubProcess, t: &mut Term, acked: u64) {
    // Every kind of write is answered at once.
    t.send(json!({"type": "TICKET_NUMBER_REQUEST", "orderType": "takeout"}))
        .await;
    let v = answer(t, &["TICKET_NUMBER", "ERROR"])
        .await
        .expect("ticket answered");
    assert_eq!(v["code"], "storage_full", "{v}");
    t.send(json!({"type": "LEASE_ACQUIRE", "posReference": "S-2"}))
        .await;
    let v = answer(t, &["LEASE_GRANTED", "LEASE_DENIED", "ERROR"])
        .await
        .expect("lease answered");
    assert_eq!(v["code"], "storage_full", "{v}");
    t.send(json!({"type": "TABLE_LOCK_ACQUIRE", "tableId": 7}))
        .await;
    let v = answer(t, &["TABLE_LOCK_GRANTED", "TABLE_LOCK_DENIED", "ERROR"])
        .await
        .expect("lock answered");
    assert_eq!(v["code"], "storage_full", "{v}");
    // Reads and HTTP.
    let (status, order) = http_get(hub.http, "/orders/S-1").await;
    assert_eq!(
        (status, order["version"].as_u64()),
        (200, Some(acked)),
        "{order}"
    );
    let health_asked = Instant::now();
    let (status, health) = http_get(hub.http, "/health").await;
    println!(
        "/health while full ({:?}): {status} db={}",
        health_asked.elapsed(),
        health["db"]
    );
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["db"]["status"], "full", "{health}");
    assert!(health["db"]["freeBytes"].is_u64(), "{health}");
    assert!(
        health_asked.elapsed() < Duration::from_secs(2),
        "/health took {:?}",
        health_asked.elapsed()
    );
    let metrics = common::http(hub.http, "GET", "/metrics", "").await.1;
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("poshub_storage_full_total "))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(refused >= 4.0, "poshub_storage_full_total = {refused}");
    // A new terminal is let in and caught up from the start.
    let mut b = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "terminalId": "till-B", "name": "till-B", "cursor": 0}),
    )
    .await;
    let bulk = answer(&mut b, &["EVENTS_BULK", "STATE"])
        .await
        .expect("catch-up while full");
    assert!(
        bulk["events"].as_array().is_some_and(|e| !e.is_empty()) || bulk["type"] == "STATE",
        "{bulk}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_at_once_and_recovers_without_a_restart() {
    let Some((fs, logs, db)) = small_fs_or_skip(8) else {
        return;
    };
    // No reserve: the writes run into ENOSPC itself (redb latches the error; the hub reopens).
    let env = [("HUB_DB_PATH", db.as_str()), ("HUB_MIN_FREE_MB", "0")];
    let mut hub = HubProcess::spawn(logs.path(), &env).await;
    let filler = fs.fill_until(2 << 20);
    let mut a = Term::open(hub.ws, "till-A").await;
    assert_eq!(a.lease("S-1").await["type"], "LEASE_GRANTED");
    let (acked, refusal) = write_until_refused(&mut a, "S-1", 24).await;
    println!("{acked} writes acknowledged, then: {refusal}");
    // Refused again at once, not queued (the old hub answered nothing after the first refusal).
    let again = write(&mut a, "S-1", acked, 24).await;
    println!("the next write: {again:?}");
    let again = again.expect("the next write is answered");
    assert_eq!(refusal["type"], "ERROR", "{refusal}");
    assert_eq!(refusal["code"], "storage_full", "{refusal}");
    assert_eq!(again["code"], "storage_full", "{again}");
    assert_full_but_serving(&hub, &mut a, acked).await;

    // Space comes back: writes resume by themselves.
    std::fs::remove_file(&filler).expect("free space");
    let ack = write_until_acknowledged(&mut a, "S-1", acked, Duration::from_secs(10)).await;
    assert_eq!(ack["version"].as_u64(), Some(acked + 1), "{ack}");
    let (status, health) = http_get(hub.http, "/health").await;
    assert_eq!(
        (status, &health["db"]["status"]),
        (200, &json!("writable")),
        "{health}"
    );

    let (status, took) = hub.term(Duration::from_secs(5)).await.unwrap_or_else(|w| {
        panic!(
            "still running {w:?} after SIGTERM; log: {}",
            log(logs.path())
        )
    });
    println!("stopped in {took:?}: {status}");
    assert!(status.success(), "{status}; log: {}", log(logs.path()));
    // Nothing acknowledged was lost.
    let hub = HubProcess::spawn(logs.path(), &env).await;
    let (_, order) = http_get(hub.http, "/orders/S-1").await;
    assert_eq!(order["version"].as_u64(), Some(acked + 1), "{order}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_reserve_writes_are_refused_before_the_disk_fills_and_sigterm_still_stops() {
    let Some((fs, logs, db)) = small_fs_or_skip(24) else {
        return;
    };
    let env = [("HUB_DB_PATH", db.as_str()), ("HUB_MIN_FREE_MB", "8")];
    let mut hub = HubProcess::spawn(logs.path(), &env).await;
    let filler = fs.fill_until(11 << 20);
    let mut a = Term::open(hub.ws, "till-A").await;
    assert_eq!(a.lease("S-1").await["type"], "LEASE_GRANTED");
    let (acked, refusal) = write_until_refused(&mut a, "S-1", 24).await;
    let free = fs.free();
    println!(
        "{acked} writes acknowledged, then with {} KiB free: {refusal}",
        free >> 10
    );
    assert_eq!(refusal["code"], "storage_full", "{refusal}");
    assert!(
        free >= 7 << 20,
        "the reserve was not kept: {free} bytes free"
    );
    assert!(
        !log(logs.path()).contains("No space left"),
        "the file system filled: {}",
        log(logs.path())
    );
    assert_full_but_serving(&hub, &mut a, acked).await;

    // SIGTERM while full.
    let (status, took) = hub.term(Duration::from_secs(5)).await.unwrap_or_else(|w| {
        panic!(
            "still running {w:?} after SIGTERM while full; log: {}",
            log(logs.path())
        )
    });
    println!("stopped while full in {took:?}: {status}");
    assert!(status.success(), "{status}; log: {}", log(logs.path()));
    std::fs::remove_file(&filler).expect("free space");
    let mut hub = HubProcess::spawn(logs.path(), &env).await;
    let (_, order) = http_get(hub.http, "/orders/S-1").await;
    assert_eq!(order["version"].as_u64(), Some(acked), "{order}");
    let mut a = Term::open(hub.ws, "till-A").await;
    assert_eq!(a.lease("S-1").await["type"], "LEASE_GRANTED");
    assert_eq!(
        write(&mut a, "S-1", acked, 1).await.expect("write")["type"],
        "ORDER_ACK"
    );
    hub.kill9();
}

/// A JWT for `sub` signed by the hub's own key (kept beside the database).
fn hub_token(db_dir: &Path, sub: &str) -> String {
    use poshub::auth::{Claims, HubKey, AUDIENCE};
    let key = HubKey::load_or_create(db_dir).expect("hub key");
    key.issue(&Claims {
        sub: sub.into(),
        aud: AUDIENCE.into(),
        tenant_id: "t1".into(),
        store_id: "s1".into(),
        exp: poshub::auth::now_secs() + 3600,
        nbf: None,
        iat: None,
        uid: Some(json!(7)),
        role: Some("cashier".into()),
        name: None,
    })
    .expect("sign")
}

/// The first message and, after an `AUTH_FAIL`, the close code.
async fn login(hub: &HubProcess, auth: Value) -> (Value, Option<u16>) {
    let mut t = Term::connect(hub.ws).await;
    t.send(auth).await;
    let v = answer(&mut t, &["AUTH_OK", "AUTH_FAIL"])
        .await
        .expect("AUTH answered while full");
    let code = if v["type"] == "AUTH_FAIL" {
        t.close_code().await
    } else {
        None
    };
    (v, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_logins_while_full_are_admitted_when_their_binding_needs_no_write() {
    let Some((fs, logs, db)) = small_fs_or_skip(24) else {
        return;
    };
    let env = [
        ("HUB_DB_PATH", db.as_str()),
        ("HUB_MIN_FREE_MB", "8"),
        ("HUB_AUTH_MODE", "token"),
    ];
    let hub = HubProcess::spawn(logs.path(), &env).await;
    let (a_tok, c_tok, dev_tok) = (
        hub_token(fs.path(), "till-A"),
        hub_token(fs.path(), "till-C"),
        hub_token(fs.path(), "dev-9"),
    );
    let _filler = fs.fill_until(11 << 20);
    let mut a = Term::open_with(
        hub.ws,
        json!({"type": "AUTH", "token": a_tok, "terminalId": "till-A"}),
    )
    .await;
    assert_eq!(a.lease("S-1").await["type"], "LEASE_GRANTED");
    let (acked, refusal) = write_until_refused(&mut a, "S-1", 24).await;
    assert_eq!(refusal["code"], "storage_full", "{refusal}");
    println!("{acked} writes acknowledged, then full");

    // till-A again (bound to its own subject): admitted, and caught up.
    let (v, _) = login(
        &hub,
        json!({"type": "AUTH", "token": a_tok, "terminalId": "till-A", "cursor": 0}),
    )
    .await;
    println!("till-A logs in again while full: {}", v["type"]);
    assert_eq!(v["type"], "AUTH_OK", "{v}");
    // A first login of another subject would have to write its binding: refused, 1013.
    let (v, code) = login(
        &hub,
        json!({"type": "AUTH", "token": c_tok, "terminalId": "till-C"}),
    )
    .await;
    println!("till-C's first login while full: {v} then close {code:?}");
    assert_eq!(
        (&v["type"], &v["reason"], code),
        (&json!("AUTH_FAIL"), &json!("storage_full"), Some(1013))
    );
    // A device token naming a terminal in use by another subject: refused as always.
    let (v, code) = login(
        &hub,
        json!({"type": "AUTH", "token": dev_tok, "deviceId": "dev-9", "terminalId": "till-A"}),
    )
    .await;
    println!(
        "dev-9 naming till-A while full: {} then close {code:?}",
        v["reason"]
    );
    assert_eq!(
        (&v["reason"], code),
        (&json!("terminal_mismatch"), Some(4003))
    );
}
