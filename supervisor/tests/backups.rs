//! Backups of the hub database with the real hub (`target/debug/poshub`, built by `cargo test
//! --workspace` or `cargo build -p poshub`) under the real supervisor: scheduled, before an
//! update, after a clean stop; a corrupted database comes back with the orders of the last
//! backup. Plus the parts that need no hub: the closed-file copy, retention, the free-space skip.

mod common;
use common::*;

use std::path::Path;
use std::time::Duration;

use common::realhub::RealHub;
use poshub_supervisor::backup::{self, retention, BackupResult, Trigger};
use poshub_supervisor::config::Config;
use serde_json::Value;

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
