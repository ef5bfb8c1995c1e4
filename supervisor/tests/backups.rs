//! Backups of the hub database with the real hub (`target/debug/poshub`, built by `cargo test
//! --workspace` or `cargo build -p poshub`) under the real supervisor: scheduled, before an
//! update, after a clean stop; a corrupted database comes back with the orders of the last
//! backup. Plus the parts that need no hub: the closed-file copy, retention, the free-space skip.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use poshub_supervisor::backup::{self, retention, BackupResult, Trigger};
use poshub_supervisor::config::Config;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// The real hub binary, next to the supervisor's.
fn hub_bin() -> PathBuf {
    let p = Path::new(SUP).with_file_name("poshub");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p poshub` (cargo test --workspace builds it)",
        p.display()
    );
    p
}

/// A rig whose supervisor runs the real hub (open auth, loopback ports, no mDNS).
struct RealHub {
    rig: Rig,
    ws: u16,
    http: u16,
}

impl RealHub {
    fn new(interval_s: u64) -> RealHub {
        let mut rig = Rig::new();
        let (ws, http) = (free_port(), free_port());
        rig.set("SUPERVISOR_HUB_BIN", hub_bin().to_str().unwrap());
        rig.set("SUPERVISOR_HUB_ARGS", "serve");
        rig.set(
            "SUPERVISOR_HUB_HEALTH_URL",
            &format!("http://127.0.0.1:{http}/health"),
        );
        rig.set("SUPERVISOR_BACKUP_INTERVAL_S", &interval_s.to_string());
        rig.set("SUPERVISOR_BACKUP_MIN_FREE_MB", "1");
        rig.power_on();
        RealHub { rig, ws, http }
    }

    fn start(&self) -> Sup {
        let (ws, http) = (self.ws.to_string(), self.http.to_string());
        let env = [
            ("HUB_BIND", "127.0.0.1"),
            ("HUB_PORT", ws.as_str()),
            ("HUB_HTTP_PORT", http.as_str()),
            ("HUB_MDNS_ENABLED", "false"),
            ("HUB_AUTH_MODE", "open"),
            ("HUB_LOG_LEVEL", "warn"),
        ];
        let child = self.rig.spawn(&["run"], &env);
        let mut sup = Sup(child);
        let up = wait_for(Duration::from_secs(30), || {
            self.health().is_some_and(|h| h["status"] == "ok")
        });
        if !up {
            sup.kill();
            panic!("hub not healthy: {}", self.rig.log("run"));
        }
        sup
    }

    fn health(&self) -> Option<Value> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let req = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        s.write_all(req.as_bytes()).ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        serde_json::from_str(buf.split_once("\r\n\r\n")?.1).ok()
    }

    fn orders(&self) -> u64 {
        self.health().expect("hub answers")["orders"]
            .as_u64()
            .unwrap()
    }

    /// Writes `n` new orders as one terminal, each acknowledged (durable) before the next.
    fn write_orders(&self, prefix: &str, n: usize) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let url = format!("ws://127.0.0.1:{}/", self.ws);
        rt.block_on(async {
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .unwrap();
            let auth = json!({"type": "AUTH", "terminalId": "T1", "name": "till 1"});
            ws.send(Message::Text(auth.to_string().into()))
                .await
                .unwrap();
            recv(&mut ws, "AUTH_OK").await;
            for i in 0..n {
                let p = format!("{prefix}-{i}");
                let lease = json!({"type": "LEASE_ACQUIRE", "posReference": p});
                ws.send(Message::Text(lease.to_string().into()))
                    .await
                    .unwrap();
                recv(&mut ws, "LEASE_GRANTED").await;
                let snap = json!({"posReference": p, "state": "draft", "lines": [{"id": "l1",
                    "productId": 7, "quantity": 2, "unitPrice": 4.5}], "totals": {"total": 9.0}});
                let m = json!({"type": "ORDER_SNAPSHOT", "posReference": p, "baseVersion": 0,
                    "snapshot": snap});
                ws.send(Message::Text(m.to_string().into())).await.unwrap();
                recv(&mut ws, "ORDER_ACK").await;
            }
        });
    }

    /// Names of the supervisor's backups, oldest first.
    fn backups(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.rig.path("data/backups"))
            .map(|rd| {
                rd.filter_map(std::result::Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| {
                        n.starts_with(retention::PREFIX)
                            && std::path::Path::new(n)
                                .extension()
                                .is_some_and(|x| x == "redb")
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The box loses power (supervisor `SIGKILLed`; the hub follows), then the card's database
    /// turns out corrupt.
    fn crash_and_corrupt(&self, sup: &mut Sup) {
        sup.kill();
        let down = wait_for(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", self.http)).is_err()
        });
        assert!(down, "hub still up after the supervisor died");
        std::thread::sleep(Duration::from_millis(300));
        let db = self.rig.path("data/hub.redb");
        let mut bytes = std::fs::read(&db).unwrap();
        bytes[..4096].fill(0xAB);
        std::fs::write(&db, &bytes).unwrap();
    }

    /// The recovery check of the database after the last start.
    fn database_check(&self) -> Value {
        let st = self.rig.status();
        st["recovery"]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "database")
            .cloned()
            .unwrap()
    }
}

async fn recv<S>(ws: &mut S, ty: &str) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {ty} in time"))
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == ty {
                return v;
            }
            assert_ne!(v["type"], "ERROR", "{v}");
        }
    }
}

/// The supervisor process; killed and reaped on drop.
struct Sup(common::Proc);

impl Sup {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
    fn term(&mut self) {
        let status = stop(&mut self.0 .0, libc::SIGTERM);
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn corrupt_database_comes_back_with_the_orders_of_the_last_scheduled_backup() {
    let h = RealHub::new(6);
    let mut sup = h.start();
    h.write_orders("A", 5);
    let written = poshub_supervisor::fsutil::now_unix();
    // A scheduled backup that started after the five orders were acknowledged.
    let after = retention::stamp(written + 1);
    let ok = wait_for(Duration::from_secs(30), || {
        h.backups()
            .iter()
            .any(|n| n.ends_with("-scheduled.redb") && n[7..23] >= *after)
    });
    assert!(
        ok,
        "no scheduled backup: {:?}\n{}",
        h.backups(),
        h.rig.log("run")
    );
    // The newest backup's age, in /health and in `status`.
    let health = h.health().unwrap();
    assert!(health["backup"]["ageS"].as_u64().unwrap() < 10, "{health}");
    let text = String::from_utf8(h.rig.sup(&["status"]).stdout).unwrap();
    assert!(text.contains("backup: newest backup-"), "{text}");
    // Orders of the loss window: taken after that backup, before the next one.
    h.write_orders("B", 3);
    assert_eq!(h.orders(), 8);
    let before = h.backups();
    h.crash_and_corrupt(&mut sup);
    assert_eq!(before, h.backups(), "a backup was taken after the B orders");

    let _sup = h.start();
    let check = h.database_check();
    println!("database check after the corruption: {check}");
    assert_eq!(check["result"], "repaired", "{check}");
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.contains(before.last().unwrap()), "{detail}");
    assert_eq!(
        h.orders(),
        5,
        "the orders of the last backup, not 0 and not 8"
    );
    assert_eq!(
        std::fs::read_dir(h.rig.path("data/corrupt"))
            .unwrap()
            .count(),
        1,
        "the corrupt database is kept aside"
    );
}

#[test]
fn an_update_and_a_clean_stop_each_leave_a_backup_that_a_corrupt_database_restores() {
    let h = RealHub::new(3600);
    let mut sup = h.start();
    h.write_orders("A", 4);
    // Before the update is written: a backup through the running hub.
    let bundle = h.rig.bundle("u2", "2.0.0", "rpi4", &image(b'B', 300_000));
    let out = h
        .rig
        .sup(&["install", bundle.to_str().unwrap(), "--no-reboot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pre = h.backups();
    assert!(
        pre.iter().any(|n| n.ends_with("-pre-update.redb")),
        "{pre:?}\n{}",
        stderr(&out)
    );
    // A clean stop: the closed database is copied and checked.
    sup.term();
    let stopped = h.backups();
    let stop_backup = stopped
        .iter()
        .find(|n| n.ends_with("-stop.redb"))
        .unwrap_or_else(|| panic!("{stopped:?}\n{}", h.rig.log("run")))
        .clone();
    let st = h.rig.status();
    assert_eq!(st["backup"]["last"]["trigger"], "stop", "{st}");
    assert_eq!(st["backup"]["last"]["result"], "ok", "{st}");

    let mut sup = h.start();
    assert_eq!(h.orders(), 4);
    h.write_orders("B", 3);
    h.crash_and_corrupt(&mut sup);
    let _sup = h.start();
    let check = h.database_check();
    println!("database check after the corruption: {check}");
    assert!(
        check["detail"].as_str().unwrap().contains(&stop_backup),
        "{check}"
    );
    assert_eq!(h.orders(), 4, "the orders of the stop backup");
}

/// A config for in-process calls: no hub listens on the health URL's port.
fn offline_cfg(dir: &Path, extra: &str) -> Config {
    let env = dir.join("s.env");
    std::fs::write(
        &env,
        format!(
            "SUPERVISOR_DATA_DIR={}\nSUPERVISOR_HUB_HEALTH_URL=http://127.0.0.1:{}/health\n{extra}",
            dir.join("data").display(),
            free_port()
        ),
    )
    .unwrap();
    Config::load(Some(&env)).unwrap()
}

fn make_db(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let db = redb::Database::create(path).unwrap();
    let t: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("orders");
    let tx = db.begin_write().unwrap();
    tx.open_table(t)
        .unwrap()
        .insert("P-1", &[7u8; 3000][..])
        .unwrap();
    tx.commit().unwrap();
}

#[test]
fn without_a_hub_the_closed_file_is_copied_checked_and_named() {
    let d = tempfile::tempdir().unwrap();
    let cfg = offline_cfg(d.path(), "SUPERVISOR_BACKUP_MIN_FREE_MB=1\n");
    // No database yet: nothing to back up, said so.
    let a = backup::take(&cfg, Trigger::Stop);
    assert_eq!(a.result, BackupResult::Skipped, "{a:?}");
    assert!(a.detail.contains("no database"), "{a:?}");
    make_db(&cfg.hub_db);
    let a = backup::take(&cfg, Trigger::Stop);
    assert_eq!(a.result, BackupResult::Ok, "{a:?}");
    let path = a.path.unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("backup-") && name.ends_with("-stop.redb"),
        "{name}"
    );
    assert!(poshub_supervisor::recovery::check_redb(&path).is_ok());
    assert_eq!(backup::newest(&cfg).unwrap().path, path);
    // A database another process holds is not copied (its copy could be torn).
    std::fs::remove_file(&path).unwrap();
    let held = redb::Database::open(&cfg.hub_db).unwrap();
    let a = backup::take(&cfg, Trigger::PreUpdate);
    drop(held);
    assert_eq!(a.result, BackupResult::Failed, "{a:?}");
    assert!(a.detail.contains("open in another process"), "{a:?}");
    assert!(backup::newest(&cfg).is_none());
}

#[test]
fn short_free_space_skips_the_backup_with_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let cfg = offline_cfg(d.path(), "SUPERVISOR_BACKUP_MIN_FREE_MB=100000000\n");
    make_db(&cfg.hub_db);
    let a = backup::take(&cfg, Trigger::Scheduled);
    assert_eq!(a.result, BackupResult::Skipped, "{a:?}");
    assert!(a.detail.contains("SUPERVISOR_BACKUP_MIN_FREE_MB"), "{a:?}");
    assert!(backup::newest(&cfg).is_none(), "nothing written");
    let saved: Value =
        serde_json::from_slice(&std::fs::read(backup::attempt_path(&cfg)).unwrap()).unwrap();
    assert_eq!(saved["result"], "skipped");
}

#[test]
fn retention_deletes_old_backups_of_the_supervisor_and_stale_partial_copies_only() {
    let d = tempfile::tempdir().unwrap();
    let cfg = offline_cfg(
        d.path(),
        "SUPERVISOR_BACKUP_MIN_FREE_MB=1\nSUPERVISOR_BACKUP_KEEP_HOURLY=2\nSUPERVISOR_BACKUP_KEEP_DAILY=1\n",
    );
    make_db(&cfg.hub_db);
    let dir = backup::dir(&cfg);
    std::fs::create_dir_all(&dir).unwrap();
    let now = poshub_supervisor::fsutil::now_unix();
    // Five old hourly backups, and a copy the hub made for `poshub backup`.
    for h in 1..=5u64 {
        std::fs::write(
            dir.join(retention::file_name(now - h * 3600, Trigger::Scheduled)),
            "old",
        )
        .unwrap();
    }
    std::fs::write(dir.join("hub-20200101T000000.000Z.redb"), "hub's").unwrap();
    // The hub's copy of a backup cut short an hour ago, and one in flight.
    let stale = dir.join("hub-20200101T000001.000Z.partial");
    std::fs::File::create(&stale)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let in_flight = dir.join("hub-20200101T000002.000Z.partial");
    std::fs::write(&in_flight, "copying").unwrap();
    let a = backup::take(&cfg, Trigger::Stop);
    assert_eq!(a.result, BackupResult::Ok, "{a:?}");
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    // Two hours (the new one and an hour ago), the hub's copy and the partial copy in flight;
    // the daily slot is the new one.
    let hour_ago = retention::file_name(now - 3600, Trigger::Scheduled);
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(!stale.exists() && in_flight.exists(), "{left:?}");
    assert!(left.contains(&hour_ago), "{left:?}");
    assert!(left.iter().any(|n| n.starts_with("hub-")), "{left:?}");
}
